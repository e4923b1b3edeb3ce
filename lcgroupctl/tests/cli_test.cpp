// The CLI as a script sees it: exit codes, JSON on stdout, errors named.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "testing/cgroup_fixture.h"

namespace {

struct CliRun {
  int code = -1;
  std::string out;
  std::string err;
};

CliRun run(std::vector<std::string> args, uid_t as = 0) {
  // The build path, unless the binary was copied elsewhere (the VM's /bin).
  const char *bin = std::getenv("LCGROUPCTL_BIN");
  args.insert(args.begin(), bin ? bin : LCGROUPCTL_BIN);
  int out[2], err[2];
  if (::pipe(out) < 0 || ::pipe(err) < 0)
    return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    for (int fd : {out[0], out[1], err[0], err[1]})
      ::close(fd);
    if (as && ::setuid(as) < 0)
      ::_exit(99);
    std::vector<char *> argv;
    for (auto &a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(98);
  }
  ::close(out[1]);
  ::close(err[1]);
  CliRun r;
  auto drain = [](int fd, std::string &s) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0)
      s.append(buf, static_cast<size_t>(n));
    ::close(fd);
  };
  drain(out[0], r.out);
  drain(err[0], r.err);
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

} // namespace

TEST(Cli, HelpEverywhereAndUsageErrorsExitTwo) {
  EXPECT_EQ(run({"--help"}).code, 0);
  EXPECT_EQ(run({"pool", "fill", "--help"}).code, 0);
  EXPECT_EQ(run({}).code, 2);
  EXPECT_EQ(run({"frobnicate"}).code, 2);
  EXPECT_EQ(run({"claim", "p"}).code, 2);
}

TEST(Cli, BadValuesAreNamedAndExitTwo) {
  auto r = run({"claim", "p", "s", "--memory", "12X"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("invalid size '12X'"), std::string::npos) << r.err;
  r = run({"--json", "claim", "p", "s", "--cpus", "-1"});
  EXPECT_EQ(r.code, 2);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_NE(j["error"].get<std::string>().find("cpus"), std::string::npos);
  r = run({"claim", "p", "a/b"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("contains '/'"), std::string::npos) << r.err;
}

// --json (and -j, --pretty) and the other global options at every level:
// before the object, between object and verb, after the verb.
TEST(Cli, GlobalOptionsAreAcceptedAtEveryLevel) {
  for (auto args : std::vector<std::vector<std::string>>{{"info", "--json"},
                                                         {"--json", "info"},
                                                         {"info", "-j"},
                                                         {"info", "--pretty"},
                                                         {"info", "--backend", "auto", "-j"}}) {
    auto r = run(args);
    ASSERT_EQ(r.code, 0) << args[0] << " " << args[1] << ": " << r.err;
    EXPECT_TRUE(nlohmann::json::parse(r.out).contains("backend")) << r.out;
  }
  // A parent that does not exist: the error comes as JSON wherever --json is.
  std::string parent = rundkit::cgtest::unique_parent("nowhere");
  for (auto args : std::vector<std::vector<std::string>>{{"--json", "pool", "status", parent},
                                                         {"pool", "--json", "status", parent},
                                                         {"pool", "status", parent, "--json"},
                                                         {"pool", "status", "-j", parent}}) {
    auto r = run(args);
    EXPECT_EQ(r.code, 1) << r.err;
    ASSERT_FALSE(r.out.empty()) << args[0] << " " << args[1] << " " << args[2] << ": " << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_NE(j["error"].get<std::string>().find("does not exist"), std::string::npos) << r.out;
  }
  // A usage error after the verb is still reported as JSON.
  auto usage = run({"claim", "p", "--json"});
  EXPECT_EQ(usage.code, 2);
  EXPECT_TRUE(nlohmann::json::parse(usage.out).contains("error")) << usage.out;
}

// Usage errors of bench are found before the first mode runs: nothing but
// the error is printed, however early in the list the bad value sits.
TEST(Cli, BenchUsageErrorsComeBeforeAnyWork) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "bench needs root";
  const std::vector<std::string> quick = {"bench", "--concurrency", "1", "--rounds", "1",
                                          "--settle-ms", "0"};
  auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> args = quick;
    args.insert(args.end(), more.begin(), more.end());
    return run(args);
  };
  auto mode = with({"--modes", "v2-mkdir,bogus"});
  EXPECT_EQ(mode.code, 2);
  EXPECT_NE(mode.err.find("bogus"), std::string::npos) << mode.err;
  EXPECT_EQ(mode.err.find("v2-mkdir:"), std::string::npos) << "a mode ran first:\n" << mode.err;
  auto png = with({"--modes", "v2-mkdir", "--png", "/tmp/lcgroupctl-cli.png"});
  EXPECT_EQ(png.code, 2);
  EXPECT_EQ(png.err, "Error: --png needs --csv (the plot is drawn from it)\n");
  EXPECT_EQ(with({"--op", "bogus"}).code, 2);
  EXPECT_EQ(with({"--from", "bogus"}).code, 2);
  EXPECT_EQ(run({"bench", "--concurrency", "1,0"}).code, 2);
  EXPECT_EQ(run({"bench", "--rounds", "0"}).code, 2);
}

