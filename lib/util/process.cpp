#include "util/process.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS.
extern "C" {
#include <sys/pidfd.h>
}
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include <fmt/format.h>

extern char **environ;

namespace rundkit {

// --- ExitStatus -------------------------------------------------------------

ExitStatus ExitStatus::from_siginfo(int code, int status) noexcept {
  if (code == CLD_EXITED)
    return exited(status);
  return signalled(status);
}

std::string ExitStatus::describe() const {
  if (!signalled_)
    return fmt::format("exited {}", value_);
  const char *abbrev = ::sigabbrev_np(value_);
  return abbrev ? fmt::format("killed by SIG{}", abbrev) : fmt::format("killed by signal {}", value_);
}

// --- Child ------------------------------------------------------------------

Child::Child(Child &&o) noexcept
    : pid_(std::exchange(o.pid_, -1)), pidfd_(std::move(o.pidfd_)), name_(std::move(o.name_)),
      status_(std::move(o.status_)), stdin_(std::move(o.stdin_)), stdout_(std::move(o.stdout_)),
      stderr_(std::move(o.stderr_)), gate_(std::move(o.gate_)), report_(std::move(o.report_)),
      cwd_(std::move(o.cwd_)) {}

Child &Child::operator=(Child &&o) noexcept {
  if (this != &o) {
    drop();
    pid_ = std::exchange(o.pid_, -1);
    pidfd_ = std::move(o.pidfd_);
    name_ = std::move(o.name_);
    status_ = std::move(o.status_);
    stdin_ = std::move(o.stdin_);
    stdout_ = std::move(o.stdout_);
    stderr_ = std::move(o.stderr_);
    gate_ = std::move(o.gate_);
    report_ = std::move(o.report_);
    cwd_ = std::move(o.cwd_);
  }
  return *this;
}

Child::~Child() { drop(); }

Child Child::adopt(pid_t pid, std::string name) {
  if (pid <= 0)
    throw Error("pidfd_open", fmt::format("{} (pid {})", name, pid), EINVAL);
  int fd = ::pidfd_open(pid, 0);
  check_sys(fd, "pidfd_open", fmt::format("{} (pid {})", name, pid));
  return Child(pid, Fd(fd, "pidfd"), std::move(name));
}

void Child::drop() noexcept {
  if (!pidfd_.valid() || status_)
    return;
  ::pidfd_send_signal(pidfd_.get(), SIGKILL, nullptr, 0);
  siginfo_t info;
  while (::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED) < 0 && errno == EINTR) {
  }
  pidfd_.reset();
}

std::optional<ExitStatus> Child::reap(int flags) {
  if (status_)
    return status_;
  if (!pidfd_.valid())
    throw Error("waitid", name_, ECHILD);
  siginfo_t info;
  std::memset(&info, 0, sizeof(info));
  int rc;
  while ((rc = ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED | flags)) < 0 &&
         errno == EINTR) {
  }
  check_sys(rc, "waitid", fmt::format("{} (pid {})", name_, pid_));
  if (info.si_pid == 0)
    return std::nullopt; // WNOHANG, still running
  status_ = ExitStatus::from_siginfo(info.si_code, info.si_status);
  return status_;
}

ExitStatus Child::wait() { return *reap(0); }

std::optional<ExitStatus> Child::try_wait() { return reap(WNOHANG); }

std::optional<ExitStatus> Child::wait_for(std::chrono::milliseconds timeout) {
  if (status_)
    return status_;
  if (!pidfd_.valid())
    throw Error("waitid", name_, ECHILD);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // Rounded up: a timeout never ends early.
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    struct pollfd p = {pidfd_.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::max<long long>(0, left.count())));
    if (rc < 0 && errno == EINTR)
      continue;
    check_sys(rc, "poll", fmt::format("pidfd of {} (pid {})", name_, pid_));
    if (rc > 0)
      return reap(WNOHANG);
    if (left.count() <= 0)
      return std::nullopt;
  }
}

