// The CLI as a script sees it: exit codes, JSON on stdout, errors named.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <filesystem>
#include <chrono>
#include <signal.h>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "testing/cgroup_fixture.h"
#include "testing/run_tool.h"
#include "util/proc.h"
#include "util/process.h"

namespace {

struct CliRun {
  int code = -1;
  std::string out;
  std::string err;
};

// The build path, unless the binary was copied elsewhere (the VM's /bin).
std::string cli_binary() {
  const char *bin = std::getenv("LCGROUPCTL_BIN");
  return bin ? bin : LCGROUPCTL_BIN;
}

// In a forked child: becomes args[0], or exits 98.
[[noreturn]] void exec_argv(std::vector<std::string> &args) {
  std::vector<char *> argv;
  for (auto &a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(argv[0], argv.data());
  ::_exit(98);
}

CliRun run(std::vector<std::string> args, uid_t as = 0) {
  args.insert(args.begin(), cli_binary());
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
    exec_argv(args);
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

// A shell command line, as a unit file's command would run.
rundkit::ToolRun run_sh(const std::string &line) { return rundkit::run_tool({"/bin/sh", "-c", line}); }

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
  // Results that could not be written are found before the run.
  auto csv = with({"--modes", "v2-mkdir", "--csv", "/nonexistent-dir/x.csv"});
  EXPECT_EQ(csv.code, 2);
  EXPECT_NE(csv.err.find("--csv '/nonexistent-dir/x.csv'"), std::string::npos) << csv.err;
  EXPECT_EQ(csv.err.find("v2-mkdir:"), std::string::npos) << "a mode ran first:\n" << csv.err;
}

// A run in which no asked-for mode could run is a failure, not an empty
// success (here: --op create of a userspace pool, which times no mkdir).
TEST(Cli, BenchWhereNoModeCouldRunFails) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "bench needs root";
  auto r = run({"bench", "--concurrency", "1", "--rounds", "1", "--settle-ms", "0", "--op",
                "create", "--modes", "v2-pool"});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("no bench mode could run"), std::string::npos) << r.err;
}

// Pooled modes hand out entries with parked processes inside, which the
// bench must not try to reap as its own children (it once failed every
// operation with "waitid ... No child processes").
TEST(Cli, BenchRunsThePooledModes) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "bench needs root";
  for (const char *mode : {"v1-pool", "v2-pool"}) {
    auto r = run({"--json", "bench", "--concurrency", "3", "--rounds", "1", "--settle-ms", "0",
                  "--modes", mode});
    if (r.code == 1 && r.out.find("no bench mode could run") != std::string::npos)
      continue; // this machine has no such hierarchy
    EXPECT_EQ(r.code, 0) << mode << ": " << r.out << r.err;
  }
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
    for (const auto &name : {"s1", "s2", "s3"})
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

// Issue 10 (adversarial input): every value is checked against the range
// the kernel takes before anything happens; a size never wraps.
TEST(Cli, SizesAndLimitsAreCheckedAgainstTheirRangesBeforeAnyWork) {
  std::string parent = rundkit::cgtest::unique_parent("range");
  for (const char *size : {"-1", "18446744073709551615", "18446744073709551616", "4097", "",
                           "0x10", " 1", "1e3"}) {
    auto r = run({"pool", "fill", parent, "--size", size});
    EXPECT_EQ(r.code, 2) << "--size '" << size << "': " << r.err;
    EXPECT_NE(r.err.find("--size"), std::string::npos) << r.err;
  }
  for (std::vector<std::string> bad : {std::vector<std::string>{"--pids", "4194305"},
                                       {"--pids", "0"},
                                       {"--pids", "-5"},
                                       {"--pids", "0x10"},
                                       {"--memory", "100"},
                                       {"--memory", "0x100"},
                                       {"--memory", "9223372036854775808"},
                                       {"--cpus", "0"},
                                       {"--cpus", "nan"}}) {
    std::vector<std::string> args = {"claim", parent, "s"};
    args.insert(args.end(), bad.begin(), bad.end());
    auto r = run(args);
    EXPECT_EQ(r.code, 2) << bad[0] << " " << bad[1] << ": " << r.err;
  }
  // "max" is a value: no limit (the missing parent is the only problem).
  for (const char *opt : {"--memory", "--cpus", "--pids"}) {
    auto r = run({"claim", parent, "s", opt, "max"});
    EXPECT_EQ(r.code, 1) << opt << " max: " << r.err;
  }
}

