#include "vm/template.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/fd.h"
#include "util/sha256.h"
#include "util/temp.h"

namespace rundkit::vm {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

uint64_t us_since(Clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count());
}

std::chrono::milliseconds left_until(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return std::max(left, std::chrono::milliseconds(0));
}

int64_t ns_of(const struct timespec &ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string stat_key_of(const struct stat &st) {
  return fmt::format("{}:{}:{}:{}:{}", static_cast<uint64_t>(st.st_dev),
                     static_cast<uint64_t>(st.st_ino), static_cast<int64_t>(st.st_size),
                     ns_of(st.st_mtim), ns_of(st.st_ctim));
}

// A file's identity proves its contents unchanged only when its ctime is
// older than the kernel's timestamp granularity (a write in the same tick
// keeps it): two seconds are plenty.
bool stat_key_trustworthy(const struct stat &st) {
  struct timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  return ns_of(now) - ns_of(st.st_ctim) > 2'000'000'000LL;
}

// The file's record; `known` (the template's) lets an untouched file skip
// hashing.
FileRecord file_record(const std::string &path, const char *what,
                       const std::optional<FileRecord> &known = std::nullopt) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw InputError(fmt::format("{} '{}': {}", what, path, std::strerror(errno)));
  Fd f(fd, path);
  struct stat st;
  check_sys(::fstat(f.get(), &st), "stat", path);
  FileRecord r;
  r.path = path;
  r.size = static_cast<uint64_t>(st.st_size);
  std::string key = stat_key_of(st);
  if (known && !known->stat_key.empty() && known->stat_key == key) {
    r.sha256 = known->sha256;
    r.stat_key = key;
    return r;
  }
  r.sha256 = fd_sha256(f);
  if (stat_key_trustworthy(st))
    r.stat_key = key;
  return r;
}

uint64_t size_of_fd(int fd, const std::string &what) {
  struct stat st;
  check_sys(::fstat(fd, &st), "stat", what);
  if (S_ISBLK(st.st_mode)) {
    uint64_t bytes = 0;
    check_sys(::ioctl(fd, BLKGETSIZE64, &bytes), "BLKGETSIZE64", what);
    return bytes;
  }
  return static_cast<uint64_t>(st.st_size);
}

