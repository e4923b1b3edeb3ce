// The reflinkfs command line end to end: exit codes (0 ok, 1 failure,
// 2 usage), exact error text, JSON output and errors, and the volatile
// layer surviving nothing after kill -9 of the process it was given to.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "testing/reflink_fixture.h"
#include "util/fd.h"

using namespace rundkit;
using namespace rundkit::reflinktest;

namespace {

struct Run {
  int status = -1;
  std::string out, err;
};

std::string slurp(const std::string &path) {
  try {
    return read_file(path);
  } catch (const std::exception &) {
    return {};
  }
}

// Runs reflinkfs with `args`; stdout and stderr are captured separately.
Run reflinkfs(const std::vector<std::string> &args) {
  char out_path[] = "/tmp/reflinkfs-cli-out.XXXXXX", err_path[] = "/tmp/reflinkfs-cli-err.XXXXXX";
  int out = ::mkstemp(out_path), err = ::mkstemp(err_path);
  // The build path, unless the binary under test lives elsewhere.
  const char *env_bin = std::getenv("REFLINKFS_BIN");
  const char *bin = env_bin ? env_bin : REFLINKFS_BIN;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::vector<char *> argv{const_cast<char *>(bin)};
    for (const auto &a : args)
      argv.push_back(const_cast<char *>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(bin, argv.data());
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ::close(out);
  ::close(err);
  Run r{WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(out_path), slurp(err_path)};
  ::unlink(out_path);
  ::unlink(err_path);
  return r;
}

} // namespace

TEST(ReflinkfsCli, UsageErrorsExitTwo) {
  EXPECT_EQ(reflinkfs({}).status, 2);
  EXPECT_EQ(reflinkfs({"template"}).status, 2);
  EXPECT_EQ(reflinkfs({"template", "bogus"}).status, 2);
  EXPECT_EQ(reflinkfs({"layer", "clone", "only-one-arg"}).status, 2);
  auto r = reflinkfs({"template", "create", "/tmp/x.img", "--size", "1X"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "Error: invalid size '1X': unknown unit (use K, M, G or T)\n");
  auto j = reflinkfs({"--json", "layer"});
  EXPECT_EQ(j.status, 2);
  EXPECT_TRUE(nlohmann::json::parse(j.out).contains("error")) << j.out;
}

// --json (and -j, --pretty) at every level: before the object, after it,
// after the verb; the answer is JSON in each case, here an error object.
TEST(ReflinkfsCli, GlobalOptionsAreAcceptedAtEveryLevel) {
  const std::string want =
      "{\"error\":\"open '/nonexistent/t.img': No such file or directory\"}\n";
  for (auto args : std::vector<std::vector<std::string>>{
           {"--json", "template", "show", "/nonexistent/t.img"},
           {"template", "--json", "show", "/nonexistent/t.img"},
           {"template", "show", "/nonexistent/t.img", "--json"},
           {"template", "show", "-j", "/nonexistent/t.img"}}) {
    auto r = reflinkfs(args);
    EXPECT_EQ(r.status, 1) << fmt::format("{}", fmt::join(args, " ")) << r.err;
    EXPECT_EQ(r.out, want) << fmt::format("{}", fmt::join(args, " "));
  }
  auto pretty = reflinkfs({"gc", "--dir", "/nonexistent", "--pretty"});
  EXPECT_EQ(pretty.status, 1) << pretty.err;
  EXPECT_TRUE(nlohmann::json::parse(pretty.out).contains("error")) << pretty.out;
}

// A usage error is found before any work: no scratch file system is made,
// nothing is timed, and stderr holds the one error line.
TEST(ReflinkfsCli, BenchUsageErrorsComeBeforeAnyWork) {
  const std::vector<std::string> small = {"--concurrency", "1",   "--samples",     "1",
                                          "--size",        "64M", "--scratch-size", "512M",
                                          "--modes",       "reflink"};
  auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> args = {"bench"};
    args.insert(args.end(), small.begin(), small.end());
    args.insert(args.end(), more.begin(), more.end());
    return reflinkfs(args);
  };
  auto png = with({"--png", "/tmp/reflinkfs-cli.png"});
  EXPECT_EQ(png.status, 2);
  EXPECT_EQ(png.err, "Error: --png needs --csv (the plot is drawn from it)\n");
  auto scratch = reflinkfs({"bench", "--modes", "reflink", "--scratch-size", "48X"});
  EXPECT_EQ(scratch.status, 2);
  EXPECT_EQ(scratch.err, "Error: invalid size '48X': unknown unit (use K, M, G or T)\n");
  auto mode = reflinkfs({"bench", "--modes", "reflink,bogus"});
  EXPECT_EQ(mode.status, 2);
  EXPECT_NE(mode.err.find("bogus"), std::string::npos) << mode.err;
  auto level = reflinkfs({"bench", "--concurrency", "1,0"});
  EXPECT_EQ(level.status, 2);
  EXPECT_NE(level.err.find("--concurrency"), std::string::npos) << level.err;
}

TEST(ReflinkfsCli, HelpEverywhere) {
  for (auto args : std::vector<std::vector<std::string>>{{"--help"},
                                                         {"template", "--help"},
                                                         {"template", "create", "--help"},
                                                         {"layer", "volatile", "--help"},
                                                         {"rolayer", "mount", "--help"},
                                                         {"gc", "--help"},
                                                         {"bench", "--help"}}) {
    auto r = reflinkfs(args);
    EXPECT_EQ(r.status, 0) << args[0];
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << r.out;
  }
}

TEST(ReflinkfsCli, JsonErrorsAreObjects) {
  auto r = reflinkfs({"--json", "template", "show", "/nonexistent/t.img"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, "{\"error\":\"open '/nonexistent/t.img': No such file or directory\"}\n");
  auto t = reflinkfs({"template", "show", "/nonexistent/t.img"});
  EXPECT_EQ(t.err, "Error: open '/nonexistent/t.img': No such file or directory\n");
}

TEST(ReflinkfsCli, TemplateAndCloneOnXfs) {
  RUNDKIT_SCRATCH(xfs, "xfs");
  std::string t = xfs->mountpoint() + "/t.img", l = xfs->mountpoint() + "/l.img";
  auto c = reflinkfs({"--json", "template", "create", t, "--size", "64M"});
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(nlohmann::json::parse(c.out)["size"], 64 << 20);
  auto s = reflinkfs({"--json", "template", "show", t});
  ASSERT_EQ(s.status, 0) << s.err;
  EXPECT_EQ(nlohmann::json::parse(s.out)["fs"], "ext4");

  auto again = reflinkfs({"template", "create", t, "--size", "64M"});
  EXPECT_EQ(again.status, 1);
  EXPECT_EQ(again.err, "Error: create '" + t + "': File exists\n");

  auto cl = reflinkfs({"layer", "clone", t, l});
  EXPECT_EQ(cl.status, 0) << cl.err;
  EXPECT_EQ(cl.out, l + ": reflink of " + t + "\n");
  auto dup = reflinkfs({"layer", "clone", t, l});
  EXPECT_EQ(dup.status, 1);
  EXPECT_EQ(dup.err, "Error: create '" + l + "': File exists\n");
  auto missing = reflinkfs({"layer", "clone", xfs->mountpoint() + "/none.img", l + "2"});
  EXPECT_EQ(missing.status, 1);
  EXPECT_EQ(missing.err, "Error: open '" + xfs->mountpoint() +
                             "/none.img': No such file or directory\n");
  EXPECT_EQ(list_dir(xfs->mountpoint()), (std::set<std::string>{"t.img", "t.img.json", "l.img"}));

  // A clone owned by a process that is gone is collected; gc says so.
  pid_t dead = ::fork();
  if (dead == 0) {
    ::pause();
    ::_exit(0);
  }
  auto owned = reflinkfs({"layer", "clone", t, l + ".owned", "--owner", std::to_string(dead)});
  EXPECT_EQ(owned.status, 0) << owned.err;
  ::kill(dead, SIGKILL);
  ::waitpid(dead, nullptr, 0);
  auto gc = reflinkfs({"--json", "gc", "--dir", xfs->mountpoint()});
  ASSERT_EQ(gc.status, 0) << gc.err;
  auto entries = nlohmann::json::parse(gc.out);
  ASSERT_EQ(entries.size(), 1u) << gc.out;
  EXPECT_EQ(entries[0]["name"], "l.img.owned");
  EXPECT_EQ(entries[0]["removed"], true);
}

TEST(ReflinkfsCli, Ext4ErrorNamesTheFileSystemUnlessFallbackCopy) {
  RUNDKIT_SCRATCH(ext4, "ext4");
  std::string t = ext4->mountpoint() + "/t.img", l = ext4->mountpoint() + "/l.img";
  ASSERT_EQ(reflinkfs({"template", "create", t, "--size", "64M"}).status, 0);
  auto r = reflinkfs({"layer", "clone", t, l});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "Error: cannot reflink '" + l + "': the file system of '" + ext4->mountpoint() +
                       "' is ext4, which does not share extents (FICLONE: Operation not "
                       "supported); keep templates and layers on XFS made with 'mkfs.xfs -m "
                       "reflink=1' (the default since xfsprogs 5.1) or on btrfs, or pass "
                       "--fallback copy\n");
  EXPECT_EQ(::access(l.c_str(), F_OK), -1);
  auto c = reflinkfs({"--json", "layer", "clone", t, l, "--fallback", "copy"});
  EXPECT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(nlohmann::json::parse(c.out)["method"], "copy");
}

// The RunD writable layer: the VMM stand-in gets an O_DIRECT descriptor of
// an unnamed clone, reads the image through it, and once it is killed -9
// nothing of the layer remains.
TEST(ReflinkfsCli, VolatileLayerLeavesNothingAfterKill9) {
  RUNDKIT_SCRATCH(xfs, "xfs");
  std::string t = xfs->mountpoint() + "/t.img", d = xfs->mountpoint() + "/layers";
  ASSERT_EQ(reflinkfs({"template", "create", t, "--size", "64M"}).status, 0);
  ASSERT_EQ(::mkdir(d.c_str(), 0755), 0);
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::execl(REFLINKFS_BIN, REFLINKFS_BIN, "layer", "volatile", t.c_str(), "--dir", d.c_str(),
            "--direct", "--", "sh", "-c",
            "od -An -tx2 -j1080 -N2 {path}; echo {fd}; "
            "awk '/^flags/ {print $2}' /proc/self/fdinfo/$REFLINKFS_FD; exec sleep 1000",
            static_cast<char *>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  FILE *in = ::fdopen(out[0], "r");
  char magic[64] = {}, fd[64] = {}, flags[64] = {};
  ASSERT_TRUE(std::fgets(magic, sizeof(magic), in));
  ASSERT_TRUE(std::fgets(fd, sizeof(fd), in));
  ASSERT_TRUE(std::fgets(flags, sizeof(flags), in));
  std::fclose(in);
  EXPECT_STREQ(magic, " ef53\n");
  EXPECT_TRUE(std::strtoul(flags, nullptr, 8) & O_DIRECT) << flags;
  InodeHandle inode(fmt::format("/proc/{}/fd/{}", pid, std::atoi(fd)));
  ASSERT_TRUE(inode.valid());
  EXPECT_TRUE(inode.exists(xfs->mountpoint()));
  EXPECT_TRUE(list_dir(d).empty());
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ::waitpid(pid, nullptr, 0);
  EXPECT_TRUE(list_dir(d).empty());
  // XFS frees an unlinked inode in background work (inodegc) once its last
  // descriptor is gone; syncfs(2) waits for that work, so the check below
  // sees the result instead of racing it (it did, on a loaded host).
  {
    int mfd = ::open(xfs->mountpoint().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(mfd, 0);
    ::syncfs(mfd);
    ::close(mfd);
  }
  EXPECT_FALSE(inode.exists(xfs->mountpoint()));
}

TEST(ReflinkfsCli, RolayerMountAndUmount) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root for mounts";
  std::string root = "/tmp/reflinkfs-cli-rolayer.XXXXXX";
  ASSERT_TRUE(::mkdtemp(root.data()));
  for (const char *dir : {"/a", "/b", "/target"})
    ASSERT_EQ(::mkdir((root + dir).c_str(), 0755), 0);
  { Fd f = Fd::open(root + "/a/x", O_WRONLY | O_CREAT, 0644); }
  { Fd f = Fd::open(root + "/b/y", O_WRONLY | O_CREAT, 0644); }
  auto m = reflinkfs({"--json", "rolayer", "mount", root + "/a", root + "/b", "--target",
                      root + "/target"});
  EXPECT_EQ(m.status, 0) << m.err;
  auto j = nlohmann::json::parse(m.out);
  EXPECT_EQ(j["kind"], "overlay");
  EXPECT_EQ(j["lowerdir"], root + "/b:" + root + "/a");
  EXPECT_EQ(list_dir(root + "/target"), (std::set<std::string>{"x", "y"}));
  // Issue 10 item 16: the text mode says what happened.
  auto um = reflinkfs({"rolayer", "umount", root + "/target"});
  EXPECT_EQ(um.status, 0) << um.err;
  EXPECT_EQ(um.out, root + "/target: unmounted\n");
  auto again = reflinkfs({"rolayer", "umount", root + "/target"});
  EXPECT_EQ(again.status, 1);
  EXPECT_EQ(again.err, "Error: '" + root + "/target' is not a mount point\n");
  shell("rm -rf " + root);
}

// Issue 10 item 16: a template path that cannot name a file, or a size too
// small, is a usage error (exit 2) found before anything is written: no
// image is formatted, no temporary file is left.
TEST(ReflinkfsCli, BadTemplateInputExitsTwoBeforeAnyWork) {
  RUNDKIT_SCRATCH(xfs, "xfs");
  const std::string &d = xfs->mountpoint();
  ASSERT_EQ(::mkdir((d + "/sub").c_str(), 0755), 0);
  auto expect_usage = [&](const std::vector<std::string> &args, const std::string &err) {
    auto r = reflinkfs(args);
    EXPECT_EQ(r.status, 2) << fmt::format("{}", fmt::join(args, " ")) << ": " << r.err;
    EXPECT_EQ(r.err, err);
    EXPECT_EQ(list_dir(d), (std::set<std::string>{"sub"})) << fmt::format("{}", fmt::join(args, " "));
    EXPECT_TRUE(list_dir(d + "/sub").empty());
  };
  expect_usage({"template", "create", "", "--size", "64M"}, "Error: template: empty path\n");
  expect_usage({"template", "create", d + "/sub/", "--size", "64M"},
               "Error: template '" + d + "/sub/': expected a path ending in a file name\n");
  expect_usage({"template", "create", d + "/sub/..", "--size", "64M"},
               "Error: template '" + d + "/sub/..': expected a path ending in a file name\n");
  expect_usage({"template", "create", d + "/t.img", "--size", "1"},
               "Error: template size 1 bytes is too small: at least 16M\n");
  expect_usage({"layer", "clone", d + "/none.img", d + "/sub/"},
               "Error: destination '" + d + "/sub/': expected a path ending in a file name\n");
}

// Issue 10 item 16: gc says what it did, also when there was nothing to do.
TEST(ReflinkfsCli, GcReportsEvenWhenNothingIsLeft) {
  RUNDKIT_SCRATCH(xfs, "xfs");
  const std::string &d = xfs->mountpoint();
  auto empty = reflinkfs({"gc", "--dir", d});
  EXPECT_EQ(empty.status, 0) << empty.err;
  EXPECT_EQ(empty.out, d + ": removed 0, 0 kept\n");
  { Fd f = Fd::open(d + "/.reflinkfs-tmp.0.AbCdEf", O_WRONLY | O_CREAT, 0600); }
  auto dry = reflinkfs({"gc", "--dir", d, "--dry-run"});
  EXPECT_EQ(dry.status, 0) << dry.err;
  EXPECT_EQ(dry.out, "kept    .reflinkfs-tmp.0.AbCdEf: temporary file without a valid writer "
                     "pid: would remove\n" + d + ": would remove 1, 0 kept\n");
  auto gc = reflinkfs({"gc", "--dir", d});
  EXPECT_EQ(gc.status, 0) << gc.err;
  EXPECT_EQ(gc.out, "removed .reflinkfs-tmp.0.AbCdEf: temporary file without a valid writer "
                    "pid\n" + d + ": removed 1, 0 kept\n");
}

// Issue 10 item 16: gc run by a user who cannot read other processes'
// descriptors cannot prove a dead writer's file unused.  It used to skip
// what it could not read and remove the file although a root process held
// it open; now it keeps it, says why, and exits 1.
TEST(ReflinkfsCli, GcAsNonRootKeepsWhatItCannotCheck) {
  RUNDKIT_SCRATCH(xfs, "xfs");
  const std::string &d = xfs->mountpoint();
  ASSERT_EQ(::chmod(d.substr(0, d.rfind('/')).c_str(), 0755), 0); // the scratch dir
  ASSERT_EQ(::chmod(d.c_str(), 01777), 0);
  pid_t dead = ::fork();
  if (dead == 0)
    ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  std::string name = fmt::format(".reflinkfs-tmp.{}.AbCdEf", dead);
  Fd held = Fd::open(d + "/" + name, O_WRONLY | O_CREAT, 0600);
  ASSERT_EQ(::fchown(held.get(), 65534, 65534), 0);
  int st = 0;
  std::string out = shell(fmt::format("runuser -u nobody -- {} --json gc --dir {}",
                                      std::getenv("REFLINKFS_BIN") ? std::getenv("REFLINKFS_BIN")
                                                                   : REFLINKFS_BIN,
                                      d),
                          &st);
  EXPECT_EQ(st, 1) << out;
  EXPECT_TRUE(list_dir(d).count(name)) << "removed while a root process holds it open";
  auto j = nlohmann::json::parse(out.substr(0, out.find('\n')), nullptr, false);
  ASSERT_TRUE(j.is_array()) << out;
  ASSERT_EQ(j.size(), 1u) << out;
  EXPECT_EQ(j[0]["failed"], true);
  EXPECT_EQ(j[0]["removed"], false);
  EXPECT_NE(j[0]["reason"].get<std::string>().find(
                "cannot tell whether a process holds it open: opendir '/proc/"),
            std::string::npos)
      << out;
}
