#include "cgroup/held_child.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace rundkit {

HeldChild::HeldChild(HeldChild &&o) noexcept
    : pid_(std::exchange(o.pid_, -1)), gate_(std::move(o.gate_)),
      exec_status_(std::move(o.exec_status_)), what_(std::move(o.what_)),
      started_(o.started_) {}

HeldChild::~HeldChild() {
  if (pid_ > 0 && !started_)
    kill_and_reap(pid_);
}

pid_t HeldChild::detach() noexcept {
  started_ = true;
  return pid_;
}

void HeldChild::start() {
  char go = 1;
  check_sys(::write(gate_.get(), &go, 1), "write", "gate of pid " + std::to_string(pid_));
  gate_.reset();
  started_ = true;
  if (!exec_status_)
    return; // placeholder: nothing to exec
  // The status pipe is close-on-exec: EOF means exec succeeded, four bytes
  // are the errno of a failed exec.
  int err = 0;
  ssize_t n;
  do {
    n = ::read(exec_status_.get(), &err, sizeof(err));
  } while (n < 0 && errno == EINTR);
  exec_status_.reset();
  if (n == sizeof(err)) {
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    throw Error("exec", what_, err);
  }
}

HeldChild spawn_held(const std::vector<std::string> &argv, const Fd *cgroup2_dir,
                     const std::optional<std::string> &output) {
  int gate[2], status[2] = {-1, -1};
  check_sys(::pipe2(gate, O_CLOEXEC), "pipe", "gate");
  Fd gate_r(gate[0]), gate_w(gate[1]);
  Fd status_r, status_w;
  if (!argv.empty()) {
    check_sys(::pipe2(status, O_CLOEXEC), "pipe", "exec status");
    status_r.reset(status[0]);
    status_w.reset(status[1]);
  }
  // Everything the child touches is prepared here: after clone3 in a
  // threaded process only async-signal-safe calls are allowed.
  std::vector<char *> cargv;
  for (const auto &a : argv)
    cargv.push_back(const_cast<char *>(a.c_str()));
  cargv.push_back(nullptr);
  const char *out_path = output ? output->c_str() : nullptr;

  struct clone_args args;
  std::memset(&args, 0, sizeof(args));
  args.exit_signal = SIGCHLD;
  if (cgroup2_dir) {
    args.flags = CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(cgroup2_dir->get());
  }
  long pid = ::syscall(SYS_clone3, &args, sizeof(args));
  if (pid < 0)
    throw Error("clone3", cgroup2_dir ? cgroup2_dir->path() : std::string("(no cgroup)"),
                errno);
  if (pid == 0) {
    // Our copy of the gate's write end would keep us waiting forever if the
    // parent died before start(); with it closed, EOF means "abandoned".
    ::close(gate_w.get());
    char go = 0;
    ssize_t n;
    while ((n = ::read(gate_r.get(), &go, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1)
      ::_exit(126);
    if (cargv[0] == nullptr) {
      ::close_range(3, ~0U, 0);
      for (;;)
        ::pause();
    }
    int err = 0;
    if (out_path) {
      int in = ::open("/dev/null", O_RDONLY);
      int out = ::open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0640);
      if (in < 0 || out < 0 || ::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0)
        err = errno;
    }
    // Only stdio crosses into the command: an inherited pipe end would keep
    // a caller reading our output waiting for the VMM's whole life.
    if (!err)
      ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    if (!err) {
      ::execvp(cargv[0], cargv.data());
      err = errno;
    }
    if (::write(status_w.get(), &err, sizeof(err)) < 0) {
    }
    ::_exit(127);
  }
  std::string what = argv.empty() ? std::string("(placeholder)") : argv[0];
  return HeldChild(static_cast<pid_t>(pid), std::move(gate_w), std::move(status_r),
                   std::move(what));
}

void kill_and_reap(pid_t pid) {
  if (pid <= 0)
    return;
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

} // namespace rundkit
