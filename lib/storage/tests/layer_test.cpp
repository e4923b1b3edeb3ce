#include "storage/layer.h"

#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <gtest/gtest.h>

#include "testing/reflink_fixture.h"
#include "util/error.h"
#include "storage/mount.h"

using namespace rundkit;
using namespace rundkit::reflinktest;

namespace {

std::string make_template(const ScratchFs &fs) {
  std::string path = fs.mountpoint() + "/t.img";
  create_template(path, kTemplateSize, "ext4");
  return path;
}

// Whether the first data extent of `path` is shared with another file:
// the proof that a clone is a reflink and not a copy.
bool first_extent_shared(const std::string &path) {
  Fd f = Fd::open(path, O_RDONLY);
  // struct fiemap ends in a flexible array: room for one extent after it.
  alignas(struct fiemap) char buf[sizeof(struct fiemap) + sizeof(struct fiemap_extent)] = {};
  auto *fm = reinterpret_cast<struct fiemap *>(buf);
  fm->fm_length = ~0ULL;
  fm->fm_extent_count = 1;
  check_sys(::ioctl(f.get(), FS_IOC_FIEMAP, fm), "fiemap", path);
  return fm->fm_mapped_extents == 1 && (fm->fm_extents[0].fe_flags & FIEMAP_EXTENT_SHARED);
}

std::string head(const std::string &path, size_t n) {
  std::string s = read_file(path);
  return s.substr(0, n);
}

pid_t dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0)
    ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

} // namespace

TEST(ReflinkNames, SubstitutesDescriptorIntoCommand) {
  auto argv = substitute_layer_fd({"qemu", "-add-fd", "fd={fd},set=1", "{path}"}, 7);
  EXPECT_EQ(argv, (std::vector<std::string>{"qemu", "-add-fd", "fd=7,set=1", "/proc/self/fd/7"}));
}

class ReflinkFs : public ::testing::TestWithParam<const char *> {};

TEST_P(ReflinkFs, CloneSharesExtentsAndLeavesOnlyTheLayer) {
  RUNDKIT_SCRATCH(fs, GetParam());
  std::string tpath = make_template(*fs);
  std::string dest = fs->mountpoint() + "/layer.img";
  auto method = clone_layer(Template::open(tpath), dest);
  EXPECT_EQ(method, CloneMethod::kReflink);
  EXPECT_TRUE(first_extent_shared(dest));
  EXPECT_EQ(head(dest, 1 << 20), head(tpath, 1 << 20));
  EXPECT_EQ(list_dir(fs->mountpoint()),
            (std::set<std::string>{"t.img", "t.img.json", "layer.img"}));
}

