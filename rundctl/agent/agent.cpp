// rundkit-agent: PID 1 of a sandbox guest (statically linked, the whole
// initramfs).  It mounts the kernel's file systems, opens its virtio-serial
// port and serves the host (lib/agent/protocol.h): ping, start, exec,
// status, shutdown.  One thread, one poll loop; the sandbox's command and
// exec'd commands are its children, and as PID 1 it reaps every orphan.
//
// A VM template is saved while this loop idles, and every clone resumes
// here: nothing before the first request may depend on the VM's identity
// (hostname, randomness, clock): `start` brings those.
//
// A guest kernel that has its drivers as modules (a distro kernel) gets
// them in the initramfs: /modules/modules.load names them in load order,
// and they are loaded before anything else.
#include <fcntl.h>
#include <linux/random.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/protocol.h"

using nlohmann::json;
using rundkit::agent::encode_frame;
using rundkit::agent::Frame;
using rundkit::agent::FrameReader;
using rundkit::agent::FrameType;
using rundkit::agent::ProtocolError;

namespace {

constexpr const char *kAgentVersion = "rundkit-agent 1";
constexpr const char *kPortName = "rundkit.agent";
constexpr const char *kPort = "the agent port";
constexpr const char *kCgroupRoot = "/sys/fs/cgroup";
constexpr const char *kSandboxCgroup = "/sys/fs/cgroup/sandbox";
constexpr const char *kModuleDir = "/modules";
constexpr size_t kMaxOutput = 1u << 20; // per stream of an exec

// An operation that failed, as the host sees it.
struct Failure {
  std::string op, path;
  int err;
  std::string message;
};

[[noreturn]] void fail(const std::string &op, const std::string &path, int err = errno) {
  throw Failure{op, path, err, op + " " + path + ": " + std::strerror(err)};
}

void check(int rc, const std::string &op, const std::string &path) {
  if (rc < 0)
    fail(op, path);
}

int64_t boottime_ns() {
  struct timespec t;
  ::clock_gettime(CLOCK_BOOTTIME, &t);
  return static_cast<int64_t>(t.tv_sec) * 1000000000LL + t.tv_nsec;
}

void log_console(const std::string &line) {
  int fd = ::open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
  if (fd < 0)
    return;
  std::string l = "rundkit-agent: " + line + "\n";
  (void)!::write(fd, l.data(), l.size());
  ::close(fd);
}

void write_text(const std::string &path, const std::string &value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    fail("open", path);
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size()))
    fail("write", path, n < 0 ? err : EIO);
}

void mount_or_fail(const char *src, const char *dst, const char *type, unsigned long flags,
                   const std::string &data) {
  ::mkdir(dst, 0755);
  if (::mount(src, dst, type, flags, data.empty() ? nullptr : data.c_str()) < 0)
    fail(std::string("mount ") + type, dst);
}

std::vector<char *> c_strings(std::vector<std::string> &v) {
  std::vector<char *> out;
  for (auto &s : v)
    out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

json status_json(int wstatus) {
  if (WIFSIGNALED(wstatus))
    return {{"signal", WTERMSIG(wstatus)}, {"code", -1}};
  return {{"signal", 0}, {"code", WEXITSTATUS(wstatus)}};
}

// What a child reports through its close-on-exec pipe when it cannot exec:
// the stage and errno, so the host hears "exec /bin/x: ENOENT".
struct ChildFailure {
  int stage;
  int err;
};
enum Stage { kStageCgroup = 1, kStageMounts, kStageHostname, kStageCwd, kStageExec, kStageSetns };
const char *stage_op(int s) {
  switch (s) {
  case kStageCgroup: return "join cgroup";
  case kStageMounts: return "mount sandbox root";
  case kStageHostname: return "sethostname";
  case kStageCwd: return "chdir";
  case kStageSetns: return "setns";
  default: return "exec";
  }
}

[[noreturn]] void child_fail(int pipe_fd, int stage) {
  ChildFailure f{stage, errno};
  (void)!::write(pipe_fd, &f, sizeof f);
  ::_exit(127);
}

// Reads a child's failure report; nothing once the pipe closes empty (it
// exec'd).
std::optional<ChildFailure> read_failure(int fd) {
  ChildFailure f;
  ssize_t n;
  do {
    n = ::read(fd, &f, sizeof f);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof f))
    return f;
  return std::nullopt;
}

