#include "util/cli.h"

#include <unistd.h>

#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace rundkit {

void CliOutput::add_flags(CLI::App &app) {
  app.add_flag("-j,--json", json, "JSON output (errors as {\"error\": ...})");
  app.add_flag("-p,--pretty", pretty, "indented JSON (implies --json)");
  app.fallthrough();
}

void CliOutput::print(const nlohmann::json &j, const std::string &text) const {
  if (json)
    print_json(j);
  else
    std::cout << text;
}

void CliOutput::print_json(const nlohmann::json &j) const {
  std::cout << j.dump(pretty ? 2 : -1) << "\n";
}

int CliOutput::fail(int code, const std::string &msg) const {
  if (json)
    print_json({{"error", msg}});
  else
    std::cerr << "Error: " << msg << "\n";
  return code;
}

namespace {

// CLI11 says only "A subcommand is required" for `tool pool frobnicate`:
// name the word it did not know and what the object takes.
std::string missing_command_message(CLI::App &app, int argc, char **argv) {
  CLI::App *cur = &app;
  for (;;) {
    auto chosen = cur->get_subcommands();
    if (chosen.empty())
      break;
    cur = chosen.front();
  }
  std::string verbs;
  for (const auto *sub : cur->get_subcommands([](const CLI::App *) { return true; }))
    verbs += (verbs.empty() ? "" : ", ") + sub->get_name();
  std::string where = cur == &app ? "'" + cur->get_name().substr(cur->get_name().rfind('/') + 1) + "'"
                                  : "'" + cur->get_name() + "'";
  // The first plain word after the object's own name is the unknown one.
  int i = 1;
  if (cur != &app)
    while (i < argc && argv[i] != cur->get_name())
      ++i;
  // An option's value ("--state-dir DIR") is no command: skip the word
  // after an option that takes one, unless it came as "--opt=value".
  auto takes_value = [&](const std::string &word) {
    if (word.find('=') != std::string::npos)
      return false;
    for (CLI::App *a = cur; a; a = a->get_parent()) {
      const CLI::Option *opt = a->get_option_no_throw(word);
      if (opt)
        return opt->get_items_expected_min() > 0;
    }
    return false;
  };
  for (i = cur == &app ? 1 : i + 1; i < argc; ++i) {
    if (argv[i][0] == '-') {
      if (takes_value(argv[i]))
        ++i;
      continue;
    }
    return fmt::format("unknown command '{}' for {}: expected one of {}", argv[i], where, verbs);
  }
  return fmt::format("{} needs a command: one of {}", where, verbs);
}

} // namespace

std::optional<int> parse_command_line(CLI::App &app, int argc, char **argv, CliOutput &out) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp &e) {
    return app.exit(e);
  } catch (const CLI::RequiredError &e) {
    out.json = out.json || out.pretty;
    std::string msg = e.what();
    if (msg.find("subcommand") != std::string::npos)
      msg = missing_command_message(app, argc, argv);
    return out.fail(kExitUsage, msg);
  } catch (const CLI::ParseError &e) {
    out.json = out.json || out.pretty;
    return out.fail(kExitUsage, e.what());
  }
  out.json = out.json || out.pretty;
  return std::nullopt;
}

void progress_line(const std::string &line) {
  static const bool tty = ::isatty(STDERR_FILENO);
  if (tty)
    std::cerr << "\r\033[K" << line << std::flush;
}

void end_progress_line() {
  static const bool tty = ::isatty(STDERR_FILENO);
  if (tty)
    std::cerr << "\r\033[K" << std::flush;
}

int run_command(const CliOutput &out, const std::function<int()> &command) {
  try {
    return command();
  } catch (const InputError &e) {
    return out.fail(kExitUsage, e.what());
  } catch (const std::exception &e) {
    return out.fail(kExitFailure, e.what());
  }
}

void check_object_name(const std::string &name, const char *what, size_t max_len,
                       const std::string &extra) {
  auto bad = [&](const std::string &why) {
    return InputError(fmt::format("invalid {} name '{}': {}", what, name, why));
  };
  if (name.empty())
    throw bad("empty");
  if (name.size() > max_len)
    throw bad(fmt::format("longer than {} characters", max_len));
  if (name[0] == '.' || name[0] == '-')
    throw bad("starts with '.' or '-'");
  for (unsigned char c : name)
    if (!std::isalnum(c) && c != '_' && c != '.' && c != '-' && extra.find(c) == std::string::npos)
      throw bad(fmt::format("only letters, digits, '_', '.', '-'{} are allowed",
                            extra.empty() ? "" : " and '" + extra + "'"));
}

} // namespace rundkit
