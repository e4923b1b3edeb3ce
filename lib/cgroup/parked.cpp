#include "cgroup/parked.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "util/error.h"
#include "util/fd.h"
#include "util/process.h"

extern char **environ;

namespace rundkit {

namespace {

constexpr int kRequestFd = 3;     // parked: read end of the request pipe
constexpr int kRequestKeepFd = 4; // parked: its own write end (never EOF)
constexpr int kReadyFd = 5;       // parked, until ready: says 'R' to the filler
constexpr uint32_t kMagic = 0x5047434c; // "LCGP"
constexpr size_t kMaxPayload = 256 * 1024;
constexpr size_t kMaxStrings = 16 * 1024;

// What a claimer sends; the payload follows: argc then envc NUL-terminated
// strings.  Descriptor numbers are the claimer's, taken by pidfd_getfd.
struct Request {
  uint32_t magic;
  int32_t claimer;
  int32_t stdio[3];
  int32_t cwd;
  int32_t status;
  uint32_t argc;
  uint32_t envc;
  uint32_t payload_bytes;
};

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

int pidfd_getfd(int pidfd, int fd) {
  return static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0));
}

bool read_full(int fd, void *buf, size_t n) {
  auto *p = static_cast<char *>(buf);
  while (n > 0) {
    ssize_t got = ::read(fd, p, n);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

// The parked process.  Forked (fork_worker) from a process that may have
// threads, so only system calls here, on memory allocated before the fork.
[[noreturn]] void parked_main(int request_r, int ready_w, char *buf, char **strings) {
  ::setsid();
  ::prctl(PR_SET_NAME, "lcg-parked", 0, 0, 0);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < NSIG; ++sig)
    ::signal(sig, SIG_DFL);
  // To their fixed numbers, via numbers above them so neither overwrites
  // the other.
  request_r = ::fcntl(request_r, F_DUPFD_CLOEXEC, 16);
  ready_w = ::fcntl(ready_w, F_DUPFD_CLOEXEC, 16);
  if (request_r < 0 || ready_w < 0 || ::dup3(request_r, kRequestFd, O_CLOEXEC) < 0 ||
      ::dup3(ready_w, kReadyFd, O_CLOEXEC) < 0)
    ::_exit(125);
  // Among what goes: the filler's write end, which must not keep us alive.
  ::close_range(kRequestKeepFd, kRequestKeepFd, 0);
  ::close_range(kReadyFd + 1, ~0U, 0);
  int null = ::open("/dev/null", O_RDWR);
  for (int fd = 0; fd < 3; ++fd)
    if (null >= 0 && null != fd)
      ::dup2(null, fd);
  if (null > 2)
    ::close(null);

  char adopted = 0;
  if (!read_full(kRequestFd, &adopted, 1) || adopted != 'A')
    ::_exit(0); // the filler died before placing us: we belong nowhere
  int keep = ::open("/proc/self/fd/3", O_WRONLY | O_CLOEXEC);
  if (keep < 0 || (keep != kRequestKeepFd && ::dup3(keep, kRequestKeepFd, O_CLOEXEC) < 0))
    ::_exit(125);
  if (keep != kRequestKeepFd)
    ::close(keep);
  // Claimers may come from now on: tell the filler, which publishes us.
  if (::write(kReadyFd, "R", 1) != 1)
    ::_exit(125);
  ::close(kReadyFd);

  Request req;
  if (!read_full(kRequestFd, &req, sizeof req) || req.magic != kMagic ||
      req.payload_bytes > kMaxPayload || req.argc < 1 ||
      static_cast<size_t>(req.argc) + req.envc + 2 > kMaxStrings ||
      !read_full(kRequestFd, buf, req.payload_bytes))
    ::_exit(125);
  int pidfd = pidfd_open(req.claimer);
  if (pidfd < 0)
    ::_exit(125);
  int status = pidfd_getfd(pidfd, req.status); // close-on-exec
  if (status < 0)
    ::_exit(125);
  int got[4];
  int want[4] = {req.stdio[0], req.stdio[1], req.stdio[2], req.cwd};
  for (int i = 0; i < 4; ++i)
    if ((got[i] = pidfd_getfd(pidfd, want[i])) < 0)
      ::_exit(125);
  if (::write(status, "G", 1) != 1)
    ::_exit(125);
  int err = 0;
  for (int fd = 0; fd < 3 && !err; ++fd)
    if (::dup2(got[fd], fd) < 0)
      err = errno;
  if (!err && ::fchdir(got[3]) < 0)
    err = errno;
  for (int fd : got)
    ::close(fd);
  ::close(pidfd);

  // argv, then the environment, each string NUL-terminated.
  char *p = buf, *end = buf + req.payload_bytes;
  size_t n = 0;
  for (uint32_t i = 0; i < req.argc + req.envc && !err; ++i) {
    char *nul = static_cast<char *>(::memchr(p, '\0', static_cast<size_t>(end - p)));
    if (!nul) {
      err = EINVAL;
      break;
    }
    strings[n++] = p;
    if (i + 1 == req.argc)
      strings[n++] = nullptr;
    p = nul + 1;
  }
  strings[n] = nullptr;
  if (!err) {
    environ = strings + req.argc + 1; // execvp searches the claimer's PATH
    ::execvp(strings[0], strings);
    err = errno;
  }
  if (::write(status, &err, sizeof err) < 0) {
  }
  ::_exit(127);
}

} // namespace

