#include "testing/scratch_fs.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include "storage/mount.h"
#include "testing/reflink_fixture.h"

using namespace rundkit;
using namespace rundkit::reflinktest;

// The scratch file systems every test relies on leave no loop device or
// mount behind.
TEST(LoopScratch, CleansUpItsLoopDeviceAndMount) {
  RUNDKIT_SCRATCH(fs, "ext4");
  std::string dir = fs->mountpoint();
  std::string backing = dir.substr(0, dir.rfind('/')) + "/backing.img";
  EXPECT_EQ(filesystem_of(dir), "ext4");
  EXPECT_NE(shell("losetup -j " + backing), "");
  fs.reset();
  EXPECT_EQ(shell("losetup -j " + backing), "");
  EXPECT_EQ(::access(dir.c_str(), F_OK), -1);
}
