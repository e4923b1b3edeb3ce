#include "util/cli.h"

#include <iostream>

#include <CLI/CLI.hpp>
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

std::optional<int> parse_command_line(CLI::App &app, int argc, char **argv, CliOutput &out) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp &e) {
    return app.exit(e);
  } catch (const CLI::ParseError &e) {
    out.json = out.json || out.pretty;
    return out.fail(kExitUsage, e.what());
  }
  out.json = out.json || out.pretty;
  return std::nullopt;
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

} // namespace rundkit