ProcessId park_process(const std::function<void(pid_t)> &place, const std::string &proc_root) {
  int ctl[2], report[2], ready[2];
  check_sys(::pipe2(ctl, O_CLOEXEC), "pipe", "parked process request pipe");
  Fd request_r(ctl[0]), request_w(ctl[1]);
  check_sys(::pipe2(report, O_CLOEXEC), "pipe", "parked process pid pipe");
  Fd report_r(report[0]), report_w(report[1]);
  check_sys(::pipe2(ready, O_CLOEXEC), "pipe", "parked process ready pipe");
  Fd ready_r(ready[0]), ready_w(ready[1]);
  // Left uninitialised: only a parked process that gets a request touches
  // them, in its own copy; zero-filling 384 KiB per entry slowed fills.
  std::unique_ptr<char[]> buf(new char[kMaxPayload]);
  std::unique_ptr<char *[]> strings(new char *[kMaxStrings]);

  // A double fork, both through fork_worker: the parked process must be
  // init's child (or a subreaper's), not ours, because it outlives us (we
  // are a short-lived CLI) and must never be left a zombie of a long-lived
  // caller (bench, tests) that does not know to reap it.  Only a parent
  // that exits before it makes that so: the intermediate, which gives the
  // parked process up (Child::detach) and exits at once.  The intermediate
  // itself is our Child, reaped here.
  Child mid = fork_worker(
      [&]() -> int {
        struct {
          pid_t pid;
          int err;
        } rep = {0, 0};
        try {
          Child parked = fork_worker(
              [&]() -> int { parked_main(request_r.get(), ready_w.get(), buf.get(), strings.get()); },
              {.name = "lcg-parked", .flush_stdio = false});
          rep.pid = parked.pid();
          parked.detach();
        } catch (const Error &e) {
          rep.err = e.err() ? e.err() : EAGAIN;
        }
        return ::write(report_w.get(), &rep, sizeof rep) == sizeof rep && rep.pid > 0 ? 0 : 1;
      },
      // Nothing buffered is flushed, here or by either child (both leave
      // by _exit): the intermediate may be a copy of a threaded process.
      {.name = "parked process (intermediate)", .flush_stdio = false});
  report_w.reset();
  ready_w.reset();
  ExitStatus mid_status = mid.wait();
  struct {
    pid_t pid;
    int err;
  } rep = {0, 0};
  if (!read_full(report_r.get(), &rep, sizeof rep) || rep.pid <= 0)
    throw Error("fork", fmt::format("parked process (intermediate {})", mid_status.describe()),
                rep.err ? rep.err : EAGAIN);
  pid_t pid = rep.pid;
  request_r.reset();
  // Held by a pidfd while we place it: it cannot exit meanwhile (it waits
  // for 'A' on a pipe we hold), so the pid still names it here.
  int raw = pidfd_open(pid);
  check_sys(raw, "pidfd_open", fmt::format("parked process {}", pid));
  Fd parked_fd(raw, fmt::format("pidfd of parked process {}", pid));
  try {
    place(pid);
  } catch (...) {
    // It would exit anyway on EOF once we return.
    ::syscall(SYS_pidfd_send_signal, parked_fd.get(), SIGKILL, nullptr, 0);
    throw;
  }
  auto id = ProcessId::of(pid, proc_root);
  if (!id)
    throw Error(fmt::format("parked process {} exited while it was being placed", pid));
  check_sys(::write(request_w.get(), "A", 1), "write", fmt::format("parked process {}", pid));
  char ready_byte = 0;
  if (!read_full(ready_r.get(), &ready_byte, 1) || ready_byte != 'R')
    throw Error(fmt::format("parked process {} exited before it was ready", pid));
  return *id;
}

