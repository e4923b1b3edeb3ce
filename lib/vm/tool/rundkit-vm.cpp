// rundkit-vm: the internal command through which scripts boot VMs with
// lib/vm (they no longer build QEMU command lines or speak QMP themselves).
//
//   rundkit-vm accel [--cache-dir DIR] [--probe-kernel BZIMAGE]... [--no-cache]
//       tcg or kvm, as the probe decides (cached per host boot)
//   rundkit-vm argv VM-OPTIONS
//       the QEMU command line, shell-quoted, on one line
//   rundkit-vm run VM-OPTIONS [--timeout S] [--hotplug-when FILE=TEXT
//                  [--hotplug-cpu] [--hotplug-memory MIB] [--qmp-log FILE]]
//       boot and wait; exit with QEMU's status, 124 when --timeout ended it
//   rundkit-vm bench-boot VM-OPTIONS --timeout S --console-log FILE --dump FILE
//                  --text-start ADDR --text-end ADDR --name K --round R
//       scripts/bench-guest's boot: serial console on stdio, the init's
//       markers timed, kernel text saved by QMP pmemsave; one JSON line
//
// Exit status: as above; 1 failure (message on stderr), 2 usage.
#include <fcntl.h>
#include <sys/inotify.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/fd.h"
#include "util/process.h"
#include "util/units.h"
#include "vm/accel.h"
#include "vm/qemu.h"
#include "vm/vm.h"

using namespace rundkit;
using namespace rundkit::vm;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr int kExitTimeout = 124;

// NAME=VALUE -> {NAME, VALUE}; InputError otherwise.
std::pair<std::string, std::string> split_kv(const std::string &s, const char *opt) {
  size_t eq = s.find('=');
  if (eq == std::string::npos || eq == 0)
    throw InputError(fmt::format("{} '{}': want NAME=VALUE", opt, s));
  return {s.substr(0, eq), s.substr(eq + 1)};
}

uint64_t mib(const std::string &s, const char *opt) {
  // Plain digits are MiB (QEMU's -m convention); suffixed sizes convert.
  if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos)
    return std::stoull(s);
  uint64_t bytes = parse_size(s);
  if (bytes % (1 << 20))
    throw InputError(fmt::format("{} '{}': not a whole number of MiB", opt, s));
  return bytes >> 20;
}

// The VM options every subcommand that starts QEMU takes.
struct VmArgs {
  std::string qemu = "qemu-system-x86_64";
  std::string machine = "q35", accel = "tcg";
  std::string kernel, initrd, append;
  std::string memory = "256", max_memory;
  unsigned cpus = 1, max_cpus = 0, memory_slots = 0;
  std::vector<std::string> serials, consoles, disks, shares, nets, ports;
  std::optional<unsigned> vsock_cid;
  std::string ram_file;
  bool ram_private = false, incoming_defer = false, paused = false;
  std::string pidfile, qemu_log;

