#include "sandbox/runtime.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "agent/client.h"
#include "agent/initramfs.h"
#include "cgroup/layout.h"
#include "storage/image.h"
#include "storage/layer.h"
#include "storage/mount_table.h"
#include "storage/rolayer.h"
#include "util/cli.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/temp.h"
#include "vm/accel.h"
#include "vm/qemu.h"
#include "vm/template.h"
#include "vm/vm.h"

namespace rundkit::sandbox {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

void require_root() {
  if (::geteuid() != 0)
    throw Error("rundctl needs root (cgroups, mounts, loop devices, the layer directory)");
}

constexpr const char *kRecord = "record.json";
constexpr const char *kTemplateMeta = "rundctl.json";
constexpr const char *kAgentInitrd = "agent.cpio";
constexpr const char *kView = "rootfs";
constexpr const char *kShareTag = "rundkit.rootfs";
// LAYERDIR/NAME.ext4.owner: the state directory whose template the image is.
constexpr const char *kImageOwnerSuffix = ".owner";
// microvm: no ACPI and no PCI (virtio over MMIO); the console is the
// legacy UART, written to a file.  q35: the same, with the ACPI and PCI a
// distro kernel expects.
constexpr const char *kGuestAppend =
    "console=ttyS0 panic=-1 rdinit=/init quiet acpi=off pci=off reboot=t";
constexpr const char *kGuestAppendQ35 = "console=ttyS0 panic=-1 rdinit=/init quiet reboot=t";
// The host cgroup enforces CPU time; the guest's memory is bounded by its
// RAM size and the agent's guest cgroup enforces the sandbox's limits.
constexpr milliseconds kAgentShutdownWait{5000};

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  std::tm tm;
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

uint64_t us_since(Clock::time_point t0) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
}

// ".NAME.PID-START": where a directory is made before its rename into
// place; gc removes those whose maker is gone.
std::string staging_name(const std::string &name, const ProcessId &self) {
  return fmt::format(".{}.{}-{}", name, self.pid, self.start);
}

std::optional<ProcessId> staging_owner(const std::string &entry) {
  if (entry.size() < 2 || entry[0] != '.')
    return std::nullopt;
  auto dot = entry.rfind('.');
  auto dash = entry.rfind('-');
  if (dot == 0 || dash == std::string::npos || dash < dot)
    return std::nullopt;
  try {
    size_t used = 0;
    std::string pid = entry.substr(dot + 1, dash - dot - 1), start = entry.substr(dash + 1);
    ProcessId p{static_cast<pid_t>(std::stol(pid, &used)), 0};
    if (used != pid.size())
      return std::nullopt;
    p.start = std::stoull(start, &used);
    if (used != start.size())
      return std::nullopt;
    return p;
  } catch (const std::exception &) {
    return std::nullopt;
  }
}

bool is_tmpfs(const std::string &path) {
  struct statfs s;
  return ::statfs(path.c_str(), &s) == 0 &&
         (s.f_type == 0x01021994 /* TMPFS_MAGIC */ || s.f_type == 0x958458f6 /* HUGETLBFS */);
}

// flock(2) on a directory: the sandbox's (or template's) one worker.
class DirLock {
public:
  // Opens `path` and locks it (waiting, or not: nothing if busy).  Error if
  // it does not exist.
  static std::optional<DirLock> take(const std::string &path, bool wait) {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
      throw Error("open", path, errno);
    DirLock l(Fd(fd, path));
    while (::flock(l.fd_.get(), LOCK_EX | (wait ? 0 : LOCK_NB)) < 0) {
      if (errno == EWOULDBLOCK && !wait)
        return std::nullopt;
      if (errno != EINTR)
        throw Error("flock", path, errno);
    }
    return l;
  }
  // Whether `path` still names the directory locked (not one made under
  // the same name after it was removed).
  bool still_at(const std::string &path) const {
    struct stat a, b;
    return ::fstat(fd_.get(), &a) == 0 && ::stat(path.c_str(), &b) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
  }
  const Fd &fd() const { return fd_; }

private:
  explicit DirLock(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;
};

// What rundctl adds to a vm::Template: how its sandboxes are configured.
struct TemplateMeta {
  std::string name;
  std::string kernel;
  uint64_t memory_mib = 0;
  unsigned cpus = 0;
  uint64_t layer_bytes = 0;
  std::string layer_image;
  std::string accel;
  std::string machine = "microvm";
  std::string modules;
  uint64_t boot_ms = 0;
  uint64_t save_ms = 0;

