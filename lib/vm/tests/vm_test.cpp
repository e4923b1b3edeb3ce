// The VM process object with a real QEMU: q35 kept at -S (no guest runs),
// which is enough for QEMU to build every device the config names.
#include "vm/vm.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>

extern "C" {
#include <sys/pidfd.h>
}

#include <algorithm>
#include <filesystem>
#include <set>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "testing/scratch_cgroup2.h"
#include "util/error.h"

using namespace rundkit;
using namespace rundkit::vm;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

VmOptions paused_q35() {
  VmOptions o;
  o.config.paused = true;
  o.config.memory_mib = 64;
  return o;
}

bool exits_within(int pidfd, std::chrono::milliseconds limit) {
  struct pollfd p = {pidfd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(limit.count())) == 1;
}

std::string scratch_dir() {
  char tmpl[] = "/tmp/rundkit-vm-test.XXXXXX";
  return ::mkdtemp(tmpl);
}

} // namespace

TEST(Vm, StartsWithQmpAndStops) {
  Vm vm = Vm::start(paused_q35());
  EXPECT_EQ(vm.qmp().execute("query-status")["status"], "prelaunch");
  EXPECT_LT(vm.dir().size() + 20, 108u) << "socket paths must fit sun_path";
  EXPECT_TRUE(std::filesystem::exists(vm.dir() + "/qmp.sock"));
  ExitStatus st = vm.stop(10s);
  EXPECT_EQ(st, ExitStatus::exited(0)) << st.describe();
}

TEST(Vm, DroppedVmLeavesNoQemu) {
  pid_t pid;
  Fd watch;
  std::string dir;
  {
    Vm vm = Vm::start(paused_q35());
    pid = vm.pid();
    dir = vm.dir();
    watch = Fd(::pidfd_open(pid, 0));
    ASSERT_TRUE(watch.valid());
    EXPECT_EQ(std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/exe").filename(),
              "qemu-system-x86_64");
  }
  EXPECT_TRUE(exits_within(watch.get(), 0ms));
  EXPECT_FALSE(std::filesystem::exists("/proc/" + std::to_string(pid)));
  EXPECT_FALSE(std::filesystem::exists(dir)) << "socket directory left behind";
}

TEST(Vm, BadCommandLineReportsQemusWords) {
  VmOptions o = paused_q35();
  o.config.extra = {"-rundkit-bogus-option"};
  try {
    Vm::start(std::move(o));
    FAIL() << "QEMU started with a bogus option";
  } catch (const Error &e) {
    std::string w = e.what();
    EXPECT_NE(w.find("QEMU exited 1"), std::string::npos) << w;
    EXPECT_NE(w.find("-rundkit-bogus-option"), std::string::npos) << w;
  }
}

TEST(Vm, MissingQemuBinary) {
  VmOptions o = paused_q35();
  o.config.binary = "/nonexistent/qemu-system-x86_64";
  try {
    Vm::start(std::move(o));
    FAIL() << "a missing QEMU started";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "exec '/nonexistent/qemu-system-x86_64': No such file or directory");
  }
}

