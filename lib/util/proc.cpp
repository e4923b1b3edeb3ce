#include "util/proc.h"

#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/fd.h"

namespace rundkit {

namespace {

// Field 22 of /proc/PID/stat; the command name (field 2) may hold spaces
// and parentheses, so count fields after the last ')'.
std::optional<unsigned long long> start_time(pid_t pid, const std::string &proc_root) {
  std::string stat;
  try {
    stat = read_file(fmt::format("{}/{}/stat", proc_root, pid));
  } catch (const Error &e) {
    if (e.err() == ENOENT || e.err() == ESRCH)
      return std::nullopt;
    throw;
  }
  size_t pos = stat.rfind(')');
  if (pos == std::string::npos)
    return std::nullopt;
  // After ')': field 3 (state) is the first; field 22 is the 20th.
  int field = 2;
  const char *p = stat.c_str() + pos + 1;
  while (*p && field < 22) {
    while (*p == ' ')
      ++p;
    if (++field == 22)
      break;
    while (*p && *p != ' ')
      ++p;
  }
  if (field != 22)
    return std::nullopt;
  return std::strtoull(p, nullptr, 10);
}

} // namespace

ProcessId ProcessId::self(const std::string &proc_root) {
  auto p = of(::getpid(), proc_root);
  if (!p)
    throw Error("read", proc_root + "/self/stat", ENOENT);
  return *p;
}

std::optional<ProcessId> ProcessId::of(pid_t pid, const std::string &proc_root) {
  auto st = start_time(pid, proc_root);
  if (!st)
    return std::nullopt;
  return ProcessId{pid, *st};
}

bool ProcessId::alive(const std::string &proc_root) const {
  auto st = start_time(pid, proc_root);
  return st && *st == start;
}

nlohmann::json to_json(const ProcessId &p) { return {{"pid", p.pid}, {"start", p.start}}; }

ProcessId process_id_from_json(const nlohmann::json &j) {
  return ProcessId{j.at("pid").get<pid_t>(), j.at("start").get<unsigned long long>()};
}

} // namespace rundkit