  nlohmann::json to_json() const {
    return {{"name", name},         {"kernel", kernel},   {"memory_mib", memory_mib},
            {"cpus", cpus},         {"layer_bytes", layer_bytes},
            {"layer_image", layer_image}, {"accel", accel}, {"machine", machine},
            {"modules", modules},   {"boot_ms", boot_ms}, {"save_ms", save_ms}};
  }
  static TemplateMeta from(const nlohmann::json &j, const std::string &what) {
    try {
      TemplateMeta m;
      m.name = j.at("name").get<std::string>();
      m.kernel = j.at("kernel").get<std::string>();
      m.memory_mib = j.at("memory_mib").get<uint64_t>();
      m.cpus = j.at("cpus").get<unsigned>();
      m.layer_bytes = j.at("layer_bytes").get<uint64_t>();
      m.layer_image = j.at("layer_image").get<std::string>();
      m.accel = j.at("accel").get<std::string>();
      m.machine = j.value("machine", std::string("microvm"));
      vm::parse_machine(m.machine);
      m.modules = j.value("modules", std::string());
      m.boot_ms = j.value("boot_ms", uint64_t{0});
      m.save_ms = j.value("save_ms", uint64_t{0});
      return m;
    } catch (const nlohmann::json::exception &e) {
      throw InputError(fmt::format("damaged template record '{}': {}", what, e.what()));
    } catch (const InputError &e) {
      throw InputError(fmt::format("damaged template record '{}': {}", what, e.what()));
    }
  }
};

// The one device set of every VM of a template, the template's own
// included: a UART console, the agent's port, the writable layer and the
// read-only share.  Only the backends differ between VMs.
vm::QemuConfig guest_config(const RuntimeOptions &o, const TemplateMeta &m,
                            const std::string &initrd, const std::string &console, int layer_fd,
                            const std::string &share) {
  vm::QemuConfig c;
  c.binary = o.qemu;
  c.machine = vm::parse_machine(m.machine);
  c.accel = vm::parse_accel(m.accel);
  c.tcg_tb_mib = o.tcg_tb_mib;
  c.cpus = m.cpus;
  c.memory_mib = m.memory_mib;
  c.kernel = m.kernel;
  c.initrd = initrd;
  c.append = c.machine == vm::Machine::q35 ? kGuestAppendQ35 : kGuestAppend;
  c.serials = {{vm::Serial::Kind::file, console}};
  c.ports = {{"agent", agent::kPortName, {}}};
  vm::Disk d;
  d.id = "layer";
  d.fd = layer_fd;
  d.direct = true;
  c.disks = {d};
  c.shares = {{"rootfs", kShareTag, share, true}};
  return c;
}

// A qcow2 overlay over `backing` (raw), as a plain QEMU set-up makes a
// sandbox's writable disk: made by qemu-img in a nameless file of the
// layer directory (O_TMPFILE, reopened by qemu-img through /proc/self/fd),
// so nothing of it outlives the sandbox's QEMU, whatever kills whom.
Fd make_qcow2_overlay(const RuntimeOptions &o, const std::string &backing) {
  int fd = ::open(o.layer_dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0)
    throw Error("open O_TMPFILE", o.layer_dir, errno);
  Fd overlay(fd, o.layer_dir + " (qcow2 overlay)");
  constexpr int kChildFd = 3;
  SpawnOptions so;
  so.argv = {o.qemu_img, "create", "-q",    "-f", "qcow2", "-F", "raw", "-b", backing,
             fmt::format("/proc/self/fd/{}", kChildFd)};
  so.pass_fds = {{overlay.get(), kChildFd}};
  RunResult r = run(so, milliseconds(30000));
  if (!r.status.ok())
    throw Error(fmt::format("qemu-img create (qcow2 overlay over {}) {}: {}", backing,
                            r.status.describe(), r.stderr_tail));
  return overlay;
}

// The last lines of a guest's console file, joined with " | " (at most
// 500 characters); empty if there is none or nothing in it.
std::string console_tail(const std::string &path) {
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error &) {
    return "";
  }
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
      line.pop_back();
    if (!line.empty())
      lines.push_back(line);
  }
  size_t first = lines.size() > 3 ? lines.size() - 3 : 0;
  std::string out;
  for (size_t i = first; i < lines.size(); ++i)
    out += (out.empty() ? "" : " | ") + lines[i];
  if (out.size() > 500)
    out = "..." + out.substr(out.size() - 497);
  return out;
}

// Rethrows the exception being handled, `e`; a failure of the guest (not
// of the input) with what its console said added to the message.
[[noreturn]] void rethrow_with_console(const std::exception &e, const std::string &console) {
  if (!console.empty() && !dynamic_cast<const InputError *>(&e))
    throw Error(fmt::format("{} (guest console: {})", e.what(), console));
  throw;
}

std::string agent_binary(const RuntimeOptions &o) {
  if (!o.agent.empty()) {
    if (::access(o.agent.c_str(), R_OK) < 0)
      throw InputError(fmt::format("guest agent '{}': {}", o.agent, std::strerror(errno)));
    return o.agent;
  }
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  for (const auto &cand : {self.parent_path() / "rundkit-agent",
                           self.parent_path() / "agent" / "rundkit-agent"})
    if (!ec && fs::exists(cand))
      return cand.string();
  throw InputError("no guest agent: rundkit-agent is not next to rundctl; give --agent PATH");
}

uint64_t smaps_field_kib(const std::string &text, const std::string &key) {
  auto at = text.find("\n" + key + ":");
  if (at == std::string::npos)
    return 0;
  return std::stoull(text.substr(at + key.size() + 2));
}

} // namespace

void validate_sandbox_name(const std::string &name, const char *what) {
  check_object_name(name, what, 40);
}

// --- JSON ---------------------------------------------------------------

nlohmann::json to_json(const TemplateSummary &t) {
  return {{"name", t.name},
          {"dir", t.dir},
          {"layer_image", t.layer_image},
          {"memory_mib", t.memory_mib},
          {"cpus", t.cpus},
          {"layer_bytes", t.layer_bytes},
          {"accel", t.accel},
          {"machine", t.machine},
          {"kernel", t.kernel},
          {"modules", t.modules},
          {"boot_ms", t.boot_ms},
          {"save_ms", t.save_ms},
          {"state_bytes", t.state_bytes},
          {"ram_bytes_allocated", t.ram_bytes_allocated},
          {"sandboxes", t.users}};
}

