#include "vm/accel.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include <fmt/format.h>

#include "util/error.h"
#include "util/fd.h"
#include "util/process.h"
#include "vm/initramfs.h"
#include "vm/vm.h"

namespace rundkit::vm {

namespace {

constexpr const char *kMarker = "rundkit-kvm-probe: userspace";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s;
}

std::string on_path(const std::string &name) {
  if (name.find('/') != std::string::npos)
    return name;
  return trim(run_capture({"sh", "-c", "command -v \"$0\"", name}));
}

} // namespace

std::string boot_id() { return trim(read_file("/proc/sys/kernel/random/boot_id")); }

bool kvm_boots(const AccelProbe &probe, const std::string &kernel, std::string *why) {
  std::string busybox;
  try {
    busybox = on_path(probe.busybox);
  } catch (const Error &) {
    if (why)
      *why = "no busybox for the probe's init (apt-get install busybox-static)";
    return false;
  }
  char tmpl[] = "/tmp/rundkit-kvm-probe.XXXXXX";
  if (!::mkdtemp(tmpl))
    throw Error("mkdtemp", tmpl, errno);
  std::string dir = tmpl;
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      ::unlink((dir + "/initramfs.cpio").c_str());
      ::unlink((dir + "/console.log").c_str());
      ::rmdir(dir.c_str());
    }
  } cleanup{dir};

  Cpio cpio;
  cpio.add_dir("bin");
  cpio.add_dir("dev");
  cpio.add_char_device("dev/console", 5, 1);
  cpio.add_file_from("bin/busybox", busybox, 0755);
  cpio.write_to(dir + "/initramfs.cpio");

  VmOptions o;
  QemuConfig &c = o.config;
  c.binary = probe.qemu;
  c.accel = probe.accel;
  c.memory_mib = 256;
  c.kernel = kernel;
  c.initrd = dir + "/initramfs.cpio";
  // Arguments after "--" go to init: busybox runs sh, which prints the
  // marker and powers off.
  c.append = fmt::format("console=ttyS0 panic=-1 rdinit=/bin/busybox -- sh -c \"echo {}; "
                         "/bin/busybox poweroff -f\"",
                         kMarker);
  c.serials.push_back({Serial::Kind::file, dir + "/console.log"});
  o.log = "/dev/null";
  Vm vm = Vm::start(std::move(o));
  auto st = vm.wait_for(probe.timeout);
  if (!st) {
    vm.stop(std::chrono::milliseconds(2000));
    if (why)
      *why = fmt::format("the guest did not power off within {} ms under {}", probe.timeout.count(),
                         to_string(probe.accel));
    return false;
  }
  std::string console = read_file(dir + "/console.log");
  if (console.find(kMarker) == std::string::npos) {
    if (why)
      *why = fmt::format("QEMU {} under {} before the guest's userspace ran", st->describe(),
                         to_string(probe.accel));
    return false;
  }
  return true;
}

Accel detect_accel(const AccelProbe &probe) {
  if (const char *env = std::getenv("RUNDKIT_ACCEL"); env && *env)
    return parse_accel(env);
  if (::access("/dev/kvm", W_OK) != 0)
    return Accel::tcg;
  std::string cache;
  if (!probe.cache_dir.empty()) {
    cache = probe.cache_dir + "/accel." + boot_id();
    try {
      std::string v = trim(read_file(cache));
      if (v == "kvm" || v == "tcg")
        return parse_accel(v);
    } catch (const Error &) {
      // not probed yet this boot
    }
  }
  std::string kernel;
  for (const auto &k : probe.kernels) {
    struct stat st;
    if (::stat(k.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      kernel = k;
      break;
    }
  }
  if (kernel.empty())
    return Accel::tcg; // nothing to probe with yet: not cached, a later run probes
  Accel a = Accel::tcg;
  try {
    a = kvm_boots(probe, kernel) ? Accel::kvm : Accel::tcg;
  } catch (const Error &) {
    a = Accel::tcg; // QEMU refused KVM outright
  }
  if (!cache.empty()) {
    std::string tmp = cache + ".tmp." + std::to_string(::getpid());
    try {
      ::mkdir(probe.cache_dir.c_str(), 0755);
      Fd f = Fd::open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      std::string v = std::string(to_string(a)) + "\n";
      if (::write(f.get(), v.data(), v.size()) != static_cast<ssize_t>(v.size()))
        throw Error("write", tmp, errno);
      if (::rename(tmp.c_str(), cache.c_str()) != 0)
        throw Error("rename", cache, errno);
    } catch (const Error &) {
      ::unlink(tmp.c_str()); // an unwritable cache only costs the next probe
    }
  }
  return a;
}

} // namespace rundkit::vm
