// VM templates with a real guest: a busybox init answers on the agent's
// virtio-serial port with its state (a counter and a value kept in guest
// memory, how often it read EOF from the port, /proc/uptime), so a test can
// see a clone continue from the template and diverge from its siblings.
// The booting tests run when RUNDKIT_TEST_GUEST_KERNEL_DIR names a
// directory with bzImage and vmlinux (the condensed guest kernel); the
// record checks need no kernel.
#include "vm/template.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/fd.h"
#include "util/process.h"
#include "testing/guest_kernel.h"
#include "vm/initramfs.h"
#include "vm/vm.h"

using namespace rundkit;
using namespace rundkit::vm;
using namespace std::chrono_literals;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

using rundkit::testing::busybox;
using rundkit::testing::guest_kernel_dir;
using rundkit::testing::test_accel;

constexpr uint64_t kMemMib = 128;
constexpr off_t kDiskBytes = 16 << 20;




std::string shm_dir(const char *what) {
  std::string t = fmt::format("/dev/shm/rundkit-{}.XXXXXX", what);
  std::vector<char> buf(t.begin(), t.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data()))
    throw Error("mkdtemp", t, errno);
  return buf.data();
}

// A new or truncated file holding `data`.
void put_file(const std::string &path, const std::string &data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  if (!out.flush())
    throw Error("write", path, errno);
}

// The guest: one line in, one line out, on the agent port.  `eofs` counts
// reads that found the host side disconnected (a read returns EOF then).
constexpr const char *kInit = R"INIT(#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
port=
for p in /sys/class/virtio-ports/*; do
  [ "$(cat $p/name)" = rundkit.agent ] && port=/dev/${p##*/}
done
echo "rundkit-tmpl: agent port $port" > /dev/ttyS0
n=0; eofs=0; var=none
exec 3<>$port
echo "ready eofs=$eofs" >&3
while :; do
  if read -r cmd arg <&3; then
    n=$((n+1))
    case $cmd in
      put) var=$arg; out=ok ;;
      fill) dd if=/dev/urandom of=/fill bs=1M count=$arg 2>/dev/null; out=filled ;;
      disk) out=$(head -c 16 /dev/vda) ;;
      share) if mount -t 9p -o trans=virtio,version=9p2000.L share /mnt; then
               out=$(cat /mnt/hello); umount /mnt
             else out=nomount; fi ;;
      keep9p) mount -t 9p -o trans=virtio,version=9p2000.L share /mnt && out=mounted ;;
      console) echo "console: $arg" > /dev/ttyS0; out=ok ;;
      *) out=echo:$cmd ;;
    esac
    echo "n=$n var=$var eofs=$eofs up=$(cut -d' ' -f1 /proc/uptime) out=$out" >&3
  else
    eofs=$((eofs+1))
    [ $eofs = 1 ] && echo "rundkit-tmpl: port EOF" > /dev/ttyS0
  fi
done
)INIT";

// The host side of the test agent.
class Agent {
public:
  explicit Agent(Fd s) : s_(std::move(s)) {}
  std::string line(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0)
        throw Error("agent read (no line)", s_.path(), ETIMEDOUT);
      struct pollfd p = {s_.get(), POLLIN, 0};
      int rc = ::poll(&p, 1, static_cast<int>(left.count()));
      if (rc < 0 && errno != EINTR)
        throw Error("poll", s_.path(), errno);
      if (rc <= 0)
        continue;
      char chunk[512];
      ssize_t n = ::read(s_.get(), chunk, sizeof(chunk));
      if (n < 0)
        throw Error("read", s_.path(), errno);
      if (n == 0)
        throw Error("agent read (port closed)", s_.path(), ECONNRESET);
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }
  // Sends `cmd` and returns the reply's fields.
  std::map<std::string, std::string> ask(const std::string &cmd,
                                         std::chrono::milliseconds timeout = 60s) {
    std::string l = cmd + "\n";
    if (::write(s_.get(), l.data(), l.size()) != static_cast<ssize_t>(l.size()))
      throw Error("write", s_.path(), errno);
    return fields(line(timeout));
  }
  static std::map<std::string, std::string> fields(const std::string &l) {
    std::map<std::string, std::string> f;
    f["line"] = l;
    std::istringstream in(l);
    std::string w;
    while (in >> w) {
      auto eq = w.find('=');
      if (eq == std::string::npos)
        continue;
      std::string k = w.substr(0, eq);
      if (k == "out") { // the rest of the line
        auto at = l.find(" out=");
        f[k] = at == std::string::npos ? w.substr(eq + 1) : l.substr(at + 5);
        break;
      }
      f[k] = w.substr(eq + 1);
    }
    return f;
  }