nlohmann::json to_json(const SandboxRecord &r) {
  auto opt = [](const auto &v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  const PhaseTimes &t = r.times;
  return {{"name", r.name},
          {"phase", r.phase},
          {"template", r.template_name},
          {"created", r.created},
          {"actor", rundkit::to_json(r.actor)},
          {"qemu", r.qemu ? rundkit::to_json(*r.qemu) : nlohmann::json(nullptr)},
          {"cgroup_parent", r.cgroup_parent},
          {"claim", r.claim},
          {"backend", r.backend},
          {"cgroups", r.cgroups},
          {"pool_hit", r.pool_hit},
          {"layers", r.layers},
          {"view", r.view},
          {"command", r.command},
          {"cpus", opt(r.cpus)},
          {"memory_bytes", opt(r.memory_bytes)},
          {"pids", opt(r.pids)},
          {"cold", r.cold},
          {"writable", r.writable},
          {"accel", r.accel},
          {"times_us",
           {{"checked", t.checked_us},
            {"cgroup", t.cgroup_us},
            {"layer", t.layer_us},
            {"view", t.view_us},
            {"spawn", t.spawn_us},
            {"restore", t.restore_us},
            {"agent", t.agent_us}}},
          {"guest_pid", r.guest_pid},
          {"guest_times_ns", r.guest_times}};
}

SandboxRecord sandbox_record_from_json(const nlohmann::json &j, const std::string &what) {
  try {
    SandboxRecord r;
    r.name = j.at("name").get<std::string>();
    r.phase = j.at("phase").get<std::string>();
    r.template_name = j.at("template").get<std::string>();
    r.created = j.at("created").get<std::string>();
    r.actor = process_id_from_json(j.at("actor"));
    if (!j.at("qemu").is_null())
      r.qemu = process_id_from_json(j.at("qemu"));
    r.cgroup_parent = j.at("cgroup_parent").get<std::string>();
    r.claim = j.at("claim").get<std::string>();
    r.backend = j.at("backend").get<std::string>();
    r.cgroups = j.at("cgroups").get<std::vector<std::string>>();
    r.pool_hit = j.at("pool_hit").get<bool>();
    r.layers = j.at("layers").get<std::vector<std::string>>();
    r.view = j.at("view").get<std::string>();
    r.command = j.at("command").get<std::vector<std::string>>();
    if (!j.at("cpus").is_null())
      r.cpus = j.at("cpus").get<double>();
    if (!j.at("memory_bytes").is_null())
      r.memory_bytes = j.at("memory_bytes").get<uint64_t>();
    if (!j.at("pids").is_null())
      r.pids = j.at("pids").get<int64_t>();
    r.cold = j.at("cold").get<bool>();
    r.writable = j.value("writable", std::string("reflink"));
    r.accel = j.at("accel").get<std::string>();
    const auto &t = j.at("times_us");
    r.times = {t.at("checked").get<uint64_t>(), t.at("cgroup").get<uint64_t>(),
               t.at("layer").get<uint64_t>(),   t.at("view").get<uint64_t>(),
               t.at("spawn").get<uint64_t>(),   t.at("restore").get<uint64_t>(),
               t.at("agent").get<uint64_t>()};
    r.guest_pid = j.at("guest_pid").get<int>();
    r.guest_times = j.at("guest_times_ns").get<std::vector<int64_t>>();
    return r;
  } catch (const nlohmann::json::exception &e) {
    throw InputError(fmt::format("damaged sandbox record '{}': {}", what, e.what()));
  }
}

nlohmann::json to_json(const SandboxStatus &s) {
  nlohmann::json j = to_json(s.record);
  j["qemu_alive"] = s.qemu_alive;
  j["pss_kib"] = s.pss_kib;
  j["rss_kib"] = s.rss_kib;
  return j;
}

nlohmann::json to_json(const ExecOutcome &e) {
  return {{"status", e.status.describe()},
          {"exit_code", e.status.shell_code()},
          {"timed_out", e.timed_out},
          {"stdout", e.out},
          {"stderr", e.err}};
}

nlohmann::json to_json(const GcOutcome &g) {
  return {{"removed", g.removed}, {"kept", g.kept}, {"failed", g.failed}};
}

// --- the runtime ----------------------------------------------------------

struct Runtime::Impl {
  const RuntimeOptions &o;
  std::string templates, sandboxes;

  explicit Impl(const RuntimeOptions &opts)
      : o(opts), templates(opts.state_root + "/templates"),
        sandboxes(opts.state_root + "/sandboxes") {}

  // The state root and its two directories, made on first use.  /run on
  // some hosts is a disk: records must vanish with the processes and
  // mounts they describe, and template RAM must never be written back.
  void ensure_state() const {
    // Checked before anything is made there.
    std::error_code ec;
    std::string where = fs::exists(o.state_root, ec)
                            ? o.state_root
                            : fs::path(o.state_root).parent_path().string();
    if (!is_tmpfs(where))
      throw InputError(fmt::format(
          "state directory '{}' is not on tmpfs: template RAM there would be written back to "
          "disk (mount -t tmpfs tmpfs {} or --state-dir on tmpfs)",
          o.state_root, o.state_root));
    for (const auto &d : {o.state_root, templates, sandboxes}) {
      if (::mkdir(d.c_str(), 0700) < 0 && errno != EEXIST)
        throw Error("mkdir", d, errno);
    }
  }

  std::unique_ptr<Backend> backend() const {
    return make_backend(o.cgroups, detect_layout(o.cgroups.layout));
  }

  std::string template_dir(const std::string &name) const { return templates + "/" + name; }
  std::string sandbox_dir(const std::string &name) const { return sandboxes + "/" + name; }

  TemplateMeta read_meta(const std::string &name) const {
    std::string dir = template_dir(name);
    std::string path = dir + "/" + kTemplateMeta;
    if (!fs::exists(dir))
      throw InputError(fmt::format("no template named '{}' (rundctl template list)", name));
    std::string text;
    try {
      text = read_file(path);
    } catch (const Error &e) {
      throw InputError(fmt::format("template '{}' is unfinished or damaged ({}): remove it",
                                   name, e.what()));
    }
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded())
      throw InputError(fmt::format("damaged template record '{}'", path));
    return TemplateMeta::from(j, path);
  }

  std::optional<SandboxRecord> read_record(const std::string &name) const {
    std::string path = sandbox_dir(name) + "/" + kRecord;
    std::string text;
    try {
      text = read_file(path);
    } catch (const Error &e) {
      if (e.err() == ENOENT)
        return std::nullopt;
      throw;
    }
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded())
      throw InputError(fmt::format("damaged sandbox record '{}'", path));
    return sandbox_record_from_json(j, path);
  }

  void write_record(const std::string &dir, const SandboxRecord &r) const {
    write_file_staged(dir + "/" + kRecord, to_json(r).dump(2) + "\n");
  }

  std::vector<std::string> entries(const std::string &dir) const {
    std::vector<std::string> out;
    std::error_code ec;
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); ++it)
      out.push_back(it->path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  std::vector<std::string> sandbox_names() const {
    std::vector<std::string> out;
    for (auto &e : entries(sandboxes))
      if (e[0] != '.')
        out.push_back(e);
    return out;
  }

  TemplateSummary summary(const std::string &name) const {
    TemplateMeta m = read_meta(name);
    vm::Template t = vm::Template::open(template_dir(name) + "/vm");
    TemplateSummary s;
    s.name = name;
    s.dir = template_dir(name);
    s.layer_image = m.layer_image;
    s.memory_mib = m.memory_mib;
    s.cpus = m.cpus;
    s.layer_bytes = m.layer_bytes;
    s.accel = m.accel;
    s.machine = m.machine;
    s.kernel = m.kernel;
    s.modules = m.modules;
    s.boot_ms = m.boot_ms;
    s.save_ms = t.record().save_ms;
    s.state_bytes = t.record().state_bytes;
    struct stat st;
    if (::stat(t.ram_path().c_str(), &st) == 0)
      s.ram_bytes_allocated = static_cast<uint64_t>(st.st_blocks) * 512;
    for (const auto &sb : sandbox_names()) {
      try {
        if (auto r = read_record(sb); r && r->template_name == name)
          s.users.push_back(sb);
      } catch (const Error &) {
        s.users.push_back(sb); // unreadable: assume it may be a user
      }
    }
    return s;
  }

  // Everything a sandbox may hold, undone in the reverse order of start;
  // each step skips what is not there, so it finishes the work of any
  // start or stop that was killed.  Returns what it did.
  std::vector<std::string> teardown(const std::string &name,
                                    const std::optional<SandboxRecord> &rec,
                                    milliseconds grace, bool ask_agent) const {
    std::vector<std::string> done;
    std::string dir = sandbox_dir(name);
    if (rec && rec->qemu) {
      if (auto h = open_process(*rec->qemu, o.proc_root)) {
        bool gone = false;
        if (ask_agent) {
          try {
            agent::Client c =
                agent::Client::connect(dir + "/" + agent::kPortName + ".sock", grace);
            c.shutdown();
            gone = wait_process_exit(*h, grace);
          } catch (const Error &) {
            // No agent to ask (the guest is wedged, or never got that far).
          }
        }
        if (!gone && !kill_process(*h, milliseconds(10000)))
          throw Error("kill", fmt::format("QEMU of sandbox {} (pid {})", name, rec->qemu->pid),
                      ETIMEDOUT);
        done.push_back(fmt::format("stopped QEMU (pid {})", rec->qemu->pid));
      }
    }
    // The claim: released by the cgroup ids it recorded, which also kills
    // whatever still runs inside (a QEMU spawned before it was recorded).
    std::string claim = rec && !rec->claim.empty() ? rec->claim : name;
    auto b = backend();
    if (auto c = b->state().read_claim(claim)) {
      std::string parent = rec ? rec->cgroup_parent : o.cgroup_parent;
      if (c->parent == parent || c->parent == "/" + parent) {
        for (const auto &left : b->release(claim))
          done.push_back("cgroup left alone: " + left);
        done.push_back(fmt::format("released cgroup {}/{}", c->parent, claim));
      }
    }
    std::string view = dir + "/" + kView;
    for (const auto &m : read_mount_table())
      if (m.target == view) {
        umount_ro_layers(view);
        done.push_back("unmounted " + view);
        break;
      }
    std::error_code ec;
    if (fs::exists(dir, ec)) {
      fs::remove_all(dir, ec);
      if (ec)
        throw Error("remove", dir, ec.value());
      done.push_back("removed " + dir);
    }
    return done;
  }
};