TEST_P(ReflinkFs, CloneRefusesAnExistingDestinationAndChangesNothing) {
  RUNDKIT_SCRATCH(fs, GetParam());
  std::string tpath = make_template(*fs);
  std::string dest = fs->mountpoint() + "/layer.img";
  { Fd f = Fd::open(dest, O_WRONLY | O_CREAT, 0644); }
  try {
    clone_layer(Template::open(tpath), dest);
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()), "create '" + dest + "': File exists");
  }
  struct stat st;
  ASSERT_EQ(::stat(dest.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(list_dir(fs->mountpoint()),
            (std::set<std::string>{"t.img", "t.img.json", "layer.img"}));
}

// The writable layer a VMM gets: no name in the directory at any time,
// readable through the descriptor, O_DIRECT on request, gone when closed.
TEST_P(ReflinkFs, VolatileLayerHasNoNameAndVanishesOnClose) {
  RUNDKIT_SCRATCH(fs, GetParam());
  std::string tpath = make_template(*fs);
  std::string dir = fs->mountpoint() + "/layers";
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  std::unique_ptr<InodeHandle> inode;
  {
    auto layer = open_volatile_layer(Template::open(tpath), dir, /*direct=*/true);
    std::string path = "/proc/self/fd/" + std::to_string(layer.fd.get());
    EXPECT_EQ(layer.method, CloneMethod::kReflink);
    EXPECT_TRUE(::fcntl(layer.fd.get(), F_GETFL) & O_DIRECT);
    EXPECT_TRUE(list_dir(dir).empty());
    EXPECT_EQ(head(path, 4096), head(tpath, 4096));
    inode = std::make_unique<InodeHandle>(path);
    ASSERT_TRUE(inode->valid());
    EXPECT_TRUE(inode->exists(fs->mountpoint()));
  }
  EXPECT_FALSE(inode->exists(fs->mountpoint())) << "the layer outlived its descriptor";
}

// kill -9 of the process holding the layer: nothing remains, and the
// process could read the image through the descriptor it was given.
TEST_P(ReflinkFs, VolatileLayerSurvivesNothingAfterKill9) {
  RUNDKIT_SCRATCH(fs, GetParam());
  std::string tpath = make_template(*fs);
  std::string dir = fs->mountpoint() + "/layers";
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    try {
      auto layer = open_volatile_layer(Template::open(tpath), dir, true);
      // The stand-in VMM: reads the ext4 magic through the descriptor's
      // path, says which descriptor it holds, then waits to be killed.
      exec_with_layer(std::move(layer.fd),
                      {"sh", "-c", "od -An -tx2 -j1080 -N2 {path}; echo {fd}; exec sleep 1000"});
    } catch (const std::exception &e) {
      std::printf("error %s\n", e.what());
    }
    ::_exit(1);
  }
  ::close(out[1]);
  FILE *in = ::fdopen(out[0], "r");
  char magic[64] = {}, fd[64] = {};
  ASSERT_TRUE(std::fgets(magic, sizeof(magic), in));
  ASSERT_TRUE(std::fgets(fd, sizeof(fd), in));
  std::fclose(in);
  EXPECT_STREQ(magic, " ef53\n");
  InodeHandle inode(fmt::format("/proc/{}/fd/{}", pid, std::atoi(fd)));
  ASSERT_TRUE(inode.valid());
  EXPECT_TRUE(inode.exists(fs->mountpoint()));
  EXPECT_TRUE(list_dir(dir).empty());
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ::waitpid(pid, nullptr, 0);
  EXPECT_TRUE(list_dir(dir).empty());
  EXPECT_FALSE(inode.exists(fs->mountpoint())) << "the layer outlived the killed holder";
}

INSTANTIATE_TEST_SUITE_P(Fs, ReflinkFs, ::testing::Values("xfs", "btrfs"));

TEST(ReflinkExt4, CloneFailsNamingTheFileSystemAndLeavesNothing) {
  RUNDKIT_SCRATCH(ext4, "ext4");
  std::string tpath = make_template(*ext4);
  std::string dest = ext4->mountpoint() + "/layer.img";
  auto before = list_dir(ext4->mountpoint());
  try {
    clone_layer(Template::open(tpath), dest);
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()),
              "cannot reflink '" + dest + "': the file system of '" + ext4->mountpoint() +
                  "' is ext4, which does not share extents (FICLONE: Operation not supported); "
                  "keep templates and layers on XFS made with 'mkfs.xfs -m reflink=1' (the "
                  "default since xfsprogs 5.1) or on btrfs, or pass --fallback copy");
  }
  EXPECT_EQ(list_dir(ext4->mountpoint()), before);
  EXPECT_THROW(open_volatile_layer(Template::open(tpath), ext4->mountpoint(), false), Error);
  EXPECT_EQ(list_dir(ext4->mountpoint()), before);
}

TEST(ReflinkExt4, FallbackCopyCopiesTheData) {
  RUNDKIT_SCRATCH(ext4, "ext4");
  std::string tpath = make_template(*ext4);
  std::string dest = ext4->mountpoint() + "/layer.img";
  CloneOptions opts;
  opts.fallback = Fallback::kCopy;
  EXPECT_EQ(clone_layer(Template::open(tpath), dest, opts), CloneMethod::kCopy);
  EXPECT_EQ(read_file(dest), read_file(tpath));
  auto layer = open_volatile_layer(Template::open(tpath), ext4->mountpoint(), true,
                                   Fallback::kCopy);
  EXPECT_EQ(layer.method, CloneMethod::kCopy);
  EXPECT_EQ(head("/proc/self/fd/" + std::to_string(layer.fd.get()), 1 << 20),
            head(tpath, 1 << 20));
}

