// A command line run to completion, as a test drives a tool: exit code (a
// shell's: 128 + N for signal N), stdout, the tail of stderr.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/process.h"

namespace rundkit {

struct ToolRun {
  int code = -1;
  std::string out, err;
  // stdout as JSON (discarded value if it is not).
  nlohmann::json json() const { return nlohmann::json::parse(out, nullptr, false); }
};

inline ToolRun run_tool(std::vector<std::string> argv,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(120000)) {
  SpawnOptions o;
  o.argv = std::move(argv);
  RunResult r = run(o, timeout);
  return {r.status.shell_code(), r.out, r.stderr_tail};
}

// Whether `program --version` runs here: tests of what needs an optional
// tool (gnuplot) skip without it.
inline bool have_program(const std::string &program) {
  try {
    run_capture({program, "--version"});
    return true;
  } catch (const Error &) {
    return false;
  }
}

} // namespace rundkit