std::optional<pid_t> exec_in_parked(const ProcessId &parked, const std::vector<std::string> &argv,
                                    const std::optional<std::string> &output,
                                    const std::string &proc_root) {
  if (argv.empty())
    throw InputError("no command to exec in the parked process");
  std::string who = fmt::format("parked process {}", parked.pid);
  int raw = pidfd_open(parked.pid);
  if (raw < 0) {
    if (errno == ESRCH)
      return std::nullopt;
    throw Error("pidfd_open", who, errno);
  }
  Fd pidfd(raw, who);
  // Checked after the pidfd pins the pid: it cannot be recycled now.
  if (!parked.alive(proc_root))
    return std::nullopt;
  raw = pidfd_getfd(pidfd.get(), kRequestKeepFd);
  if (raw < 0) {
    if (errno == ESRCH || errno == EBADF)
      return std::nullopt;
    throw Error("pidfd_getfd", who, errno);
  }
  Fd request_w(raw, who);

  Fd in, out;
  int stdio[3] = {0, 1, 2};
  if (output) {
    in = Fd::open("/dev/null", O_RDONLY | O_CLOEXEC);
    out = Fd::open(*output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    stdio[0] = in.get();
    stdio[1] = stdio[2] = out.get();
  }
  Fd cwd = Fd::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  int sp[2];
  check_sys(::pipe2(sp, O_CLOEXEC), "pipe", "exec status of " + who);
  Fd status_r(sp[0]), status_w(sp[1]);

  std::string payload;
  for (const auto &a : argv)
    payload.append(a.c_str(), a.size() + 1);
  uint32_t envc = 0;
  for (char **e = environ; e && *e; ++e, ++envc)
    payload.append(*e, std::strlen(*e) + 1);
  if (payload.size() > kMaxPayload || argv.size() + envc + 2 > kMaxStrings)
    throw InputError(fmt::format("command and environment too large for a parked process "
                                 "({} bytes, {} strings; at most {} and {})",
                                 payload.size(), argv.size() + envc, kMaxPayload,
                                 kMaxStrings - 2));
  Request req{kMagic,
              static_cast<int32_t>(::getpid()),
              {stdio[0], stdio[1], stdio[2]},
              cwd.get(),
              status_w.get(),
              static_cast<uint32_t>(argv.size()),
              envc,
              static_cast<uint32_t>(payload.size())};
  std::string msg(reinterpret_cast<const char *>(&req), sizeof req);
  msg += payload;
  if (!write_all_nosigpipe(request_w.get(), msg, who))
    return std::nullopt;

  // 'G' (our descriptors are taken), or the parked process died first.
  struct pollfd pfd[2] = {{status_r.get(), POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
  for (;;) {
    int n = ::poll(pfd, 2, -1);
    if (n < 0 && errno == EINTR)
      continue;
    check_sys(n, "poll", who);
    if (pfd[0].revents & POLLIN)
      break;
    if (pfd[1].revents)
      return std::nullopt; // exited without taking the command
  }
  char taken = 0;
  if (::read(status_r.get(), &taken, 1) != 1 || taken != 'G')
    return std::nullopt;
  status_w.reset();
  int err = 0;
  ssize_t n;
  do {
    n = ::read(status_r.get(), &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  if (n == sizeof err)
    throw Error("exec", argv[0], err);
  return parked.pid;
}

} // namespace rundkit
