// rundctl end to end: real sandboxes (the condensed guest kernel under
// QEMU, the guest agent, a loop-mounted XFS for the writable layers, the
// machine's cgroups), driven through the CLI as an operator would.
//
// Needs root, RUNDKIT_TEST_GUEST_KERNEL_DIR (vmlinux and bzImage, as
// scripts/build-guest-kernel leaves them) and busybox-static; skipped
// otherwise.  One template is made once and shared by every test.  The
// distro kernel's tests also need RUNDKIT_TEST_DISTRO_KERNEL_DIR (bzImage
// and modules/, as scripts/build-distro-guest-kernel leaves them).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "storage/mount_table.h"
#include "testing/run_tool.h"
#include "testing/scratch_fs.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/process.h"
#include "vm/template.h"
#include "vm/vm.h"

using namespace rundkit;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

using Result = ToolRun;

std::string make_dir(const std::string &tmpl) {
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data()))
    throw Error("mkdtemp", tmpl, errno);
  return buf.data();
}

// The shared set-up: state on tmpfs, layers on XFS, an image of two
// layers, a cgroup parent of our own, one template.
struct Env {
  std::string skip;
  std::string kernel_dir;
  std::string distro_dir; // empty: the distro kernel's tests skip
  std::string state, cgstate, parent, layers_root, base, func;
  std::unique_ptr<ScratchFs> xfs;
  std::string template_name = "t1";
  std::string ram_sha_at_create;

  std::vector<std::string> global() const {
    return {RUNDCTL_BIN, "--json", "--state-dir", state, "--layer-dir", xfs->mountpoint(),
            "--cgroup-state-dir", cgstate};
  }
  Result rundctl(std::vector<std::string> args, std::chrono::milliseconds timeout = 300s) const {
    std::vector<std::string> argv = global();
    argv.insert(argv.end(), args.begin(), args.end());
    return run_tool(argv, timeout);
  }
  std::vector<std::string> start_args(const std::string &name,
                                      std::vector<std::string> cmd = {}) const {
    std::vector<std::string> a = {"sandbox", "start", name, "--template", template_name,
                                  "--rootfs", base, "--rootfs", func, "--cgroup-parent", parent};
    if (cmd.empty())
      cmd = {"/bin/sleep", "100000"};
    a.push_back("--");
    a.insert(a.end(), cmd.begin(), cmd.end());
    return a;
  }
  std::string ram_path() const { return state + "/templates/" + template_name + "/vm/ram"; }

  Env() {
    const char *k = std::getenv("RUNDKIT_TEST_GUEST_KERNEL_DIR");
    if (::geteuid() != 0) {
      skip = "needs root";
      return;
    }
    if (!k || !*k || !fs::exists(std::string(k) + "/vmlinux")) {
      skip = "RUNDKIT_TEST_GUEST_KERNEL_DIR does not name a directory with vmlinux "
             "(scripts/build-guest-kernel)";
      return;
    }
    if (!fs::exists("/bin/busybox")) {
      skip = "no /bin/busybox (apt-get install busybox-static)";
      return;
    }
    kernel_dir = k;
    if (const char *dk = std::getenv("RUNDKIT_TEST_DISTRO_KERNEL_DIR");
        dk && *dk && fs::exists(std::string(dk) + "/modules/modules.load"))
      distro_dir = dk;
    state = make_dir("/dev/shm/rundctl-test.XXXXXX");
    cgstate = make_dir("/dev/shm/rundctl-test-cg.XXXXXX");
    parent = fmt::format("rundctl-test-{}", ::getpid());
    xfs = std::make_unique<ScratchFs>("xfs", 2ULL << 30);
    layers_root = make_dir("/tmp/rundctl-test-layers.XXXXXX");
    base = layers_root + "/base";
    func = layers_root + "/func";
    for (const auto &d : {base + "/bin", base + "/etc", base + "/tmp", base + "/proc",
                          base + "/dev", base + "/sys", func})
      fs::create_directories(d);
    fs::copy_file("/bin/busybox", base + "/bin/busybox");
    for (const char *applet : {"sh", "cat", "echo", "sleep", "hostname", "ls", "head", "od",
                               "sha256sum", "dd", "mount", "cut", "grep", "true", "false"})
      fs::create_symlink("busybox", base + "/bin/" + std::string(applet));
    write_file_new(base + "/etc/base-marker", "base layer\n");
    write_file_new(func + "/func.sh", "#!/bin/sh\necho \"function ran on $(hostname)\"\n");
    fs::permissions(func + "/func.sh", fs::perms::owner_all | fs::perms::group_read |
                                           fs::perms::others_read);
    const char *accel = std::getenv("RUNDKIT_ACCEL");
    Result r = rundctl({"template", "create", template_name, "--kernel", kernel_dir + "/vmlinux",
                        "--memory", "128M", "--cpus", "1", "--layer-size", "64M", "--accel",
                        accel && *accel ? accel : "tcg"});
    if (r.code != 0) {
      skip = "template create failed: " + r.out + r.err;
      return;
    }
    ram_sha_at_create = vm::file_sha256(ram_path());
  }
  static void write_file_new(const std::string &path, const std::string &data) {
    Fd f = Fd::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (::write(f.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size()))
      throw Error("write", path, errno);
  }
  ~Env() {
    if (!state.empty()) {
      rundctl({"gc"});
      for (const auto &e : fs::directory_iterator(state + "/sandboxes"))
        rundctl({"sandbox", "stop", e.path().filename().string()});
      rundctl({"template", "remove", template_name});
      for (const auto &root : {"/sys/fs/cgroup"})
        ::rmdir((std::string(root) + "/" + parent).c_str());
      for (const auto &m : read_mount_table())
        if (m.target.starts_with("/sys/fs/cgroup/") && m.fstype == "cgroup")
          ::rmdir((m.target + "/" + parent).c_str());
    }
    std::error_code ec;
    xfs.reset();
    for (const auto &d : {state, cgstate, layers_root})
      if (!d.empty())
        fs::remove_all(d, ec);
  }
};

