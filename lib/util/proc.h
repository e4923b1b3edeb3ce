// Processes as /proc describes them: an identity that survives pid reuse
// (pid + start time from /proc/PID/stat).  Every reader takes the proc root
// as a parameter so tests can point it at a fixture tree.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace rundkit {

// A pid alone can be recycled after a crash; pid + start time (clock ticks
// since boot) names one process for the life of the machine.
struct ProcessId {
  pid_t pid = 0;
  unsigned long long start = 0;

  static ProcessId self(const std::string &proc_root = "/proc");
  // Nothing if no such process.
  static std::optional<ProcessId> of(pid_t pid, const std::string &proc_root = "/proc");
  bool alive(const std::string &proc_root = "/proc") const;
  bool operator==(const ProcessId &) const = default;
};

nlohmann::json to_json(const ProcessId &p);
ProcessId process_id_from_json(const nlohmann::json &j);

} // namespace rundkit
