// lcgroupctl oci-runtime with the real, unmodified stack: Debian's
// containerd (started here, on its own socket and directories), its runc
// shim, runc, and `ctr run --runc-binary` pointed at the repo's wrapper
// (pairing/containerd/runc-pooled).  The image is built with umoci.
//
// Needs root, containerd, ctr, runc, umoci and a cgroup v1 host (the shim
// serves v1 only, see cgroup/oci_runtime.h); skipped otherwise.
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "storage/mount_table.h"
#include "testing/cgroup_fixture.h"
#include "testing/run_tool.h"
#include "util/error.h"
#include "util/process.h"

using namespace rundkit;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Each test runs once with runc and once with crun in front of the shim.
class Containerd : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    if (::geteuid() != 0)
      GTEST_SKIP() << "needs root";
    for (const std::string tool : {"containerd", "ctr", "umoci", GetParam().c_str()})
      if (::system(fmt::format("command -v {} >/dev/null", tool).c_str()) != 0)
        GTEST_SKIP() << "no " << tool << " (apt-get install containerd runc crun umoci)";
    if (!fs::exists("/sys/fs/cgroup/memory/cgroup.procs"))
      GTEST_SKIP() << "not a cgroup v1 host: the shim serves v1 (cgroup2 uses the kernel pool)";
    if (GetParam() == "crun")
      for (const auto &m : read_mount_table())
        if (m.fstype == "cgroup2") {
          std::string controllers;
          try {
            controllers = read_file(m.target + "/cgroup.controllers");
          } catch (const Error &) {
          }
          if (controllers.find_first_not_of(" \n") != std::string::npos)
            GTEST_SKIP() << "crun refuses a hybrid host whose cgroup2 (" << m.target
                         << ") has controllers (" << controllers.substr(0, controllers.find('\n'))
                         << "): \"cgroups in hybrid mode not supported\"";
        }
    dir_ = cgtest::make_temp_dir("ctd");
    state_ = cgtest::make_temp_dir("ctd-state");
    run_dir_ = fmt::format("/run/lcgroupctl-ctd-test.{}", ::getpid());
    ns_ = cgtest::unique_parent("ctd");
    sock_ = run_dir_ + "/containerd.sock";
    fs::create_directories(run_dir_);
    // The image: busybox, built with umoci, as an OCI archive.
    std::string L = dir_ + "/layout", B = dir_ + "/bundle";
    ASSERT_EQ(run_tool({"umoci", "init", "--layout", L}).code, 0);
    ASSERT_EQ(run_tool({"umoci", "new", "--image", L + ":bb"}).code, 0);
    ASSERT_EQ(run_tool({"umoci", "unpack", "--image", L + ":bb", B}).code, 0);
    fs::create_directories(B + "/rootfs/bin");
    fs::copy_file("/bin/busybox", B + "/rootfs/bin/busybox");
    for (const char *a : {"sh", "cat", "sleep", "grep", "true"})
      fs::create_symlink("busybox", B + "/rootfs/bin/" + std::string(a));
    ASSERT_EQ(run_tool({"umoci", "repack", "--image", L + ":bb", B}).code, 0);
    ASSERT_EQ(run_tool({"sh", "-c", "cd \"$0\" && tar -cf ../bb.tar .", L}).code, 0);

    std::ofstream(dir_ + "/config.toml")
        << fmt::format("version = 2\nroot = \"{}/root\"\nstate = \"{}/state\"\n"
                       "[grpc]\n  address = \"{}\"\n"
                       "[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable = true\n",
                       dir_, run_dir_, sock_);
    SpawnOptions o;
    o.argv = {"containerd", "--config", dir_ + "/config.toml"};
    o.out = Stdio::null();
    o.err = Stdio::null();
    containerd_ = spawn(o);
    for (int i = 0; i < 200 && !fs::exists(sock_); ++i)
      std::this_thread::sleep_for(50ms);
    ASSERT_TRUE(fs::exists(sock_)) << "containerd did not come up";
    ToolRun imp = ctr({"image", "import", "--index-name", "bb:test", dir_ + "/bb.tar"});
    ASSERT_EQ(imp.code, 0) << imp.out << imp.err;

    // The wrapper as installed, pointed at this build and state directory.
    // (containerd's shim runs it with containerd's environment, not ctr's:
    // what the test sets goes into the wrapper itself.)
    wrapper_ = dir_ + "/runc-pooled";
    crash_wrapper_ = dir_ + "/runc-pooled-crash";
    for (const auto &[path, extra] : {std::pair<std::string, std::string>{wrapper_, ""},
                                      {crash_wrapper_, "LCGROUPCTL_TEST_STOP_AFTER_CLAIM=1 "}}) {
      std::ofstream(path) << fmt::format(
          "#!/bin/sh\n{}RUNTIME=$(command -v {}) LCGROUPCTL={} LCGROUPCTL_STATE_DIR={} "
          "LCGROUPCTL_OCI_LOG={}/oci.log exec {}/../pairing/containerd/runc-pooled \"$@\"\n",
          extra, GetParam(), LCGROUPCTL_BIN, state_, dir_, LCGROUPCTL_SOURCE_DIR);
      fs::permissions(path, fs::perms::owner_all);
    }
    ASSERT_EQ(lcg({"parent", "create", ns_}).code, 0);
  }

  void TearDown() override {
    if (dir_.empty())
      return;
    for (const auto &c : {"c0", "c1", "c2", "crash"}) {
      ctr({"task", "kill", "-s", "KILL", c});
      ctr({"task", "delete", "-f", c});
      ctr({"container", "rm", c});
    }
    if (containerd_.pid() > 0) {
      containerd_.signal(SIGTERM);
      if (!containerd_.wait_for(10000ms))
        containerd_.kill();
    }
    for (const auto &m : read_mount_table())
      if (m.target.starts_with(dir_) || m.target.starts_with(run_dir_))
        ::umount2(m.target.c_str(), MNT_DETACH);
    lcg({"gc"});
    lcg({"parent", "remove", ns_});
    std::error_code ec;
    for (const auto &d : {dir_, state_, run_dir_})
      fs::remove_all(d, ec);
  }

  ToolRun ctr(std::vector<std::string> args) {
    std::vector<std::string> a = {"ctr", "-a", sock_, "-n", ns_};
    a.insert(a.end(), args.begin(), args.end());
    return run_tool(a);
  }
  ToolRun lcg(std::vector<std::string> args) {
    std::vector<std::string> a = {LCGROUPCTL_BIN, "--json", "--state-dir", state_};
    a.insert(a.end(), args.begin(), args.end());
    return run_tool(a);
  }
  nlohmann::json pool() { return nlohmann::json::parse(lcg({"pool", "status", ns_}).out); }
  std::vector<std::string> run_args(const std::string &id, bool detach,
                                    std::vector<std::string> cmd, bool crash = false) {
    std::vector<std::string> a = {"run"};
    if (detach)
      a.push_back("-d");
    else
      a.push_back("--rm");
    a.insert(a.end(), {"--runc-binary", crash ? crash_wrapper_ : wrapper_, "--memory-limit", "67108864", "bb:test", id});
    a.insert(a.end(), cmd.begin(), cmd.end());
    return a;
  }
  std::vector<std::string> claims() {
    std::vector<std::string> v;
    std::error_code ec;
    for (const auto &e : fs::directory_iterator(state_ + "/claims", ec))
      v.push_back(e.path().filename().string());
    return v;
  }

  std::string dir_, state_, run_dir_, ns_, sock_, wrapper_, crash_wrapper_;
  Child containerd_;
};

} // namespace