Env &env() {
  static Env e;
  return e;
}

#define NEED_ENV()                                                                                 \
  do {                                                                                             \
    if (!env().skip.empty())                                                                       \
      GTEST_SKIP() << env().skip;                                                                  \
  } while (0)

#define NEED_DISTRO_KERNEL()                                                                       \
  do {                                                                                             \
    NEED_ENV();                                                                                    \
    if (env().distro_dir.empty())                                                                  \
      GTEST_SKIP() << "RUNDKIT_TEST_DISTRO_KERNEL_DIR does not name a directory with "             \
                      "modules/modules.load (scripts/build-distro-guest-kernel)";                  \
  } while (0)

std::string accel_for_tests() {
  const char *accel = std::getenv("RUNDKIT_ACCEL");
  return accel && *accel ? accel : "tcg";
}

// What a sandbox can leave on the host, all of which must be gone after
// stop or gc.
struct Leftovers {
  std::vector<std::string> items;
  std::string text() const {
    std::string s;
    for (const auto &i : items)
      s += "  " + i + "\n";
    return s;
  }
};

Leftovers leftovers(const Env &e) {
  Leftovers l;
  for (const auto &d : fs::directory_iterator(e.state + "/sandboxes"))
    l.items.push_back("state: " + d.path().string());
  for (const auto &m : read_mount_table())
    if (m.target.starts_with(e.state))
      l.items.push_back("mount: " + m.target);
  for (const auto &d : fs::directory_iterator(e.xfs->mountpoint())) {
    std::string n = d.path().filename().string();
    if (!n.starts_with(e.template_name + ".ext4"))
      l.items.push_back("layer dir: " + d.path().string());
  }
  for (const auto &m : read_mount_table()) {
    if (m.fstype != "cgroup" && m.fstype != "cgroup2")
      continue;
    std::string p = m.target + "/" + e.parent;
    std::error_code ec;
    if (fs::is_directory(p, ec))
      for (const auto &c : fs::directory_iterator(p))
        if (c.is_directory())
          l.items.push_back("cgroup: " + c.path().string());
  }
  if (fs::is_directory(e.cgstate + "/claims"))
    for (const auto &c : fs::directory_iterator(e.cgstate + "/claims"))
      l.items.push_back("claim: " + c.path().string());
  // Any QEMU whose command line names our state directory (found to
  // report it, never to kill it).
  for (const auto &p : fs::directory_iterator("/proc")) {
    std::string n = p.path().filename().string();
    if (n.find_first_not_of("0123456789") != std::string::npos)
      continue;
    std::string cmd;
    try {
      cmd = read_file(p.path().string() + "/cmdline");
    } catch (const Error &) {
      continue;
    }
    if (cmd.find("qemu") != std::string::npos && cmd.find(e.state) != std::string::npos)
      l.items.push_back("process: " + n);
  }
  return l;
}

#define EXPECT_NOTHING_LEFT()                                                                      \
  do {                                                                                             \
    auto l = leftovers(env());                                                                     \
    EXPECT_TRUE(l.items.empty()) << "left behind:\n" << l.text();                                  \
  } while (0)