TEST(Vm, DiskFromAnUnlinkedDescriptor) {
  std::string dir = scratch_dir();
  std::string image = dir + "/layer.img";
  Fd img = Fd::open(image, O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_EQ(::ftruncate(img.get(), 4 << 20), 0);
  ASSERT_EQ(::unlink(image.c_str()), 0); // only the descriptor is left
  VmOptions o = paused_q35();
  Disk d;
  d.id = "layer";
  d.fd = img.get();
  o.config.disks = {d};
  Vm vm = Vm::start(std::move(o));
  json blocks = vm.qmp().execute("query-block");
  bool found = false;
  for (const auto &b : blocks) {
    if (b["device"] != "layer")
      continue;
    found = true;
    EXPECT_EQ(b["inserted"]["file"], "/dev/fdset/1") << b.dump();
    EXPECT_EQ(b["inserted"]["ro"], false);
  }
  EXPECT_TRUE(found) << blocks.dump();
  json sets = vm.qmp().execute("query-fdsets");
  EXPECT_EQ(sets[0]["fdset-id"], 1);
  // The guest writes through it (human monitor's qemu-io on the drive).
  vm.qmp().execute("human-monitor-command",
                   {{"command-line", "qemu-io layer \"write -P 0x5a 0 4096\""}});
  char buf[4096];
  ASSERT_EQ(::pread(img.get(), buf, sizeof(buf), 0), 4096);
  EXPECT_EQ(std::count(buf, buf + sizeof(buf), 0x5a), 4096);
  ::rmdir(dir.c_str());
}

TEST(Vm, RamFileSharedAndIncomingDefer) {
  std::string dir = scratch_dir();
  VmOptions o = paused_q35();
  o.config.ram_file = RamFile{dir + "/ram", true};
  o.config.incoming_defer = true;
  Vm vm = Vm::start(std::move(o));
  json mem = vm.qmp().execute("query-memdev");
  ASSERT_EQ(mem.size(), 1u) << mem.dump();
  EXPECT_EQ(mem[0]["id"], "ram");
  EXPECT_EQ(mem[0]["share"], true);
  EXPECT_EQ(mem[0]["size"], 64ull << 20);
  EXPECT_EQ(std::filesystem::file_size(dir + "/ram"), 64ull << 20);
  EXPECT_EQ(vm.qmp().execute("query-status")["status"], "inmigrate");
  vm.stop(10s);
  std::filesystem::remove_all(dir);
}

TEST(Vm, AgentPortShareAndConsole) {
  std::string dir = scratch_dir();
  std::filesystem::create_directory(dir + "/share");
  VmOptions o = paused_q35();
  o.config.ports = {{"agent", "rundkit.agent", {}}};
  o.config.consoles = {{"con", dir + "/hvc.log"}};
  o.config.shares = {{"ro", "rootfs", dir + "/share"}};
  Vm vm = Vm::start(std::move(o));
  std::string port = vm.port_path("rundkit.agent");
  EXPECT_EQ(port, vm.dir() + "/rundkit.agent.sock");
  // QEMU listens there (on the descriptor made before it started).
  Fd agent = connect_unix(port);
  json chardevs = vm.qmp().execute("query-chardev");
  std::set<std::string> labels;
  for (const auto &c : chardevs)
    labels.insert(c["label"].get<std::string>());
  EXPECT_TRUE(labels.count("agent")) << chardevs.dump();
  EXPECT_TRUE(labels.count("con")) << chardevs.dump();
  std::string tree = vm.qmp()
                         .execute("human-monitor-command", {{"command-line", "info qtree"}})
                         .get<std::string>();
  EXPECT_NE(tree.find("virtserialport"), std::string::npos);
  EXPECT_NE(tree.find("name = \"rundkit.agent\""), std::string::npos);
  EXPECT_NE(tree.find("mount_tag = \"rootfs\""), std::string::npos);
  vm.stop(10s);
  std::filesystem::remove_all(dir);
}

TEST(Vm, QemuStartsInsideItsCgroup) {
  if (rundkit::testing::cgroup2_mount().empty())
    GTEST_SKIP() << "no cgroup2 mount";
  rundkit::testing::ScratchCgroup2 cg("rundkit-vm-test");
  ASSERT_TRUE(cg.ok()) << "cannot make a cgroup2 directory: " << std::strerror(errno);
  VmOptions o = paused_q35();
  o.cgroup = &cg.dir();
  Vm vm = Vm::start(std::move(o));
  EXPECT_EQ(read_file(cg.path() + "/cgroup.procs"), std::to_string(vm.pid()) + "\n");
  std::string own = read_file("/proc/" + std::to_string(vm.pid()) + "/cgroup");
  EXPECT_NE(own.find("0::/" + cg.name() + "\n"), std::string::npos) << own;
}