private:
  Fd s_;
  std::string buf_;
};

// A disk image of kDiskBytes starting with `label`, open read-write.
Fd make_disk(const std::string &path, const std::string &label) {
  Fd f = Fd::open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (::ftruncate(f.get(), kDiskBytes) < 0)
    throw Error("ftruncate", path, errno);
  if (::pwrite(f.get(), label.data(), label.size(), 0) != static_cast<ssize_t>(label.size()))
    throw Error("pwrite", path, errno);
  return f;
}

struct Kb {
  uint64_t pss = 0, rss = 0, private_dirty = 0;
};

uint64_t kb_field(const std::string &text, const std::string &key) {
  auto at = text.find("\n" + key + ":");
  if (at == std::string::npos && text.rfind(key + ":", 0) == 0)
    at = 0;
  else if (at == std::string::npos)
    return 0;
  else
    at += 1;
  return std::stoull(text.substr(at + key.size() + 1));
}

// The whole process (smaps_rollup) and the mapping of `ram` (smaps).
std::pair<Kb, Kb> memory_of(pid_t pid, const std::string &ram) {
  std::string roll = read_file(fmt::format("/proc/{}/smaps_rollup", pid));
  Kb all{kb_field(roll, "Pss"), kb_field(roll, "Rss"), kb_field(roll, "Private_Dirty")};
  std::string smaps = read_file(fmt::format("/proc/{}/smaps", pid));
  Kb r;
  auto at = smaps.find(" " + ram + "\n");
  if (at != std::string::npos) {
    auto end = smaps.find("VmFlags", at);
    std::string block = smaps.substr(at, end - at);
    r = {kb_field(block, "Pss"), kb_field(block, "Rss"), kb_field(block, "Private_Dirty")};
  }
  return {all, r};
}

// Our children, from every thread's children list.
std::vector<pid_t> children() {
  std::vector<pid_t> out;
  for (const auto &t : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in(t.path() / "children");
    pid_t p;
    while (in >> p)
      out.push_back(p);
  }
  return out;
}

// One template per machine, made once and shared by the tests.
struct Made {
  std::string scratch; // disks, shares, consoles, the initramfs
  std::string dir;     // the template
  Machine machine;
  std::string kernel, initrd, append;
  TemplateRecord record;
  std::map<std::string, std::string> last; // the template's last reply
  std::string ram_sha256;
  std::string error; // set when making it failed
  Made() = default;
  Made(const Made &) = delete;
  ~Made() {
    std::error_code ec;
    if (!dir.empty())
      std::filesystem::remove_all(dir, ec);
    if (!scratch.empty())
      std::filesystem::remove_all(scratch, ec);
  }

  // The config a VM of this template starts with: the template's devices,
  // backends named by `who` (disk image, share directory, console file).
  QemuConfig config(const std::string &who, Fd &disk) const {
    QemuConfig c;
    c.machine = machine;
    c.accel = test_accel();
    c.memory_mib = kMemMib;
    c.kernel = kernel;
    c.initrd = initrd;
    c.append = append;
    c.serials = {{Serial::Kind::file, scratch + "/console-" + who + ".log"}};
    c.ports = {{"agent", "rundkit.agent", {}}};
    std::string share = scratch + "/share-" + who;
    std::filesystem::create_directories(share);
    put_file(share + "/hello", "share of " + who);
    disk = make_disk(scratch + "/disk-" + who + ".img", "DISK-" + who + "-0123456789");
    Disk d;
    d.id = "disk";
    d.fd = disk.get();
    c.disks = {d};
    c.shares = {{"share", "share", share, true}};
    return c;
  }
};