  void add(CLI::App &app) {
    app.add_option("--qemu", qemu, "QEMU binary")->capture_default_str();
    app.add_option("--machine", machine, "q35 or microvm")->capture_default_str();
    app.add_option("--accel", accel, "tcg or kvm (see: rundkit-vm accel)")->capture_default_str();
    app.add_option("--kernel", kernel, "bzImage (q35) or PVH vmlinux (microvm)");
    app.add_option("--initrd", initrd, "initramfs");
    app.add_option("--append", append, "kernel command line");
    app.add_option("--memory,-m", memory, "guest RAM: MiB, or a size such as 1G")
        ->capture_default_str();
    app.add_option("--cpus", cpus, "vCPUs at boot")->capture_default_str();
    app.add_option("--max-cpus", max_cpus, "vCPU slots (hotplug)");
    app.add_option("--memory-slots", memory_slots, "pc-dimm slots (hotplug; with --max-memory)");
    app.add_option("--max-memory", max_memory, "RAM limit with hotplugged DIMMs");
    app.add_option("--serial", serials, "a serial port: FILE, or 'stdio'; ttyS0 first");
    app.add_option("--console", consoles, "a virtio console ID=FILE");
    app.add_option("--disk", disks, "a raw virtio-blk disk ID=IMAGE");
    app.add_option("--share", shares, "a read-only 9p share TAG=DIR");
    app.add_option("--net", nets, "user networking ID=MAC (MAC may be empty)");
    app.add_option("--vsock", vsock_cid, "a vhost-vsock device with this guest CID");
    app.add_option("--ram-file", ram_file, "guest RAM as memory-backend-file at PATH");
    app.add_flag("--ram-private", ram_private, "map --ram-file share=off (copy-on-write)");
    app.add_flag("--incoming-defer", incoming_defer, "-incoming defer");
    app.add_flag("--paused", paused, "-S: vCPUs start stopped");
    app.add_option("--pidfile", pidfile, "QEMU writes its pid here");
    app.add_option("--qemu-log", qemu_log, "QEMU's stderr goes here (default: ours)");
  }

  QemuConfig config() const {
    QemuConfig c;
    c.binary = qemu;
    c.machine = parse_machine(machine);
    c.accel = parse_accel(accel);
    c.kernel = kernel;
    c.initrd = initrd;
    c.append = append;
    c.memory_mib = mib(memory, "--memory");
    c.cpus = cpus;
    c.max_cpus = max_cpus;
    c.memory_slots = memory_slots;
    if (!max_memory.empty())
      c.max_memory_mib = mib(max_memory, "--max-memory");
    for (const auto &s : serials)
      c.serials.push_back(s == "stdio" ? Serial{Serial::Kind::stdio, ""}
                                       : Serial{Serial::Kind::file, s});
    for (const auto &s : consoles) {
      auto [id, path] = split_kv(s, "--console");
      c.consoles.push_back({id, path});
    }
    for (const auto &s : disks) {
      auto [id, path] = split_kv(s, "--disk");
      Disk d;
      d.id = id;
      d.path = path;
      c.disks.push_back(d);
    }
    for (const auto &s : shares) {
      auto [tag, path] = split_kv(s, "--share");
      c.shares.push_back({tag, tag, path, true});
    }
    for (const auto &s : nets) {
      size_t eq = s.find('=');
      c.nets.push_back({s.substr(0, eq), eq == std::string::npos ? "" : s.substr(eq + 1)});
    }
    c.vsock_cid = vsock_cid;
    if (!ram_file.empty())
      c.ram_file = RamFile{ram_file, !ram_private};
    c.incoming_defer = incoming_defer;
    c.paused = paused;
    c.pidfile = pidfile;
    return c;
  }

  // QEMU's stderr: --qemu-log, or ours.
  void output(VmOptions &o, Fd &log) const {
    if (qemu_log.empty()) {
      o.err = Stdio::inherit();
      if (!o.out)
        o.out = Stdio::inherit();
      return;
    }
    log = Fd::open(qemu_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    o.err = Stdio::fd(log.get());
    if (!o.out)
      o.out = Stdio::fd(log.get());
  }
};

// --- run: boot, optionally hot-add a vCPU and a DIMM, wait --------------------

// Waits (inotify, no polling) until one of `files` contains `text`, or the
// VM exits, or `deadline`.  True if the text appeared.
bool wait_for_text(Vm &vm, const std::vector<std::string> &files, const std::string &text,
                   Clock::time_point deadline) {
  Fd in(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK), "inotify");
  if (!in)
    throw Error("inotify_init1", files.front(), errno);
  for (const auto &f : files)
    if (::inotify_add_watch(in.get(), f.c_str(), IN_MODIFY) < 0)
      throw Error("inotify_add_watch", f, errno);
  for (;;) {
    for (const auto &f : files) {
      try {
        if (read_file(f).find(text) != std::string::npos)
          return true;
      } catch (const Error &) {
      }
    }
    auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0)
      return false;
    struct pollfd p[2] = {{in.get(), POLLIN, 0}, {vm.pidfd().get(), POLLIN, 0}};
    int rc = ::poll(p, 2, static_cast<int>(left));
    if (rc < 0 && errno != EINTR)
      throw Error("poll", "inotify and QEMU's pidfd", errno);
    if (rc > 0 && (p[1].revents & POLLIN))
      return false; // QEMU exited
    if (rc > 0 && (p[0].revents & POLLIN)) {
      char buf[4096];
      while (::read(in.get(), buf, sizeof(buf)) > 0) {
      }
    }
  }
}