// The size of the disk the guest sees: a raw image's length, a qcow2
// overlay's virtual size (its header's big-endian u64 at byte 24, after
// the magic "QFI\xfb", the version, the backing file's offset and length).
uint64_t disk_size(const Disk &d) {
  std::string what = d.fd >= 0 ? fmt::format("disk {} (descriptor {})", d.id, d.fd) : d.path;
  std::optional<Fd> own;
  int fd = d.fd;
  if (fd < 0) {
    fd = ::open(d.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      throw InputError(fmt::format("disk {} '{}': {}", d.id, d.path, std::strerror(errno)));
    own.emplace(fd, d.path);
  }
  if (d.format == DiskFormat::raw)
    return size_of_fd(fd, what);
  unsigned char h[32];
  ssize_t n = ::pread(fd, h, sizeof h, 0);
  if (n < 0)
    throw Error("pread", what, errno);
  if (n != static_cast<ssize_t>(sizeof h) || std::memcmp(h, "QFI\xfb", 4) != 0)
    throw InputError(fmt::format("{}: not a qcow2 image (no QFI\\xfb header)", what));
  uint64_t size = 0;
  for (int i = 24; i < 32; ++i)
    size = size << 8 | h[i];
  return size;
}

const char *on_off(bool b) { return b ? "on" : "off"; }

std::vector<TemplateDevice> devices_of(const QemuConfig &c) {
  // The order qemu_argv() emits them in: the guest's bus addresses follow it.
  std::vector<TemplateDevice> v;
  for (size_t i = 0; i < c.serials.size(); ++i)
    v.push_back({"serial", fmt::format("serial{}", i), ""});
  for (const auto &con : c.consoles)
    v.push_back({"virtconsole", con.id, ""});
  for (const auto &p : c.ports)
    v.push_back({"virtserialport", p.id, "name=" + p.name});
  for (const auto &d : c.disks)
    v.push_back({"virtio-blk", d.id,
                 fmt::format("size={} readonly={}", disk_size(d), on_off(d.readonly))});
  for (const auto &s : c.shares)
    v.push_back({"virtio-9p", s.id, fmt::format("tag={} readonly={}", s.tag, on_off(s.readonly))});
  for (const auto &n : c.nets)
    v.push_back({"virtio-net", n.id, n.mac.empty() ? "" : "mac=" + n.mac});
  if (c.vsock_cid)
    v.push_back({"vhost-vsock", "", ""});
  return v;
}

std::string describe_device(const TemplateDevice &d) {
  std::string s = d.kind;
  if (!d.id.empty())
    s += " '" + d.id + "'";
  if (!d.detail.empty())
    s += " (" + d.detail + ")";
  return s;
}

TemplateRecord describe(const QemuConfig &c, const TemplateRecord *known) {
  TemplateRecord r;
  r.machine = to_string(c.machine);
  r.accel = to_string(c.accel);
  auto a = accel_args(c.accel);
  for (size_t i = 0; i + 1 < a.size(); ++i)
    if (a[i] == "-cpu")
      r.cpu_model = a[i + 1];
  r.cpus = c.cpus;
  r.max_cpus = c.max_cpus;
  r.memory_mib = c.memory_mib;
  r.memory_slots = c.memory_slots;
  r.max_memory_mib = c.max_memory_mib;
  if (!c.kernel.empty())
    r.kernel = file_record(c.kernel, "kernel", known ? known->kernel : std::nullopt);
  if (!c.initrd.empty())
    r.initrd = file_record(c.initrd, "initrd", known ? known->initrd : std::nullopt);
  r.append = c.append;
  r.devices = devices_of(c);
  r.extra = c.extra;
  return r;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  struct tm tm;
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string qemu_version_of(Qmp &qmp) {
  json v = qmp.execute("query-version");
  const json &q = v.at("qemu");
  std::string s = fmt::format("{}.{}.{}", q.at("major").get<int>(), q.at("minor").get<int>(),
                              q.at("micro").get<int>());
  std::string pkg = v.value("package", std::string());
  if (!pkg.empty())
    s += " (" + pkg + ")";
  return s;
}

void set_capabilities(Qmp &qmp, std::chrono::milliseconds timeout) {
  qmp.execute("migrate-set-capabilities",
              {{"capabilities",
                json::array({{{"capability", "x-ignore-shared"}, {"state", true}},
                             {{"capability", "events"}, {"state", true}}})}},
              timeout);
}

// Waits for a MIGRATION event with a final status; returns it ("completed",
// "failed", "cancelled"), or throws ETIMEDOUT.
std::string wait_migration(Qmp &qmp, Clock::time_point deadline, const std::string &what) {
  for (;;) {
    auto ev = qmp.wait_event("MIGRATION", left_until(deadline));
    if (!ev)
      throw Error(what + " (no MIGRATION completed event)", qmp.name(), ETIMEDOUT);
    std::string st = (*ev)["data"].value("status", std::string());
    if (st == "completed" || st == "failed" || st == "cancelled")
      return st;
  }
}

// QEMU's reason for a failed migration (query-migrate's error-desc).
std::string migrate_error(Qmp &qmp) {
  try {
    json m = qmp.execute("query-migrate", std::chrono::milliseconds(5000));
    return m.value("error-desc", std::string("no reason given"));
  } catch (const Error &e) {
    return e.what();
  }
}

// Writes `data` to DIR/name through a staged file: fsync, rename.
void write_staged(const Fd &dir, const std::string &name, const std::string &data) {
  TempFile t(dir, O_WRONLY);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(t.fd().get(), data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      throw Error("write", t.fd().path(), errno);
    off += static_cast<size_t>(n);
  }
  check_sys(::fsync(t.fd().get()), "fsync", t.fd().path());
  t.commit(name);
}

} // namespace

std::string file_sha256(const std::string &path) {
  Fd f = Fd::open(path, O_RDONLY | O_CLOEXEC);
  return fd_sha256(f);
}

TemplateRecord describe_config(const QemuConfig &config) { return describe(config, nullptr); }

// --- JSON -------------------------------------------------------------------

namespace {

json file_json(const std::optional<FileRecord> &f) {
  if (!f)
    return nullptr;
  return {{"path", f->path}, {"size", f->size}, {"sha256", f->sha256}, {"stat_key", f->stat_key}};
}

template <class T> T field(const json &j, const char *key, const std::string &what) {
  auto it = j.find(key);
  if (it == j.end())
    throw InputError(fmt::format("{}: no field '{}'", what, key));
  try {
    return it->get<T>();
  } catch (const json::exception &e) {
    throw InputError(fmt::format("{}: field '{}': {}", what, key, e.what()));
  }
}

std::optional<FileRecord> file_from_json(const json &j, const char *key, const std::string &what) {
  auto it = j.find(key);
  if (it == j.end())
    throw InputError(fmt::format("{}: no field '{}'", what, key));
  if (it->is_null())
    return std::nullopt;
  std::string w = what + ": " + key;
  return FileRecord{field<std::string>(*it, "path", w), field<uint64_t>(*it, "size", w),
                    field<std::string>(*it, "sha256", w), field<std::string>(*it, "stat_key", w)};
}

} // namespace

json to_json(const TemplateRecord &r) {
  json devs = json::array();
  for (const auto &d : r.devices)
    devs.push_back({{"kind", d.kind}, {"id", d.id}, {"detail", d.detail}});
  return {{"format", r.format},
          {"name", r.name},
          {"created", r.created},
          {"qemu_version", r.qemu_version},
          {"machine", r.machine},
          {"accel", r.accel},
          {"cpu_model", r.cpu_model},
          {"cpus", r.cpus},
          {"max_cpus", r.max_cpus},
          {"memory_mib", r.memory_mib},
          {"memory_slots", r.memory_slots},
          {"max_memory_mib", r.max_memory_mib},
          {"kernel", file_json(r.kernel)},
          {"initrd", file_json(r.initrd)},
          {"append", r.append},
          {"devices", devs},
          {"extra", r.extra},
          {"argv", r.argv},
          {"state_bytes", r.state_bytes},
          {"state_sha256", r.state_sha256},
          {"save_ms", r.save_ms}};
}

TemplateRecord template_record_from_json(const json &j, const std::string &what) {
  if (!j.is_object())
    throw InputError(what + ": not a JSON object");
  TemplateRecord r;
  r.format = field<int>(j, "format", what);
  if (r.format != kTemplateFormat)
    throw InputError(fmt::format("{}: format {}, this rundkit reads format {}", what, r.format,
                                 kTemplateFormat));
  r.name = field<std::string>(j, "name", what);
  r.created = field<std::string>(j, "created", what);
  r.qemu_version = field<std::string>(j, "qemu_version", what);
  r.machine = field<std::string>(j, "machine", what);
  r.accel = field<std::string>(j, "accel", what);
  r.cpu_model = field<std::string>(j, "cpu_model", what);
  r.cpus = field<unsigned>(j, "cpus", what);
  r.max_cpus = field<unsigned>(j, "max_cpus", what);
  r.memory_mib = field<uint64_t>(j, "memory_mib", what);
  r.memory_slots = field<unsigned>(j, "memory_slots", what);
  r.max_memory_mib = field<uint64_t>(j, "max_memory_mib", what);
  r.kernel = file_from_json(j, "kernel", what);
  r.initrd = file_from_json(j, "initrd", what);
  r.append = field<std::string>(j, "append", what);
  for (const json &d : field<json>(j, "devices", what)) {
    std::string w = what + ": devices";
    r.devices.push_back({field<std::string>(d, "kind", w), field<std::string>(d, "id", w),
                         field<std::string>(d, "detail", w)});
  }
  r.extra = field<std::vector<std::string>>(j, "extra", what);
  r.argv = field<std::vector<std::string>>(j, "argv", what);
  r.state_bytes = field<uint64_t>(j, "state_bytes", what);
  r.state_sha256 = field<std::string>(j, "state_sha256", what);
  r.save_ms = field<uint64_t>(j, "save_ms", what);
  return r;
}

// --- TemplateBuilder ----------------------------------------------------------

TemplateBuilder TemplateBuilder::start(const std::string &dir, const std::string &name,
                                       VmOptions opts) {
  QemuConfig &c = opts.config;
  if (name.empty())
    throw InputError("template: empty name");
  if (c.ram_file)
    throw InputError(fmt::format("template {}: the config names a RAM file already (the "
                                 "template's is {}/{})", name, dir, kTemplateRam));
  if (c.incoming_defer)
    throw InputError(fmt::format("template {}: a template VM boots; it does not restore "
                                 "(-incoming defer)", name));
  std::filesystem::path p(dir);
  std::string parent = p.has_parent_path() ? p.parent_path().string() : ".";
  struct statfs sf;
  if (::statfs(parent.c_str(), &sf) < 0)
    throw InputError(fmt::format("template directory '{}': its parent '{}': {}", dir, parent,
                                 std::strerror(errno)));
  if (sf.f_type != TMPFS_MAGIC && sf.f_type != HUGETLBFS_MAGIC)
    throw InputError(fmt::format("template directory '{}': '{}' is not on tmpfs or hugetlbfs "
                                 "(file system magic {:#x}); guest RAM there would be written "
                                 "back to a disk",
                                 dir, parent, static_cast<unsigned long>(sf.f_type)));
  // Hashed before QEMU reads them: the record says what the guest booted.
  TemplateRecord rec = describe(c, nullptr);
  if (::mkdir(dir.c_str(), 0700) < 0) {
    if (errno == EEXIST)
      throw InputError(fmt::format("template directory '{}' exists already", dir));
    throw Error("mkdir", dir, errno);
  }
  TemplateBuilder b;
  b.dir_ = dir;
  b.name_ = name;
  b.record_ = std::move(rec);
  b.record_.name = name;
  c.ram_file = RamFile{dir + "/" + kTemplateRam, true};
  b.vm_.emplace(Vm::start(std::move(opts)));
  b.record_.argv = b.vm_->argv();
  b.record_.qemu_version = qemu_version_of(b.vm_->qmp());
  return b;
}

TemplateBuilder::TemplateBuilder(TemplateBuilder &&o) noexcept
    : dir_(std::exchange(o.dir_, {})), name_(std::move(o.name_)), record_(std::move(o.record_)),
      vm_(std::move(o.vm_)), saved_(o.saved_) {
  o.vm_.reset();
}

TemplateBuilder::~TemplateBuilder() {
  vm_.reset(); // QEMU killed and reaped before its files go
  if (!saved_ && !dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

TemplateRecord TemplateBuilder::save(std::chrono::milliseconds timeout) {
  if (saved_)
    throw Error(fmt::format("template {}: saved already", name_));
  if (!vm_)
    throw Error(fmt::format("template {}: no VM", name_));
  Qmp &qmp = vm_->qmp();
  auto t0 = Clock::now();
  auto deadline = t0 + timeout;
  std::string what = fmt::format("template {} save", name_);
  json status = qmp.execute("query-status", left_until(deadline));
  if (status.value("running", false)) {
    qmp.execute("stop", left_until(deadline));
    if (!qmp.wait_event("STOP", left_until(deadline)))
      throw Error(what + " (no STOP event)", qmp.name(), ETIMEDOUT);
  }
  set_capabilities(qmp, left_until(deadline));

  Fd dirfd = Fd::open(dir_, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  TempFile staged(dirfd, O_WRONLY);
  qmp.send_fd("tmplstate", staged.fd().get(), left_until(deadline));
  qmp.execute("migrate", {{"uri", "fd:tmplstate"}}, left_until(deadline));
  std::string st = wait_migration(qmp, deadline, what);
  if (st != "completed")
    throw Error(fmt::format("{}: migration {}: {}", what, st, migrate_error(qmp)));
  check_sys(::fsync(staged.fd().get()), "fsync", staged.fd().path());
  Fd reader = Fd::openat(dirfd, staged.name(), O_RDONLY | O_CLOEXEC);
  uint64_t bytes = size_of_fd(reader.get(), reader.path());
  // x-ignore-shared keeps guest RAM out; a state of half the RAM means it
  // did not (a RAM block QEMU did not treat as shared).
  if (bytes >= (record_.memory_mib << 20) / 2)
    throw Error(fmt::format("{}: the state is {} bytes for {} MiB of RAM: guest RAM went into "
                            "it (x-ignore-shared had no effect)",
                            what, bytes, record_.memory_mib));
  record_.state_bytes = bytes;
  record_.state_sha256 = fd_sha256(reader);
  staged.commit(kTemplateState);

  // Nothing may run the guest on the template's RAM again.
  vm_->stop(left_until(deadline));
  record_.created = utc_now();
  record_.save_ms = us_since(t0) / 1000;
  write_staged(dirfd, kTemplateRecord, to_json(record_).dump(2) + "\n");
  check_sys(::fsync(dirfd.get()), "fsync", dir_);
  saved_ = true;
  return record_;
}

// --- Template ---------------------------------------------------------------

Template Template::open(const std::string &dir) {
  std::string path = dir + "/" + kTemplateRecord;
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error &e) {
    if (e.err() != ENOENT)
      throw;
    if (std::filesystem::exists(dir + "/" + kTemplateRam) ||
        std::filesystem::exists(dir + "/" + kTemplateState))
      throw InputError(fmt::format("template '{}' is unfinished (no {}: its creation was "
                                   "interrupted); remove it and create it again",
                                   dir, kTemplateRecord));
    throw InputError(fmt::format("'{}' is no template (no {})", dir, kTemplateRecord));
  }
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception &e) {
    throw InputError(fmt::format("{}: damaged: {}", path, e.what()));
  }
  Template t;
  t.dir_ = dir;
  t.record_ = template_record_from_json(j, path);
  return t;
}

std::vector<std::string> Template::mismatches(const QemuConfig &config) const {
  const TemplateRecord &r = record_;
  const std::string &n = r.name;
  std::vector<std::string> out;
  TemplateRecord c = describe(config, &r);
  auto differ = [&](const char *what, const std::string &made, const std::string &asks) {
    if (made != asks)
      out.push_back(fmt::format("template {} was made with {} {}, the sandbox asks {}", n, what,
                                made, asks));
  };
  differ("machine", r.machine, c.machine);
  differ("accelerator", r.accel, c.accel);
  differ("CPU model", r.cpu_model, c.cpu_model);
  differ("vCPUs", std::to_string(r.cpus), std::to_string(c.cpus));
  differ("max vCPUs", std::to_string(r.max_cpus), std::to_string(c.max_cpus));
  differ("memory", fmt::format("{}M", r.memory_mib), fmt::format("{}M", c.memory_mib));
  differ("memory slots", std::to_string(r.memory_slots), std::to_string(c.memory_slots));
  differ("max memory", fmt::format("{}M", r.max_memory_mib), fmt::format("{}M", c.max_memory_mib));
  auto file = [&](const char *what, const std::optional<FileRecord> &made,
                  const std::optional<FileRecord> &asks) {
    if (!made && !asks)
      return;
    if (!made || !asks) {
      out.push_back(fmt::format("template {} was made {} {}, the sandbox {}", n,
                                made ? "with" : "without", what, asks ? "has one" : "has none"));
      return;
    }
    if (made->sha256 == asks->sha256)
      return;
    if (made->path == asks->path)
      out.push_back(fmt::format("{} '{}' changed since template {} was made (sha256 {} then, {} "
                                "now)",
                                what, asks->path, n, made->sha256, asks->sha256));
    else
      out.push_back(fmt::format("{} '{}' (sha256 {}) is not the one template {} was made with "
                                "('{}', sha256 {})",
                                what, asks->path, asks->sha256, n, made->path, made->sha256));
  };
  file("kernel", r.kernel, c.kernel);
  file("initrd", r.initrd, c.initrd);
  if (r.append != c.append)
    out.push_back(fmt::format("template {} was made with kernel command line '{}', the sandbox "
                              "asks '{}'",
                              n, r.append, c.append));
  for (size_t i = 0; i < std::max(r.devices.size(), c.devices.size()); ++i) {
    if (i >= c.devices.size())
      out.push_back(fmt::format("template {} has device {} (#{}), the sandbox does not", n,
                                describe_device(r.devices[i]), i + 1));
    else if (i >= r.devices.size())
      out.push_back(fmt::format("the sandbox has device {} (#{}), template {} does not",
                                describe_device(c.devices[i]), i + 1, n));
    else if (r.devices[i] != c.devices[i])
      out.push_back(fmt::format("template {} has device {} as #{}, the sandbox asks {}", n,
                                describe_device(r.devices[i]), i + 1,
                                describe_device(c.devices[i])));
  }
  if (r.extra != c.extra)
    out.push_back(fmt::format("template {} was made with extra QEMU arguments [{}], the sandbox "
                              "asks [{}]",
                              n, fmt::join(r.extra, " "), fmt::join(c.extra, " ")));
  return out;
}

void Template::check(const QemuConfig &config) const {
  auto m = mismatches(config);
  if (m.empty())
    return;
  throw InputError(fmt::format("the sandbox does not fit template {} ({}): {}", record_.name,
                               dir_, fmt::join(m, "; ")));
}

Clone Template::restore(VmOptions opts, const RestoreOptions &ro) const {
  auto t0 = Clock::now();
  RestoreTimes times;
  QemuConfig &c = opts.config;
  const std::string &n = record_.name;
  RamFile ram{ram_path(), false};
  if (c.ram_file && (c.ram_file->path != ram.path || c.ram_file->share))
    throw InputError(fmt::format("template {}: a clone maps {} share=off, not {} share={}", n,
                                 ram.path, c.ram_file->path, on_off(c.ram_file->share)));
  check(c);
  struct stat rs;
  if (::stat(ram.path.c_str(), &rs) < 0)
    throw InputError(fmt::format("template {}: RAM file '{}': {}", n, ram.path,
                                 std::strerror(errno)));
  if (static_cast<uint64_t>(rs.st_size) != record_.memory_mib << 20)
    throw InputError(fmt::format("template {}: RAM file '{}' is {} bytes, not {} MiB: damaged; "
                                 "create the template again",
                                 n, ram.path, rs.st_size, record_.memory_mib));
  std::string spath = state_path();
  int sfd = ::open(spath.c_str(), O_RDONLY | O_CLOEXEC);
  if (sfd < 0)
    throw InputError(fmt::format("template {}: state file '{}': {}", n, spath,
                                 std::strerror(errno)));
  Fd state(sfd, spath);
  uint64_t bytes = size_of_fd(state.get(), spath);
  if (bytes != record_.state_bytes)
    throw InputError(fmt::format("template {}: state file '{}' is {} bytes, {} says {}: damaged; "
                                 "create the template again",
                                 n, spath, bytes, kTemplateRecord, record_.state_bytes));
  std::string sum = fd_sha256(state);
  if (sum != record_.state_sha256)
    throw InputError(fmt::format("template {}: state file '{}' has sha256 {}, {} says {}: "
                                 "damaged; create the template again",
                                 n, spath, sum, kTemplateRecord, record_.state_sha256));
  c.ram_file = ram;
  c.incoming_defer = true;
  c.paused = true;
  opts.pass_fds.push_back({state.get(), state.get()});
  auto timeout = ro.timeout;
  times.check_us = us_since(t0);

  auto t1 = Clock::now();
  Vm vm = Vm::start(std::move(opts));
  times.spawn_us = us_since(t1);
  state.reset(); // QEMU has its own
  auto deadline = Clock::now() + timeout;
  Qmp &qmp = vm.qmp();
  std::string what = fmt::format("restore of template {} from '{}'", n, spath);
  std::string version = qemu_version_of(qmp);
  if (version != record_.qemu_version)
    throw InputError(fmt::format("QEMU version {} differs from template {}'s ({}); create the "
                                 "template again",
                                 version, n, record_.qemu_version));
  auto t2 = Clock::now();
  if (ro.before_load)
    ro.before_load(vm);
  for (const auto &id : ro.connected_ports) {
    // A connection queued on the listening socket is accepted by QEMU's
    // main loop, which has run by the time a QMP reply comes back.  The
    // bound is on QMP round trips, each an event wait.
    for (int round = 0;; ++round) {
      bool found = false, up = false;
      for (const auto &cd : qmp.execute("query-chardev", left_until(deadline))) {
        if (cd.value("label", std::string()) != id)
          continue;
        found = true;
        up = !cd.value("filename", std::string()).starts_with("disconnected:");
      }
      if (!found)
        throw InputError(fmt::format("{}: no chardev '{}' to wait for", what, id));
      if (up)
        break;
      if (round == 100 || Clock::now() >= deadline)
        throw Error(fmt::format("{}: nothing connected to port '{}' before the state loads",
                                what, id));
    }
  }
  times.hook_us = us_since(t2);

  auto t3 = Clock::now();
  try {
    set_capabilities(qmp, left_until(deadline));
    qmp.execute("migrate-incoming", {{"uri", fmt::format("fd:{}", sfd)}}, left_until(deadline));
    std::string st = wait_migration(qmp, deadline, what);
    if (st != "completed")
      throw Error(fmt::format("migration {}: {}", st, migrate_error(qmp)));
  } catch (const InputError &) {
    throw;
  } catch (const Error &e) {
    // QEMU exits when an incoming migration fails to load: then its log
    // says why, better than the QMP connection it dropped.
    auto ex = vm.wait_for(std::chrono::milliseconds(5000));
    std::string tail = vm.log_tail(5);
    if (ex)
      throw Error(fmt::format("{} failed: QEMU {}{}{}", what, ex->describe(),
                              tail.empty() ? "" : ": ", tail));
    throw Error(fmt::format("{} failed: {}{}{}", what, e.what(), tail.empty() ? "" : "; QEMU: ",
                            tail));
  }
  times.load_us = us_since(t3);
  if (ro.resume) {
    auto t4 = Clock::now();
    qmp.execute("cont", left_until(deadline));
    if (!qmp.wait_event("RESUME", left_until(deadline)))
      throw Error(what + " (no RESUME event after cont)", qmp.name(), ETIMEDOUT);
    times.resume_us = us_since(t4);
  }
  times.total_us = us_since(t0);
  return Clone{std::move(vm), times};
}

} // namespace rundkit::vm
