#include "storage/mount.h"

#include <gtest/gtest.h>

using namespace rundkit;

TEST(MountNames, KnowsTheFileSystemsThatMatter) {
  EXPECT_EQ(fs_type_name(0x58465342), "xfs");
  EXPECT_EQ(fs_type_name(0x9123683E), "btrfs");
  EXPECT_EQ(fs_type_name(0xEF53), "ext4");
  EXPECT_EQ(fs_type_name(0x1234), "unknown (0x1234)");
}
