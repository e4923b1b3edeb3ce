// The names an operator gives lcgroupctl: sandbox names (one path
// component) and parent cgroup paths, checked before anything is touched.
#pragma once

#include <string>
#include <vector>

namespace rundkit {

// The reserved name prefix of lcgroupctl's own cgroups.
inline constexpr const char *kReservedPrefix = "lcg-";

// A sandbox name: one path component of printable characters (no '/', no
// control characters: cgroup v1 rename rejects a newline, and a terminal
// shows the others), not "." or "..", at most 200 bytes, not in the "lcg-"
// namespace lcgroupctl keeps for its own pool entries, and not a name the
// kernel uses for control files in some cgroup directory: "tasks",
// "notify_on_release", "release_agent", or CONTROLLER.anything
// ("cgroup.procs", "memory.limit_in_bytes", "cpu.shares", ...).
void validate_name(const std::string &name);
// Why `part` can never be a cgroup directory name, or "" if it can.
std::string control_file_name_reason(const std::string &part);
// "a/b/c" -> {"a", "b", "c"} (a normalised parent).
std::vector<std::string> path_components(const std::string &parent);
// A parent cgroup path relative to each hierarchy's root, normalised to
// "a/b" (no leading or trailing '/', no empty, "." or ".." components).
std::string normalize_parent(const std::string &parent);

} // namespace rundkit
