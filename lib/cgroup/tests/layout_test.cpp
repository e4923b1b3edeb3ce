#include "cgroup/layout.h"

#include <gtest/gtest.h>

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
} // namespace

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

TEST(Layout, ThisMachineIsReadFromProc) {
  Layout l = detect_layout();
  for (const auto &h : l.hierarchies)
    EXPECT_TRUE(h.version == 1 || h.version == 2) << h.mount_point;
}