void Child::signal(int sig) {
  if (status_ || !pidfd_.valid())
    throw Error("pidfd_send_signal", fmt::format("{} (pid {}, reaped)", name_, pid_), ESRCH);
  if (::pidfd_send_signal(pidfd_.get(), sig, nullptr, 0) < 0 && errno != ESRCH)
    throw Error("pidfd_send_signal", fmt::format("{} (pid {})", name_, pid_), errno);
}

ExitStatus Child::kill() {
  if (status_)
    return *status_;
  signal(SIGKILL);
  return wait();
}

Fd Child::detach() noexcept {
  // A held child given up before start() is abandoned: it reads EOF.
  gate_.reset();
  report_.reset();
  return std::move(pidfd_);
}

// --- the child side ---------------------------------------------------------

namespace {

// Where the child side stopped: named in the parent's error.
enum Stage : int { kStageExec, kStageDup, kStageChdir, kStageSetsid, kStagePrctl, kStageCgroup };

// Exit code of a held child whose gate closed without start().
constexpr int kAbandoned = 126;

struct ChildReport {
  int stage;
  int err;
};

struct Mapping {
  int source; // in the parent
  int target; // in the child
};

// Everything the child needs, prepared in the parent: after clone only
// async-signal-safe calls on this memory.
struct ChildPlan {
  const char *path = nullptr;
  char *const *argv = nullptr;
  char *const *envp = nullptr;
  const char *cwd = nullptr;
  Mapping *maps = nullptr;
  int nmaps = 0;
  int high = 3; // copies of the sources go at or above this
  int report_fd = -1;
  int gate_fd = -1;      // held: read end of the gate
  int gate_keep_fd = -1; // held: the parent's write end, closed in the child
  bool idle = false;
  bool new_session = false;
  int pdeathsig = 0;
  pid_t parent = 0;
  sigset_t mask; // the child starts with this signal mask
};

[[noreturn]] void child_fail(const ChildPlan &p, int stage, int err) {
  ChildReport r{stage, err};
  ssize_t n;
  do {
    n = ::write(p.report_fd, &r, sizeof(r));
  } while (n < 0 && errno == EINTR);
  ::_exit(127);
}

// Default dispositions for every signal, then the plan's mask.
void child_reset_signals(const ChildPlan &p) {
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s)
    ::sigaction(s, &dfl, nullptr); // SIGKILL/SIGSTOP and glibc's own fail: fine
  ::sigprocmask(SIG_SETMASK, &p.mask, nullptr);
}