// One QMP command, logged as "command ARGS -> REPLY" (the old Python's form).
json logged(Vm &vm, std::FILE *log, const std::string &cmd, const json &args) {
  try {
    json r = vm.qmp().execute(cmd, args);
    std::fprintf(log, "%s %s -> %s\n", cmd.c_str(), args.dump().c_str(),
                 json({{"return", r}}).dump().c_str());
    return r;
  } catch (const QmpError &e) {
    std::fprintf(log, "%s %s -> %s\n", cmd.c_str(), args.dump().c_str(),
                 json({{"error", {{"class", e.error_class()}, {"desc", e.desc()}}}}).dump().c_str());
    throw;
  }
}

void hotplug(Vm &vm, bool cpu, uint64_t memory_mib, const std::string &log_path) {
  std::FILE *log = log_path.empty() ? stderr : std::fopen(log_path.c_str(), "w");
  if (!log)
    throw Error("open", log_path, errno);
  struct Closer {
    std::FILE *f;
    ~Closer() {
      if (f != stderr)
        std::fclose(f);
    }
  } closer{log};
  if (cpu) {
    json cpus = logged(vm, log, "query-hotpluggable-cpus", json::object());
    const json *free = nullptr;
    for (const auto &c : cpus)
      if (!c.contains("qom-path")) {
        free = &c;
        break;
      }
    if (!free)
      throw Error("hotplug: no free vCPU slot");
    json args = (*free)["props"];
    args["driver"] = (*free)["type"];
    args["id"] = "hotplug-cpu";
    logged(vm, log, "device_add", args);
  }
  if (memory_mib) {
    logged(vm, log, "object-add",
           {{"qom-type", "memory-backend-ram"}, {"id", "hotplug-mem"}, {"size", memory_mib << 20}});
    logged(vm, log, "device_add",
           {{"driver", "pc-dimm"}, {"id", "hotplug-dimm"}, {"memdev", "hotplug-mem"}});
  }
}

int cmd_run(const VmArgs &va, unsigned timeout_s, const std::vector<std::string> &when,
            bool hot_cpu, uint64_t hot_mem, const std::string &qmp_log) {
  VmOptions o;
  o.config = va.config();
  Fd log;
  va.output(o, log);
  auto deadline = timeout_s ? Clock::now() + std::chrono::seconds(timeout_s) : Clock::time_point::max();
  Vm vm = Vm::start(std::move(o));
  if (!when.empty()) {
    std::vector<std::string> files;
    std::string text;
    for (const auto &w : when) {
      auto [file, t] = split_kv(w, "--hotplug-when");
      files.push_back(file);
      if (!text.empty() && t != text)
        throw InputError("--hotplug-when: one TEXT for every FILE");
      text = t;
    }
    if (wait_for_text(vm, files, text, deadline)) {
      try {
        hotplug(vm, hot_cpu, hot_mem, qmp_log);
      } catch (const Error &e) {
        // The guest reports what it did not get; the run goes on.
        std::cerr << "rundkit-vm: QMP hotplug failed: " << e.what() << "\n";
      }
    }
  }
  std::optional<ExitStatus> st;
  if (timeout_s) {
    auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now());
    st = vm.wait_for(std::max(left, milliseconds(0)));
    if (!st) {
      vm.process().kill();
      return kExitTimeout;
    }
  } else {
    st = vm.process().wait();
  }
  return st->shell_code();
}

