// What every rundkit command line shares, bpftool style: -j/--json and
// -p/--pretty on every read; errors as {"error": "..."} on stdout in JSON
// mode, "Error: ..." on stderr otherwise; exit codes from error.h (0 ok,
// 1 the operation failed, 2 bad usage or bad input).
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace CLI {
class App;
}

namespace rundkit {

struct CliOutput {
  bool json = false;
  bool pretty = false; // implies json

  // Adds -j,--json and -p,--pretty to `app`, and lets every option of
  // `app` be given after any object or verb too (`tool info --json` as well
  // as `tool --json info`).  Call it before adding subcommands: they take
  // that setting from their parent when they are made.
  void add_flags(CLI::App &app);
  // `j` in JSON mode, else `text` as it is.
  void print(const nlohmann::json &j, const std::string &text) const;
  // `j`, for callers that format their own text when `json` is off.
  void print_json(const nlohmann::json &j) const;
  // Prints `msg` as an error and returns `code`.
  int fail(int code, const std::string &msg) const;
};

// Parses the command line.  Returns nothing when the command should run;
// otherwise the exit code, after printing help (0) or the usage error (2).
std::optional<int> parse_command_line(CLI::App &app, int argc, char **argv, CliOutput &out);

// Long work reports on a terminal as one line rewritten in place, and says
// nothing otherwise (a log gets the final result from stdout): the
// progress callback of every tool.  end_progress_line() clears it.
void progress_line(const std::string &line);
void end_progress_line();

// Runs `command`, turning InputError into exit code 2 and any other
// exception into 1, both printed through `out`.
int run_command(const CliOutput &out, const std::function<int()> &command);

// A name an object is stored under (a file name in a state directory): 1
// to `max_len` letters, digits, '_', '.', '-' and the characters of
// `extra`, not starting with '.' or '-'.  InputError "invalid WHAT name
// 'NAME': why" otherwise.
void check_object_name(const std::string &name, const char *what, size_t max_len,
                       const std::string &extra = "");

} // namespace rundkit