std::map<Machine, std::unique_ptr<Made>> &made_templates() {
  static std::map<Machine, std::unique_ptr<Made>> m;
  return m;
}

// Makes the template for `m` once: boot, wait for the agent, "put tmpl",
// save.
Made &template_for(Machine m) {
  auto &all = made_templates();
  if (auto it = all.find(m); it != all.end())
    return *it->second;
  auto t = std::make_unique<Made>();
  Made &mt = *t;
  all[m] = std::move(t);
  std::string kdir = guest_kernel_dir();
  mt.machine = m;
  mt.scratch = shm_dir("tmpl-test");
  mt.dir = mt.scratch + "/T-" + to_string(m);
  mt.kernel = kdir + (m == Machine::q35 ? "/bzImage" : "/vmlinux");
  mt.append = "console=ttyS0 panic=-1 rdinit=/init quiet";
  if (m == Machine::microvm)
    mt.append += " acpi=off pci=off";
  Cpio cpio;
  for (const char *d : {"bin", "dev", "proc", "sys", "mnt"})
    cpio.add_dir(d);
  cpio.add_char_device("dev/console", 5, 1);
  cpio.add_file_from("bin/busybox", busybox(), 0755);
  cpio.add_file("init", kInit, 0755);
  mt.initrd = mt.scratch + "/initramfs.cpio";
  cpio.write_to(mt.initrd);
  try {
    Fd disk;
    VmOptions o;
    o.config = mt.config("template", disk);
    auto t0 = Clock::now();
    TemplateBuilder b = TemplateBuilder::start(mt.dir, std::string("T-") + to_string(m), o);
    Agent agent(connect_unix(b.vm().port_path("rundkit.agent")));
    std::string ready = agent.line(180s);
    auto booted = Clock::now();
    auto r = agent.ask("put tmpl");
    if (r["n"] != "1" || r["var"] != "tmpl")
      throw Error("template guest answered '" + r["line"] + "'");
    mt.last = r;
    mt.record = b.save();
    fmt::print("template {}: booted to '{}' in {} ms, saved in {} ms, state {} bytes; "
               "guest said '{}'\n",
               to_string(m), ready,
               std::chrono::duration_cast<std::chrono::milliseconds>(booted - t0).count(),
               mt.record.save_ms, mt.record.state_bytes, r["line"]);
    mt.ram_sha256 = file_sha256(mt.dir + "/ram");
  } catch (const std::exception &e) {
    mt.error = e.what();
  }
  return mt;
}

#define NEED_GUEST()                                                                              \
  do {                                                                                            \
    if (guest_kernel_dir().empty())                                                               \
      GTEST_SKIP() << "RUNDKIT_TEST_GUEST_KERNEL_DIR does not name a directory with bzImage and " \
                      "vmlinux";                                                                  \
    if (busybox().empty())                                                                        \
      GTEST_SKIP() << "no busybox (apt-get install busybox-static)";                              \
  } while (0)

// Dropped in reverse: QEMU first, then the agent's socket, then the disk.
struct Running {
  Fd disk;
  std::unique_ptr<Agent> agent;
  std::optional<Clone> clone;
};

Running restore_clone(const Made &mt, const std::string &who, bool connect_first = true) {
  Template t = Template::open(mt.dir);
  Running r;
  VmOptions o;
  o.config = mt.config(who, r.disk);
  RestoreOptions ro;
  std::unique_ptr<Agent> agent;
  if (connect_first) {
    ro.before_load = [&](Vm &vm) {
      agent = std::make_unique<Agent>(connect_unix(vm.port_path("rundkit.agent")));
    };
    ro.connected_ports = {"agent"};
  }
  r.clone.emplace(t.restore(std::move(o), ro));
  if (!agent)
    agent = std::make_unique<Agent>(connect_unix(r.clone->vm.port_path("rundkit.agent")));
  r.agent = std::move(agent);
  return r;
}

class TemplateBoot : public ::testing::TestWithParam<Machine> {};

} // namespace