TEST(Cli, NamesThatAreControlFilesOrHoldControlCharactersAreRefused) {
  for (const char *name : {"tasks", "notify_on_release", "release_agent", "cgroup.procs",
                           "memory.limit_in_bytes", "cpu.shares", "cpuset.cpus", "pids.max",
                           "io.max", "devices.allow", "freezer.state", "a\tb", "a\x1b[2Jb",
                           "a\rb", "a\x7f"}) {
    auto r = run({"claim", "p", name});
    EXPECT_EQ(r.code, 2) << "'" << name << "': " << r.err;
    EXPECT_NE(r.err.find("invalid name"), std::string::npos) << r.err;
  }
  for (const char *parent : {"p/tasks", "p/cpu.shares", "p/a\tb", "memory.x/p"}) {
    auto r = run({"parent", "create", parent});
    EXPECT_EQ(r.code, 2) << "'" << parent << "': " << r.err;
  }
}

TEST(Cli, StateDirectoryMustBeAbsolute) {
  for (const char *dir : {"", "relative/state", "."}) {
    auto r = run({"--state-dir", dir, "gc"});
    EXPECT_EQ(r.code, 2) << "'" << dir << "': " << r.err;
    EXPECT_NE(r.err.find("absolute path"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists("/claims"));
  EXPECT_FALSE(std::filesystem::exists("relative"));
}

TEST(Cli, UnknownCommandIsNamedWithWhatTheObjectTakes) {
  auto r = run({"pool", "frobnicate", "p"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("unknown command 'frobnicate' for 'pool'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("fill, keep, status, drain"), std::string::npos) << r.err;
  r = run({"pool"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("'pool' needs a command"), std::string::npos) << r.err;
  // A global option's value before the word is not the word.
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--state-dir", "/tmp/x-state", "frobnicate"},
        {"--backend", "v1", "frobnicate"},
        {"--state-dir=/tmp/x-state", "frobnicate"},
        {"--backend", "v1", "pool", "--json", "frobnicate"}}) {
    r = run(args);
    EXPECT_EQ(r.code, 2);
    EXPECT_NE((r.out + r.err).find("unknown command 'frobnicate'"), std::string::npos)
        << r.out << r.err; // --json puts the error on stdout
  }
}

// The hierarchies lcgroupctl uses here, from its own info.
std::vector<std::string> used_mount_points() {
  std::vector<std::string> out;
  auto j = nlohmann::json::parse(run({"--json", "info"}).out);
  for (const auto &h : j["hierarchies"])
    if (h["used"].get<bool>())
      out.push_back(h["mount_point"]);
  return out;
}

TEST_F(CliFlow, ParentCreateRefusesControlFilesAndLeavesNothing) {
  ASSERT_EQ(with({"parent", "create", parent_}).code, 0);
  // Names the static rules let through but that exist as files somewhere.
  for (const char *file : {"cgroup.procs", "tasks", "cpu.shares", "memory.limit_in_bytes"}) {
    auto r = with({"parent", "create", parent_ + "/" + file + "/below"});
    EXPECT_EQ(r.code, 2) << file << ": " << r.out;
    for (const auto &mp : used_mount_points()) {
      struct stat st;
      std::string p = mp + "/" + parent_ + "/" + file;
      EXPECT_FALSE(::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) << p << " was made";
    }
  }
}

TEST_F(CliFlow, DuplicateAndBadOutputErrorsSayWhatHappened) {
  ASSERT_EQ(with({"parent", "create", parent_}).code, 0);
  ASSERT_EQ(with({"claim", parent_, "s1"}).code, 0);
  auto dup = with({"claim", parent_, "s1"});
  EXPECT_EQ(dup.code, 1);
  EXPECT_NE(dup.out.find("claim 's1' already exists"), std::string::npos) << dup.out;
  EXPECT_EQ(dup.out.find("mkdir"), std::string::npos) << dup.out;
  auto bad = with({"claim", parent_, "s2", "--output", "/nonexistent-dir/log", "--", "/bin/true"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("--output '/nonexistent-dir/log'"), std::string::npos) << bad.out;
  EXPECT_EQ(with({"release", "s2"}).code, 1) << "a record of the refused claim stayed";
  // A claim refused for another reason (taken name, missing parent, a
  // command that does not exist) creates no --output file.
  std::string log = state_ + "/refused.log";
  for (std::vector<std::string> args :
       {std::vector<std::string>{"claim", parent_, "s1", "--output", log, "--", "/bin/true"},
        {"claim", parent_ + "/missing", "s3", "--output", log, "--", "/bin/true"},
        {"claim", parent_, "s4", "--output", log, "--", "/nonexistent/command"}}) {
    EXPECT_NE(with(args).code, 0);
    EXPECT_FALSE(std::filesystem::exists(log)) << "refused claim left " << log;
    std::filesystem::remove(log);
  }
}

TEST_F(CliFlow, FillTopUpKeepsDefaultsAndASmallerFillTrims) {
  ASSERT_EQ(with({"parent", "create", parent_}).code, 0);
  ASSERT_EQ(with({"pool", "fill", parent_, "--size", "2", "--pids", "16"}).code, 0);
  auto top = nlohmann::json::parse(with({"pool", "fill", parent_, "--size", "3"}).out);
  EXPECT_EQ(top["available"], 3);
  EXPECT_EQ(top["defaults"]["pids"], 16) << top;
  auto trim = nlohmann::json::parse(with({"pool", "fill", parent_, "--size", "1"}).out);
  EXPECT_EQ(trim["target"], 1);
  // The kernel pool trims its hidden children itself, in its own time.
  if (trim["backend"] != "kernel-pool") {
    EXPECT_EQ(trim["available"], 1) << trim;
  }
}

// Entries made under other defaults are handed out with exactly what the
// claim asks for (or the pool's current defaults): a limit an entry was
// made with is removed when the claim wants none.
TEST_F(CliFlow, ClaimGetsExactlyItsLimitsWhateverEntryItDraws) {
  ASSERT_EQ(with({"parent", "create", parent_}).code, 0);
  ASSERT_EQ(with({"pool", "fill", parent_, "--size", "2", "--pids", "16"}).code, 0);
  ASSERT_EQ(with({"pool", "fill", parent_, "--size", "4", "--pids", "max"}).code, 0);
  for (const char *name : {"s1", "s2", "s3"}) {
    auto c = with({"claim", parent_, name});
    ASSERT_EQ(c.code, 0) << c.out;
    auto j = nlohmann::json::parse(c.out);
    for (const auto &p : j["paths"]) {
      std::string path = p.get<std::string>() + "/pids.max";
      if (::access(path.c_str(), F_OK) == 0) {
        EXPECT_EQ(rundkit::read_file(path), "max\n") << name << " drew " << j["pool_id"];
      }
    }
  }
  auto one = with({"claim", parent_, "s4", "--pids", "20"});
  if (one.code == 0) {
    for (const auto &p : nlohmann::json::parse(one.out)["paths"]) {
      std::string path = p.get<std::string>() + "/pids.max";
      if (::access(path.c_str(), F_OK) == 0) {
        EXPECT_EQ(rundkit::read_file(path), "20\n");
      }
    }
    with({"release", "s4"});
  }
}

TEST_F(CliFlow, GcCleansTheRestPastABadRecordAndNamesUnknownCgroups) {
  ASSERT_EQ(with({"parent", "create", parent_}).code, 0);
  // A corrupt record, and a claim whose owner is gone.
  std::filesystem::create_directories(state_ + "/claims");
  std::ofstream(state_ + "/claims/broken.json") << "{not json";
  pid_t owner = ::fork();
  if (owner == 0)
    ::_exit(0);
  auto orphan = with({"claim", parent_, "s1", "--owner", std::to_string(owner)});
  ::waitpid(owner, nullptr, 0);
  ASSERT_EQ(orphan.code, 0) << orphan.out;
  // A cgroup nobody recorded (its state directory was lost).
  for (const auto &mp : used_mount_points())
    ::mkdir((mp + "/" + parent_ + "/stray").c_str(), 0755);
  auto gc = with({"gc", parent_});
  EXPECT_EQ(gc.code, 0) << gc.out;
  auto j = nlohmann::json::parse(gc.out);
  EXPECT_NE(j["removed"].dump().find("'s1'"), std::string::npos) << gc.out;
  EXPECT_NE(j["skipped"].dump().find("broken"), std::string::npos) << gc.out;
  EXPECT_NE(j["skipped"].dump().find("stray"), std::string::npos) << gc.out;
  // The way out for both: a release from the cgroups alone.
  EXPECT_EQ(with({"release", "broken", "--force", parent_}).code, 0);
  EXPECT_FALSE(std::filesystem::exists(state_ + "/claims/broken.json"));
  EXPECT_EQ(with({"release", "stray", "--force", parent_}).code, 0);
  for (const auto &mp : used_mount_points())
    EXPECT_FALSE(std::filesystem::exists(mp + "/" + parent_ + "/stray"));
}

TEST_F(CliFlow, GcLeavesAnotherStateDirectorysPoolAlone) {
  ASSERT_EQ(with({"parent", "create", parent_}).code, 0);
  ASSERT_EQ(with({"pool", "fill", parent_, "--size", "2"}).code, 0);
  std::string other = rundkit::cgtest::make_temp_dir("cli-other");
  auto gc = run({"--json", "--state-dir", other, "gc", parent_});
  EXPECT_EQ(gc.code, 0) << gc.out;
  std::filesystem::remove_all(other);
  auto st = nlohmann::json::parse(with({"pool", "status", parent_}).out);
  EXPECT_EQ(st["available"], 2);
  if (st["backend"] != "kernel-pool") {
    ASSERT_EQ(with({"claim", parent_, "s1"}).code, 0);
    ASSERT_EQ(with({"claim", parent_, "s2"}).code, 0);
    EXPECT_EQ(nlohmann::json::parse(with({"pool", "status", parent_}).out)["hits"], 2)
        << "the other state directory's gc destroyed our entries";
  }
}

// A claim that fails (its command does not exist) counts as neither hit nor
// miss, and a fill whose stderr is not a terminal prints no progress.
TEST_F(CliFlow, FailedClaimsAreNotCountedAndFillIsQuietOffATerminal) {
  ASSERT_EQ(with({"parent", "create", parent_}).code, 0);
  auto fill = with({"pool", "fill", parent_, "--size", "30"});
  ASSERT_EQ(fill.code, 0) << fill.err;
  EXPECT_EQ(fill.err, "") << "progress written to a pipe";
  auto before = nlohmann::json::parse(with({"pool", "status", parent_}).out);
  auto bad = with({"claim", parent_, "s1", "--", "/nonexistent/command"});
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_NE(bad.out.find("/nonexistent/command"), std::string::npos) << bad.out;
  auto after = nlohmann::json::parse(with({"pool", "status", parent_}).out);
  EXPECT_EQ(after["hits"], before["hits"]) << after;
  EXPECT_EQ(after["misses"], before["misses"]) << after;
  EXPECT_EQ(with({"claim", parent_, "s1"}).code, 0) << "the failed claim kept its name";
}

TEST_F(CliFlow, ConcurrentReleasesOfOneNameSucceedExactlyOnce) {
  ASSERT_EQ(with({"parent", "create", parent_}).code, 0);
  for (int round = 0; round < 2; ++round) {
    ASSERT_EQ(with({"claim", parent_, "s1", "--", "/bin/sleep", "1000"}).code, 0);
    std::vector<pid_t> kids;
    for (int i = 0; i < 10; ++i) {
      pid_t k = ::fork();
      if (k == 0) {
        auto r = with({"release", "s1"});
        bool clear = r.code == 0 || r.out.find("no claim named 's1'") != std::string::npos;
        ::_exit(r.code == 0 ? 0 : clear ? 1 : 3);
      }
      kids.push_back(k);
    }
    int ok = 0, clear_miss = 0;
    for (pid_t k : kids) {
      int st = 0;
      ::waitpid(k, &st, 0);
      ok += WEXITSTATUS(st) == 0;
      clear_miss += WEXITSTATUS(st) == 1;
    }
    EXPECT_EQ(ok, 1);
    EXPECT_EQ(clear_miss, 9) << "a release failed with something else than 'no claim named'";
  }
}

TEST_F(CliFlow, ConcurrentFillsMeetTheTargetAndDrainWins) {
  ASSERT_EQ(with({"parent", "create", parent_}).code, 0);
  std::vector<pid_t> kids;
  for (int i = 0; i < 3; ++i) {
    pid_t k = ::fork();
    if (k == 0)
      ::_exit(with({"pool", "fill", parent_, "--size", "15"}).code);
    kids.push_back(k);
  }
  for (pid_t k : kids)
    ::waitpid(k, nullptr, 0);
  auto st = nlohmann::json::parse(with({"pool", "status", parent_}).out);
  EXPECT_EQ(st["available"], 15) << st;
  // A drain while a fill runs: the drain wins, nothing stays.
  pid_t filler = ::fork();
  if (filler == 0)
    ::_exit(with({"pool", "fill", parent_, "--size", "400"}).code);
  for (int i = 0; i < 2000; ++i) {
    auto now = nlohmann::json::parse(with({"pool", "status", parent_}).out);
    if (now["target"] == 400 && now["available"] > 20)
      break;
  }
  EXPECT_EQ(with({"pool", "drain", parent_}).code, 0);
  ::waitpid(filler, nullptr, 0);
  st = nlohmann::json::parse(with({"pool", "status", parent_}).out);
  EXPECT_EQ(st["available"], 0) << st;
  EXPECT_EQ(st["target"], 0) << st;
}

// Every cgroup hierarchy root this machine mounts (v1 ones and cgroup2).
std::vector<std::string> hierarchy_roots() {
  std::vector<std::string> roots;
  std::istringstream mounts(rundkit::read_file("/proc/self/mounts"));
  std::string dev, dir, type, rest;
  while (mounts >> dev >> dir >> type && std::getline(mounts, rest))
    if (type == "cgroup" || type == "cgroup2")
      roots.push_back(dir);
  return roots;
}

// lcgroupctl started in the background, its output discarded; its pid.
pid_t start_cli(std::vector<std::string> args) {
  args.insert(args.begin(), cli_binary());
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 1);
    ::dup2(null, 2);
    exec_argv(args);
  }
  return pid;
}

// bench makes its cgroups under --parent only, and a bench killed with
// SIGKILL in the middle of a round leaves nothing that gc does not undo:
// claims with processes inside, the pool, the parents, its private state.
TEST_F(CliFlow, BenchStaysUnderItsParentAndGcUndoesAKilledOne) {
  ASSERT_EQ(with({"parent", "create", parent_}).code, 0);
  auto missing = with({"bench", "--parent", parent_ + "/nope", "--modes", "v2-mkdir",
                       "--concurrency", "1", "--rounds", "1", "--settle-ms", "0"});
  EXPECT_EQ(missing.code, 1) << missing.out;
  EXPECT_NE(missing.out.find("does not exist"), std::string::npos) << missing.out;
  EXPECT_TRUE(!std::filesystem::exists(state_ + "/runs") ||
              std::filesystem::is_empty(state_ + "/runs"));

  pid_t bench = start_cli({"--state-dir", state_, "bench", "--parent", parent_, "--modes",
                           "userspace-pool", "--concurrency", "20", "--rounds", "1000",
                           "--settle-ms", "50"});
  std::string id = "lcgroupctl-bench-" + std::to_string(bench);
  std::string claims = state_ + "/" + id + "/claims";
  bool mid_round = false;
  for (int i = 0; i < 2000 && !mid_round; ++i) {
    std::error_code ec;
    mid_round = std::filesystem::exists(claims, ec) && !std::filesystem::is_empty(claims, ec);
    if (!mid_round)
      ::usleep(5000);
  }
  ASSERT_TRUE(mid_round) << "the bench never reached a round (10 s)";
  bool under_parent = false;
  for (const auto &root : hierarchy_roots()) {
    EXPECT_FALSE(std::filesystem::exists(root + "/" + id)) << root << ": made at the root";
    under_parent |= std::filesystem::exists(root + "/" + parent_ + "/" + id);
  }
  EXPECT_TRUE(under_parent);
  ::kill(bench, SIGKILL);
  ::waitpid(bench, nullptr, 0);

  auto gc = with({"gc"});
  EXPECT_EQ(gc.code, 0) << gc.out << gc.err;
  EXPECT_NE(gc.out.find("removed bench run " + id), std::string::npos) << gc.out;
  for (const auto &root : hierarchy_roots())
    EXPECT_FALSE(std::filesystem::exists(root + "/" + parent_ + "/" + id)) << root;
  EXPECT_FALSE(std::filesystem::exists(state_ + "/" + id));
  EXPECT_FALSE(std::filesystem::exists(state_ + "/runs/" + id + ".json"));
  // Nothing is left for a second gc.
  auto again = nlohmann::json::parse(with({"gc"}).out);
  EXPECT_EQ(again["removed"].size(), 0u) << again;

  // Killed while its workers wait for the round to begin: none of them
  // may outlive it (they used to wait for ever on a pipe they held the
  // write end of).
  pid_t waiting = start_cli({"--state-dir", state_, "bench", "--parent", parent_, "--modes",
                             "userspace-pool", "--concurrency", "3", "--rounds", "1",
                             "--settle-ms", "5000"});
  // Its children, by the ppid in /proc/N/stat (the test VM's kernel has no
  // /proc/PID/task/TID/children).
  auto children_of = [](pid_t parent) {
    std::vector<rundkit::ProcessId> out;
    std::error_code ec;
    for (const auto &p : std::filesystem::directory_iterator("/proc", ec)) {
      std::string n = p.path().filename().string();
      if (n.find_first_not_of("0123456789") != std::string::npos)
        continue;
      std::string stat;
      try {
        stat = rundkit::read_file(p.path().string() + "/stat");
      } catch (const rundkit::Error &) {
        continue; // exited meanwhile
      }
      auto close = stat.rfind(')');
      if (close == std::string::npos)
        continue;
      std::istringstream rest(stat.substr(close + 2));
      char state;
      pid_t ppid = 0;
      rest >> state >> ppid;
      if (ppid == parent)
        if (auto id = rundkit::ProcessId::of(std::stoi(n)))
          out.push_back(*id);
    }
    return out;
  };
  std::vector<rundkit::ProcessId> workers;
  for (int i = 0; i < 2000 && workers.size() < 3; ++i) {
    workers = children_of(waiting);
    if (workers.size() < 3)
      ::usleep(5000);
  }
  EXPECT_EQ(workers.size(), 3u) << "the bench's workers never appeared";
  ::kill(waiting, SIGKILL);
  ::waitpid(waiting, nullptr, 0);
  for (const auto &w : workers)
    if (auto h = rundkit::open_process(w);
        h && !rundkit::wait_process_exit(*h, std::chrono::milliseconds(5000))) {
      ADD_FAILURE() << "bench worker " << w.pid << " outlived the killed bench";
      rundkit::kill_process(*h, std::chrono::milliseconds(5000)); // no leak into later tests
    }
  EXPECT_EQ(with({"gc"}).code, 0);

  // Killed inside its mkdir -p: the base made in one hierarchy only, no
  // parent below it, a process already inside; the record names a parent.
  pid_t gone = ::fork();
  if (gone == 0)
    ::_exit(0);
  auto dead = rundkit::ProcessId::of(gone);
  ASSERT_TRUE(dead);
  ::waitpid(gone, nullptr, 0);
  std::string half = "lcgroupctl-bench-" + std::to_string(gone);
  auto info = nlohmann::json::parse(with({"info"}).out);
  std::string root;
  for (const auto &h : info["hierarchies"])
    if (h["used"] == true && root.empty())
      root = h["mount_point"];
  ASSERT_FALSE(root.empty()) << info;
  std::string base_dir = root + "/" + parent_ + "/" + half;
  std::filesystem::create_directory(base_dir);
  pid_t inside = start_cli({"--state-dir", state_, "claim", "--help"});
  ::kill(inside, SIGSTOP);
  std::ofstream(base_dir + "/cgroup.procs") << inside;
  nlohmann::json rec = {{"actor", {{"pid", dead->pid}, {"start", dead->start}}},
                        {"base", parent_ + "/" + half},
                        {"state_dir", state_ + "/" + half},
                        {"parents", {{{"backend", info["backend"]},
                                      {"parent", parent_ + "/" + half + "/v2-mkdir"}}}}};
  std::filesystem::create_directories(state_ + "/runs");
  std::ofstream(state_ + "/runs/" + half + ".json") << rec.dump();
  gc = with({"gc"});
  EXPECT_EQ(gc.code, 0) << gc.out << gc.err;
  EXPECT_NE(gc.out.find("removed bench run " + half), std::string::npos) << gc.out;
  EXPECT_FALSE(std::filesystem::exists(base_dir));
  EXPECT_EQ(rundkit::cgtest::wait_status(inside), 128 + SIGKILL);
  EXPECT_FALSE(std::filesystem::exists(state_ + "/runs/" + half + ".json"));
}

TEST_F(CliFlow, StagedFilesOfKilledWritersAreCollectedAndAFullStateDirCanRelease) {
  ASSERT_EQ(with({"parent", "create", parent_}).code, 0);
  // A writer killed between writing its temp file and linking it.
  pid_t gone = ::fork();
  if (gone == 0)
    ::_exit(0);
  std::string stat = rundkit::read_file("/proc/" + std::to_string(gone) + "/stat");
  ::waitpid(gone, nullptr, 0);
  std::string after_comm = stat.substr(stat.rfind(')') + 2);
  std::istringstream fields(after_comm);
  std::string field, start;
  for (int i = 3; i <= 22 && fields >> field; ++i)
    if (i == 22)
      start = field;
  std::filesystem::create_directories(state_ + "/tmp");
  std::string stale = state_ + "/tmp/" + std::to_string(gone) + "-" + start + ".1.0";
  std::ofstream(stale) << "{}";
  // The no-flock lock fallback's directories, of the same killed process:
  // one made aside, one taken from a dead holder; and one of a live process.
  std::string dead = std::to_string(gone) + "-" + start;
  std::string made_aside = state_ + "/locks/0a.new." + dead + ".1";
  std::string taken = state_ + "/locks/0b.stale." + dead + ".2";
  rundkit::ProcessId self = rundkit::ProcessId::self();
  std::string live = state_ + "/locks/0c.new." + std::to_string(self.pid) + "-" +
                     std::to_string(self.start) + ".3";
  for (const auto &d : {made_aside, taken, live}) {
    std::filesystem::create_directories(d);
    std::ofstream(d + "/" + dead) << "";
  }
  EXPECT_EQ(with({"gc"}).code, 0);
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_FALSE(std::filesystem::exists(made_aside));
  EXPECT_FALSE(std::filesystem::exists(taken));
  EXPECT_TRUE(std::filesystem::exists(live)) << "a live process's lock directory was removed";
  std::filesystem::remove_all(live);

  // A full state directory (a 256 KiB tmpfs, filled up).
  std::string small = rundkit::cgtest::make_temp_dir("cli-full");
  ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=256k"), 0);
  auto on_small = [&](std::vector<std::string> more) {
    std::vector<std::string> v = {"--json", "--state-dir", small};
    v.insert(v.end(), more.begin(), more.end());
    return run(v);
  };
  ASSERT_EQ(on_small({"claim", parent_, "s3"}).code, 0);
  {
    int fd = ::open((small + "/filler").c_str(), O_WRONLY | O_CREAT, 0600);
    std::string block(4096, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    ::close(fd);
  }
  EXPECT_NE(on_small({"claim", parent_, "s2"}).code, 0);
  auto rel = on_small({"release", "s3"});
  EXPECT_EQ(rel.code, 0) << rel.out;
  std::vector<std::string> left;
  if (std::filesystem::exists(small + "/tmp"))
    for (const auto &e : std::filesystem::directory_iterator(small + "/tmp"))
      left.push_back(e.path());
  EXPECT_TRUE(left.empty()) << left.size() << " temp files left, first " << left.front();
  ::umount2(small.c_str(), MNT_DETACH);
  std::filesystem::remove_all(small);
}

// pool keep as a service would run it: fills, refills after claims, one
// keeper per parent, a clean stop on SIGTERM, and a keeper killed with -9
// leaves a record the next keeper takes over.
TEST_F(CliFlow, PoolKeepRefillsAfterClaimsAndStopsCleanly) {
  using namespace std::chrono_literals;
  ASSERT_EQ(with({"parent", "create", parent_}).code, 0);
  auto keeper = [&] {
    rundkit::SpawnOptions o;
    o.argv = {cli_binary(), "--state-dir", state_, "pool", "keep", parent_, "--size", "3",
              "--interval", "50ms"};
    o.out = rundkit::Stdio::null();
    o.err = rundkit::Stdio::null();
    return rundkit::spawn(o);
  };
  auto status = [&] { return nlohmann::json::parse(with({"pool", "status", parent_}).out); };
  // Waits up to 10 s for `ok` of the status; the status it ended with.
  auto wait_for = [&](auto ok) {
    nlohmann::json s;
    for (int i = 0; i < 200; ++i) {
      s = status();
      if (ok(s))
        break;
      std::this_thread::sleep_for(50ms);
    }
    return s;
  };
  auto kept = [](const nlohmann::json &s) { return s["available"] == 3 && !s["keeper"].is_null(); };

  rundkit::Child k = keeper();
  nlohmann::json s = wait_for(kept);
  ASSERT_TRUE(kept(s)) << s.dump();
  EXPECT_EQ(s["keeper"]["process"]["pid"], k.pid());
  auto second = with({"pool", "keep", parent_, "--size", "3"});
  EXPECT_EQ(second.code, 2) << second.out;
  EXPECT_NE(second.out.find("is kept already, by pid"), std::string::npos) << second.out;

  ASSERT_EQ(with({"claim", parent_, "s1"}).code, 0);
  ASSERT_EQ(with({"claim", parent_, "s2"}).code, 0);
  s = wait_for([](const nlohmann::json &j) {
    return j["available"] == 3 && !j["keeper"].is_null() && j["keeper"]["refills"] >= 1;
  });
  EXPECT_EQ(s["available"], 3) << s.dump();
  EXPECT_EQ(s["hits"], 2) << s.dump();
  EXPECT_GE(s["keeper"]["refills"].get<int>(), 1) << s.dump();

  k.signal(SIGTERM);
  auto st = k.wait_for(5000ms);
  ASSERT_TRUE(st) << "the keeper did not stop on SIGTERM";
  EXPECT_TRUE(st->ok()) << st->describe();
  s = status();
  EXPECT_TRUE(s["keeper"].is_null()) << s.dump();
  EXPECT_EQ(s["available"], 3) << "the pool stays as it is after a stop";
  EXPECT_TRUE(std::filesystem::is_empty(state_ + "/keepers"));

  // kill -9: no keeper any more, and the next one takes over.
  rundkit::Child k2 = keeper();
  ASSERT_TRUE(kept(wait_for(kept)));
  k2.signal(SIGKILL);
  k2.wait();
  EXPECT_TRUE(status()["keeper"].is_null());
  rundkit::Child k3 = keeper();
  s = wait_for(kept);
  ASSERT_TRUE(kept(s)) << s.dump();
  EXPECT_EQ(s["keeper"]["process"]["pid"], k3.pid());
  k3.signal(SIGTERM);
  EXPECT_TRUE(k3.wait_for(5000ms));

  // Bad input: refused before anything, nothing recorded.
  EXPECT_EQ(with({"pool", "keep", parent_, "--size", "0"}).code, 2);
  EXPECT_EQ(with({"pool", "keep", parent_, "--size", "3", "--interval", "1ms"}).code, 2);
  auto missing = with({"pool", "keep", parent_ + "/nope", "--size", "3"});
  EXPECT_EQ(missing.code, 1) << missing.out;
  EXPECT_TRUE(std::filesystem::is_empty(state_ + "/keepers"));
}

// The systemd unit in the repo: systemd itself finds nothing wrong with an
// instance of it (once its binary is where the unit says), and both of its
// commands are ones this lcgroupctl accepts.
TEST(Cli, SystemdUnitVerifiesAndItsCommandsParse) {
  if (::system("command -v systemd-analyze >/dev/null") != 0)
    GTEST_SKIP() << "no systemd-analyze";
  std::ifstream in(LCGROUPCTL_SOURCE_DIR "/systemd/lcgroupctl-pool@.service");
  ASSERT_TRUE(in) << "no unit file";
  std::string unit((std::istreambuf_iterator<char>(in)), {});
  std::string dir = rundkit::cgtest::make_temp_dir("unit");
  std::string text = unit;
  for (size_t at; (at = text.find("/usr/local/bin/lcgroupctl")) != std::string::npos;)
    text.replace(at, std::strlen("/usr/local/bin/lcgroupctl"), cli_binary());
  std::ofstream(dir + "/lcgroupctl-pool@.service") << text;
  auto verify = run_sh("systemd-analyze verify '" + dir + "/lcgroupctl-pool@kubepods.service'");
  EXPECT_EQ(verify.code, 0) << verify.out << verify.err;
  // Both commands, with the unit's defaults, parse (--help: nothing runs).
  for (const char *key : {"ExecStartPre=", "ExecStart="}) {
    size_t at = unit.find(std::string("\n") + key);
    ASSERT_NE(at, std::string::npos) << key;
    std::string line = unit.substr(at + 1 + std::strlen(key));
    line = line.substr(0, line.find('\n'));
    for (auto [from, to] : {std::pair<std::string, std::string>{"/usr/local/bin/lcgroupctl",
                                                                 cli_binary()},
                            {"%I", "kubepods"}, {"${POOL_SIZE}", "64"}, {"$POOL_OPTIONS", ""}})
      for (size_t p; (p = line.find(from)) != std::string::npos;)
        line.replace(p, from.size(), to);
    auto r = run_sh(line + " --help");
    EXPECT_EQ(r.code, 0) << line << "\n" << r.out << r.err;
  }
  std::filesystem::remove_all(dir);
}