TEST(ReflinkCrossFs, DirectoryOnAnotherFileSystemIsRefused) {
  RUNDKIT_SCRATCH(xfs, "xfs");
  RUNDKIT_SCRATCH(other, "xfs");
  std::string tpath = make_template(*xfs);
  std::string dest = other->mountpoint() + "/layer.img";
  try {
    clone_layer(Template::open(tpath), dest);
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()),
              "'" + other->mountpoint() + "' (xfs) is on another file system than template '" +
                  tpath + "' (xfs): a reflink clone must stay on the template's file system");
  }
  EXPECT_THROW(open_volatile_layer(Template::open(tpath), other->mountpoint(), false), Error);
  EXPECT_TRUE(list_dir(other->mountpoint()).empty());
}

TEST(ReflinkGc, RemovesLeftoversOfDeadProcessesOnly) {
  RUNDKIT_SCRATCH(xfs, "xfs");
  std::string tpath = make_template(*xfs);
  const std::string &d = xfs->mountpoint();
  Template t = Template::open(tpath);
  pid_t dead = dead_pid();
  std::string dead_tmp = fmt::format(".reflinkfs-tmp.{}.AbCdEf", dead);
  std::string live_tmp = fmt::format(".reflinkfs-tmp.{}.AbCdEf", ::getpid());
  for (const auto &n : {dead_tmp, live_tmp}) {
    Fd f = Fd::open(d + "/" + n, O_WRONLY | O_CREAT, 0600);
  }
  CloneOptions mine, gone, gone_open;
  mine.owner = ProcessId::self();
  gone.owner = ProcessId{dead, 1};
  gone_open.owner = ProcessId{dead, 1};
  clone_layer(t, d + "/mine.img", mine);
  clone_layer(t, d + "/gone.img", gone);
  clone_layer(t, d + "/gone-open.img", gone_open);
  clone_layer(t, d + "/unowned.img");
  Fd held = Fd::open(d + "/gone-open.img", O_RDONLY);

  auto all = list_dir(d);
  auto dry = gc_layers(d, /*dry_run=*/true);
  EXPECT_EQ(list_dir(d), all);
  EXPECT_EQ(dry.size(), 5u);

  auto entries = gc_layers(d, false);
  std::set<std::string> removed;
  for (const auto &e : entries)
    if (e.removed)
      removed.insert(e.name);
  EXPECT_EQ(removed, (std::set<std::string>{dead_tmp, "gone.img"}));
  EXPECT_EQ(list_dir(d), (std::set<std::string>{"t.img", "t.img.json", live_tmp, "mine.img",
                                                "gone-open.img", "unowned.img"}));
  held.reset();
  gc_layers(d, false);
  EXPECT_FALSE(list_dir(d).count("gone-open.img"));
}

// Issue 10 item 16: a temporary name without a real writer pid (0, leading
// zeros, digits that overflow pid_t into another pid or beyond a long) is
// collected, not kept as "running pid 0 is alive" forever.
TEST(ReflinkGc, CollectsTemporaryNamesWithoutAValidPid) {
  RUNDKIT_SCRATCH(xfs, "xfs");
  const std::string &d = xfs->mountpoint();
  const std::set<std::string> bogus = {".reflinkfs-tmp.0.AbCdEf", ".reflinkfs-tmp.01.AbCdEf",
                                       ".reflinkfs-tmp.4294967297.AbCdEf",
                                       ".reflinkfs-tmp.99999999999999999999.AbCdEf"};
  for (const auto &n : bogus) {
    Fd f = Fd::open(d + "/" + n, O_WRONLY | O_CREAT, 0600);
  }
  std::set<std::string> removed;
  for (const auto &e : gc_layers(d, false)) {
    EXPECT_FALSE(e.failed) << e.name << ": " << e.reason;
    if (e.removed)
      removed.insert(e.name);
  }
  EXPECT_EQ(removed, bogus);
  EXPECT_TRUE(list_dir(d).empty());
}