[[noreturn]] void child_exec(ChildPlan &p) {
  child_reset_signals(p);
  // Our copy of the gate's write end would keep us waiting forever once
  // the parent is gone; with it closed, EOF means "abandoned".
  if (p.gate_keep_fd >= 0)
    ::close(p.gate_keep_fd);
  if (p.new_session && ::setsid() < 0)
    child_fail(p, kStageSetsid, errno);
  if (p.pdeathsig) {
    if (::prctl(PR_SET_PDEATHSIG, p.pdeathsig) < 0)
      child_fail(p, kStagePrctl, errno);
    if (::getppid() != p.parent) // the parent died before prctl took
      ::_exit(127);
  }
  // The report pipe and every source move above all targets first, so that
  // placing one target can never overwrite a source or the report pipe.
  int r = ::fcntl(p.report_fd, F_DUPFD_CLOEXEC, p.high);
  if (r < 0)
    child_fail(p, kStageDup, errno);
  p.report_fd = r;
  if (p.gate_fd >= 0) {
    r = ::fcntl(p.gate_fd, F_DUPFD_CLOEXEC, p.high);
    if (r < 0)
      child_fail(p, kStageDup, errno);
    p.gate_fd = r;
  }
  for (int i = 0; i < p.nmaps; ++i) {
    int c = ::fcntl(p.maps[i].source, F_DUPFD_CLOEXEC, p.high);
    if (c < 0)
      child_fail(p, kStageDup, errno);
    p.maps[i].source = c;
  }
  // Nothing but the targets (and 0-2 when inherited) crosses exec.
  ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  for (int i = 0; i < p.nmaps; ++i)
    if (::dup2(p.maps[i].source, p.maps[i].target) < 0) // clears FD_CLOEXEC
      child_fail(p, kStageDup, errno);
  if (p.cwd && ::chdir(p.cwd) < 0)
    child_fail(p, kStageChdir, errno);
  if (p.gate_fd >= 0) {
    char go = 0;
    ssize_t n;
    while ((n = ::read(p.gate_fd, &go, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1)
      ::_exit(kAbandoned);
  }
  if (p.idle) {
    // EOF on the report pipe tells a waiting parent we are in place.
    ::syscall(SYS_close_range, 3U, ~0U, 0U);
    for (;;)
      ::pause();
  }
  ::execve(p.path, p.argv, p.envp);
  child_fail(p, kStageExec, errno);
}

int child_exec_trampoline(void *arg) { child_exec(*static_cast<ChildPlan *>(arg)); }

// argv[0] as execvp would find it, looked up here because the child may not
// allocate.  Empty if not found (errno-style code in `err`).
std::string resolve(const std::string &name, int &err) {
  if (name.find('/') != std::string::npos)
    return name;
  const char *path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  err = ENOENT;
  size_t start = 0;
  for (;;) {
    size_t colon = dirs.find(':', start);
    std::string dir = dirs.substr(start, colon == std::string::npos ? colon : colon - start);
    std::string cand = (dir.empty() ? std::string(".") : dir) + "/" + name;
    struct stat st;
    if (::stat(cand.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (::access(cand.c_str(), X_OK) == 0)
        return cand;
      err = EACCES;
    }
    if (colon == std::string::npos)
      return {};
    start = colon + 1;
  }
}

std::vector<char *> c_strings(const std::vector<std::string> &v) {
  std::vector<char *> out;
  out.reserve(v.size() + 1);
  for (const auto &s : v)
    out.push_back(const_cast<char *>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

const char *stage_op(int stage) {
  switch (stage) {
  case kStageDup: return "dup2";
  case kStageChdir: return "chdir";
  case kStageSetsid: return "setsid";
  case kStagePrctl: return "prctl(PR_SET_PDEATHSIG)";
  case kStageCgroup: return "join cgroup";
  default: return "exec";
  }
}

// Blocks every signal in the calling thread while alive: a vfork child shares
// our memory, and a handler running in it would corrupt it.
class BlockSignals {
public:
  BlockSignals() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old_);
  }
  ~BlockSignals() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  BlockSignals(const BlockSignals &) = delete;
  BlockSignals &operator=(const BlockSignals &) = delete;

private:
  sigset_t old_;
};

// A stack for the vfork child, unmapped when the child has exec'd or died.
class ChildStack {
public:
  static constexpr size_t kSize = 64 * 1024;
  ChildStack() {
    base_ = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                   -1, 0);
    if (base_ == MAP_FAILED)
      throw Error("mmap", "child stack", errno);
  }
  ~ChildStack() { ::munmap(base_, kSize); }
  ChildStack(const ChildStack &) = delete;
  ChildStack &operator=(const ChildStack &) = delete;
  void *top() const { return static_cast<char *>(base_) + kSize; }

private:
  void *base_;
};

} // namespace

std::string find_executable(const std::string &name) {
  int err = 0;
  std::string path = resolve(name, err);
  struct stat st;
  if (path.empty())
    ; // err is set
  else if (::stat(path.c_str(), &st) < 0)
    err = errno;
  else if (!S_ISREG(st.st_mode) || ::access(path.c_str(), X_OK) < 0)
    err = EACCES;
  else
    return path;
  throw Error("exec", name, err);
}

std::optional<Fd> open_process(const ProcessId &id, const std::string &proc_root) {
  if (id.pid <= 0 || !id.alive(proc_root))
    return std::nullopt;
  int fd = ::pidfd_open(id.pid, 0);
  if (fd < 0) {
    if (errno == ESRCH)
      return std::nullopt;
    throw Error("pidfd_open", fmt::format("pid {}", id.pid), errno);
  }
  Fd pidfd(fd, fmt::format("pidfd {}", id.pid));
  // The pid may have been freed and reused between the check and the
  // open: the start time read again now names the process the fd holds.
  if (!id.alive(proc_root))
    return std::nullopt;
  return pidfd;
}

bool wait_process_exit(const Fd &pidfd, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline -
                                                             std::chrono::steady_clock::now());
    struct pollfd p = {pidfd.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::max<long>(0, left.count())));
    if (rc > 0)
      return true;
    if (rc < 0 && errno != EINTR)
      throw Error("poll", pidfd.path(), errno);
    if (rc == 0)
      return false;
  }
}

