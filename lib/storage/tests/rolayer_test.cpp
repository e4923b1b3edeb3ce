#include "storage/rolayer.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "storage/mount_table.h"
#include "testing/reflink_fixture.h"
#include "util/error.h"

using namespace rundkit;
using namespace rundkit::reflinktest;

namespace {

// Three image layers, bottom first, the middle one containerd-style:
//
//   base/           etc/os "base"   bin/sh "sh"   old "old"
//   snapshots/2/fs/ etc/os "app"    old  (whiteout: char 0:0)
//   top/            app/run "run"
//
// Union seen read-only: etc/os "app", bin/sh, app/run, and no "old".
class RoLayers : public ::testing::Test {
protected:
  void SetUp() override {
    if (::geteuid() != 0)
      GTEST_SKIP() << "needs root for mounts";
    std::string t = "/tmp/rundkit-rolayer.XXXXXX";
    ASSERT_TRUE(::mkdtemp(t.data()));
    root_ = t;
    for (const char *d : {"base", "base/etc", "base/bin", "snapshots", "snapshots/2",
                          "snapshots/2/fs", "snapshots/2/fs/etc", "top", "top/app", "target"})
      ASSERT_EQ(::mkdir((root_ + "/" + d).c_str(), 0755), 0) << d;
    put("base/etc/os", "base");
    put("base/bin/sh", "sh");
    put("base/old", "old");
    put("snapshots/2/fs/etc/os", "app");
    ASSERT_EQ(::mknod((root_ + "/snapshots/2/fs/old").c_str(), S_IFCHR | 0000, makedev(0, 0)), 0);
    put("top/app/run", "run");
  }
  void TearDown() override {
    if (!root_.empty()) {
      ::umount2((root_ + "/target").c_str(), MNT_DETACH);
      shell("rm -rf " + root_);
    }
  }
  void put(const std::string &rel, const std::string &data) {
    Fd f = Fd::open(root_ + "/" + rel, O_WRONLY | O_CREAT, 0644);
    ASSERT_EQ(::write(f.get(), data.data(), data.size()), (ssize_t)data.size());
  }
  std::string p(const std::string &rel) const { return root_ + "/" + rel; }
  // The mount table entry of the mount at `path` (must be a mount root).
  MountEntry entry_of(const std::string &path) const {
    struct statx st;
    check_sys(::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &st), "stat",
              path);
    auto e = find_mount(static_cast<int>(st.stx_mnt_id));
    if (!e)
      throw Error("no mount table entry for " + path);
    return *e;
  }
  std::string root_;
};

} // namespace