// (a) a template is ram + state + template.json, the state small; (b) two
// clones answer on their own ports, continue from the template's state and
// diverge; the disk, share and console are each clone's own; (c) the RAM
// file never changes; (f) a clone's host memory right after restore.
TEST_P(TemplateBoot, TwoClonesContinueAndDiverge) {
  NEED_GUEST();
  Made &mt = template_for(GetParam());
  ASSERT_TRUE(mt.error.empty()) << mt.error;
  // (a)
  for (const char *f : {"ram", "state", "template.json"})
    EXPECT_TRUE(std::filesystem::exists(mt.dir + "/" + f)) << f;
  EXPECT_EQ(std::filesystem::file_size(mt.dir + "/ram"), kMemMib << 20);
  uint64_t state = std::filesystem::file_size(mt.dir + "/state");
  EXPECT_LT(state, 4u << 20) << "guest RAM in the state file?";
  EXPECT_EQ(state, mt.record.state_bytes);
  std::vector<std::string> leftovers;
  for (const auto &e : std::filesystem::directory_iterator(mt.dir))
    leftovers.push_back(e.path().filename());
  EXPECT_EQ(leftovers.size(), 3u) << fmt::format("{}", fmt::join(leftovers, " "));
  Template t = Template::open(mt.dir);
  EXPECT_EQ(t.record().qemu_version.substr(0, 2), "7.");
  EXPECT_EQ(t.record().memory_mib, kMemMib);
  EXPECT_EQ(t.record().devices.size(), 4u) << to_json(t.record()).dump();
  EXPECT_EQ(t.record().kernel->sha256, file_sha256(mt.kernel));

  // (b)
  Running a = restore_clone(mt, "a");
  Running b = restore_clone(mt, "b");
  for (auto *c : {&a, &b}) {
    const RestoreTimes &tm = c->clone->times;
    fmt::print("{} clone restore: check {} us, spawn+QMP {} us, connect {} us, load {} us, "
               "cont {} us, total {} us\n",
               to_string(mt.machine), tm.check_us, tm.spawn_us, tm.hook_us, tm.load_us,
               tm.resume_us, tm.total_us);
    EXPECT_LT(tm.load_us, 1'000'000u) << "guest RAM copied?";
  }
  // (f) before the guests do anything
  for (auto *c : {&a, &b}) {
    auto [all, ram] = memory_of(c->clone->vm.pid(), t.ram_path());
    fmt::print("{} clone pid {} after restore: PSS {} KiB (RSS {}, private dirty {}); "
               "RAM mapping: PSS {} KiB, RSS {}, private dirty {} of {} MiB\n",
               to_string(mt.machine), c->clone->vm.pid(), all.pss, all.rss, all.private_dirty,
               ram.pss, ram.rss, ram.private_dirty, kMemMib);
    EXPECT_GT(ram.rss + 1, 0u);
    EXPECT_LT(ram.private_dirty, 16u << 10) << "guest RAM copied into the clone";
    EXPECT_LT(all.pss, kMemMib << 10) << "clone PSS not below its RAM size";
  }
  auto ra = a.agent->ask("ping");
  auto rb = b.agent->ask("ping");
  for (auto *r : {&ra, &rb}) {
    EXPECT_EQ((*r)["n"], "2") << (*r)["line"] << " (the template answered n=1)";
    EXPECT_EQ((*r)["var"], "tmpl") << (*r)["line"];
    EXPECT_EQ((*r)["eofs"], mt.last["eofs"]) << "the guest saw its host disconnect: "
                                             << (*r)["line"];
    EXPECT_GE(std::stod((*r)["up"]), std::stod(mt.last["up"])) << (*r)["line"];
  }
  fmt::print("clone a: '{}'\nclone b: '{}'\n", ra["line"], rb["line"]);
  EXPECT_EQ(a.agent->ask("put aaa")["out"], "ok");
  EXPECT_EQ(b.agent->ask("put bbb")["out"], "ok");
  EXPECT_EQ(a.agent->ask("fill 8", 120s)["out"], "filled");
  EXPECT_EQ(b.agent->ask("fill 8", 120s)["out"], "filled");
  ra = a.agent->ask("ping");
  rb = b.agent->ask("ping");
  EXPECT_EQ(ra["var"], "aaa") << ra["line"];
  EXPECT_EQ(rb["var"], "bbb") << rb["line"];
  EXPECT_EQ(ra["n"], "5");
  EXPECT_EQ(rb["n"], "5");
  // Each clone's own disk (read through the guest's block layer), share
  // and console.
  EXPECT_EQ(a.agent->ask("disk")["out"], "DISK-a-012345678");
  EXPECT_EQ(b.agent->ask("disk")["out"], "DISK-b-012345678");
  EXPECT_EQ(a.agent->ask("share")["out"], "share of a");
  EXPECT_EQ(b.agent->ask("share")["out"], "share of b");
  EXPECT_EQ(a.agent->ask("console from-a")["out"], "ok");
  EXPECT_EQ(b.agent->ask("console from-b")["out"], "ok");
  std::string ca = read_file(mt.scratch + "/console-a.log");
  std::string cb = read_file(mt.scratch + "/console-b.log");
  EXPECT_NE(ca.find("console: from-a"), std::string::npos) << ca;
  EXPECT_EQ(ca.find("from-b"), std::string::npos) << ca;
  EXPECT_NE(cb.find("console: from-b"), std::string::npos) << cb;
  EXPECT_EQ(read_file(mt.scratch + "/console-template.log").find("from-"), std::string::npos);
  for (auto *c : {&a, &b}) {
    auto [all, ram] = memory_of(c->clone->vm.pid(), t.ram_path());
    fmt::print("{} clone pid {} after 8 MiB written: PSS {} KiB; RAM mapping PSS {} KiB, "
               "private dirty {} KiB\n",
               to_string(mt.machine), c->clone->vm.pid(), all.pss, ram.pss, ram.private_dirty);
    EXPECT_GE(ram.private_dirty, 8u << 10) << "the guest's writes are not the clone's own";
  }
  // (c)
  EXPECT_EQ(file_sha256(t.ram_path()), mt.ram_sha256) << "a clone changed the template's RAM";
  EXPECT_EQ(a.clone->vm.stop(10s), ExitStatus::exited(0));
  EXPECT_EQ(b.clone->vm.stop(10s), ExitStatus::exited(0));
  EXPECT_EQ(file_sha256(t.ram_path()), mt.ram_sha256);
}