// ctr run through the shim: each container's cgroup is a pool entry,
// renamed to the name runc asks for, with runc's limits in it; runc's
// delete removes it; the shim leaves no claim behind.
TEST_P(Containerd, CtrRunThroughTheShimGetsPooledCgroups) {
  ASSERT_EQ(lcg({"pool", "fill", ns_, "--size", "3"}).code, 0);
  for (const char *id : {"c0", "c1"}) {
    ToolRun r = ctr(run_args(id, false, {"/bin/sh", "-c", "grep memory /proc/self/cgroup"}));
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find(fmt::format(":/{}/{}", ns_, id)), std::string::npos) << r.out;
  }
  ToolRun d = ctr(run_args("c2", true, {"/bin/sleep", "1000"}));
  ASSERT_EQ(d.code, 0) << d.out << d.err;
  std::string cg = fmt::format("/sys/fs/cgroup/memory/{}/c2", ns_);
  std::string limit;
  for (int i = 0; i < 100 && limit.empty(); ++i) {
    std::ifstream(cg + "/memory.limit_in_bytes") >> limit;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(limit, "67108864") << GetParam() << "'s limit is not in the pooled cgroup";
  nlohmann::json s = pool();
  EXPECT_EQ(s["hits"], 3) << s.dump();
  EXPECT_EQ(s["available"], 0) << s.dump();
  EXPECT_TRUE(claims().empty()) << "the shim kept a claim of a cgroup that is runc's now";
  ctr({"task", "kill", "-s", "KILL", "c2"});
  for (int i = 0; i < 100 && fs::exists(cg); ++i) {
    ctr({"task", "delete", "c2"});
    std::this_thread::sleep_for(50ms);
  }
  ctr({"container", "rm", "c2"});
  EXPECT_FALSE(fs::exists(cg)) << "runc's delete left the cgroup";
  std::string log = read_file(dir_ + "/oci.log");
  EXPECT_NE(log.find("claimed"), std::string::npos) << log;

  // An empty pool: the runtime makes the cgroup itself, the container runs.
  ToolRun plain = ctr(run_args("c0", false, {"/bin/true"}));
  EXPECT_EQ(plain.code, 0) << plain.out << plain.err;
  EXPECT_EQ(pool()["hits"], 3);
}