// --- bench-boot ------------------------------------------------------------

constexpr const char *kTag = "rundkit-bench: ";
constexpr uint64_t kStartKernelMap = 0xFFFFFFFF80000000ull;
constexpr auto kHaltGrace = std::chrono::seconds(5);

struct BenchArgs {
  std::string name, console, dump, text_start, text_end;
  int round = 0;
  unsigned timeout = 180;
};

void write_all(int fd, const std::string &s, const std::string &what) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      throw Error("write", what, errno);
    off += static_cast<size_t>(n);
  }
}

int cmd_bench_boot(const VmArgs &va, const BenchArgs &b) {
  uint64_t vstart = std::stoull(b.text_start, nullptr, 0);
  uint64_t vend = std::stoull(b.text_end, nullptr, 0);
  if (vend <= vstart || vstart < kStartKernelMap)
    throw InputError(fmt::format("--text-start/--text-end [{}, {}): not a kernel text range",
                                 b.text_start, b.text_end));
  std::filesystem::remove(b.dump);
  VmOptions o;
  o.config = va.config();
  o.in = Stdio::pipe();
  o.out = Stdio::pipe();
  Fd log;
  va.output(o, log);
  Fd console = Fd::open(b.console, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  json facts = {{"kernel", b.name}, {"round", b.round}, {"meminfo", json::object()},
                {"syms", json::object()}};
  auto t0 = Clock::now();
  auto deadline = t0 + std::chrono::seconds(b.timeout);
  Vm vm = Vm::start(std::move(o));
  Fd &out = vm.process().stdout_pipe();
  std::string state = "booting", partial;
  // Set once the guest said it powers off (max: not yet).
  Clock::time_point halt_deadline = Clock::time_point::max();
  bool saved = false;
  auto fail = [&](const std::string &msg) -> int {
    std::cerr << "rundkit-vm bench-boot: error: " << msg << "\n";
    return 1;
  };
  for (;;) {
    auto now = Clock::now();
    if (now >= deadline)
      return fail(fmt::format("timed out after {}s while {}; see {}", b.timeout, state, b.console));
    auto until = std::min(deadline, halt_deadline);
    auto left = std::chrono::ceil<milliseconds>(until - now).count();
    struct pollfd p = {out.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::max<long long>(left, 0)));
    if (rc < 0 && errno == EINTR)
      continue;
    check_sys(rc, "poll", "QEMU's serial console");
    if (rc == 0) {
      if (Clock::now() >= halt_deadline) {
        // The kernel halted instead of powering off (no ACPI power-off):
        // the measurement is complete, end QEMU the clean way.
        facts["poweroff"] = "halted, QEMU quit by the host";
        halt_deadline = Clock::time_point::max();
        try {
          vm.qmp().execute("quit", milliseconds(5000));
        } catch (const Error &) {
        }
      }
      continue;
    }
    char chunk[65536];
    ssize_t n = ::read(out.get(), chunk, sizeof(chunk));
    auto at = Clock::now();
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break; // QEMU exited
    write_all(console.get(), std::string(chunk, static_cast<size_t>(n)), b.console);
    partial.append(chunk, static_cast<size_t>(n));
    size_t nl;
    while ((nl = partial.find('\n')) != std::string::npos) {
      std::string text = partial.substr(0, nl);
      partial.erase(0, nl + 1);
      if (!text.empty() && text.back() == '\r')
        text.pop_back();
      size_t tag = text.find(kTag);
      if (tag == std::string::npos)
        continue;
      std::string what = text.substr(tag + std::strlen(kTag));
      size_t sp = what.find(' ');
      std::string key = what.substr(0, sp);
      std::string val = sp == std::string::npos ? "" : what.substr(sp + 1);
      if (key == "init" && !facts.contains("time_to_init_s")) {
        facts["time_to_init_s"] = std::chrono::duration<double>(at - t0).count();
        state = "waiting for the init's report";
      } else if (key == "uptime" && val != "n/a") {
        facts["guest_uptime_s"] = std::stod(val);
      } else if (key == "uname") {
        facts["uname"] = val;
      } else if (key == "cpus") {
        facts["cpus"] = std::stoi(val);
      } else if (key == "meminfo" && val != "n/a") {
        size_t s2 = val.find(' ');
        facts["meminfo"][val.substr(0, s2)] = std::stoll(val.substr(s2 + 1));
      } else if (key == "bootmem") {
        facts["bootmem"] = val;
      } else if (key == "sym" && val != "n/a") {
        size_t s2 = val.find(' ');
        facts["syms"][val.substr(0, s2)] = std::stoull(val.substr(s2 + 1), nullptr, 16);
      } else if (key == "ready") {
        state = "saving the kernel text";
        std::string src = "vmlinux (no kallsyms in the guest)";
        const json &syms = facts["syms"];
        if (syms.contains("_stext") && syms.contains("_etext")) {
          // nokaslr should make them equal; if not, the dump would be
          // compared with the wrong bytes.
          if (syms["_stext"].get<uint64_t>() != vstart || syms["_etext"].get<uint64_t>() != vend)
            return fail(fmt::format(
                "the guest's text [{:#x}, {:#x}) is not the vmlinux's [{:#x}, {:#x}): is KASLR "
                "really off, is it the same build?",
                syms["_stext"].get<uint64_t>(), syms["_etext"].get<uint64_t>(), vstart, vend));
          src = "guest kallsyms = vmlinux";
        }
        vm.qmp().execute("pmemsave", {{"val", vstart - kStartKernelMap},
                                      {"size", vend - vstart},
                                      {"filename", std::filesystem::absolute(b.dump).string()}});
        auto size = std::filesystem::file_size(b.dump);
        if (size != vend - vstart)
          return fail(fmt::format("pmemsave wrote {} bytes, asked for {}", size, vend - vstart));
        facts["text"] = {{"start", fmt::format("{:#x}", vstart)},
                         {"end", fmt::format("{:#x}", vend)},
                         {"source", src}};
        saved = true;
        write_all(vm.process().stdin_pipe().get(), "go\n", "QEMU's serial console");
        state = "waiting for the guest to power off";
      } else if (key == "poweroff") {
        facts["poweroff"] = "by the guest";
        halt_deadline = Clock::now() + kHaltGrace;
      } else if (key == "watchdog") {
        return fail("the guest's watchdog fired: it never got the go-ahead");
      }
    }
  }
  auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now());
  auto st = vm.wait_for(std::max(left, milliseconds(1000)));
  if (!st)
    return fail(fmt::format("QEMU did not exit within {}s", b.timeout));
  if (!facts.contains("time_to_init_s"))
    return fail(fmt::format("QEMU {} before the init's marker; see {}", st->describe(), b.console));
  if (!saved)
    return fail(fmt::format("QEMU {} before the kernel text was saved; see {}", st->describe(),
                            b.console));
  for (const char *k : {"MemTotal", "MemAvailable"})
    if (!facts["meminfo"].contains(k))
      return fail(fmt::format("the init printed no {} (was /proc mounted?); see {}", k, b.console));
  facts["qemu_exit"] = st->shell_code();
  std::cout << facts.dump() << "\n";
  return 0;
}

