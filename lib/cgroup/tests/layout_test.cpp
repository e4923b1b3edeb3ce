#include "cgroup/layout.h"

#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cgroup/backend.h"
#include "util/error.h"
#include "util/fd.h"

using namespace rundkit;

namespace {
// This machine: v1 hierarchies for each controller, cgroup2 beside them.
const char *kHybrid =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime shared:9 - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    "42 31 0:29 / /mnt/cpu\\040again rw - cgroup cgroup rw,cpu\n";
// A rundkit guest: cgroup2 only, with the lwcg option.
const char *kLwcg =
    "20 1 0:20 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,lwcg\n"
    "21 1 0:21 / /tmp/v1/cpu\\040x rw - cgroup cgroup rw,cpu,cpuacct,lwcg\n";
// A unified host: cgroup2 only, every controller on it.
const char *kUnified = "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
// cgroup2 with only controllers no limit needs left on v1 (what some
// container hosts keep for old tools).
const char *kV2WithDevicesOnV1 =
    "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    "26 25 0:23 / /run/v1/devices rw - cgroup cgroup rw,devices\n"
    "27 25 0:24 / /run/v1/systemd rw - cgroup cgroup rw,name=systemd\n";
// Only pids on v1: enough to put the limits there.
const char *kPidsOnV1 =
    "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    "26 25 0:23 / /run/v1/pids rw - cgroup cgroup rw,pids\n";
// cpu and cpuacct co-mounted: one hierarchy, counted once.
const char *kCoMounted =
    "26 1 0:23 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    "27 1 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    "28 1 0:25 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
} // namespace

TEST(Layout, LimitsGoToV1AsSoonAsCpuMemoryOrPidsIsBoundThere) {
  EXPECT_TRUE(parse_mountinfo(kHybrid).limits_on_v1());
  EXPECT_EQ(parse_mountinfo(kHybrid).v1_limit_hierarchies().size(), 3u) << "cpu, memory, pids";
  EXPECT_FALSE(parse_mountinfo(kUnified).limits_on_v1());
  EXPECT_FALSE(parse_mountinfo(kV2WithDevicesOnV1).limits_on_v1())
      << "devices and name= hierarchies hold no limit";
  EXPECT_TRUE(parse_mountinfo(kPidsOnV1).limits_on_v1());
  Layout co_mounted = parse_mountinfo(kCoMounted); // the hierarchies point into it
  auto co = co_mounted.v1_limit_hierarchies();
  ASSERT_EQ(co.size(), 2u) << "cpu,cpuacct is one hierarchy";
  EXPECT_EQ(co[0]->mount_point, "/sys/fs/cgroup/cpu,cpuacct");
}

// pick_backend, the bench's userspace-pool mode and the kernel pool's
// choice of hierarchies all follow limits_on_v1().
TEST(Layout, TheBackendFollowsTheRule) {
  EXPECT_EQ(pick_backend(parse_mountinfo(kHybrid)), "v1");
  EXPECT_EQ(pick_backend(parse_mountinfo(kUnified)), "v2");
  EXPECT_EQ(pick_backend(parse_mountinfo(kV2WithDevicesOnV1)), "v2");
  EXPECT_EQ(pick_backend(parse_mountinfo(kPidsOnV1)), "v1");
  Layout lwcg = parse_mountinfo(kLwcg);
  EXPECT_EQ(pick_backend(lwcg), "v1") << "kernel pool needs the feature line too";
  lwcg.kernel_lwcg = true;
  EXPECT_EQ(pick_backend(lwcg), "kernel-pool");
  Layout v2lwcg = parse_mountinfo("20 1 0:20 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,lwcg\n");
  v2lwcg.kernel_lwcg = true;
  EXPECT_EQ(pick_backend(v2lwcg), "kernel-pool");
  Layout none = parse_mountinfo("");
  EXPECT_THROW(pick_backend(none), Error);
}

TEST(Layout, HybridHostHasOneV1HierarchyPerControllerAndCgroup2) {
  Layout l = parse_mountinfo(kHybrid);
  ASSERT_EQ(l.hierarchies.size(), 6u) << "the second mount of 0:29 must be dropped";
  ASSERT_NE(l.v2(), nullptr);
  EXPECT_EQ(l.v2()->mount_point, "/sys/fs/cgroup/unified");
  ASSERT_NE(l.v1_with("memory"), nullptr);
  EXPECT_EQ(l.v1_with("memory")->mount_point, "/sys/fs/cgroup/memory");
  EXPECT_EQ(l.v1_with("xattr"), nullptr);
  EXPECT_EQ(l.v1().size(), 5u);
  EXPECT_EQ(l.v1().back()->name, "systemd");
  EXPECT_TRUE(l.v1().back()->controllers.empty());
  EXPECT_FALSE(l.v2()->lwcg());
}

TEST(Layout, LwcgIsAMountOptionAndAFeatureLine) {
  Layout l = parse_mountinfo(kLwcg);
  EXPECT_TRUE(l.v2()->lwcg());
  const Hierarchy *cpu = l.v1_with("cpu");
  ASSERT_NE(cpu, nullptr);
  EXPECT_EQ(cpu->mount_point, "/tmp/v1/cpu x");
  EXPECT_TRUE(cpu->lwcg());
  EXPECT_EQ(cpu->controllers, (std::set<std::string>{"cpu", "cpuacct"}));
  EXPECT_TRUE(parse_features_lwcg("nsdelegate\nfavordynmods\nlwcg\n"));
  EXPECT_FALSE(parse_features_lwcg("nsdelegate\nlwcgx\n"));
}

// Checked against the kernel itself, not against our parser: every
// hierarchy found is a mount point of the right cgroup magic whose st_dev
// is the one recorded, and none is missed.
TEST(Layout, ThisMachineIsReadFromProc) {
  std::string mountinfo = read_file("/proc/self/mountinfo");
  size_t cgroup_mounts = 0;
  for (size_t pos = 0; (pos = mountinfo.find(" - cgroup", pos)) != std::string::npos; ++pos)
    ++cgroup_mounts;
  if (cgroup_mounts == 0)
    GTEST_SKIP() << "no cgroup file system is mounted here";
  Layout l = detect_layout();
  ASSERT_FALSE(l.hierarchies.empty()) << "mountinfo lists " << cgroup_mounts << " cgroup mounts";
  EXPECT_LE(l.hierarchies.size(), cgroup_mounts);
  for (const auto &h : l.hierarchies) {
    struct statfs fs;
    ASSERT_EQ(::statfs(h.mount_point.c_str(), &fs), 0) << h.mount_point;
    EXPECT_EQ(static_cast<unsigned long>(fs.f_type),
              h.version == 2 ? CGROUP2_SUPER_MAGIC : CGROUP_SUPER_MAGIC)
        << h.mount_point << " version " << h.version;
    struct stat st;
    ASSERT_EQ(::stat(h.mount_point.c_str(), &st), 0) << h.mount_point;
    EXPECT_EQ(h.device, fmt::format("{}:{}", major(st.st_dev), minor(st.st_dev)))
        << h.mount_point;
  }
}
