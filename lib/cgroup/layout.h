// Which cgroup hierarchies this machine has, read from mountinfo (never from
// hard-coded paths): cgroup2, v1 hierarchies with their controllers, and
// whether the rundkit `lwcg` mount option / kernel feature is present.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace rundkit {

struct Hierarchy {
  std::string mount_point;           // e.g. /sys/fs/cgroup/cpu
  int version = 0;                   // 1 or 2
  std::string device;                // st_dev "major:minor": one per hierarchy
  std::set<std::string> controllers; // v1: from the mount options; v2: cgroup.controllers
  std::set<std::string> options;     // super block options (lwcg, nsdelegate, ...)
  std::string name;                  // v1 name= option, if any
  bool lwcg() const { return options.count("lwcg") > 0; }
};

struct Layout {
  std::vector<Hierarchy> hierarchies; // mountinfo order, one per device
  bool kernel_lwcg = false;           // "lwcg" in /sys/kernel/cgroup/features

  const Hierarchy *v2() const;
  std::vector<const Hierarchy *> v1() const;
  // The v1 hierarchy carrying `controller`, if mounted.
  const Hierarchy *v1_with(const std::string &controller) const;
  // The backend rule, stated once: a sandbox's cgroups are made where its
  // limits are enforced, so in v1 as soon as any of cpu, memory or pids is
  // bound to a v1 hierarchy (they cannot be on cgroup2 then), else on
  // cgroup2.
  bool limits_on_v1() const;
  // The v1 hierarchies carrying cpu, memory or pids (empty unless
  // limits_on_v1()).
  std::vector<const Hierarchy *> v1_limit_hierarchies() const;
};

// Where a layout is read from: tests point these at fixtures.
struct LayoutSources {
  std::string mountinfo = "/proc/self/mountinfo";
  std::string features = "/sys/kernel/cgroup/features";
};

// Parses mountinfo text.  v2 controllers are left empty (read them from the
// filesystem with fill_v2_controllers).  Duplicate mounts of one hierarchy
// (same device) keep the first.
Layout parse_mountinfo(const std::string &text);
bool parse_features_lwcg(const std::string &text);
Layout detect_layout(const LayoutSources &src = {});

nlohmann::json to_json(const Hierarchy &h);

} // namespace rundkit