int run_main(int argc, char **argv) {
  CLI::App app{"rundkit-vm: boot VMs through lib/vm (internal; used by scripts/)"};
  app.require_subcommand(1);

  auto *accel = app.add_subcommand("accel", "print tcg or kvm, as the probe decides");
  std::string cache_dir;
  std::vector<std::string> probe_kernels;
  bool no_cache = false;
  std::string busybox = "busybox";
  unsigned probe_timeout = 15;
  accel->add_option("--cache-dir", cache_dir, "keep the answer in DIR/accel.BOOT_ID");
  accel->add_option("--probe-kernel", probe_kernels, "bzImages to probe with (first existing)");
  accel->add_option("--busybox", busybox, "static busybox for the probe's init")
      ->capture_default_str();
  accel->add_option("--probe-timeout", probe_timeout, "seconds")->capture_default_str();
  accel->add_flag("--no-cache", no_cache, "probe now, cache nothing (RUNDKIT_ACCEL ignored)");

  auto *argv_cmd = app.add_subcommand("argv", "print the QEMU command line");
  VmArgs argv_args;
  argv_args.add(*argv_cmd);

  auto *run = app.add_subcommand("run", "boot and wait for QEMU to exit");
  VmArgs run_args;
  run_args.add(*run);
  unsigned timeout = 0;
  std::vector<std::string> when;
  bool hot_cpu = false;
  std::string hot_mem = "0", qmp_log;
  run->add_option("--timeout", timeout, "kill QEMU after S seconds and exit 124");
  run->add_option("--hotplug-when", when, "FILE=TEXT: hot-add once a FILE shows TEXT");
  run->add_flag("--hotplug-cpu", hot_cpu, "add a vCPU in the first free slot");
  run->add_option("--hotplug-memory", hot_mem, "add a pc-dimm of this many MiB");
  run->add_option("--qmp-log", qmp_log, "QMP hotplug transcript");

  auto *bench = app.add_subcommand("bench-boot", "scripts/bench-guest's boot step");
  VmArgs bench_vm;
  bench_vm.add(*bench);
  BenchArgs ba;
  bench->add_option("--name", ba.name)->required();
  bench->add_option("--round", ba.round)->required();
  bench->add_option("--console-log", ba.console, "the serial console's transcript")->required();
  bench->add_option("--dump", ba.dump, "the saved kernel text")->required();
  bench->add_option("--text-start", ba.text_start, "_stext (virtual)")->required();
  bench->add_option("--text-end", ba.text_end, "_etext (virtual)")->required();
  bench->add_option("--timeout", ba.timeout, "seconds for the whole boot")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  try {
    if (*accel) {
      AccelProbe p;
      p.kernels = probe_kernels;
      p.busybox = busybox;
      p.timeout = std::chrono::seconds(probe_timeout);
      if (no_cache) {
        std::string kernel;
        for (const auto &k : probe_kernels)
          if (std::filesystem::is_regular_file(k)) {
            kernel = k;
            break;
          }
        std::string why = ::access("/dev/kvm", W_OK) != 0 ? "no writable /dev/kvm"
                          : kernel.empty()                 ? "no kernel to probe with"
                                                           : "";
        bool kvm = why.empty() && kvm_boots(p, kernel, &why);
        if (!kvm)
          std::cerr << "rundkit-vm accel: tcg: " << why << "\n";
        std::cout << (kvm ? "kvm" : "tcg") << "\n";
        return 0;
      }
      p.cache_dir = cache_dir;
      std::cout << to_string(detect_accel(p)) << "\n";
      return 0;
    }
    if (*argv_cmd) {
      std::cout << shell_join(qemu_argv(argv_args.config())) << "\n";
      return 0;
    }
    if (*run)
      return cmd_run(run_args, timeout, when, hot_cpu, mib(hot_mem, "--hotplug-memory"), qmp_log);
    if (*bench)
      return cmd_bench_boot(bench_vm, ba);
  } catch (const InputError &e) {
    std::cerr << "rundkit-vm: error: " << e.what() << "\n";
    return kExitUsage;
  } catch (const std::exception &e) {
    std::cerr << "rundkit-vm: error: " << e.what() << "\n";
    return kExitFailure;
  }
  return kExitUsage;
}

} // namespace

int main(int argc, char **argv) { return run_main(argc, argv); }