INSTANTIATE_TEST_SUITE_P(GuestKernel, TemplateBoot,
                         ::testing::Values(Machine::microvm, Machine::q35),
                         [](const auto &info) { return std::string(to_string(info.param)); });

// Restored without its agent port connected first: the guest's reads of
// the port return EOF until the host connects (tells the agent's author
// what a late connect costs).  The guest says so on its console once.
TEST(TemplateRestore, LateConnectIsSeenByTheGuest) {
  NEED_GUEST();
  Made &mt = template_for(Machine::microvm);
  ASSERT_TRUE(mt.error.empty()) << mt.error;
  std::string console = mt.scratch + "/console-late.log";
  Fd in(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK), "inotify");
  ASSERT_TRUE(in.valid());
  Template t = Template::open(mt.dir);
  Fd disk;
  VmOptions o;
  o.config = mt.config("late", disk);
  put_file(console, "");
  ASSERT_GE(::inotify_add_watch(in.get(), console.c_str(), IN_MODIFY), 0);
  Clone c = t.restore(std::move(o));
  auto deadline = Clock::now() + 30s;
  std::string text;
  while ((text = read_file(console)).find("port EOF") == std::string::npos) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    ASSERT_GT(left.count(), 0) << "the guest saw no EOF within 30 s; console: " << text;
    struct pollfd p = {in.get(), POLLIN, 0};
    ASSERT_GE(::poll(&p, 1, static_cast<int>(left.count())), 0);
    char buf[4096];
    while (::read(in.get(), buf, sizeof(buf)) > 0) {
    }
  }
  Agent agent(connect_unix(c.vm.port_path("rundkit.agent")));
  auto r = agent.ask("ping");
  fmt::print("late-connected clone: '{}' (the template had eofs={})\n", r["line"],
             mt.last["eofs"]);
  EXPECT_EQ(r["var"], "tmpl");
  EXPECT_NE(r["eofs"], "0") << r["line"];
}

