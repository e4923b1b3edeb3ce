#include "storage/rolayer.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <gtest/gtest.h>

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

TEST_F(RoLayers, OneLayerIsAReadOnlyBindMount) {
  auto m = mount_ro_layers({p("base")}, p("target"));
  EXPECT_EQ(m.kind, "bind");
  EXPECT_EQ(read_file(p("target/etc/os")), "base");
  EXPECT_EQ(::open(p("target/new").c_str(), O_WRONLY | O_CREAT, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  m.mount.unmount();
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
