// Bare-VM set-up for `lcgroupctl bench --setup-vm`: cgroup2, then lwcg,
// then v1 hierarchies, in one boot.  Test and benchmark choreography that
// rearranges the machine's cgroup mounts; not product code.
//
// All in one boot, every mode with the same controllers: cgroup2 first
// (its controllers are free at boot), then the same hierarchy remounted
// with lwcg, then the controllers taken off cgroup2 and mounted one per v1
// hierarchy.  That order, because a v1 hierarchy outlives its unmount as
// long as dying cgroups pin it, so controllers may not come back to
// cgroup2 for a long time; leaving cgroup2 only needs its dying children
// released, which a retry waits for.
#pragma once

#include <functional>
#include <string>

namespace rundkit {

// Where the v1 hierarchies go: a tmpfs with one directory per controller.
inline constexpr const char *kVmV1Root = "/run/lcgroupctl-bench-v1";

// Disables every controller in cgroup2's root and mounts each enabled
// controller of /proc/cgroups on its own v1 hierarchy under kVmV1Root,
// waiting up to 60 s for cgroup2's dying children to let go of it.
void vm_mount_v1(const std::function<void(const std::string &)> &progress);
void vm_unmount_v1();
// mount -o remount,lwcg on the cgroup2 mount point.
void vm_remount_lwcg(const std::function<void(const std::string &)> &progress);

} // namespace rundkit
