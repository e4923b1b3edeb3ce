// The names an operator gives lcgroupctl: sandbox names (one path
// component) and parent cgroup paths, checked before anything is touched.
#pragma once

#include <string>

namespace rundkit {

// The reserved name prefix of lcgroupctl's own cgroups.
inline constexpr const char *kReservedPrefix = "lcg-";

// A sandbox name: one path component, no '/', no newline (cgroup v1
// rename rejects it), not "." or "..", at most 200 bytes, and not in the
// "lcg-" namespace lcgroupctl keeps for its own pool entries.
void validate_name(const std::string &name);
// A parent cgroup path relative to each hierarchy's root, normalised to
// "a/b" (no leading or trailing '/', no empty, "." or ".." components).
std::string normalize_parent(const std::string &parent);

} // namespace rundkit
