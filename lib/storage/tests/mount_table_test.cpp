#include "storage/mount_table.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "testing/reflink_fixture.h"

using namespace rundkit;

TEST(MountTable, ParsesEscapesOptionsAndPropagation) {
  auto t = parse_mount_table(
      "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard\n"
      "40 22 0:33 /sub /mnt/with\\040space ro,nosuid,nodev - overlay reflinkfs "
      "ro,lowerdir=/a:/b\n",
      "test");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].id, 22);
  EXPECT_EQ(t[0].optional, "shared:1");
  EXPECT_EQ(t[1].parent_id, 22);
  EXPECT_EQ(t[1].target, "/mnt/with space");
  EXPECT_EQ(t[1].root, "/sub");
  EXPECT_EQ(t[1].fstype, "overlay");
  EXPECT_EQ(t[1].source, "reflinkfs");
  EXPECT_EQ(t[1].optional, "");
  EXPECT_TRUE(t[1].has_vfs_option("nosuid"));
  EXPECT_FALSE(t[1].has_vfs_option("noexec"));
  EXPECT_EQ(t[1].fs_option("lowerdir"), "/a:/b");
  EXPECT_FALSE(t[1].fs_option("upperdir"));
  EXPECT_TRUE(parse_mount_table("", "empty").empty());
}

TEST(MountTable, FindsARealMountByItsId) {
  RUNDKIT_SCRATCH(xfs, "xfs");
  struct statx st;
  ASSERT_EQ(::statx(AT_FDCWD, xfs->mountpoint().c_str(), 0, STATX_MNT_ID, &st), 0);
  auto e = find_mount(static_cast<int>(st.stx_mnt_id));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->target, xfs->mountpoint());
  EXPECT_EQ(e->fstype, "xfs");
  EXPECT_EQ(e->source.rfind("/dev/loop", 0), 0u) << e->source;
  EXPECT_FALSE(find_mount(-1));
}