// A port that must be connected before the state loads and is not: the
// restore stops there, QEMU gone.
TEST(TemplateRestore, UnconnectedRequiredPortIsAnError) {
  NEED_GUEST();
  Made &mt = template_for(Machine::microvm);
  ASSERT_TRUE(mt.error.empty()) << mt.error;
  Fd disk;
  VmOptions o;
  o.config = mt.config("unconnected", disk);
  RestoreOptions ro;
  ro.connected_ports = {"agent"};
  try {
    Template::open(mt.dir).restore(o, ro);
    FAIL() << "restored";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("nothing connected to port 'agent'"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(children().empty()) << "a QEMU is left";
}

// QEMU 7.2 blocks migration while a 9p share is mounted in the guest: a
// template is made with its share unmounted.  save() says so and the
// template directory goes.
TEST(TemplateRestore, MountedShareBlocksTheSave) {
  NEED_GUEST();
  Made &mt = template_for(Machine::microvm);
  ASSERT_TRUE(mt.error.empty()) << mt.error;
  std::string dir = mt.scratch + "/T-mounted";
  {
    Fd disk;
    VmOptions o;
    o.config = mt.config("mounted", disk);
    TemplateBuilder b = TemplateBuilder::start(dir, "T-mounted", o);
    Agent agent(connect_unix(b.vm().port_path("rundkit.agent")));
    agent.line(180s);
    ASSERT_EQ(agent.ask("keep9p")["out"], "mounted");
    try {
      b.save();
      FAIL() << "saved with the share mounted";
    } catch (const Error &e) {
      fmt::print("mounted share: {}\n", e.what());
      EXPECT_NE(std::string(e.what()).find("VirtFS"), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_TRUE(children().empty());
}

// (e) a truncated state is refused before QEMU starts; a damaged one that
// QEMU itself rejects leaves no QEMU behind.
TEST(TemplateRestore, DamagedStateIsRefusedAndLeavesNoQemu) {
  NEED_GUEST();
  Made &mt = template_for(Machine::microvm);
  ASSERT_TRUE(mt.error.empty()) << mt.error;
  std::string bad = mt.scratch + "/T-bad";
  std::filesystem::create_directory(bad);
  // The same RAM (a clone never writes it), a copy of the rest.
  ASSERT_EQ(::link((mt.dir + "/ram").c_str(), (bad + "/ram").c_str()), 0);
  std::string st = read_file(mt.dir + "/state");
  json rec = json::parse(read_file(mt.dir + "/template.json"));

  put_file(bad + "/state", st.substr(0, st.size() / 2));
  put_file(bad + "/template.json", rec.dump());
  Fd disk;
  VmOptions o;
  o.config = mt.config("bad", disk);
  o.config.binary = "/nonexistent/qemu"; // proof that QEMU is never started
  try {
    Template::open(bad).restore(o);
    FAIL() << "a truncated state restored";
  } catch (const InputError &e) {
    std::string w = e.what();
    EXPECT_NE(w.find("damaged"), std::string::npos) << w;
    EXPECT_NE(w.find(bad + "/state"), std::string::npos) << w;
  }

  // Damage QEMU has to find: a state cut short, with a record that agrees.
  // (Its last few KiB are the vmdesc JSON, which the loader skips: cut into
  // the device sections.)
  std::string cut = st.substr(0, st.size() / 2);
  put_file(bad + "/state", cut);
  std::string sum = file_sha256(bad + "/state");
  rec["state_bytes"] = cut.size();
  rec["state_sha256"] = sum;
  std::filesystem::remove(bad + "/template.json");
  put_file(bad + "/template.json", rec.dump());
  o.config.binary = "qemu-system-x86_64";
  ASSERT_TRUE(children().empty());
  try {
    Template::open(bad).restore(o);
    FAIL() << "a damaged state restored";
  } catch (const InputError &e) {
    FAIL() << "refused as input, not by QEMU: " << e.what();
  } catch (const Error &e) {
    std::string w = e.what();
    fmt::print("damaged state: {}\n", w);
    EXPECT_NE(w.find("restore of template"), std::string::npos) << w;
    EXPECT_NE(w.find("load of migration failed"), std::string::npos) << w;
  }
  EXPECT_TRUE(children().empty()) << "a QEMU is left";
}

// An interrupted template: no template.json, never taken for a template.
TEST(TemplateRecordTest, UnfinishedTemplateIsRefused) {
  std::string d = shm_dir("tmpl-unfinished");
  put_file(d + "/ram", "");
  try {
    Template::open(d);
    FAIL();
  } catch (const InputError &e) {
    EXPECT_NE(std::string(e.what()).find("unfinished"), std::string::npos) << e.what();
  }
  std::filesystem::remove(d + "/ram");
  EXPECT_THROW(Template::open(d), InputError);
  put_file(d + "/template.json", "{\"format\": 1");
  try {
    Template::open(d);
    FAIL();
  } catch (const InputError &e) {
    EXPECT_NE(std::string(e.what()).find("damaged"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(d);
}

TEST(TemplateRecordTest, BuilderRefusesDiskBackedDirAndLeavesNothing) {
  VmOptions o;
  o.config.paused = true;
  o.config.memory_mib = 64;
  char tmpl[] = "/var/tmp/rundkit-tmpl-test.XXXXXX";
  std::string parent = ::mkdtemp(tmpl);
  struct statfs sf;
  ASSERT_EQ(::statfs(parent.c_str(), &sf), 0);
  if (sf.f_type != 0x01021994) { // not tmpfs
    try {
      TemplateBuilder::start(parent + "/T", "T", o);
      FAIL();
    } catch (const InputError &e) {
      EXPECT_NE(std::string(e.what()).find("not on tmpfs"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(parent + "/T"));
  }
  std::filesystem::remove_all(parent);
  // QEMU that cannot start: the directory goes again.
  std::string d = shm_dir("tmpl-builder");
  o.config.binary = "/nonexistent/qemu";
  EXPECT_THROW(TemplateBuilder::start(d + "/T", "T", o), Error);
  EXPECT_FALSE(std::filesystem::exists(d + "/T"));
  std::filesystem::remove_all(d);
}

// (d) a clone whose config differs from the template's is refused before
// QEMU starts, each mismatch named.  The record is made from the config
// alone (describe_config), as TemplateBuilder makes it.
TEST(TemplateRecordTest, MismatchesAreNamedBeforeQemuStarts) {
  std::string d = shm_dir("tmpl-record");
  std::string kernel = d + "/vmlinux";
  put_file(kernel, std::string(4096, 'k'));
  std::string disk = d + "/disk.img";
  make_disk(disk, "x");
  QemuConfig c;
  c.machine = Machine::microvm;
  c.memory_mib = 128;
  c.kernel = kernel;
  c.append = "console=ttyS0";
  c.ports = {{"agent", "rundkit.agent", {}}};
  Disk dk;
  dk.id = "disk";
  dk.path = disk;
  c.disks = {dk};
  c.shares = {{"share", "share", d, true}};
  TemplateRecord r = describe_config(c);
  r.name = "T";
  r.qemu_version = "7.2.22";
  std::string tdir = d + "/T";
  std::filesystem::create_directory(tdir);
  put_file(tdir + "/template.json", to_json(r).dump());
  Template t = Template::open(tdir);
  EXPECT_TRUE(t.mismatches(c).empty()) << fmt::format("{}", fmt::join(t.mismatches(c), "; "));

  // Another share directory and another disk of the same size fit.
  QemuConfig other = c;
  other.shares[0].path = "/";
  std::string disk2 = d + "/disk2.img";
  make_disk(disk2, "y");
  other.disks[0].path = disk2;
  EXPECT_TRUE(t.mismatches(other).empty())
      << fmt::format("{}", fmt::join(t.mismatches(other), "; "));

  auto refused = [&](QemuConfig bad, const std::vector<std::string> &words) {
    bad.binary = "/nonexistent/qemu"; // an attempt to start QEMU would say "exec"
    VmOptions o;
    o.config = bad;
    try {
      t.restore(o);
      ADD_FAILURE() << "restored";
    } catch (const InputError &e) {
      for (const auto &w : words)
        EXPECT_NE(std::string(e.what()).find(w), std::string::npos)
            << "'" << w << "' not in: " << e.what();
    } catch (const Error &e) {
      ADD_FAILURE() << "not refused as input: " << e.what();
    }
  };
  QemuConfig m = c;
  m.memory_mib = 256;
  refused(m, {"template T was made with memory 128M, the sandbox asks 256M"});
  m = c;
  m.cpus = 2;
  refused(m, {"template T was made with vCPUs 1, the sandbox asks 2"});
  m = c;
  m.machine = Machine::q35;
  m.memory_mib = 64;
  refused(m, {"machine microvm, the sandbox asks q35", "memory 128M, the sandbox asks 64M"});
  m = c;
  m.append += " quiet";
  refused(m, {"kernel command line"});
  m = c;
  m.ports[0].name = "other";
  refused(m, {"virtserialport 'agent' (name=rundkit.agent) as #1, the sandbox asks "
              "virtserialport 'agent' (name=other)"});
  m = c;
  m.shares.clear();
  refused(m, {"has device virtio-9p 'share'", "the sandbox does not"});
  m = c;
  std::string small = d + "/small.img";
  put_file(small, "tiny");
  m.disks[0].path = small;
  refused(m, {"virtio-blk 'disk' (size=16777216 readonly=off)", "(size=4 readonly=off)"});
  // A qcow2 overlay is the size its header says, not its file's length.
  {
    std::string overlay = d + "/overlay.qcow2";
    run_capture({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", disk, overlay});
    m = c;
    m.disks[0].path = overlay;
    m.disks[0].format = DiskFormat::qcow2;
    EXPECT_TRUE(t.mismatches(m).empty()) << fmt::format("{}", fmt::join(t.mismatches(m), "; "));
    m.disks[0].path = small;
    refused(m, {"not a qcow2 image"});
  }
  // The kernel file's contents, changed in place.
  {
    Fd k = Fd::open(kernel, O_WRONLY);
    ASSERT_EQ(::pwrite(k.get(), "K", 1, 100), 1);
  }
  refused(c, {fmt::format("kernel '{}' changed since template T was made (sha256 {} then, {} now)",
                          kernel, r.kernel->sha256, file_sha256(kernel))});
  // A copy of the original elsewhere is the same kernel.
  std::string copy = d + "/vmlinux.copy";
  put_file(copy, std::string(4096, 'k'));
  m = c;
  m.kernel = copy;
  EXPECT_TRUE(t.mismatches(m).empty()) << fmt::format("{}", fmt::join(t.mismatches(m), "; "));
  std::filesystem::remove_all(d);
}

TEST(TemplateRecordTest, JsonRoundTrip) {
  TemplateRecord r;
  r.name = "T";
  r.created = "2024-01-01T00:00:00Z";
  r.qemu_version = "7.2.22 (Debian)";
  r.machine = "microvm";
  r.accel = "tcg";
  r.cpu_model = "max";
  r.cpus = 1;
  r.memory_mib = 128;
  r.kernel = FileRecord{"/k", 3, "abc", "1:2:3:4:5"};
  r.devices = {{"virtio-blk", "disk", "size=1 readonly=off"}};
  r.argv = {"qemu", "-m", "128M"};
  r.state_bytes = 1000;
  r.state_sha256 = "00";
  json j = to_json(r);
  TemplateRecord back = template_record_from_json(j, "t.json");
  EXPECT_EQ(to_json(back), j);
  j.erase("memory_mib");
  try {
    template_record_from_json(j, "t.json");
    FAIL();
  } catch (const InputError &e) {
    EXPECT_STREQ(e.what(), "t.json: no field 'memory_mib'");
  }
}