Runtime::Runtime(RuntimeOptions opts) : opts_(std::move(opts)) {
  impl_ = std::make_unique<Impl>(opts_);
}

Runtime::~Runtime() = default;

// --- templates ------------------------------------------------------------

TemplateSummary Runtime::create_template(const TemplateRequest &req, const Progress &progress) {
  auto say = [&](const std::string &s) {
    if (progress)
      progress(s);
  };
  require_root();
  validate_sandbox_name(req.name, "template");
  if (req.cpus < 1 || req.cpus > 64)
    throw InputError(fmt::format("--cpus {}: a template has 1 to 64 vCPUs", req.cpus));
  if (req.memory_mib < 64 || req.memory_mib > (1u << 20))
    throw InputError(fmt::format("--memory {} MiB: a template has 64 MiB to 1 TiB", req.memory_mib));
  if (req.layer_bytes < kMinTemplateSize)
    throw InputError(fmt::format("--layer-size {}: at least {} MiB", req.layer_bytes,
                                 kMinTemplateSize >> 20));
  vm::Machine machine = vm::parse_machine(req.machine);
  {
    // microvm boots a PVH ELF (vmlinux) only; q35 also boots a bzImage
    // (its setup header says "HdrS" at 0x202).
    int fd = ::open(req.kernel.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      throw InputError(fmt::format("kernel '{}': {}", req.kernel, std::strerror(errno)));
    char head[0x206] = {};
    ssize_t n = ::pread(fd, head, sizeof head, 0);
    ::close(fd);
    bool elf = n >= 4 && std::memcmp(head, "\x7f" "ELF", 4) == 0;
    bool bzimage = n == static_cast<ssize_t>(sizeof head) && std::memcmp(head + 0x202, "HdrS", 4) == 0;
    if (machine == vm::Machine::microvm && !elf)
      throw InputError(fmt::format("kernel '{}' is not an ELF vmlinux (microvm boots the PVH "
                                   "entry of vmlinux{}; --machine q35 boots a bzImage)",
                                   req.kernel, bzimage ? ", not a bzImage" : ""));
    if (machine == vm::Machine::q35 && !elf && !bzimage)
      throw InputError(fmt::format("kernel '{}' is neither a bzImage nor an ELF vmlinux",
                                   req.kernel));
  }
  if (!req.modules.empty() && !fs::is_regular_file(fs::path(req.modules) / "modules.load"))
    throw InputError(fmt::format("--modules '{}': no modules.load there "
                                 "(scripts/build-distro-guest-kernel makes one)",
                                 req.modules));
  if (opts_.accel != "auto")
    vm::parse_accel(opts_.accel); // InputError before anything is made
  find_executable(opts_.qemu);
  std::string agent = agent_binary(opts_);
  impl_->ensure_state();
  if (fs::exists(impl_->template_dir(req.name)))
    throw InputError(fmt::format("template '{}' exists (rundctl template remove {})", req.name,
                                 req.name));
  if (!fs::is_directory(opts_.layer_dir))
    throw InputError(fmt::format("layer directory '{}' does not exist (--layer-dir: a directory "
                                 "on XFS or btrfs)",
                                 opts_.layer_dir));

  ProcessId self = ProcessId::self(opts_.proc_root);
  std::string stage = impl_->templates + "/" + staging_name(req.name, self);
  std::string image = opts_.layer_dir + "/" + req.name + ".ext4";
  std::string final_dir = impl_->template_dir(req.name);
  std::string owner_file = image + kImageOwnerSuffix;
  if (fs::exists(image) || fs::exists(template_sidecar_path(image)) || fs::exists(owner_file))
    throw InputError(fmt::format("layer image '{}' exists: a template of that name (of this or "
                                 "another state directory) uses it, or was not removed cleanly "
                                 "(rundctl gc)",
                                 image));
  // The layer directory may be shared by several state directories: the
  // image says whose it is before it exists, and gc only ever removes its
  // own state directory's images.
  write_file_staged(owner_file, opts_.state_root + "\n", false);

  // From here on, everything made is removed again on failure; a kill -9
  // leaves the staging directory and the layer image, which gc removes.
  bool image_made = false;
  try {
    say("formatting the writable-layer image");
    rundkit::create_template(image, req.layer_bytes, "ext4");
    image_made = true;
    Template layer = Template::open(image);
    VolatileLayer disk = open_volatile_layer(layer, opts_.layer_dir, true);
    // After the layer directory proved it can reflink: the probe may take
    // seconds.
    std::string accel = opts_.accel;
    if (accel == "auto") {
      vm::AccelProbe probe;
      // One answer per host boot for every rundkit tool (scripts/rundkit-vm
      // accel keeps its own there too): the probe takes seconds on a host
      // whose KVM cannot boot a standard guest.
      probe.cache_dir = "/run/rundkit";
      probe.qemu = opts_.qemu;
      fs::path k(req.kernel);
      probe.kernels = {machine == vm::Machine::q35 ? k.string() : (k.parent_path() / "bzImage").string()};
      accel = vm::to_string(vm::detect_accel(probe));
    } else {
      vm::parse_accel(accel);
    }

    if (::mkdir(stage.c_str(), 0700) < 0)
      throw Error("mkdir", stage, errno);
    std::string initrd = stage + "/" + kAgentInitrd;
    agent::write_agent_initramfs(agent, initrd, req.modules);
    std::string empty = stage + "/empty";
    if (::mkdir(empty.c_str(), 0755) < 0)
      throw Error("mkdir", empty, errno);

    TemplateMeta m;
    m.name = req.name;
    m.kernel = fs::absolute(req.kernel).string();
    m.memory_mib = req.memory_mib;
    m.cpus = req.cpus;
    m.layer_bytes = req.layer_bytes;
    m.layer_image = image;
    m.accel = accel;
    m.machine = vm::to_string(machine);
    m.modules = req.modules.empty() ? "" : fs::absolute(req.modules).string();

    vm::VmOptions vo;
    vo.config = guest_config(opts_, m, initrd, stage + "/console.log", disk.fd.get(), empty);
    vo.log = stage + "/qemu.log";
    say(fmt::format("booting the template VM ({}, {} MiB, {} vCPU)", accel, req.memory_mib,
                    req.cpus));
    auto t0 = Clock::now();
    // The VM template directory lives inside the staging directory: it is
    // renamed along with it.
    std::string vmdir = stage + "/vm";
    vm::TemplateBuilder b = vm::TemplateBuilder::start(vmdir, req.name, std::move(vo));
    agent::Client c = agent::Client::connect(b.vm().port_path(agent::kPortName),
                                             req.boot_timeout);
    m.boot_ms = us_since(t0) / 1000;
    say("saving the template");
    vm::TemplateRecord rec = b.save();
    m.save_ms = rec.save_ms;
    write_file_staged(stage + "/" + kTemplateMeta, m.to_json().dump(2) + "\n", false);
    b.vm().stop(milliseconds(5000));
    if (::renameat2(AT_FDCWD, stage.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_NOREPLACE) < 0)
      throw Error("rename", final_dir, errno);
  } catch (const std::exception &e) {
    // What the guest said before it failed, from the console file that is
    // about to go with the staging directory.
    std::string console = console_tail(stage + "/console.log");
    std::error_code ec;
    fs::remove_all(stage, ec);
    if (image_made) {
      fs::remove(image, ec);
      fs::remove(template_sidecar_path(image), ec);
    }
    fs::remove(owner_file, ec);
    rethrow_with_console(e, console);
  }
  return impl_->summary(req.name);
}

std::vector<TemplateSummary> Runtime::list_templates() const {
  std::vector<TemplateSummary> out;
  for (const auto &e : impl_->entries(impl_->templates))
    if (e[0] != '.')
      out.push_back(impl_->summary(e));
  return out;
}

TemplateSummary Runtime::show_template(const std::string &name) const {
  validate_sandbox_name(name, "template");
  return impl_->summary(name);
}

void Runtime::remove_template(const std::string &name) {
  require_root();
  validate_sandbox_name(name, "template");
  TemplateMeta m = impl_->read_meta(name);
  std::string dir = impl_->template_dir(name);
  auto lock = DirLock::take(dir, true);
  TemplateSummary s = impl_->summary(name);
  if (!s.users.empty())
    throw InputError(fmt::format("template '{}' is in use by {} sandbox(es), e.g. '{}': stop "
                                 "them first",
                                 name, s.users.size(), s.users.front()));
  // The record first: from then on the directory is no template, and a
  // half-removed one is only leftovers for gc.
  std::string meta = dir + "/" + kTemplateMeta;
  check_sys(::unlink(meta.c_str()), "unlink", meta);
  std::error_code ec;
  fs::remove(m.layer_image, ec);
  fs::remove(template_sidecar_path(m.layer_image), ec);
  fs::remove(m.layer_image + kImageOwnerSuffix, ec);
  fs::remove_all(dir, ec);
  if (ec)
    throw Error("remove", dir, ec.value());
}

// --- sandboxes ------------------------------------------------------------

SandboxRecord Runtime::start(const StartRequest &req) {
  auto t0 = Clock::now();
  auto phase = [&](const char *p) {
    if (req.on_phase)
      req.on_phase(p);
  };
  // Every check before anything changes.
  require_root();
  validate_sandbox_name(req.name, "sandbox");
  validate_sandbox_name(req.template_name, "template");
  if (req.layers.empty())
    throw InputError("no --rootfs layer given");
  for (const auto &l : req.layers) {
    std::error_code ec;
    if (!fs::is_directory(l, ec))
      throw InputError(fmt::format("layer '{}': {}", l,
                                   fs::exists(l, ec) ? "not a directory"
                                                     : "no such file or directory"));
    if (!fs::is_directory(layer_root(l), ec))
      throw InputError(fmt::format("layer '{}' is not a directory", l));
  }
  if (req.command.empty())
    throw InputError("no command");
  if (req.writable != "reflink" && req.writable != "qcow2")
    throw InputError(fmt::format("--writable '{}': reflink or qcow2", req.writable));
  if (req.writable == "qcow2")
    find_executable(opts_.qemu_img);
  TemplateMeta m = impl_->read_meta(req.template_name);
  if (req.memory_bytes && *req.memory_bytes != m.memory_mib << 20)
    throw InputError(fmt::format("--memory {} MiB does not match template '{}' ({} MiB): a "
                                 "clone has its template's RAM",
                                 *req.memory_bytes >> 20, m.name, m.memory_mib));
  if (req.cpus && (*req.cpus <= 0 || std::ceil(*req.cpus) > m.cpus))
    throw InputError(fmt::format("--cpus {} does not fit template '{}' ({} vCPU): more CPU time "
                                 "than vCPUs",
                                 *req.cpus, m.name, m.cpus));
  if (req.pids && *req.pids < 1)
    throw InputError(fmt::format("--pids {}: at least 1", *req.pids));
  find_executable(opts_.qemu);
  impl_->ensure_state();
  std::string parent = req.cgroup_parent.empty() ? opts_.cgroup_parent : req.cgroup_parent;
  vm::Template vt = vm::Template::open(impl_->template_dir(m.name) + "/vm");
  Template layer_image = Template::open(m.layer_image);
  if (!req.cold) {
    // What the clone will look like, checked before anything is made: a
    // template made with another kernel, agent or QEMU is refused.
    vm::QemuConfig probe = guest_config(opts_, m, impl_->template_dir(m.name) + "/" +
                                        kAgentInitrd, "/dev/null", -1, "/");
    probe.disks[0].path = m.layer_image;
    if (auto why = vt.mismatches(probe); !why.empty())
      throw InputError(fmt::format("template '{}' does not fit this sandbox ({}); make it again, "
                                   "or start with --cold",
                                   m.name, fmt::join(why, "; ")));
  }

  // The name's owner: a directory renamed into place without replacing.
  ProcessId self = ProcessId::self(opts_.proc_root);
  std::string dir = impl_->sandbox_dir(req.name);
  std::string stage = impl_->sandboxes + "/" + staging_name(req.name, self);
  if (fs::exists(dir))
    throw InputError(fmt::format("sandbox '{}' exists", req.name));
  check_sys(::mkdir(stage.c_str(), 0700), "mkdir", stage);
  auto lock = DirLock::take(stage, true);
  SandboxRecord rec;
  rec.name = req.name;
  rec.template_name = m.name;
  rec.created = now_utc();
  rec.actor = self;
  rec.cgroup_parent = parent;
  rec.claim = req.name;
  rec.layers = req.layers;
  rec.view = dir + "/" + kView;
  rec.command = req.command;
  rec.cpus = req.cpus;
  rec.memory_bytes = req.memory_bytes;
  rec.pids = req.pids;
  rec.cold = req.cold;
  rec.writable = req.writable;
  rec.accel = m.accel;
  try {
    check_sys(::mkdir((stage + "/" + kView).c_str(), 0755), "mkdir", stage + "/" + kView);
    impl_->write_record(stage, rec);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(stage, ec);
    throw;
  }
  if (::renameat2(AT_FDCWD, stage.c_str(), AT_FDCWD, dir.c_str(), RENAME_NOREPLACE) < 0) {
    int err = errno;
    std::error_code ec;
    fs::remove_all(stage, ec);
    if (err == EEXIST || err == ENOTEMPTY)
      throw InputError(fmt::format("sandbox '{}' exists", req.name));
    throw Error("rename", dir, err);
  }
  rec.times.checked_us = us_since(t0);
  phase("checked");

  // From here on a failure tears down whatever was made; a kill -9 leaves
  // a "starting" record whose actor is gone, which gc tears down.
  try {
    // 1. The host cgroup.
    auto backend = impl_->backend();
    try {
      backend->require_parent(parent);
    } catch (const Error &) {
      backend->create_parent(parent);
    }
    ClaimRequest cr;
    cr.parent = parent;
    cr.name = rec.claim;
    if (req.cpus)
      cr.limits.cpus = *req.cpus;
    ClaimRecord claim = backend->claim(cr);
    rec.backend = claim.backend;
    rec.cgroups = claim.paths;
    rec.pool_hit = claim.hit;
    impl_->write_record(dir, rec);
    rec.times.cgroup_us = us_since(t0);
    phase("cgroup");

    // 2. The writable layer: nameless, O_DIRECT.
    Fd layer_fd = req.writable == "qcow2"
                      ? make_qcow2_overlay(opts_, m.layer_image)
                      : open_volatile_layer(layer_image, opts_.layer_dir, true).fd;
    rec.times.layer_us = us_since(t0);
    phase("layer");

    // 3. The read-only view.
    RoLayerMount view = mount_ro_layers(req.layers, rec.view);
    view.mount.release(); // outlives us: stop and gc unmount it
    rec.times.view_us = us_since(t0);
    phase("view");

    // 4. QEMU, in the cgroup from its first instruction.
    std::optional<Fd> into;
    std::vector<std::pair<const Tree *, std::string>> enter;
    for (size_t i = 0; i < backend->trees().size(); ++i) {
      const Tree &t = *backend->trees()[i];
      if (auto fd = t.clone_target(claim.paths[i]); fd && !into)
        into = std::move(*fd);
      else
        enter.push_back({&t, claim.paths[i]});
    }
    vm::VmOptions vo;
    vo.config = guest_config(opts_, m, impl_->template_dir(m.name) + "/" + kAgentInitrd,
                             dir + "/console.log", layer_fd.get(), rec.view);
    if (req.writable == "qcow2")
      vo.config.disks[0].format = vm::DiskFormat::qcow2;
    vo.dir = dir;
    vo.log = dir + "/qemu.log";
    vo.cgroup = into ? &*into : nullptr;
    vo.pdeathsig = 0; // a sandbox outlives the rundctl that started it
    vo.new_session = true;
    vo.place = [&](pid_t pid) {
      for (const auto &[t, path] : enter)
        t->enter(path, pid);
      // Recorded before it runs anything: whoever finds this record finds
      // this QEMU by pid + start time.
      rec.qemu = ProcessId::of(pid, opts_.proc_root);
      if (!rec.qemu)
        throw Error("stat", fmt::format("QEMU (pid {})", pid), ESRCH);
      impl_->write_record(dir, rec);
    };
    std::optional<vm::Vm> vmm;
    std::optional<agent::Client> client;
    std::string port = dir + "/" + agent::kPortName + ".sock";
    if (req.cold) {
      vmm.emplace(vm::Vm::start(std::move(vo)));
      rec.times.spawn_us = us_since(t0);
      phase("spawn");
      client.emplace(agent::Client::connect(port, req.agent_timeout));
      rec.times.restore_us = us_since(t0);
    } else {
      vm::RestoreOptions ro;
      Fd agent_socket;
      ro.before_load = [&](vm::Vm &v) {
        rec.times.spawn_us = us_since(t0);
        phase("spawn");
        // Connected before the state loads (the template was saved with
        // its agent connected), spoken to once the guest runs.
        agent_socket = vm::connect_unix(v.port_path(agent::kPortName));
      };
      ro.connected_ports = {"agent"};
      vm::Clone clone = vt.restore(std::move(vo), ro);
      vmm.emplace(std::move(clone.vm));
      rec.times.restore_us = us_since(t0);
      client.emplace(agent::Client::adopt(std::move(agent_socket), req.agent_timeout));
    }
    phase("restore");

    // 5. The agent: identity, layers, command, limits.
    agent::StartRequest sr;
    sr.hostname = req.name;
    sr.entropy.resize(64);
    if (::getrandom(sr.entropy.data(), sr.entropy.size(), 0) !=
        static_cast<ssize_t>(sr.entropy.size()))
      throw Error("getrandom", "entropy for the guest", errno);
    struct timespec now;
    ::clock_gettime(CLOCK_REALTIME, &now);
    sr.realtime_ns = static_cast<int64_t>(now.tv_sec) * 1000000000LL + now.tv_nsec;
    sr.share_tag = kShareTag;
    sr.argv = req.command;
    sr.env = req.env;
    sr.cwd = req.cwd;
    if (req.cpus)
      sr.limits.cpus = *req.cpus;
    if (req.memory_bytes)
      sr.limits.memory_bytes = *req.memory_bytes;
    if (req.pids)
      sr.limits.pids = static_cast<uint64_t>(*req.pids);
    agent::Running running = client->start(sr);
    rec.times.agent_us = us_since(t0);
    rec.guest_pid = running.pid;
    rec.guest_times = {running.times.received_ns, running.times.mounted_ns,
                       running.times.cgroup_ns, running.times.exec_ns};
    rec.phase = "running";
    impl_->write_record(dir, rec);
    vmm->detach(); // QEMU runs on; its pidfd closes with us
    phase("running");
  } catch (const std::exception &e) {
    // A guest that died or never answered says why on its console; the
    // file goes with the teardown, so its last lines go into the error.
    std::string console = rec.qemu ? console_tail(dir + "/console.log") : "";
    try {
      impl_->teardown(req.name, rec, milliseconds(0), false);
    } catch (const std::exception &) {
      // The "starting" record stays: gc finishes once we are gone.
    }
    rethrow_with_console(e, console);
  }
  return rec;
}

ExecOutcome Runtime::exec(const std::string &name, const std::vector<std::string> &argv,
                          std::chrono::milliseconds timeout) {
  require_root();
  validate_sandbox_name(name, "sandbox");
  if (argv.empty())
    throw InputError("no command to exec");
  std::string dir = impl_->sandbox_dir(name);
  if (!fs::exists(dir))
    throw InputError(fmt::format("no sandbox named '{}'", name));
  auto lock = DirLock::take(dir, true);
  auto rec = impl_->read_record(name);
  if (!rec || rec->phase != "running")
    throw Error(fmt::format("sandbox '{}' is not running ({})", name,
                            rec ? rec->phase : "no record"));
  agent::Client c = agent::Client::connect(dir + "/" + agent::kPortName + ".sock",
                                           milliseconds(10000));
  agent::ExecRequest er;
  er.argv = argv;
  er.timeout_ms = static_cast<int>(timeout.count());
  agent::ExecResult r = c.exec(er);
  return ExecOutcome{r.status, r.timed_out, r.out, r.err};
}

void Runtime::stop(const std::string &name, std::chrono::milliseconds grace) {
  require_root();
  validate_sandbox_name(name, "sandbox");
  std::string dir = impl_->sandbox_dir(name);
  if (!fs::exists(dir))
    throw InputError(fmt::format("no sandbox named '{}'", name));
  auto lock = DirLock::take(dir, true);
  if (!lock->still_at(dir))
    throw InputError(fmt::format("no sandbox named '{}' (stopped meanwhile)", name));
  std::optional<SandboxRecord> rec;
  try {
    rec = impl_->read_record(name);
  } catch (const InputError &) {
    // Damaged: torn down from what the names alone say.
  }
  if (rec) {
    rec->phase = "stopping";
    rec->actor = ProcessId::self(opts_.proc_root);
    impl_->write_record(dir, *rec);
  }
  impl_->teardown(name, rec, grace, true);
}

std::vector<SandboxStatus> Runtime::list() const {
  std::vector<SandboxStatus> out;
  for (const auto &n : impl_->sandbox_names()) {
    try {
      out.push_back(show(n));
    } catch (const Error &) {
      SandboxStatus s;
      s.record.name = n;
      s.record.phase = "damaged";
      out.push_back(s);
    }
  }
  return out;
}

SandboxStatus Runtime::show(const std::string &name) const {
  validate_sandbox_name(name, "sandbox");
  auto rec = impl_->read_record(name);
  if (!rec)
    throw InputError(fmt::format("no sandbox named '{}'", name));
  SandboxStatus s;
  s.record = *rec;
  if (rec->qemu && rec->qemu->alive(opts_.proc_root)) {
    s.qemu_alive = true;
    try {
      std::string roll =
          read_file(fmt::format("{}/{}/smaps_rollup", opts_.proc_root, rec->qemu->pid));
      s.pss_kib = smaps_field_kib(roll, "Pss");
      s.rss_kib = smaps_field_kib(roll, "Rss");
    } catch (const Error &) {
      // Exited meanwhile.
    }
  }
  return s;
}

GcOutcome Runtime::gc() {
  require_root();
  GcOutcome g;
  if (!fs::exists(impl_->sandboxes) && !fs::exists(impl_->templates))
    return g;
  auto guard = [&](const std::string &what, const std::function<void()> &fn) {
    try {
      fn();
    } catch (const std::exception &e) {
      g.failed.push_back(fmt::format("{}: {}", what, e.what()));
    }
  };
  // Sandboxes: staging directories of dead starts, and sandboxes whose
  // actor or QEMU is gone.
  for (const auto &e : impl_->entries(impl_->sandboxes)) {
    std::string path = impl_->sandboxes + "/" + e;
    guard("sandbox " + e, [&] {
      auto lock = DirLock::take(path, false);
      if (!lock) {
        g.kept.push_back(fmt::format("sandbox {}: in use (start, exec or stop running)", e));
        return;
      }
      if (!lock->still_at(path))
        return;
      if (e[0] == '.') {
        auto owner = staging_owner(e);
        if (owner && owner->alive(opts_.proc_root)) {
          g.kept.push_back(fmt::format("{}: its start is running", path));
          return;
        }
        std::error_code ec;
        fs::remove_all(path, ec);
        if (ec)
          throw Error("remove", path, ec.value());
        g.removed.push_back("removed unfinished " + path);
        return;
      }
      std::optional<SandboxRecord> rec;
      bool damaged = false;
      try {
        rec = impl_->read_record(e);
      } catch (const InputError &) {
        damaged = true;
      }
      if (rec && rec->phase == "running" && rec->qemu && rec->qemu->alive(opts_.proc_root)) {
        g.kept.push_back(fmt::format("sandbox {}: running", e));
        return;
      }
      std::string why = damaged  ? "damaged record"
                        : !rec   ? "no record"
                        : rec->phase == "running" ? "its QEMU is gone"
                                                  : "its " + rec->phase + " was killed";
      for (const auto &d : impl_->teardown(e, rec, milliseconds(0), false))
        g.removed.push_back(fmt::format("sandbox {} ({}): {}", e, why, d));
    });
  }
  // No pass over lcgroupctl's claims: a start makes its sandbox directory
  // before it claims, and a teardown releases the claim before it removes
  // the directory, so a claim of ours always has its directory, where the
  // pass above finds it.  (lcgroupctl's state directory and the cgroup
  // parent may be shared with other rundctl state directories, whose
  // claims are not ours to judge.)
  // Templates: unfinished ones whose maker is gone, and their layer images.
  for (const auto &e : impl_->entries(impl_->templates)) {
    std::string path = impl_->templates + "/" + e;
    guard("template " + e, [&] {
      bool unfinished = e[0] == '.' || !fs::exists(path + "/" + kTemplateMeta);
      if (!unfinished)
        return;
      auto owner = e[0] == '.' ? staging_owner(e) : std::nullopt;
      if (owner && owner->alive(opts_.proc_root)) {
        g.kept.push_back(fmt::format("{}: being made", path));
        return;
      }
      std::error_code ec;
      fs::remove_all(path, ec);
      if (ec)
        throw Error("remove", path, ec.value());
      g.removed.push_back("removed unfinished template " + path);
    });
  }
  // Layer images no template uses (a create or remove killed half-way).
  guard("layer images", [&] {
    if (!fs::is_directory(opts_.layer_dir))
      return;
    std::vector<std::string> making;
    for (const auto &e : impl_->entries(impl_->templates))
      if (e[0] == '.')
        if (auto owner = staging_owner(e); owner && owner->alive(opts_.proc_root))
          making.push_back(e.substr(1, e.rfind('.') - 1));
    std::string suffix = std::string(".ext4") + kImageOwnerSuffix;
    for (const auto &e : impl_->entries(opts_.layer_dir)) {
      if (!e.ends_with(suffix))
        continue;
      std::string name = e.substr(0, e.size() - suffix.size());
      std::string img = opts_.layer_dir + "/" + name + ".ext4";
      std::string owner;
      try {
        owner = read_file(opts_.layer_dir + "/" + e);
      } catch (const Error &) {
        continue;
      }
      if (owner != opts_.state_root + "\n") {
        g.kept.push_back(fmt::format("layer image {}: another state directory's ({})", img,
                                     owner.substr(0, owner.find('\n'))));
        continue;
      }
      if (fs::exists(impl_->template_dir(name) + "/" + kTemplateMeta) ||
          std::find(making.begin(), making.end(), name) != making.end())
        continue;
      std::error_code ec;
      fs::remove(img, ec);
      fs::remove(template_sidecar_path(img), ec);
      fs::remove(opts_.layer_dir + "/" + e, ec);
      g.removed.push_back("removed unused layer image " + img);
    }
    for (const auto &entry : gc_layers(opts_.layer_dir, false))
      if (entry.removed)
        g.removed.push_back(fmt::format("removed {} ({})", entry.name, entry.reason));
  });
  return g;
}

} // namespace rundkit::sandbox