TEST(Template, ShowListAndTheirRefusals) {
  NEED_ENV();
  auto &e = env();
  Result show = e.rundctl({"template", "show", e.template_name});
  ASSERT_EQ(show.code, 0) << show.out << show.err;
  auto j = show.json();
  EXPECT_EQ(j["memory_mib"], 128);
  EXPECT_EQ(j["cpus"], 1);
  EXPECT_GT(j["state_bytes"].get<uint64_t>(), 0u);
  EXPECT_LT(j["state_bytes"].get<uint64_t>(), 4u << 20) << "guest RAM went into the state";
  Result list = e.rundctl({"template", "list"});
  ASSERT_EQ(list.code, 0);
  EXPECT_EQ(list.json().size(), 1u);
  // Taken name, missing kernel, bad sizes: exit 2, nothing made.
  EXPECT_EQ(e.rundctl({"template", "create", e.template_name, "--kernel",
                       e.kernel_dir + "/vmlinux"}).code, 2);
  EXPECT_EQ(e.rundctl({"template", "create", "t2", "--kernel", "/nonexistent/vmlinux"}).code, 2);
  Result bz = e.rundctl({"template", "create", "t2", "--kernel", e.kernel_dir + "/bzImage"});
  EXPECT_EQ(bz.code, 2);
  EXPECT_NE(bz.out.find("not an ELF vmlinux"), std::string::npos) << bz.out;
  // A state directory on a disk: refused before anything is made there.
  std::string disk_state = make_dir("/var/tmp/rundctl-test-state.XXXXXX") + "/state";
  std::vector<std::string> argv = {RUNDCTL_BIN, "--json", "--state-dir", disk_state,
                                   "--layer-dir", e.xfs->mountpoint(), "template", "create", "t2",
                                   "--kernel", e.kernel_dir + "/vmlinux"};
  SpawnOptions o;
  o.argv = argv;
  RunResult r = run(o, 60s);
  EXPECT_EQ(r.status.shell_code(), 2) << r.out;
  EXPECT_NE(r.out.find("not on tmpfs"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(disk_state));
  fs::remove_all(fs::path(disk_state).parent_path());
  EXPECT_EQ(e.rundctl({"template", "create", "t2", "--kernel", e.kernel_dir + "/vmlinux",
                       "--memory", "1M"}).code, 2);
  EXPECT_EQ(e.rundctl({"template", "create", "../t2", "--kernel", e.kernel_dir + "/vmlinux"})
                .code, 2);
  EXPECT_EQ(e.rundctl({"template", "show", "nope"}).code, 2);
  EXPECT_EQ(e.rundctl({"template", "list"}).json().size(), 1u);
  EXPECT_FALSE(fs::exists(e.xfs->mountpoint() + "/t2.ext4"));
}

TEST(Sandbox, FiveConcurrentStartsRunExecAndStopIsolated) {
  NEED_ENV();
  auto &e = env();
  const int n = 5;
  // A pool of 3 under the sandboxes' parent (lcgroupctl, same state
  // directory): 3 starts are pool hits, 2 make their cgroups directly.
  auto lcgroupctl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {LCGROUPCTL_BIN, "--json", "--state-dir", e.cgstate};
    argv.insert(argv.end(), args.begin(), args.end());
    SpawnOptions o;
    o.argv = argv;
    return run(o, 120s);
  };
  ASSERT_TRUE(lcgroupctl({"parent", "create", e.parent}).status.ok());
  ASSERT_TRUE(lcgroupctl({"pool", "fill", e.parent, "--size", "3"}).status.ok());
  std::vector<Child> starts;
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> argv = e.global();
    auto a = e.start_args(fmt::format("s{}", i));
    argv.insert(argv.end(), a.begin(), a.end());
    SpawnOptions o;
    o.argv = argv;
    o.out = Stdio::null();
    starts.push_back(spawn(o));
  }
  for (auto &c : starts) {
    auto st = c.wait_for(300s);
    ASSERT_TRUE(st) << "a start did not finish";
    EXPECT_TRUE(st->ok()) << st->describe();
  }
  int hits = 0;
  for (int i = 0; i < n; ++i) {
    std::string name = fmt::format("s{}", i);
    Result show = e.rundctl({"sandbox", "show", name});
    hits += show.json().value("pool_hit", false);
    ASSERT_EQ(show.code, 0) << show.out << show.err;
    auto j = show.json();
    EXPECT_EQ(j["phase"], "running");
    EXPECT_TRUE(j["qemu_alive"].get<bool>());
    EXPECT_GT(j["pss_kib"].get<uint64_t>(), 0u);
    auto t = j["times_us"];
    EXPECT_LE(t["cgroup"].get<uint64_t>(), t["layer"].get<uint64_t>());
    EXPECT_LE(t["view"].get<uint64_t>(), t["spawn"].get<uint64_t>());
    EXPECT_LE(t["restore"].get<uint64_t>(), t["agent"].get<uint64_t>());
    // Its identity, its layers, its writes.
    Result who = e.rundctl({"sandbox", "exec", name, "--", "/bin/hostname"});
    EXPECT_EQ(who.code, 0) << who.out << who.err;
    EXPECT_EQ(who.json()["stdout"], name + "\n");
    Result fn = e.rundctl({"sandbox", "exec", name, "--", "/func.sh"});
    EXPECT_EQ(fn.json()["stdout"], "function ran on " + name + "\n") << fn.out;
    Result base = e.rundctl({"sandbox", "exec", name, "--", "/bin/cat", "/etc/base-marker"});
    EXPECT_EQ(base.json()["stdout"], "base layer\n");
    Result w = e.rundctl({"sandbox", "exec", name, "--", "/bin/sh", "-c",
                          "echo " + name + " > /etc/written; dd if=/dev/urandom of=/tmp/fill "
                          "bs=1M count=8 2>/dev/null; cat /etc/written"});
    EXPECT_EQ(w.json()["stdout"], name + "\n") << w.out;
  }
  // Nobody saw anyone else's write, and no write reached the image.
  for (int i = 0; i < n; ++i) {
    std::string name = fmt::format("s{}", i);
    Result r = e.rundctl({"sandbox", "exec", name, "--", "/bin/cat", "/etc/written"});
    EXPECT_EQ(r.json()["stdout"], name + "\n");
    Result ent = e.rundctl({"sandbox", "exec", name, "--", "/bin/sh", "-c",
                            "head -c 16 /dev/urandom | od -An -tx1"});
    EXPECT_EQ(ent.code, 0);
  }
  // The writable layer is O_DIRECT: what the guest wrote and synced is in
  // no host page cache (the layer QEMU holds, found through its fds).
  {
    ASSERT_EQ(e.rundctl({"sandbox", "exec", "s0", "--", "/bin/sh", "-c", "sync"}).code, 0);
    auto q = e.rundctl({"sandbox", "show", "s0"}).json()["qemu"]["pid"].get<int>();
    size_t layers = 0;
    for (const auto &fd : fs::directory_iterator(fmt::format("/proc/{}/fd", q))) {
      std::error_code ec;
      std::string target = fs::read_symlink(fd.path(), ec).string();
      if (ec || !target.starts_with(e.xfs->mountpoint()))
        continue;
      Fd f = Fd::open(fd.path().string(), O_RDONLY | O_CLOEXEC);
      struct stat st;
      ASSERT_EQ(::fstat(f.get(), &st), 0);
      if (st.st_nlink != 0)
        continue; // not a sandbox's nameless layer
      ++layers;
      size_t pages = (static_cast<size_t>(st.st_size) + 4095) / 4096;
      void *m = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, f.get(), 0);
      ASSERT_NE(m, MAP_FAILED);
      std::vector<unsigned char> resident(pages);
      ASSERT_EQ(::mincore(m, static_cast<size_t>(st.st_size), resident.data()), 0);
      size_t cached = 0;
      for (auto r : resident)
        cached += r & 1;
      ::munmap(m, static_cast<size_t>(st.st_size));
      EXPECT_EQ(cached, 0u) << target << ": " << cached << " of " << pages
                            << " pages in the host page cache";
    }
    // Its descriptors of the one layer (the fdset's read-write and
    // read-only members, and QEMU's own open of them).
    EXPECT_GE(layers, 1u) << "QEMU of s0 holds no nameless layer on " << e.xfs->mountpoint();
  }
  EXPECT_FALSE(fs::exists(e.base + "/etc/written"));
  EXPECT_FALSE(fs::exists(e.func + "/etc"));
  // A command that fails in the guest is an exit status, not an error.
  Result bad = e.rundctl({"sandbox", "exec", "s0", "--", "/bin/false"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_EQ(bad.json()["exit_code"], 1);
  Result missing = e.rundctl({"sandbox", "exec", "s0", "--", "/no/such/command"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE((missing.out + missing.err).find("No such file"), std::string::npos) << missing.out;
  // The template's RAM file never changed.
  EXPECT_EQ(vm::file_sha256(e.ram_path()), e.ram_sha_at_create);
  // A running template cannot be removed.
  EXPECT_EQ(e.rundctl({"template", "remove", e.template_name}).code, 2);
  Result list = e.rundctl({"sandbox", "list"});
  EXPECT_EQ(list.json().size(), static_cast<size_t>(n));
  EXPECT_EQ(hits, 3) << "the pool's 3 entries were not all claimed";
  for (int i = 0; i < n; ++i) {
    Result stop = e.rundctl({"sandbox", "stop", fmt::format("s{}", i)});
    EXPECT_EQ(stop.code, 0) << stop.out << stop.err;
  }
  auto st = nlohmann::json::parse(lcgroupctl({"pool", "status", e.parent}).out);
  EXPECT_EQ(st["hits"], 3) << st;
  EXPECT_EQ(st["available"], 0) << st;
  EXPECT_TRUE(lcgroupctl({"pool", "drain", e.parent}).status.ok());
  EXPECT_NOTHING_LEFT();
}

// The agent under a foreign or damaged stream: it says why, and the next
// connection is served as if nothing happened.
TEST(Sandbox, AgentRefusesGarbageAndServesTheNextConnection) {
  NEED_ENV();
  auto &e = env();
  ASSERT_EQ(e.rundctl(e.start_args("g1")).code, 0);
  std::string sock = e.state + "/sandboxes/g1/rundkit.agent.sock";
  {
    Fd s = vm::connect_unix(sock);
    std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(::write(s.get(), junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
    // The reply: one error frame naming the protocol problem.
    std::string got;
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (got.find("magic") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      struct pollfd p = {s.get(), POLLIN, 0};
      if (::poll(&p, 1, 1000) <= 0)
        continue;
      char buf[4096];
      ssize_t n = ::read(s.get(), buf, sizeof buf);
      if (n <= 0)
        break;
      got.append(buf, static_cast<size_t>(n));
    }
    EXPECT_NE(got.find("magic"), std::string::npos) << "no protocol error came back: " << got;
  }
  Result r = e.rundctl({"sandbox", "exec", "g1", "--", "/bin/hostname"});
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.json()["stdout"], "g1\n");
  EXPECT_EQ(e.rundctl({"sandbox", "stop", "g1"}).code, 0);
  EXPECT_NOTHING_LEFT();
}

TEST(Sandbox, BadInputIsRefusedAndChangesNothing) {
  NEED_ENV();
  auto &e = env();
  auto refused = [&](std::vector<std::string> args, int code, const std::string &says) {
    Result r = e.rundctl(args);
    EXPECT_EQ(r.code, code) << fmt::format("{}", fmt::join(args, " ")) << "\n" << r.out << r.err;
    EXPECT_NE(r.out.find(says), std::string::npos)
        << fmt::format("{}", fmt::join(args, " ")) << " said " << r.out;
    auto l = leftovers(e);
    EXPECT_TRUE(l.items.empty()) << fmt::format("{}", fmt::join(args, " ")) << " left:\n"
                                 << l.text();
  };
  auto with = [&](std::vector<std::string> extra) {
    auto a = e.start_args("bad");
    a.insert(a.begin() + 3, extra.begin(), extra.end());
    return a;
  };
  refused({"sandbox", "start", "bad", "--template", "nope", "--rootfs", e.base}, 2,
          "no template named 'nope'");
  refused({"sandbox", "start", "bad", "--template", e.template_name, "--rootfs", "/nonexistent"},
          2, "/nonexistent");
  refused(with({"--memory", "256M"}), 2, "does not match template");
  refused(with({"--cpus", "2"}), 2, "does not fit template");
  refused(with({"--pids", "0"}), 2, "pids");
  refused({"sandbox", "start", "../x", "--template", e.template_name, "--rootfs", e.base}, 2,
          "invalid sandbox name");
  {
    std::vector<std::string> a = {"--qemu", "/nonexistent/qemu"};
    auto s = e.start_args("bad");
    a.insert(a.end(), s.begin(), s.end());
    refused(a, 1, "/nonexistent/qemu");
  }
  // A command the image does not have: the agent's errno, all torn down.
  refused(e.start_args("bad", {"/bin/no-such-command"}), 1, "No such file or directory");
  // A guest that does not report in time: bounded, then torn down.
  refused(with({"--cold", "--timeout", "50ms"}), 1, "");
  // Taken name.
  ASSERT_EQ(e.rundctl(e.start_args("taken")).code, 0);
  Result again = e.rundctl(e.start_args("taken"));
  EXPECT_EQ(again.code, 2);
  EXPECT_NE(again.out.find("exists"), std::string::npos) << again.out;
  EXPECT_EQ(e.rundctl({"sandbox", "exec", "taken", "--", "/bin/true"}).code, 0)
      << "the refused start touched the running sandbox";
  EXPECT_EQ(e.rundctl({"sandbox", "stop", "taken"}).code, 0);
  EXPECT_EQ(e.rundctl({"sandbox", "stop", "taken"}).code, 2);
  EXPECT_EQ(e.rundctl({"sandbox", "exec", "nope", "--", "/bin/true"}).code, 2);
  // A layer directory that cannot reflink (tmpfs).
  std::string shm = make_dir("/dev/shm/rundctl-noreflink.XXXXXX");
  std::vector<std::string> argv = {RUNDCTL_BIN, "--json", "--state-dir", e.state,
                                   "--layer-dir", shm, "template", "create", "t3", "--kernel",
                                   e.kernel_dir + "/vmlinux"};
  SpawnOptions o;
  o.argv = argv;
  RunResult r = run(o, 60s);
  EXPECT_NE(r.status.shell_code(), 0);
  EXPECT_NE(r.out.find("reflink"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(e.state + "/templates/t3"));
  EXPECT_TRUE(fs::is_empty(shm));
  fs::remove_all(shm);
  EXPECT_NOTHING_LEFT();
}

TEST(Sandbox, ColdStartBootsTheKernel) {
  NEED_ENV();
  auto &e = env();
  auto a = e.start_args("cold");
  a.insert(a.begin() + 3, "--cold");
  Result r = e.rundctl(a);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_TRUE(r.json()["cold"].get<bool>());
  Result who = e.rundctl({"sandbox", "exec", "cold", "--", "/bin/hostname"});
  EXPECT_EQ(who.json()["stdout"], "cold\n");
  EXPECT_EQ(e.rundctl({"sandbox", "stop", "cold"}).code, 0);
  EXPECT_NOTHING_LEFT();
}

// The baseline's writable disk: a qcow2 overlay whose writes stay in the
// overlay (a nameless file, gone with its QEMU); the template's image it
// is backed by never changes.
TEST(Sandbox, Qcow2WritableLayerLeavesTheTemplateImageAsItWas) {
  NEED_ENV();
  auto &e = env();
  std::string image = e.xfs->mountpoint() + "/" + e.template_name + ".ext4";
  std::string before = vm::file_sha256(image);
  auto a = e.start_args("q1");
  a.insert(a.begin() + 3, {"--writable", "qcow2"});
  Result r = e.rundctl(a);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(r.json()["writable"], "qcow2") << r.out;
  Result w = e.rundctl({"sandbox", "exec", "q1", "--", "/bin/sh", "-c",
                        "dd if=/dev/zero of=/tmp/blob bs=1M count=4 2>/dev/null && sync && "
                        "echo written > /tmp/marker && sync && cat /tmp/marker"});
  ASSERT_EQ(w.code, 0) << w.out << w.err;
  EXPECT_EQ(w.json()["stdout"], "written\n") << w.out;
  Result shown = e.rundctl({"sandbox", "show", "q1"});
  EXPECT_EQ(shown.json()["writable"], "qcow2") << shown.out;
  EXPECT_EQ(e.rundctl({"sandbox", "stop", "q1"}).code, 0);
  EXPECT_EQ(vm::file_sha256(image), before) << "the overlay's writes reached its backing image";
  EXPECT_NOTHING_LEFT();
}

// Debian's cloud kernel on q35 with ACPI: the agent loads the modules it
// needs from its initramfs; clones and cold boots both run the command.
TEST(Template, DistroKernelOnQ35LoadsItsModules) {
  NEED_DISTRO_KERNEL();
  auto &e = env();
  Result c = e.rundctl({"template", "create", "td", "--machine", "q35", "--kernel",
                        e.distro_dir + "/bzImage", "--modules", e.distro_dir + "/modules",
                        "--memory", "128M", "--layer-size", "32M", "--accel", accel_for_tests()});
  ASSERT_EQ(c.code, 0) << c.out << c.err;
  EXPECT_EQ(c.json()["machine"], "q35") << c.out;
  for (const auto &[name, extra] :
       std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"dk-clone", {}}, {"dk-cold", {"--cold", "--writable", "qcow2"}}}) {
    std::vector<std::string> a = {"sandbox", "start", name, "--template", "td", "--rootfs",
                                  e.base, "--cgroup-parent", e.parent};
    a.insert(a.end(), extra.begin(), extra.end());
    a.insert(a.end(), {"--", "/bin/sleep", "100000"});
    Result s = e.rundctl(a);
    ASSERT_EQ(s.code, 0) << name << ": " << s.out << s.err;
    Result m = e.rundctl({"sandbox", "exec", name, "--", "/bin/cat", "/proc/modules"});
    ASSERT_EQ(m.code, 0) << m.out;
    std::string mods = m.json()["stdout"].get<std::string>();
    for (const char *mod : {"9p ", "9pnet_virtio ", "virtio_blk ", "virtio_console ", "overlay "})
      EXPECT_NE(mods.find(mod), std::string::npos) << name << ": no " << mod << " in\n" << mods;
    Result h = e.rundctl({"sandbox", "exec", name, "--", "/bin/hostname"});
    EXPECT_EQ(h.json()["stdout"], name + "\n") << h.out;
    EXPECT_EQ(e.rundctl({"sandbox", "stop", name}).code, 0);
  }
  EXPECT_EQ(e.rundctl({"template", "remove", "td"}).code, 0);
  EXPECT_NOTHING_LEFT();
}

TEST(Template, BadMachineKernelOrModulesAreRefusedAndLeaveNothing) {
  NEED_ENV();
  auto &e = env();
  std::string dir = make_dir("/tmp/rundctl-test-bad.XXXXXX");
  Env::write_file_new(dir + "/notakernel", "just text\n");
  fs::create_directories(dir + "/gone");
  Env::write_file_new(dir + "/gone/modules.load", "gone.ko\n");
  auto refused = [&](std::vector<std::string> args, int code, const std::string &says) {
    std::vector<std::string> a = {"template", "create", "tb"};
    a.insert(a.end(), args.begin(), args.end());
    a.insert(a.end(), {"--layer-size", "32M", "--accel", accel_for_tests()});
    Result r = e.rundctl(a);
    EXPECT_EQ(r.code, code) << fmt::format("{}", fmt::join(args, " ")) << "\n" << r.out << r.err;
    EXPECT_NE(r.out.find(says), std::string::npos)
        << fmt::format("{}", fmt::join(args, " ")) << " said " << r.out;
    EXPECT_FALSE(fs::exists(e.state + "/templates/tb"));
    EXPECT_FALSE(fs::exists(e.xfs->mountpoint() + "/tb.ext4"));
    EXPECT_FALSE(fs::exists(e.xfs->mountpoint() + "/tb.ext4.owner"));
  };
  refused({"--machine", "pc", "--kernel", e.kernel_dir + "/vmlinux"}, 2, "machine 'pc'");
  refused({"--kernel", e.kernel_dir + "/bzImage"}, 2, "not a bzImage");
  refused({"--machine", "q35", "--kernel", dir + "/notakernel"}, 2,
          "neither a bzImage nor an ELF vmlinux");
  refused({"--kernel", e.kernel_dir + "/vmlinux", "--modules", dir + "/none"}, 2,
          "no modules.load");
  refused({"--kernel", e.kernel_dir + "/vmlinux", "--modules", dir + "/gone"}, 1, "gone.ko");
  // A module the guest cannot load: the agent says so on the console and
  // ends the VM; the error carries the console's last lines.
  fs::create_directories(dir + "/bad");
  Env::write_file_new(dir + "/bad/modules.load", "bogus.ko\n");
  Env::write_file_new(dir + "/bad/bogus.ko", "not an ELF module\n");
  refused({"--kernel", e.kernel_dir + "/vmlinux", "--modules", dir + "/bad"}, 1,
          "guest console: ");
  refused({"--kernel", e.kernel_dir + "/vmlinux", "--modules", dir + "/bad"}, 1,
          "finit_module /modules/bogus.ko");
  auto a = e.start_args("bad");
  a.insert(a.begin() + 3, {"--writable", "overlayfs"});
  Result r = e.rundctl(a);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("reflink or qcow2"), std::string::npos) << r.out;
  fs::remove_all(dir);
  EXPECT_NOTHING_LEFT();
}

// An OCI image built with Debian's umoci from the base layer's files:
// imported, then a sandbox runs its configured command in its cwd with its
// environment, on its layers.
TEST(Sandbox, StartsFromAnImportedOciImage) {
  NEED_ENV();
  if (::system("command -v umoci >/dev/null") != 0)
    GTEST_SKIP() << "no umoci (apt-get install umoci)";
  auto &e = env();
  std::string dir = make_dir("/var/tmp/rundctl-test-oci.XXXXXX");
  std::string L = dir + "/layout", B = dir + "/bundle", store = dir + "/store";
  auto umoci = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "umoci");
    run_capture(args);
  };
  umoci({"init", "--layout", L});
  umoci({"new", "--image", L + ":app"});
  umoci({"unpack", "--image", L + ":app", B});
  fs::copy(e.base, B + "/rootfs", fs::copy_options::recursive | fs::copy_options::copy_symlinks |
                                      fs::copy_options::overwrite_existing);
  Env::write_file_new(B + "/rootfs/etc/app.conf", "from the image\n");
  for (const char *applet : {"pidof", "tr", "sed"})
    fs::create_symlink("busybox", B + "/rootfs/bin/" + std::string(applet));
  umoci({"repack", "--image", L + ":app", B});
  umoci({"config", "--image", L + ":app", "--config.cmd", "/bin/sleep", "--config.cmd", "100000",
         "--config.env", "APP_MODE=oci", "--config.workingdir", "/etc"});

  Result imp = e.rundctl({"--image-dir", store, "image", "import", L, "--ref", "app"});
  ASSERT_EQ(imp.code, 0) << imp.out << imp.err;
  EXPECT_EQ(imp.json()["name"], "app") << imp.out;
  EXPECT_EQ(imp.json()["layers_unpacked"], 1) << imp.out;
  Result bad = e.rundctl({"--image-dir", store, "image", "import", dir});
  EXPECT_EQ(bad.code, 2) << bad.out;

  Result s = e.rundctl({"--image-dir", store, "sandbox", "start", "img", "--template",
                        e.template_name, "--image", "app", "--cgroup-parent", e.parent});
  ASSERT_EQ(s.code, 0) << s.out << s.err;
  EXPECT_EQ(s.json()["command"], (nlohmann::json{"/bin/sleep", "100000"})) << s.out;
  Result r = e.rundctl({"sandbox", "exec", "img", "--", "/bin/sh", "-c",
                        "cat /etc/app.conf; cat /proc/$(pidof sleep)/environ | tr '\\0' '\\n' "
                        "| grep APP_MODE; ls -l /proc/$(pidof sleep)/cwd | sed 's/.*-> //'"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(r.json()["stdout"], "from the image\nAPP_MODE=oci\n/etc\n") << r.out;
  EXPECT_EQ(e.rundctl({"sandbox", "stop", "img"}).code, 0);
  Result none = e.rundctl({"--image-dir", store, "sandbox", "start", "img2", "--template",
                           e.template_name, "--image", "nope", "--cgroup-parent", e.parent});
  EXPECT_EQ(none.code, 2) << none.out;
  EXPECT_NE(none.out.find("no image named 'nope'"), std::string::npos) << none.out;
  fs::remove_all(dir);
  EXPECT_NOTHING_LEFT();
}

// kill -9 of rundctl anywhere in start or stop: gc leaves nothing.  The
// kill times are spread over how long a start and a stop take here.
TEST(Sandbox, KilledAnywhereThenGcLeavesNothing) {
  NEED_ENV();
  auto &e = env();
  auto timed = [&](std::vector<std::string> args) {
    auto t0 = std::chrono::steady_clock::now();
    Result r = e.rundctl(args);
    EXPECT_EQ(r.code, 0) << r.out;
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now() - t0)
        .count();
  };
  long start_us = timed(e.start_args("probe"));
  long stop_us = timed({"sandbox", "stop", "probe"});
  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  int killed[2] = {0, 0};
  const int rounds = 12;
  for (int round = 0; round < rounds; ++round) {
    std::string name = fmt::format("k{}", round);
    bool in_stop = round % 3 == 2;
    if (in_stop) {
      ASSERT_EQ(e.rundctl(e.start_args(name)).code, 0);
    }
    std::uniform_int_distribution<long> at(0, in_stop ? stop_us : start_us);
    long d = at(rng);
    std::vector<std::string> argv = e.global();
    std::vector<std::string> a =
        in_stop ? std::vector<std::string>{"sandbox", "stop", name} : e.start_args(name);
    argv.insert(argv.end(), a.begin(), a.end());
    SpawnOptions o;
    o.argv = argv;
    o.out = Stdio::null();
    o.err = Stdio::null();
    Child c = spawn(o);
    if (!c.wait_for(std::chrono::milliseconds(d / 1000))) {
      c.signal(SIGKILL);
      killed[in_stop]++;
    }
    c.wait_for(30s);
    Result gc = e.rundctl({"gc"});
    EXPECT_EQ(gc.code, 0) << gc.out;
    // A start that finished before the kill left a running sandbox.
    if (fs::exists(e.state + "/sandboxes/" + name)) {
      EXPECT_EQ(e.rundctl({"sandbox", "stop", name}).code, 0) << "round " << round;
    }
    auto l = leftovers(e);
    EXPECT_TRUE(l.items.empty()) << "round " << round << " (kill after " << d << " us):\n"
                                 << l.text() << gc.out;
  }
  std::cerr << fmt::format("start {} ms, stop {} ms; killed {} of {} starts and {} of {} stops "
                           "mid-way\n",
                           start_us / 1000, stop_us / 1000, killed[0], rounds - rounds / 3,
                           killed[1], rounds / 3);
  EXPECT_GT(killed[0] + killed[1], 0);
}

// A template whose kernel changed since it was made is refused (with what
// changed), and so is everyone but root.
TEST(Template, MismatchAndNotRootAreRefused) {
  NEED_ENV();
  auto &e = env();
  std::string dir = make_dir("/tmp/rundctl-test-kernel.XXXXXX");
  std::string kernel = dir + "/vmlinux";
  fs::copy_file(e.kernel_dir + "/vmlinux", kernel);
  const char *accel = std::getenv("RUNDKIT_ACCEL");
  ASSERT_EQ(e.rundctl({"template", "create", "tk", "--kernel", kernel, "--layer-size", "32M",
                       "--accel", accel && *accel ? accel : "tcg"})
                .code,
            0);
  {
    Fd k = Fd::open(kernel, O_WRONLY | O_APPEND | O_CLOEXEC);
    ASSERT_EQ(::write(k.get(), "x", 1), 1);
  }
  std::vector<std::string> a = {"sandbox", "start", "mm", "--template", "tk", "--rootfs", e.base,
                                "--cgroup-parent", e.parent, "--", "/bin/sleep", "100"};
  Result r = e.rundctl(a);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("changed since template tk was made"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(e.state + "/sandboxes/mm"));
  EXPECT_EQ(e.rundctl({"template", "remove", "tk"}).code, 0);
  EXPECT_FALSE(fs::exists(e.state + "/templates/tk"));
  EXPECT_FALSE(fs::exists(e.xfs->mountpoint() + "/tk.ext4"));
  fs::remove_all(dir);
  // Not root: refused before anything is touched.
  std::vector<std::string> argv = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
  auto g = e.global();
  argv.insert(argv.end(), g.begin(), g.end());
  auto s = e.start_args("nr");
  argv.insert(argv.end(), s.begin(), s.end());
  SpawnOptions o;
  o.argv = argv;
  RunResult nr = run(o, 60s);
  EXPECT_EQ(nr.status.shell_code(), 1) << nr.out;
  EXPECT_NE(nr.out.find("root"), std::string::npos) << nr.out;
  EXPECT_NOTHING_LEFT();
}

// A layer directory, an lcgroupctl state directory and a cgroup parent
// shared by two rundctl state directories: gc of one never removes the
// other's layer images, nor releases its running sandboxes' cgroups.
TEST(Template, GcOfAnotherStateDirectoryLeavesOursAlone) {
  NEED_ENV();
  auto &e = env();
  // Under the default parent, as both state directories' sandboxes would be.
  auto args = e.start_args("og");
  auto at = std::find(args.begin(), args.end(), "--cgroup-parent");
  args.erase(at, at + 2);
  ASSERT_EQ(e.rundctl(args).code, 0);
  // A state directory that has been used (as a benchmark's is).
  std::string other = make_dir("/dev/shm/rundctl-test-other.XXXXXX");
  fs::create_directories(other + "/templates");
  fs::create_directories(other + "/sandboxes");
  SpawnOptions o;
  o.argv = {RUNDCTL_BIN, "--json", "--state-dir", other, "--layer-dir", e.xfs->mountpoint(),
            "--cgroup-state-dir", e.cgstate, "gc"};
  RunResult r = run(o, 60s);
  EXPECT_EQ(r.status.shell_code(), 0) << r.out;
  fs::remove_all(other);
  EXPECT_TRUE(fs::exists(e.xfs->mountpoint() + "/" + e.template_name + ".ext4"))
      << "another state directory's gc removed our layer image: " << r.out;
  EXPECT_EQ(e.rundctl({"sandbox", "exec", "og", "--", "/bin/true"}).code, 0)
      << "another state directory's gc stopped our sandbox: " << r.out;
  EXPECT_EQ(e.rundctl({"sandbox", "stop", "og"}).code, 0);
  ASSERT_EQ(e.rundctl(e.start_args("og2")).code, 0) << "the template is unusable after it";
  EXPECT_EQ(e.rundctl({"sandbox", "stop", "og2"}).code, 0);
  EXPECT_NOTHING_LEFT();
}

// kill -9 of template create anywhere: gc removes the unfinished template
// and its layer image.
TEST(Template, KilledCreateLeavesOnlyWhatGcRemoves) {
  NEED_ENV();
  auto &e = env();
  std::mt19937 rng(static_cast<unsigned>(::getpid()) + 1);
  std::uniform_int_distribution<int> at(0, 1200);
  const char *accel = std::getenv("RUNDKIT_ACCEL");
  for (int round = 0; round < 3; ++round) {
    std::vector<std::string> argv = e.global();
    for (const char *w : {"template", "create", "tx", "--layer-size", "32M", "--kernel"})
      argv.push_back(w);
    argv.push_back(e.kernel_dir + "/vmlinux");
    argv.push_back("--accel");
    argv.push_back(accel && *accel ? accel : "tcg");
    SpawnOptions o;
    o.argv = argv;
    o.out = Stdio::null();
    o.err = Stdio::null();
    Child c = spawn(o);
    int d = at(rng);
    if (!c.wait_for(std::chrono::milliseconds(d)))
      c.signal(SIGKILL);
    c.wait_for(30s);
    // Its QEMU (a child of the killed rundctl, with pdeathsig) goes too.
    Result gc = e.rundctl({"gc"});
    EXPECT_EQ(gc.code, 0) << gc.out;
    if (fs::exists(e.state + "/templates/tx")) {
      EXPECT_EQ(e.rundctl({"template", "remove", "tx"}).code, 0);
    }
    std::vector<std::string> left;
    for (const auto &t : fs::directory_iterator(e.state + "/templates"))
      if (t.path().filename() != e.template_name)
        left.push_back(t.path().string());
    for (const auto &f : fs::directory_iterator(e.xfs->mountpoint()))
      if (!f.path().filename().string().starts_with(e.template_name + "."))
        left.push_back(f.path().string());
    EXPECT_TRUE(left.empty()) << "round " << round << " (kill after " << d << " ms): "
                              << fmt::format("{}", fmt::join(left, " ")) << "\n" << gc.out;
  }
}

// The benchmarks' smoke run (make check): one round at 1-way per mode, and
// 3 idle sandboxes.  Figures are not judged here: only that each cell
// measured what it says and left nothing.
TEST(Bench, StartAndDensitySmokeRun) {
  NEED_ENV();
  auto &e = env();
  const char *accel = std::getenv("RUNDKIT_ACCEL");
  std::string a = accel && *accel ? accel : "tcg";
  // Every mode, the distro kernel's two when it is there.
  std::vector<std::string> modes = {"rundkit", "no-template", "qcow2-layer", "no-pool"};
  if (!e.distro_dir.empty())
    modes.insert(modes.end(), {"baseline", "distro-kernel"});
  std::vector<std::string> args = {"bench", "start", "--kernel", e.kernel_dir + "/vmlinux",
                                   "--modes", fmt::format("{}", fmt::join(modes, ",")),
                                   "--concurrency", "1", "--rounds", "1", "--cgroup-parent",
                                   e.parent + "-bench", "--accel", a};
  if (!e.distro_dir.empty())
    args.insert(args.end(), {"--distro-kernel", e.distro_dir});
  Result start = e.rundctl(args);
  ASSERT_EQ(start.code, 0) << start.out << start.err;
  auto cells = start.json();
  ASSERT_EQ(cells.size(), modes.size()) << start.out;
  for (const auto &c : cells) {
    EXPECT_EQ(c["samples"], 1) << c;
    EXPECT_EQ(c["failed"], 0) << c;
    EXPECT_GT(c["p50_ms"].get<double>(), 0) << c;
    EXPECT_GT(c["cpu_ms_per_start"].get<double>(), 0) << c;
    EXPECT_LE(c["phase_p50_ms"]["restore"].get<double>(), c["phase_p50_ms"]["running"].get<double>())
        << c;
  }
  for (const auto &c : cells) {
    bool pooled = c["mode"] != "no-pool" && c["mode"] != "baseline";
    EXPECT_EQ(c["pool_hits"], pooled ? 1 : 0) << c;
  }
  std::vector<std::string> dargs = {"bench", "density", "--kernel", e.kernel_dir + "/vmlinux",
                                    "--count", "3", "--modes",
                                    e.distro_dir.empty() ? "rundkit" : "rundkit,baseline",
                                    "--settle", "1", "--idle-window", "1", "--cgroup-parent",
                                    e.parent + "-bench", "--accel", a, "--csv",
                                    e.state + "/density.csv", "--png", e.state + "/density.png"};
  if (!e.distro_dir.empty())
    dargs.insert(dargs.end(), {"--distro-kernel", e.distro_dir});
  Result density = e.rundctl(dargs);
  ASSERT_EQ(density.code, 0) << density.out << density.err;
  auto d = density.json();
  ASSERT_EQ(d.size(), e.distro_dir.empty() ? 1u : 2u) << density.out;
  EXPECT_GT(fs::file_size(e.state + "/density.png"), 0u) << "no density plot";
  EXPECT_NE(read_file(e.state + "/density.csv").find("rundkit,3,"), std::string::npos);
  for (const auto &c : d) {
    EXPECT_EQ(c["failed"], 0) << c;
    EXPECT_EQ(c["exec_failed"], 0) << c;
    EXPECT_GT(c["pss_mib"].get<double>(), 0) << c;
    EXPECT_LT(c["exec_p99_ms"].get<double>(), 5000) << c;
  }
  EXPECT_NOTHING_LEFT();
  for (const auto &m : read_mount_table()) {
    if (m.fstype == "cgroup" || m.fstype == "cgroup2") {
      EXPECT_FALSE(fs::exists(m.target + "/" + e.parent + "-bench")) << m.target;
    }
  }
}

} // namespace