bool kill_process(const Fd &pidfd, std::chrono::milliseconds timeout) {
  if (::pidfd_send_signal(pidfd.get(), SIGKILL, nullptr, 0) < 0 && errno != ESRCH)
    throw Error("pidfd_send_signal", pidfd.path(), errno);
  return wait_process_exit(pidfd, timeout);
}

// --- spawn ------------------------------------------------------------------

Child spawn(const SpawnOptions &opts) {
  if (opts.argv.empty() && !opts.idle)
    throw Error("spawn", "(empty argv)", EINVAL);
  const std::string name = opts.argv.empty() ? std::string("(idle)") : opts.argv[0];
  std::string path;
  if (!opts.idle) {
    // A name with '/' is left to the child's execve: it is relative to the
    // child's cwd, and a held child reports its failure from start().
    int lookup_err = 0;
    path = resolve(name, lookup_err);
    if (path.empty())
      throw Error("exec", name, lookup_err);
  }

  std::vector<char *> cargv = c_strings(opts.argv);
  std::vector<char *> cenv;
  if (opts.env)
    cenv = c_strings(*opts.env);

  // Descriptors: the parent's pipe ends, the child's sources.
  std::vector<Fd> child_ends; // closed here once the child has them
  std::vector<Mapping> maps;
  Fd parent_ends[3];
  Fd devnull;
  const Stdio *stdio[3] = {&opts.in, &opts.out, &opts.err};
  for (int i = 0; i < 3; ++i) {
    switch (stdio[i]->kind()) {
    case Stdio::Kind::inherit:
      break;
    case Stdio::Kind::null:
      if (!devnull)
        devnull = Fd::open("/dev/null", O_RDWR);
      maps.push_back({devnull.get(), i});
      break;
    case Stdio::Kind::fd:
      maps.push_back({stdio[i]->source(), i});
      break;
    case Stdio::Kind::pipe: {
      int p[2];
      check_sys(::pipe2(p, O_CLOEXEC), "pipe", fmt::format("fd {} of {}", i, name));
      Fd rd(p[0]), wr(p[1]);
      Fd &mine = i == 0 ? wr : rd;
      Fd &theirs = i == 0 ? rd : wr;
      maps.push_back({theirs.get(), i});
      parent_ends[i] = std::move(mine);
      child_ends.push_back(std::move(theirs));
      break;
    }
    }
  }
  int high = 3;
  for (const auto &pf : opts.pass_fds) {
    if (pf.child_fd < 0 || pf.parent_fd < 0)
      throw Error("spawn", fmt::format("{}: pass fd {} as {}", name, pf.parent_fd, pf.child_fd),
                  EBADF);
    maps.push_back({pf.parent_fd, pf.child_fd});
  }
  for (const auto &m : maps)
    high = std::max({high, m.target + 1, m.source + 1});

  int rp[2];
  check_sys(::pipe2(rp, O_CLOEXEC), "pipe", "exec report of " + name);
  Fd report_r(rp[0]), report_w(rp[1]);
  Fd gate_r, gate_w;
  if (opts.held) {
    int gp[2];
    check_sys(::pipe2(gp, O_CLOEXEC), "pipe", "gate of " + name);
    gate_r.reset(gp[0]);
    gate_w.reset(gp[1]);
  }

  ChildPlan plan;
  plan.path = path.c_str();
  plan.argv = cargv.data();
  plan.envp = opts.env ? cenv.data() : environ;
  plan.cwd = opts.cwd.empty() ? nullptr : opts.cwd.c_str();
  plan.maps = maps.data();
  plan.nmaps = static_cast<int>(maps.size());
  plan.high = high;
  plan.report_fd = report_w.get();
  plan.gate_fd = gate_r.get();
  plan.gate_keep_fd = gate_w.get();
  plan.idle = opts.idle;
  plan.new_session = opts.new_session;
  plan.pdeathsig = opts.pdeathsig;
  plan.parent = ::getpid();
  sigemptyset(&plan.mask);

  int pidfd = -1;
  long pid;
  {
    BlockSignals blocked;
    if (opts.cgroup || opts.held || opts.idle) {
      // clone3 is the only way into a cgroup at creation, and a child that
      // waits (held, idle) must not hold us asleep as a vfork child does.
      // Without a stack of its own the child is a fork-style copy; it only
      // makes system calls on `plan` before exec.
      struct clone_args args;
      std::memset(&args, 0, sizeof(args));
      args.flags = CLONE_PIDFD;
      args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
      args.exit_signal = SIGCHLD;
      if (opts.cgroup) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = static_cast<uint64_t>(opts.cgroup->get());
      }
      pid = ::syscall(SYS_clone3, &args, sizeof(args));
      if (pid == 0)
        child_exec(plan);
      if (pid < 0) {
        if (!opts.cgroup)
          throw Error("clone3", name, errno);
        throw Error("clone3 into cgroup", opts.cgroup->path().empty()
                                              ? fmt::format("fd {}", opts.cgroup->get())
                                              : opts.cgroup->path(),
                    errno);
      }
    } else {
      // As posix_spawn does: the child borrows our memory and we sleep
      // until it has exec'd, so no page table of a large process is copied.
      ChildStack stack;
      pid = ::clone(child_exec_trampoline, stack.top(),
                    CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &plan, &pidfd);
      if (pid < 0)
        throw Error("clone", name, errno);
    }
  }
  Child child(static_cast<pid_t>(pid), Fd(pidfd, "pidfd"), name);
  report_w.reset();
  gate_r.reset();
  child_ends.clear();
  devnull.reset();
  child.report_ = std::move(report_r);
  child.cwd_ = opts.cwd;
  if (opts.held)
    child.gate_ = std::move(gate_w);
  else
    child.await_exec();
  child.stdin_ = std::move(parent_ends[0]);
  child.stdout_ = std::move(parent_ends[1]);
  child.stderr_ = std::move(parent_ends[2]);
  return child;
}