class Agent {
public:
  void boot() {
    ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    ::mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    ::mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, nullptr);
    ::mount("cgroup2", kCgroupRoot, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    load_modules();
    // SIGCHLD and SIGIO (virtio-serial: the host side connected or went
    // away) arrive through a signalfd in the poll loop.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGIO);
    sigaddset(&set, SIGPIPE);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    sigfd_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    for (int tries = 0; (port_ = open_port()) < 0; ++tries) {
      // The port's name comes from the host in a control message just
      // after the device probes: there within milliseconds on an idle
      // host, but QEMU's I/O thread answers it, and with tens of guests
      // booting on two cores that can take seconds.  A guest without it
      // cannot be served at all: after 30 s it gives up.
      if (tries == 7500) {
        log_console(std::string("no virtio-serial port named ") + kPortName);
        ::reboot(RB_AUTOBOOT);
      }
      struct timespec ts = {0, 4 * 1000 * 1000};
      ::nanosleep(&ts, nullptr);
    }
    ::fcntl(port_, F_SETOWN, ::getpid());
    ::fcntl(port_, F_SETFL, ::fcntl(port_, F_GETFL) | O_ASYNC);
    log_console("ready");
  }

  [[noreturn]] void serve() {
    for (;;) {
      struct pollfd p[2] = {{sigfd_, POLLIN, 0}, {port_, POLLIN, 0}};
      // With the host side away the port polls POLLHUP forever: leave it
      // out until SIGIO says the host is back (a timeout re-checks).
      int n = ::poll(p, host_away_ ? 1 : 2, host_away_ ? 1000 : -1);
      if (n < 0 && errno != EINTR)
        ::reboot(RB_AUTOBOOT);
      if (p[0].revents & POLLIN)
        drain_signals();
      if (host_away_) {
        struct pollfd q = {port_, POLLIN, 0};
        if (::poll(&q, 1, 0) >= 0 && !(q.revents & POLLHUP))
          host_away_ = false;
        continue;
      }
      if (p[1].revents & POLLIN)
        read_port();
      else if (p[1].revents & POLLHUP)
        host_away();
    }
  }

private:
  // Every module modules.load names, in its order (dependencies first, as
  // the host resolved them).  One that does not load leaves a guest that
  // cannot be served: said on the console, then the VM ends.
  static void load_modules() {
    std::ifstream list(std::string(kModuleDir) + "/modules.load");
    std::string name;
    while (std::getline(list, name)) {
      if (name.empty())
        continue;
      std::string path = std::string(kModuleDir) + "/" + name;
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || (::syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)) {
        log_console("finit_module " + path + ": " + std::strerror(errno));
        ::reboot(RB_AUTOBOOT);
      }
      ::close(fd);
    }
  }

  // /dev/vportNpM whose sysfs name is kPortName (no udev here to make the
  // /dev/virtio-ports/ links).
  static int open_port() {
    for (int dev = 0; dev < 4; ++dev)
      for (int port = 0; port < 8; ++port) {
        std::string node = "vport" + std::to_string(dev) + "p" + std::to_string(port);
        int fd = ::open(("/sys/class/virtio-ports/" + node + "/name").c_str(),
                        O_RDONLY | O_CLOEXEC);
        if (fd < 0)
          continue;
        char name[64] = {};
        ssize_t n = ::read(fd, name, sizeof name - 1);
        ::close(fd);
        std::string got(name, n > 0 ? static_cast<size_t>(n) : 0);
        while (!got.empty() && got.back() == '\n')
          got.pop_back();
        if (got == kPortName)
          return ::open(("/dev/" + node).c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
      }
    return -1;
  }

  void host_away() {
    host_away_ = true;
    // A half-read frame dies with the connection that sent it.
    reader_ = FrameReader();
  }

  void drain_signals() {
    struct signalfd_siginfo si;
    while (::read(sigfd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
    }
    reap();
  }

  void reap() {
    int st;
    pid_t pid;
    while ((pid = ::waitpid(-1, &st, WNOHANG)) > 0) {
      if (pid == sandbox_pid_ && !exited_) {
        exited_ = true;
        exit_status_ = st;
        send(FrameType::event, {{"event", "exited"}, {"pid", pid}, {"status", status_json(st)}});
      }
    }
  }

  void read_port() {
    char buf[65536];
    ssize_t n = ::read(port_, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      host_away();
      return;
    }
    if (n < 0)
      return;
    reader_.feed(buf, static_cast<size_t>(n));
    for (;;) {
      std::optional<Frame> f;
      try {
        f = reader_.next();
      } catch (const ProtocolError &e) {
        send(FrameType::reply, {{"id", 0},
                                {"ok", false},
                                {"error", {{"op", "read"}, {"path", kPort}, {"errno", EPROTO},
                                           {"message", e.what()}}}});
        reader_ = FrameReader(); // the host reconnects with a clean stream
        return;
      }
      if (!f)
        return;
      handle(*f);
    }
  }

  void send(FrameType type, const json &body) {
    std::string frame = encode_frame(type, body.dump());
    size_t done = 0;
    while (done < frame.size()) {
      ssize_t n = ::write(port_, frame.data() + done, frame.size() - done);
      if (n > 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && errno == EAGAIN) {
        struct pollfd p = {port_, POLLOUT, 0};
        if (::poll(&p, 1, 5000) > 0 && !(p.revents & POLLHUP))
          continue;
      }
      host_away(); // nobody to tell: the host asks again (status) later
      return;
    }
  }

  void handle(const Frame &f) {
    json req = json::parse(f.body, nullptr, false);
    uint64_t id = req.is_object() ? req.value("id", uint64_t{0}) : 0;
    json reply;
    try {
      if (f.type != FrameType::request || !req.is_object())
        throw Failure{"parse", "request", EPROTO, "a request must be a JSON object"};
      std::string op = req.value("op", std::string());
      if (op == "ping")
        reply = {{"agent", kAgentVersion}, {"uptime_ns", boottime_ns()}};
      else if (op == "start")
        reply = start(req);
      else if (op == "exec")
        reply = exec(req);
      else if (op == "status")
        reply = status();
      else if (op == "shutdown") {
        send(FrameType::reply, {{"id", id}, {"ok", true}});
        // No sync: the writable layer is volatile.  A reboot ends QEMU
        // (-no-reboot); microvm without ACPI has no power-off device.
        ::reboot(RB_AUTOBOOT);
        return;
      } else
        throw Failure{"request", op, EOPNOTSUPP, "unknown operation '" + op + "'"};
      reply["ok"] = true;
    } catch (const Failure &e) {
      reply = {{"ok", false},
               {"error", {{"op", e.op}, {"path", e.path}, {"errno", e.err},
                          {"message", e.message}}}};
    } catch (const json::exception &e) {
      reply = {{"ok", false},
               {"error", {{"op", "parse"}, {"path", "request"}, {"errno", EINVAL},
                          {"message", std::string("bad request: ") + e.what()}}}};
    }
    reply["id"] = id;
    send(FrameType::reply, reply);
  }

  json status() {
    json j = {{"phase", sandbox_pid_ == 0 ? "idle" : exited_ ? "exited" : "running"},
              {"pid", sandbox_pid_},
              {"uptime_ns", boottime_ns()}};
    if (exited_)
      j["exit"] = status_json(exit_status_);
    return j;
  }

  // The sandbox's identity: fresh randomness, the host's clock.
  void take_identity(const json &req) {
    auto bytes = req.at("entropy").get<std::vector<unsigned>>();
    if (bytes.size() < 32)
      throw Failure{"start", "entropy", EINVAL, "at least 32 bytes of entropy are needed"};
    std::vector<char> buf(sizeof(struct rand_pool_info) + bytes.size());
    auto *info = reinterpret_cast<struct rand_pool_info *>(buf.data());
    info->entropy_count = static_cast<int>(bytes.size() * 8);
    info->buf_size = static_cast<int>(bytes.size());
    auto *out = reinterpret_cast<unsigned char *>(info->buf);
    for (size_t i = 0; i < bytes.size(); ++i)
      out[i] = static_cast<unsigned char>(bytes[i]);
    int fd = ::open("/dev/urandom", O_RDWR | O_CLOEXEC);
    if (fd < 0)
      fail("open", "/dev/urandom");
    int rc = ::ioctl(fd, RNDADDENTROPY, info);
    int err = errno;
    ::close(fd);
    if (rc < 0)
      fail("ioctl RNDADDENTROPY", "/dev/urandom", err);
    int64_t ns = req.at("realtime_ns").get<int64_t>();
    if (ns > 0) {
      struct timespec t = {static_cast<time_t>(ns / 1000000000LL),
                           static_cast<long>(ns % 1000000000LL)};
      check(::clock_settime(CLOCK_REALTIME, &t), "clock_settime", "CLOCK_REALTIME");
    }
  }

  void make_root(const json &req) {
    std::string disk = req.at("disk").get<std::string>();
    std::string tag = req.at("share_tag").get<std::string>();
    mount_or_fail(disk.c_str(), "/mnt/rw", "ext4", MS_NOATIME, "");
    ::mkdir("/mnt/rw/upper", 0755);
    ::mkdir("/mnt/rw/work", 0700);
    mount_or_fail(tag.c_str(), "/mnt/lower", "9p", MS_RDONLY,
                  "trans=virtio,version=9p2000.L,msize=262144,cache=loose");
    mount_or_fail("overlay", "/newroot", "overlay", 0,
                  "lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work");
  }

  void make_cgroup(const json &l) {
    // Every controller the kernel has, for the sandbox's cgroup.
    std::string have;
    try {
      int fd = ::open("/sys/fs/cgroup/cgroup.controllers", O_RDONLY | O_CLOEXEC);
      char buf[256] = {};
      if (fd >= 0) {
        (void)!::read(fd, buf, sizeof buf - 1);
        ::close(fd);
      }
      have = buf;
    } catch (...) {
    }
    for (const char *c : {"cpu", "memory", "pids"})
      if (have.find(c) != std::string::npos)
        write_text("/sys/fs/cgroup/cgroup.subtree_control", std::string("+") + c);
    if (::mkdir(kSandboxCgroup, 0755) < 0 && errno != EEXIST)
      fail("mkdir", kSandboxCgroup);
    double cpus = l.value("cpus", 0.0);
    if (cpus > 0)
      write_text(std::string(kSandboxCgroup) + "/cpu.max",
                 std::to_string(static_cast<long>(std::llround(cpus * 100000))) + " 100000");
    if (uint64_t m = l.value("memory_bytes", uint64_t{0}))
      write_text(std::string(kSandboxCgroup) + "/memory.max", std::to_string(m));
    if (uint64_t p = l.value("pids", uint64_t{0}))
      write_text(std::string(kSandboxCgroup) + "/pids.max", std::to_string(p));
  }

  json start(const json &req) {
    int64_t received = boottime_ns();
    if (sandbox_pid_ != 0)
      throw Failure{"start", "sandbox", EBUSY, "the sandbox has been started already"};
    auto argv = req.at("argv").get<std::vector<std::string>>();
    auto env = req.at("env").get<std::vector<std::string>>();
    std::string cwd = req.value("cwd", std::string("/"));
    std::string hostname = req.at("hostname").get<std::string>();
    if (argv.empty())
      throw Failure{"start", "argv", EINVAL, "no command"};
    take_identity(req);
    make_root(req);
    int64_t mounted = boottime_ns();
    make_cgroup(req.at("limits"));
    int64_t cgrouped = boottime_ns();

    int cg = ::open(kSandboxCgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg < 0)
      fail("open", kSandboxCgroup);
    int report[2];
    check(::pipe2(report, O_CLOEXEC), "pipe", "exec report");
    struct clone_args ca = {};
    ca.flags = CLONE_INTO_CGROUP | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
    ca.exit_signal = SIGCHLD;
    ca.cgroup = static_cast<uint64_t>(cg);
    long pid = ::syscall(SYS_clone3, &ca, sizeof ca);
    if (pid == 0) {
      ::close(report[0]);
      run_sandbox_init(report[1], argv, env, cwd, hostname);
    }
    int err = errno;
    ::close(cg);
    ::close(report[1]);
    if (pid < 0) {
      ::close(report[0]);
      fail("clone3", "sandbox", err);
    }
    auto why = read_failure(report[0]);
    ::close(report[0]);
    if (why) {
      int st;
      ::waitpid(static_cast<pid_t>(pid), &st, 0);
      throw Failure{stage_op(why->stage), why->stage == kStageExec ? argv[0] : cwd, why->err,
                    std::string(stage_op(why->stage)) + " " + argv[0] + ": " +
                        std::strerror(why->err)};
    }
    sandbox_pid_ = static_cast<pid_t>(pid);
    return {{"pid", pid},
            {"times",
             {{"received_ns", received},
              {"mounted_ns", mounted},
              {"cgroup_ns", cgrouped},
              {"exec_ns", boottime_ns()}}}};
  }

  // The sandbox's first process: its own mount, pid, uts and ipc
  // namespaces, the overlay as its root.
  [[noreturn]] static void run_sandbox_init(int report, std::vector<std::string> argv,
                                            std::vector<std::string> env, const std::string &cwd,
                                            const std::string &hostname) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // initramfs is rootfs, which pivot_root cannot leave: move the overlay
    // onto / in this namespace and chroot into it (switch_root's way).
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
        ::chdir("/newroot") < 0 || ::mount("/newroot", "/", nullptr, MS_MOVE, nullptr) < 0 ||
        ::chroot(".") < 0 || ::chdir("/") < 0)
      child_fail(report, kStageMounts);
    ::mkdir("/proc", 0555);
    ::mkdir("/dev", 0755);
    ::mkdir("/sys", 0555);
    ::mkdir("/tmp", 01777);
    if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0 ||
        ::mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, nullptr) < 0)
      child_fail(report, kStageMounts);
    ::mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, nullptr);
    if (::sethostname(hostname.data(), hostname.size()) < 0)
      child_fail(report, kStageHostname);
    if (::chdir(cwd.c_str()) < 0)
      child_fail(report, kStageCwd);
    exec_command(report, argv, env);
  }

  // execvp with `env` as the environment (and its PATH for the search).
  [[noreturn]] static void exec_command(int report, std::vector<std::string> &argv,
                                        std::vector<std::string> &env) {
    ::setsid();
    auto cargv = c_strings(argv);
    auto cenv = c_strings(env);
    environ = cenv.data();
    ::execvp(cargv[0], cargv.data());
    child_fail(report, kStageExec);
  }

  json exec(const json &req) {
    if (sandbox_pid_ == 0 || exited_)
      throw Failure{"exec", "sandbox", ESRCH, "the sandbox's command is not running"};
    auto argv = req.at("argv").get<std::vector<std::string>>();
    auto env = req.value("env", std::vector<std::string>{});
    if (env.empty())
      env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    std::string cwd = req.value("cwd", std::string("/"));
    int timeout_ms = req.value("timeout_ms", 10000);
    if (argv.empty())
      throw Failure{"exec", "argv", EINVAL, "no command"};
    int out[2], err[2], report[2];
    check(::pipe2(out, O_CLOEXEC), "pipe", "stdout");
    check(::pipe2(err, O_CLOEXEC), "pipe", "stderr");
    check(::pipe2(report, O_CLOEXEC), "pipe", "exec report");
    pid_t helper = ::fork();
    if (helper == 0)
      run_exec_helper(argv, env, cwd, out[1], err[1], report[1]);
    int fork_err = errno;
    ::close(out[1]);
    ::close(err[1]);
    ::close(report[1]);
    if (helper < 0) {
      ::close(out[0]);
      ::close(err[0]);
      ::close(report[0]);
      fail("fork", "exec", fork_err);
    }
    auto why = read_failure(report[0]);
    ::close(report[0]);
    std::string o, e;
    bool timed_out = false;
    if (!why)
      timed_out = collect(out[0], err[0], o, e, helper, timeout_ms);
    ::close(out[0]);
    ::close(err[0]);
    int st = 0;
    while (::waitpid(helper, &st, 0) < 0 && errno == EINTR) {
    }
    if (why)
      throw Failure{stage_op(why->stage), argv[0], why->err,
                    std::string(stage_op(why->stage)) + " " + argv[0] + ": " +
                        std::strerror(why->err)};
    return {{"status", status_json(st)}, {"timed_out", timed_out}, {"stdout", o}, {"stderr", e}};
  }

  // Reads both streams until they close or the time is up (then the
  // command is killed).  Output beyond kMaxOutput per stream is dropped.
  static bool collect(int out, int err, std::string &o, std::string &e, pid_t helper,
                      int timeout_ms) {
    int64_t deadline = boottime_ns() + static_cast<int64_t>(timeout_ms) * 1000000;
    bool open[2] = {true, true};
    while (open[0] || open[1]) {
      int64_t left = (deadline - boottime_ns()) / 1000000;
      if (left <= 0) {
        ::kill(helper, SIGKILL);
        return true;
      }
      struct pollfd p[2] = {{open[0] ? out : -1, POLLIN, 0}, {open[1] ? err : -1, POLLIN, 0}};
      int n = ::poll(p, 2, static_cast<int>(left));
      if (n < 0 && errno != EINTR)
        return false;
      for (int i = 0; i < 2; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP)))
          continue;
        char buf[8192];
        ssize_t r = ::read(i == 0 ? out : err, buf, sizeof buf);
        if (r <= 0) {
          open[i] = false;
          continue;
        }
        std::string &dst = i == 0 ? o : e;
        if (dst.size() < kMaxOutput)
          dst.append(buf, std::min(static_cast<size_t>(r), kMaxOutput - dst.size()));
      }
    }
    return false;
  }

  // Between the agent and an exec'd command: joins the sandbox's cgroup
  // and namespaces, forks the command (a new pid namespace applies to
  // children only) and passes its exit status on.
  [[noreturn]] void run_exec_helper(std::vector<std::string> &argv, std::vector<std::string> &env,
                                    const std::string &cwd, int out, int err, int report) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    std::string procs = std::string(kSandboxCgroup) + "/cgroup.procs";
    int cg = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    std::string me = std::to_string(::getpid());
    if (cg < 0 || ::write(cg, me.data(), me.size()) < 0)
      child_fail(report, kStageCgroup);
    ::close(cg);
    // The pid namespace and the others; mnt last (it changes our root).
    for (const char *ns : {"pid", "uts", "ipc", "mnt"}) {
      std::string path = "/proc/" + std::to_string(sandbox_pid_) + "/ns/" + ns;
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, 0) < 0)
        child_fail(report, kStageSetns);
      ::close(fd);
    }
    pid_t cmd = ::fork();
    if (cmd == 0) {
      if (::chdir(cwd.c_str()) < 0)
        child_fail(report, kStageCwd);
      int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (null >= 0)
        ::dup2(null, 0);
      ::dup2(out, 1);
      ::dup2(err, 2);
      exec_command(report, argv, env);
    }
    ::close(out);
    ::close(err);
    ::close(report);
    if (cmd < 0)
      ::_exit(126);
    int st = 0;
    while (::waitpid(cmd, &st, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(st)) {
      ::signal(WTERMSIG(st), SIG_DFL);
      ::kill(::getpid(), WTERMSIG(st));
    }
    ::_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128);
  }

  int sigfd_ = -1;
  int port_ = -1;
  bool host_away_ = false;
  FrameReader reader_;
  pid_t sandbox_pid_ = 0;
  bool exited_ = false;
  int exit_status_ = 0;
};

} // namespace

int main() {
  if (::getpid() != 1) {
    std::fprintf(stderr, "rundkit-agent: runs as PID 1 of a sandbox guest only\n");
    return 2;
  }
  Agent a;
  a.boot();
  a.serve();
}