TEST_F(RoLayers, OverlayShowsTheUnionReadOnly) {
  auto m = mount_ro_layers({p("base"), p("snapshots/2"), p("top")}, p("target"));
  EXPECT_EQ(m.kind, "overlay");
  EXPECT_EQ(m.lowerdir, p("top") + ":" + p("snapshots/2/fs") + ":" + p("base"));
  EXPECT_TRUE(is_mountpoint(p("target")));
  EXPECT_EQ(filesystem_of(p("target")), "overlay");
  EXPECT_EQ(read_file(p("target/etc/os")), "app");
  EXPECT_EQ(read_file(p("target/bin/sh")), "sh");
  EXPECT_EQ(read_file(p("target/app/run")), "run");
  EXPECT_EQ(::access(p("target/old").c_str(), F_OK), -1) << "whiteout not honoured";
  EXPECT_EQ(::open(p("target/new").c_str(), O_WRONLY | O_CREAT, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  m.mount.release();
  umount_ro_layers(p("target"));
  EXPECT_FALSE(is_mountpoint(p("target")));
  EXPECT_TRUE(list_dir(p("target")).empty());
}

// One layer is an overlay too (over an empty root-owned directory), so
// that umount can recognise it; whiteouts of that layer are honoured.
TEST_F(RoLayers, OneLayerIsAReadOnlyOverlayOverAnEmptyDir) {
  auto m = mount_ro_layers({p("snapshots/2")}, p("target"));
  EXPECT_EQ(m.kind, "overlay");
  EXPECT_EQ(m.lowerdir, p("snapshots/2/fs") + ":" + kRoLayerEmptyDir);
  EXPECT_EQ(list_dir(p("target")), (std::set<std::string>{"etc"}));
  EXPECT_EQ(read_file(p("target/etc/os")), "app");
  EXPECT_EQ(::open(p("target/new").c_str(), O_WRONLY | O_CREAT, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  m.mount.release();
  umount_ro_layers(p("target"));
  EXPECT_FALSE(is_mountpoint(p("target")));
}

// Issue 10 item 2: the view grants nothing on the host.  The flags are
// read from the mount table, then exercised: a setuid-root copy of id(1)
// run by nobody through the view stays nobody (with --exec; without it,
// nothing in the view executes), and a device node in a layer does not
// open.
TEST_F(RoLayers, ViewIsNosuidNodevNoexecAndPrivate) {
  ASSERT_EQ(::chmod(root_.c_str(), 0755), 0);
  shell("cp /usr/bin/id " + p("top/app/id") + " && chmod 4755 " + p("top/app/id"));
  ASSERT_EQ(::mknod(p("top/app/zero").c_str(), S_IFCHR | 0666, makedev(1, 5)), 0);
  {
    auto m = mount_ro_layers({p("base"), p("top")}, p("target"));
    auto e = entry_of(p("target"));
    EXPECT_TRUE(e.has_vfs_option("ro")) << e.vfs_options;
    EXPECT_TRUE(e.has_vfs_option("nosuid")) << e.vfs_options;
    EXPECT_TRUE(e.has_vfs_option("nodev")) << e.vfs_options;
    EXPECT_TRUE(e.has_vfs_option("noexec")) << e.vfs_options;
    EXPECT_EQ(e.optional, "") << "propagation must be private";
    EXPECT_EQ(e.source, kRoLayerSource);
    int st = 0;
    shell("runuser -u nobody -- " + p("target/app/id") + " -u", &st);
    EXPECT_NE(st, 0) << "noexec: nothing in the view runs";
    EXPECT_EQ(::open(p("target/app/zero").c_str(), O_RDONLY), -1);
    EXPECT_EQ(errno, EACCES) << "nodev";
  }
  RoLayerOptions exec;
  exec.exec = true;
  auto m = mount_ro_layers({p("base"), p("top")}, p("target"), exec);
  auto e = entry_of(p("target"));
  EXPECT_FALSE(e.has_vfs_option("noexec")) << e.vfs_options;
  EXPECT_TRUE(e.has_vfs_option("nosuid")) << e.vfs_options;
  int st = 0;
  EXPECT_EQ(shell("runuser -u nobody -- " + p("target/app/id") + " -u", &st), "65534\n");
  EXPECT_EQ(st, 0);
  EXPECT_EQ(::open(p("target/app/zero").c_str(), O_RDONLY), -1);
  EXPECT_EQ(errno, EACCES) << "nodev";
}

// Issue 10 item 7: the target is named without symlinks, is an empty
// directory with nothing mounted on it; any other target mounts nothing.
TEST_F(RoLayers, BadTargetsMountNothing) {
  ASSERT_EQ(::symlink(p("target").c_str(), p("link").c_str()), 0);
  ASSERT_EQ(::symlink(root_.c_str(), p("dirlink").c_str()), 0);
  put("file", "f");
  ASSERT_EQ(::mkdir(p("full").c_str(), 0755), 0);
  put("full/x", "x");
  auto refused = [&](const std::string &target, const std::string &msg) {
    try {
      mount_ro_layers({p("base"), p("top")}, target);
      ADD_FAILURE() << target << " was accepted";
    } catch (const InputError &e) {
      EXPECT_EQ(std::string(e.what()), msg);
    } catch (const Error &e) {
      ADD_FAILURE() << target << ": not an InputError: " << e.what();
    }
    EXPECT_FALSE(is_mountpoint(p("target")));
    EXPECT_FALSE(is_mountpoint(p("full")));
  };
  refused(p("link"), "target '" + p("link") +
                         "' is, or is reached through, a symbolic link: name the real directory");
  refused(p("dirlink/target"), "target '" + p("dirlink/target") +
                                   "' is, or is reached through, a symbolic link: name the real "
                                   "directory");
  refused(p("file"), "target '" + p("file") + "' is not a directory");
  refused(p("full"), "target '" + p("full") +
                         "' is not empty: a view is mounted on an empty directory, so that "
                         "nothing is hidden under it");
  refused("", "target: empty path");
}

// Issue 10 item 7: umount acts only on a view made by mount_ro_layers, at
// exactly the path named, never through a symlink.
TEST_F(RoLayers, UmountLeavesEverythingElseMounted) {
  ASSERT_EQ(::mount("tmpfs", p("target").c_str(), "tmpfs", 0, "size=1m"), 0);
  try {
    umount_ro_layers(p("target"));
    ADD_FAILURE() << "a tmpfs was unmounted";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()).find("'" + p("target") + "' is a tmpfs mount of 'tmpfs'"), 0u)
        << e.what();
  }
  EXPECT_TRUE(is_mountpoint(p("target")));
  ASSERT_EQ(::umount2(p("target").c_str(), 0), 0);

  // An overlay someone else made, read-only even: not ours.
  std::string data = "lowerdir=" + p("top") + ":" + p("base");
  ASSERT_EQ(::mount("overlay", p("target").c_str(), "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV,
                    data.c_str()),
            0);
  EXPECT_THROW(umount_ro_layers(p("target")), Error);
  EXPECT_TRUE(is_mountpoint(p("target")));
  ASSERT_EQ(::umount2(p("target").c_str(), 0), 0);

  auto m = mount_ro_layers({p("base"), p("top")}, p("target"));
  m.mount.release();
  ASSERT_EQ(::symlink(p("target").c_str(), p("link").c_str()), 0);
  EXPECT_THROW(umount_ro_layers(p("link")), InputError);
  EXPECT_THROW(umount_ro_layers(p("target/app")), Error) << "inside the view, not its root";
  EXPECT_TRUE(is_mountpoint(p("target")));
  umount_ro_layers(p("target"));
  EXPECT_FALSE(is_mountpoint(p("target")));
}

TEST_F(RoLayers, BadInputMountsNothing) {
  try {
    mount_ro_layers({p("base"), p("missing")}, p("target"));
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()), "stat '" + p("missing") + "': No such file or directory");
  }
  EXPECT_FALSE(is_mountpoint(p("target")));
  EXPECT_THROW(mount_ro_layers({p("base"), p("base/old")}, p("target")), Error);
  EXPECT_FALSE(is_mountpoint(p("target")));

  auto m = mount_ro_layers({p("base"), p("top")}, p("target"));
  try {
    mount_ro_layers({p("base"), p("top")}, p("target"));
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()), "'" + p("target") + "' is already a mount point");
  }
}

TEST_F(RoLayers, UmountRefusesWhatIsNotAMount) {
  try {
    umount_ro_layers(p("target"));
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()), "'" + p("target") + "' is not a mount point");
  }
}