TEST(Cli, InfoIsReadableJson) {
  auto r = run({"--json", "info"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j.contains("backend"));
  EXPECT_TRUE(j["hierarchies"].is_array());
}

// The crash model assumes a tmpfs state directory; info says whether it is
// one, looking at the nearest directory that exists.
TEST(Cli, InfoSaysWhetherTheStateDirectoryIsOnTmpfs) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root: mounts a tmpfs";
  char tmpl[] = "/tmp/lcgroupctl-tmpfs-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_EQ(::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
  auto on_tmpfs = run({"--json", "--state-dir", dir + "/not/made/yet", "info"});
  auto on_proc = run({"--state-dir", "/proc/lcgroupctl-state", "info"});
  ::umount2(dir.c_str(), MNT_DETACH);
  ::rmdir(dir.c_str());
  ASSERT_EQ(on_tmpfs.code, 0) << on_tmpfs.err;
  EXPECT_EQ(nlohmann::json::parse(on_tmpfs.out)["state_dir_tmpfs"], true) << on_tmpfs.out;
  ASSERT_EQ(on_proc.code, 0) << on_proc.err;
  EXPECT_NE(on_proc.out.find("not on tmpfs"), std::string::npos) << on_proc.out;
}

TEST(Cli, NotRootIsAClearFailure) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "runs the CLI as nobody: needs root to switch";
  auto r = run({"--json", "claim", "p", "s"}, 65534);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("needs root"), std::string::npos) << r.out;
}

class CliFlow : public ::testing::Test {
protected:
  void SetUp() override {
    if (::geteuid() != 0)
      GTEST_SKIP() << "needs root: writes cgroupfs";
    state_ = rundkit::cgtest::make_temp_dir("cli");
    parent_ = rundkit::cgtest::unique_parent("cli");
  }
  // Whatever an assertion left half-way is cleaned with the CLI itself.
  void TearDown() override {
    if (state_.empty())
      return;
    with({"gc"});
    for (const auto &name : {"s1"})
      with({"release", name});
    with({"parent", "remove", parent_});
    std::filesystem::remove_all(state_);
  }
  CliRun with(std::vector<std::string> more) {
    std::vector<std::string> v = {"--json", "--state-dir", state_};
    v.insert(v.end(), more.begin(), more.end());
    return run(v);
  }
  std::string state_, parent_;
};

TEST_F(CliFlow, FillClaimReleaseDrain) {
  ASSERT_EQ(with({"parent", "create", parent_}).code, 0);
  auto fill = with({"pool", "fill", parent_, "--size", "2"});
  ASSERT_EQ(fill.code, 0) << fill.out << fill.err;
  EXPECT_EQ(nlohmann::json::parse(fill.out)["available"], 2);
  auto missing = with({"claim", parent_ + "/nope", "s1"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.out.find("does not exist"), std::string::npos) << missing.out;
  auto claim = with({"claim", parent_, "s1", "--", "/bin/sleep", "1000"});
  ASSERT_EQ(claim.code, 0) << claim.out << claim.err;
  auto cj = nlohmann::json::parse(claim.out);
  pid_t pid = cj["pid"];
  EXPECT_GT(pid, 0);
  EXPECT_EQ(cj["phase"], "claimed");
  auto status = nlohmann::json::parse(with({"pool", "status", parent_}).out);
  EXPECT_EQ(status["hits"], 1);
  // The kernel pool refills behind our back; the userspace pools do not.
  if (status["backend"] != "kernel-pool") {
    EXPECT_TRUE(cj["hit"].get<bool>());
    EXPECT_EQ(status["available"], 1);
  }
  EXPECT_EQ(with({"release", "s1"}).code, 0);
  // Gone, or a zombie waiting for whoever adopted it to reap it.
  std::string stat;
  try {
    stat = rundkit::read_file("/proc/" + std::to_string(pid) + "/stat");
  } catch (const rundkit::Error &) {
  }
  EXPECT_TRUE(stat.empty() || stat.find(") Z ") != std::string::npos)
      << "the command survived release: " << stat;
  auto again = with({"release", "s1"});
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.out.find("no claim named 's1'"), std::string::npos) << again.out;
  EXPECT_EQ(with({"gc"}).code, 0);
  auto drain = with({"pool", "drain", parent_});
  EXPECT_EQ(nlohmann::json::parse(drain.out)["available"], 0);
}