// The shim killed between the claim and the hand-over (it stops itself
// there for the test): the container fails to start, and gc releases the
// claim whose owner is gone, cgroup and all.
TEST_P(Containerd, ShimKilledAfterItsClaimLeavesWhatGcCleans) {
  ASSERT_EQ(lcg({"pool", "fill", ns_, "--size", "1"}).code, 0);
  std::vector<std::string> a = {"ctr", "-a", sock_, "-n", ns_};
  auto ra = run_args("crash", false, {"/bin/true"}, true);
  a.insert(a.end(), ra.begin(), ra.end());
  SpawnOptions o;
  o.argv = a;
  o.out = Stdio::null();
  o.err = Stdio::null();
  Child client = spawn(o);
  // The stopped shim: an lcgroupctl oci-runtime in state T.
  pid_t stopped = 0;
  for (int i = 0; i < 400 && !stopped; ++i) {
    for (const auto &e : fs::directory_iterator("/proc")) {
      std::string n = e.path().filename().string();
      if (n.find_first_not_of("0123456789") != std::string::npos)
        continue;
      std::string stat, cmd;
      try {
        stat = read_file(e.path().string() + "/stat");
        cmd = read_file(e.path().string() + "/cmdline");
      } catch (const Error &) {
        continue;
      }
      size_t close = stat.rfind(')');
      if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'T' &&
          cmd.find("oci-runtime") != std::string::npos && cmd.find(state_) != std::string::npos)
        stopped = std::stoi(n);
    }
    if (!stopped)
      std::this_thread::sleep_for(25ms);
  }
  ASSERT_NE(stopped, 0) << "the shim never stopped after its claim";
  EXPECT_TRUE(fs::exists(state_ + "/claims/crash.json")) << "the claim is recorded before the hand-over";
  ::kill(stopped, SIGKILL);
  auto st = client.wait_for(60000ms);
  ASSERT_TRUE(st);
  EXPECT_FALSE(st->ok()) << "ctr run succeeded without its runtime";
  ToolRun gc = lcg({"gc"});
  EXPECT_EQ(gc.code, 0) << gc.out;
  EXPECT_TRUE(claims().empty()) << gc.out;
  EXPECT_FALSE(fs::exists(fmt::format("/sys/fs/cgroup/memory/{}/crash", ns_))) << gc.out;
}

INSTANTIATE_TEST_SUITE_P(Runtimes, Containerd, ::testing::Values("runc", "crun"),
                         [](const auto &info) { return info.param; });