void Child::await_exec() {
  ChildReport rep{};
  ssize_t n;
  do {
    n = ::read(report_.get(), &rep, sizeof(rep));
  } while (n < 0 && errno == EINTR);
  report_.reset();
  if (n == static_cast<ssize_t>(sizeof(rep))) {
    wait();
    throw Error(stage_op(rep.stage), rep.stage == kStageChdir ? cwd_ : name_, rep.err);
  }
}

void Child::start() {
  if (!gate_.valid())
    throw Error("start", fmt::format("{} (pid {}): not held", name_, pid_), EINVAL);
  Fd gate = std::move(gate_);
  if (!write_all_nosigpipe(gate.get(), "g", fmt::format("gate of {} (pid {})", name_, pid_)))
    throw Error("write", fmt::format("gate of {} (pid {}): it died while held", name_, pid_),
                EPIPE);
  gate.reset();
  await_exec();
}

// --- fork_worker ------------------------------------------------------------

namespace {

void write_stderr(const std::string &s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(2, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    off += static_cast<size_t>(n);
  }
}

} // namespace

Child fork_worker(std::function<int()> fn, const WorkerOptions &opts) {
  pid_t parent = ::getpid();
  int cgroup_procs = -1;
  if (opts.cgroup) {
    cgroup_procs = ::openat(opts.cgroup->get(), "cgroup.procs", O_WRONLY | O_CLOEXEC);
    check_sys(cgroup_procs, "open", opts.cgroup->path_of("cgroup.procs"));
  }
  Fd procs(cgroup_procs);
  // What the parent has buffered must not be written twice, by the child too.
  if (opts.flush_stdio)
    std::fflush(nullptr);
  // fork(), not a raw clone: glibc then gives the child its own thread
  // identity and sane malloc/stdio locks, which code beyond system calls needs.
  pid_t pid = ::fork();
  if (pid < 0)
    throw Error("fork", opts.name, errno);
  if (pid == 0) {
    int code = kWorkerThrew;
    try {
      if (opts.pdeathsig) {
        ::prctl(PR_SET_PDEATHSIG, opts.pdeathsig);
        if (::getppid() != parent)
          ::_exit(kWorkerThrew);
      }
      if (procs && ::write(procs.get(), "0", 1) < 0)
        throw Error("write", opts.cgroup->path_of("cgroup.procs"), errno);
      procs.reset();
      code = fn();
    } catch (const std::exception &e) {
      write_stderr(fmt::format("{}: {}\n", opts.name, e.what()));
      code = kWorkerThrew;
    } catch (...) {
      write_stderr(fmt::format("{}: unknown exception\n", opts.name));
      code = kWorkerThrew;
    }
    if (opts.flush_stdio)
      std::fflush(nullptr); // the worker's own output, then no exit handler
    ::_exit(code);
  }
  int pidfd = ::pidfd_open(pid, 0);
  if (pidfd < 0) {
    int err = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw Error("pidfd_open", opts.name, err);
  }
  return Child(pid, Fd(pidfd, "pidfd"), opts.name);
}

