#include "testing/vm_setup.h"

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cgroup/fs.h"
#include "cgroup/layout.h"
#include "util/error.h"
#include "util/fd.h"

namespace rundkit {

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> vm_v1_controllers() {
  // /proc/cgroups: name, hierarchy, num_cgroups, enabled.
  std::vector<std::string> out;
  std::istringstream in(read_file("/proc/cgroups"));
  std::string line;
  static const std::set<std::string> wanted = {"cpu",     "cpuacct", "cpuset", "memory",
                                               "devices", "freezer", "blkio",  "io", "pids"};
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string name;
    int hier = 0, num = 0, enabled = 0;
    if (line[0] == '#' || !(f >> name >> hier >> num >> enabled))
      continue;
    if (enabled && wanted.count(name))
      out.push_back(name);
  }
  return out;
}

} // namespace

void vm_mount_v1(const std::function<void(const std::string &)> &progress) {
  // Controllers enabled in cgroup2's root cannot move to a v1 hierarchy.
  Layout l = detect_layout();
  if (const Hierarchy *v2 = l.v2()) {
    const std::string &mp = v2->mount_point;
    for (const auto &c : cgfs::words(mp, cgfs::kSubtreeControl))
      cgfs::write(mp, cgfs::kSubtreeControl, "-" + c);
  }
  cgfs::make_all(kVmV1Root);
  check_sys(::mount("tmpfs", kVmV1Root, "tmpfs", 0, "mode=755"), "mount tmpfs", kVmV1Root);
  auto deadline = Clock::now() + std::chrono::seconds(60);
  for (const auto &c : vm_v1_controllers()) {
    std::string dir = cgfs::join(kVmV1Root, c);
    cgfs::make(dir);
    // EBUSY while cgroup2 still has dying children of this controller.
    int rc;
    while ((rc = ::mount("cgroup", dir.c_str(), "cgroup", 0, c.c_str())) < 0 && errno == EBUSY &&
           Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (rc < 0) {
      int err = errno;
      if (progress)
        progress(fmt::format("  note: v1 mount of {} on {} failed ({}); left out", c, dir,
                             std::strerror(err)));
      ::rmdir(dir.c_str());
    }
  }
  if (progress)
    progress(fmt::format("  v1 hierarchies mounted under {}: {}", kVmV1Root,
                         fmt::join(cgfs::children(kVmV1Root), " ")));
}

void vm_unmount_v1() {
  for (const auto &c : cgfs::children(kVmV1Root))
    check_sys(::umount2(cgfs::join(kVmV1Root, c).c_str(), 0), "umount",
              cgfs::join(kVmV1Root, c));
  check_sys(::umount2(kVmV1Root, MNT_DETACH), "umount", kVmV1Root);
}

void vm_remount_lwcg(const std::function<void(const std::string &)> &progress) {
  Layout l = detect_layout();
  if (!l.v2())
    throw Error("--setup-vm: no cgroup2 mount to remount with lwcg");
  const std::string &mp = l.v2()->mount_point;
  check_sys(::mount(nullptr, mp.c_str(), nullptr, MS_REMOUNT, "lwcg"), "mount -o remount,lwcg",
            mp);
  if (progress)
    progress(fmt::format("  remounted {} with lwcg", mp));
}

} // namespace rundkit