// --- run --------------------------------------------------------------------

namespace {

// SIGPIPE blocked in this thread while alive; one raised by our own write
// to a pipe without reader (EPIPE) is discarded, not delivered, at the end.
class NoSigpipe {
public:
  NoSigpipe() {
    sigemptyset(&pipe_only_);
    sigaddset(&pipe_only_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_only_, &old_);
  }
  ~NoSigpipe() {
    if (epipe_ && !was_pending_) {
      struct timespec zero = {0, 0};
      while (::sigtimedwait(&pipe_only_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  NoSigpipe(const NoSigpipe &) = delete;
  NoSigpipe &operator=(const NoSigpipe &) = delete;
  void saw_epipe() noexcept { epipe_ = true; }

private:
  sigset_t pipe_only_, old_;
  bool was_pending_ = false;
  bool epipe_ = false;
};

} // namespace

bool write_all_nosigpipe(int fd, std::string_view data, const std::string &what) {
  NoSigpipe guard;
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EPIPE) {
      guard.saw_epipe();
      return false;
    }
    if (n < 0)
      throw Error("write", what, errno);
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string shell_join(const std::vector<std::string> &argv) {
  std::string out;
  for (const auto &a : argv) {
    if (!out.empty())
      out += ' ';
    bool plain = !a.empty() && std::all_of(a.begin(), a.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("-_./=:,+@%", c);
    });
    if (plain) {
      out += a;
      continue;
    }
    out += '\'';
    for (char c : a) {
      if (c == '\'')
        out += "'\\''";
      else
        out += c;
    }
    out += '\'';
  }
  return out;
}

namespace {

std::string last_lines(const std::string &s, size_t lines) {
  std::string t = s;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r'))
    t.pop_back();
  size_t pos = t.size();
  for (size_t i = 0; i < lines && pos != std::string::npos && pos > 0; ++i)
    pos = t.rfind('\n', pos - 1);
  if (pos != std::string::npos && pos < t.size() && pos > 0)
    t = t.substr(pos + 1);
  return t;
}

} // namespace

ProcessError::ProcessError(std::string command, std::optional<ExitStatus> status,
                           std::string stderr_tail, std::string what)
    : Error(std::move(what)), command_(std::move(command)), status_(status),
      stderr_tail_(std::move(stderr_tail)) {}

RunResult run(SpawnOptions opts, std::optional<std::chrono::milliseconds> timeout,
              std::optional<std::string_view> input) {
  if (input)
    opts.in = Stdio::pipe();
  else if (opts.in.kind() == Stdio::Kind::inherit)
    opts.in = Stdio::null();
  opts.out = Stdio::pipe();
  opts.err = Stdio::pipe();
  std::string command = shell_join(opts.argv);
  std::optional<NoSigpipe> no_sigpipe;
  if (input)
    no_sigpipe.emplace();
  Child child = spawn(opts);
  Fd &in = child.stdin_pipe();
  size_t in_off = 0;
  if (in.valid() && input && !input->empty()) {
    int fl = ::fcntl(in.get(), F_GETFL);
    check_sys(fl < 0 ? -1 : ::fcntl(in.get(), F_SETFL, fl | O_NONBLOCK), "fcntl",
              "stdin of " + command);
  } else {
    in.reset();
  }
  RunResult res;
  std::string err;
  auto deadline = timeout ? std::chrono::steady_clock::now() + *timeout
                          : std::chrono::steady_clock::time_point::max();
  Fd *fds[3] = {&child.stdout_pipe(), &child.stderr_pipe(), &in};
  char buf[65536];
  while (fds[0]->valid() || fds[1]->valid() || fds[2]->valid()) {
    struct pollfd p[3];
    int np = 0;
    int which[3];
    for (int i = 0; i < 3; ++i)
      if (fds[i]->valid()) {
        p[np] = {fds[i]->get(), static_cast<short>(i == 2 ? POLLOUT : POLLIN), 0};
        which[np++] = i;
      }
    int wait_ms = -1;
    if (timeout) {
      auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now())
              .count();
      if (left <= 0) {
        child.kill();
        throw ProcessError(command, std::nullopt, err,
                           fmt::format("'{}' timed out after {} ms and was killed{}{}", command,
                                       timeout->count(), err.empty() ? "" : ": ",
                                       last_lines(err, 10)));
      }
      wait_ms = static_cast<int>(left);
    }
    int rc = ::poll(p, static_cast<nfds_t>(np), wait_ms);
    if (rc < 0 && errno == EINTR)
      continue;
    check_sys(rc, "poll", command);
    for (int k = 0; k < np; ++k) {
      if (!p[k].revents)
        continue;
      Fd &fd = *fds[which[k]];
      if (which[k] == 2) {
        ssize_t n = ::write(fd.get(), input->data() + in_off, input->size() - in_off);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
          continue;
        if (n < 0 && errno == EPIPE) {
          no_sigpipe->saw_epipe(); // it stopped reading: what it did is its status
          fd.reset();
          continue;
        }
        if (n < 0)
          throw Error("write", "stdin of " + command, errno);
        in_off += static_cast<size_t>(n);
        if (in_off == input->size())
          fd.reset();
        continue;
      }
      ssize_t n = ::read(fd.get(), buf, sizeof(buf));
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        fd.reset();
        continue;
      }
      if (which[k] == 0) {
        res.out.append(buf, static_cast<size_t>(n));
      } else {
        err.append(buf, static_cast<size_t>(n));
        if (err.size() > 2 * kStderrTailBytes)
          err.erase(0, err.size() - kStderrTailBytes);
      }
    }
  }
  if (timeout) {
    auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto st = child.wait_for(std::max(left, std::chrono::milliseconds(0)));
    if (!st) {
      child.kill();
      throw ProcessError(command, std::nullopt, err,
                         fmt::format("'{}' timed out after {} ms and was killed", command,
                                     timeout->count()));
    }
    res.status = *st;
  } else {
    res.status = child.wait();
  }
  if (err.size() > kStderrTailBytes)
    err.erase(0, err.size() - kStderrTailBytes);
  res.stderr_tail = std::move(err);
  return res;
}

std::string run_capture(SpawnOptions opts, std::optional<std::chrono::milliseconds> timeout,
                        std::optional<std::string_view> input) {
  std::string command = shell_join(opts.argv);
  RunResult r = run(std::move(opts), timeout, input);
  if (!r.status.ok()) {
    std::string tail = last_lines(r.stderr_tail, 10);
    throw ProcessError(command, r.status, r.stderr_tail,
                       fmt::format("'{}' {}{}{}", command, r.status.describe(),
                                   tail.empty() ? "" : ": ", tail));
  }
  return std::move(r.out);
}

std::string run_capture(const std::vector<std::string> &argv,
                        std::optional<std::chrono::milliseconds> timeout) {
  SpawnOptions o;
  o.argv = argv;
  return run_capture(std::move(o), timeout);
}

} // namespace rundkit
