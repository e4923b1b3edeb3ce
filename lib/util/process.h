// The one owner of child processes.  Every child is created by clone3 with
// CLONE_PIDFD and held by its pidfd (never by a pid that could be recycled),
// optionally inside a cgroup2 directory from its first instruction
// (CLONE_INTO_CGROUP: never migrated), and is killed and reaped when its
// handle is dropped unless it was detached.
//
//   Child c = spawn({.argv = {"qemu-system-x86_64", ...}, .cgroup = &dir});
//   if (auto st = c.wait_for(5s)) ... else c.kill();
//   std::string out = run_capture({"mkfs.ext4", "-q", path});
//   Child w = fork_worker([&] { return do_work(); });
//   Child h = spawn({.argv = {...}, .held = true});  // exists, runs nothing yet
//   write_file(v1_dir + "/cgroup.procs", h.pid()); h.start();
//
// Between clone and exec the child does only async-signal-safe work (dup2,
// fcntl, chdir, setsid, prctl, execve); an exec failure is sent back through
// a close-on-exec pipe, so spawn() of a missing binary throws
// "exec '/x': No such file or directory" in the parent.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/error.h"
#include "util/fd.h"
#include "util/proc.h"

namespace rundkit {

// How a child ended: exited(code) or signalled(sig).
class ExitStatus {
public:
  static ExitStatus exited(int code) noexcept { return {false, code}; }
  static ExitStatus signalled(int sig) noexcept { return {true, sig}; }
  // From a waitid() siginfo (CLD_EXITED, CLD_KILLED, CLD_DUMPED).
  static ExitStatus from_siginfo(int code, int status) noexcept;

  bool is_exited() const noexcept { return !signalled_; }
  bool is_signalled() const noexcept { return signalled_; }
  // Exited with code 0.
  bool ok() const noexcept { return !signalled_ && value_ == 0; }
  // The exit code (is_exited()) or -1.
  int code() const noexcept { return signalled_ ? -1 : value_; }
  // The signal (is_signalled()) or 0.
  int signal() const noexcept { return signalled_ ? value_ : 0; }
  // The shell's convention: the code, or 128 + the signal.
  int shell_code() const noexcept { return signalled_ ? 128 + value_ : value_; }
  // "exited 0", "exited 3", "killed by SIGKILL".
  std::string describe() const;
  bool operator==(const ExitStatus &) const = default;

private:
  ExitStatus(bool signalled, int value) noexcept : signalled_(signalled), value_(value) {}
  bool signalled_ = false;
  int value_ = 0;
};

// What one of the child's descriptors is connected to.
class Stdio {
public:
  enum class Kind { inherit, null, fd, pipe };
  // The parent's own descriptor of that number.
  static Stdio inherit() noexcept { return Stdio(Kind::inherit, -1); }
  // /dev/null (read for stdin, write for stdout/stderr).
  static Stdio null() noexcept { return Stdio(Kind::null, -1); }
  // A descriptor the caller keeps owning; the child gets a copy.
  static Stdio fd(int fd) noexcept { return Stdio(Kind::fd, fd); }
  // A new pipe; the parent's end is Child::stdin_pipe()/stdout_pipe()/stderr_pipe().
  static Stdio pipe() noexcept { return Stdio(Kind::pipe, -1); }

  Kind kind() const noexcept { return kind_; }
  int source() const noexcept { return fd_; }

private:
  Stdio(Kind k, int fd) noexcept : kind_(k), fd_(fd) {}
  Kind kind_;
  int fd_;
};

// A descriptor the child gets at a given number (QEMU's -add-fd fd=N,
// a preopened listening socket).  Every other descriptor above 2 is closed
// at exec.
struct PassFd {
  int parent_fd; // the caller keeps owning it
  int child_fd;
};

struct SpawnOptions {
  std::vector<std::string> argv; // argv[0] is looked up on PATH if it has no '/'
  // The environment; nothing: the parent's.
  std::optional<std::vector<std::string>> env;
  Stdio in = Stdio::inherit();
  Stdio out = Stdio::inherit();
  Stdio err = Stdio::inherit();
  std::vector<PassFd> pass_fds;
  std::string cwd;            // empty: the parent's
  const Fd *cgroup = nullptr; // a cgroup2 directory: CLONE_INTO_CGROUP
  bool new_session = false;   // setsid(): no controlling terminal, own group
  int pdeathsig = 0;          // PR_SET_PDEATHSIG: this signal when the parent thread dies
  // Created, descriptors and cwd in place, but waiting before exec until
  // Child::start(): its pid can be placed (v1 cgroup.procs) before it runs
  // anything of the command.  A held child whose Child is dropped, or
  // whose parent dies, exits (code 126) without running the command.
  bool held = false;
  // No exec: once started, the child closes every descriptor above 2 and
  // sleeps until killed (a placeholder that keeps a cgroup populated).
  // argv is then only its name in messages (may be empty).
  bool idle = false;
};

struct WorkerOptions {
  std::string name = "worker"; // for messages
  // A cgroup2 directory the worker joins (cgroup.procs) before `fn` runs.
  const Fd *cgroup = nullptr;
  int pdeathsig = 0;
  // fflush(nullptr) before the fork and in the worker before it exits.
  // Off for a caller that is itself a forked copy of a threaded process
  // (its stdio locks may be held by threads it does not have) and has
  // nothing buffered.
  bool flush_stdio = true;
};

// A child process, held by its pidfd.  Move-only.  Destroying a Child that
// was neither reaped nor detached sends SIGKILL and reaps it.
class Child {
public:
  Child() = default;
  Child(Child &&other) noexcept;
  Child &operator=(Child &&other) noexcept;
  Child(const Child &) = delete;
  Child &operator=(const Child &) = delete;
  ~Child();

  // Takes over a child of this process known by pid alone (one a library
  // started and detached): pidfd_open is race-free for it, since nobody
  // but us can reap it and free its pid.  Throws Error("pidfd_open", ...).
  static Child adopt(pid_t pid, std::string name);

  bool valid() const noexcept { return pidfd_.valid(); }
  explicit operator bool() const noexcept { return valid(); }
  pid_t pid() const noexcept { return pid_; }
  // Readable (POLLIN) once the child has exited.
  const Fd &pidfd() const noexcept { return pidfd_; }
  // What it runs (argv[0], or the worker's name), for messages.
  const std::string &name() const noexcept { return name_; }

  // Blocks until the child exits and reaps it.
  ExitStatus wait();
  // Waits at most `timeout` (poll on the pidfd); nothing if it still runs.
  std::optional<ExitStatus> wait_for(std::chrono::milliseconds timeout);
  // Reaps the child if it has exited, without blocking.
  std::optional<ExitStatus> try_wait();
  // The status once reaped.
  const std::optional<ExitStatus> &status() const noexcept { return status_; }

  // pidfd_send_signal: never reaches a process that reused the pid.
  // Harmless (no error) once the child has exited but not been reaped.
  void signal(int sig);
  // SIGKILL, then reap.
  ExitStatus kill();
  // Gives the child up: it is no longer killed on drop (nor reaped: a
  // caller that stays its parent reaps it through the returned pidfd).
  Fd detach() noexcept;

  // Releases a SpawnOptions::held child and waits until it has exec'd (or
  // gone idle); throws what spawn() would have thrown for a failed exec
  // (the child is reaped then), or Error("write", ..., EPIPE) if the child
  // died while it was held.
  void start();
  // Held and not started yet.
  bool held() const noexcept { return gate_.valid(); }

  // The parent's ends of Stdio::pipe() descriptors (invalid otherwise).
  Fd &stdin_pipe() noexcept { return stdin_; }
  Fd &stdout_pipe() noexcept { return stdout_; }
  Fd &stderr_pipe() noexcept { return stderr_; }

private:
  friend Child spawn(const SpawnOptions &);
  friend Child fork_worker(std::function<int()>, const WorkerOptions &);
  Child(pid_t pid, Fd pidfd, std::string name) noexcept
      : pid_(pid), pidfd_(std::move(pidfd)), name_(std::move(name)) {}
  std::optional<ExitStatus> reap(int flags);
  void drop() noexcept;
  // Reads the exec report; on one, reaps the child and throws.
  void await_exec();

  pid_t pid_ = -1;
  Fd pidfd_;
  std::string name_;
  std::optional<ExitStatus> status_;
  Fd stdin_, stdout_, stderr_;
  Fd gate_, report_;  // held: the gate's write end, the exec report's read end
  std::string cwd_;   // for a chdir failure reported at start()
};

// Starts argv[0] as SpawnOptions say.  Throws Error("exec", argv[0], errno)
// when it cannot be executed (the child is reaped), Error("clone3", ...) when
// no child could be made.  A plain spawn borrows the parent's memory until
// exec (CLONE_VM|CLONE_VFORK, as posix_spawn does): no page table of a
// large multi-threaded process is copied.  A spawn into a cgroup, held or
// idle is a fork-style clone3 instead (its own copy of memory, only
// async-signal-safe system calls before exec).
Child spawn(const SpawnOptions &opts);

// argv[0] as execvp would find it (PATH search when it has no '/'; else
// relative to our cwd), checked to be an executable regular file; throws
// "exec 'NAME': ..." otherwise.  For callers that must refuse a command
// before they commit resources to it; spawn() itself reports from the child.
std::string find_executable(const std::string &name);

// A process that is not (or no longer) our child, e.g. a VMM started by an
// earlier run of a tool: held by a pidfd opened from its pid + start time,
// so a recycled pid is never signalled.  Nothing if the process is gone.
std::optional<Fd> open_process(const ProcessId &id, const std::string &proc_root = "/proc");
// Waits at most `timeout` for the process behind `pidfd` to exit (POLLIN on
// a pidfd works for any process, not only children); true if it did.
bool wait_process_exit(const Fd &pidfd, std::chrono::milliseconds timeout);
// SIGKILL through `pidfd`, then wait_process_exit(); true once it is gone.
bool kill_process(const Fd &pidfd, std::chrono::milliseconds timeout);

// Exit code of a worker whose callable threw (it printed what() to stderr).
inline constexpr int kWorkerThrew = 70; // EX_SOFTWARE

// Runs `fn` in a forked child and exits it with fn's return value.  The child
// always leaves by _exit(): an exception becomes kWorkerThrew (after its
// message on stderr) and can never unwind into the parent's code, and no
// atexit handler or inherited stdio buffer runs twice.  The child has only
// the calling thread: call it from a single-threaded process, or make `fn`
// touch nothing another thread could have held locked.
Child fork_worker(std::function<int()> fn, const WorkerOptions &opts = {});

// A command that did not exit 0: the command line, how it ended and the end
// of what it wrote to stderr, all in what().
class ProcessError : public Error {
public:
  ProcessError(std::string command, std::optional<ExitStatus> status, std::string stderr_tail,
               std::string what);
  const std::string &command() const noexcept { return command_; }
  // Nothing when it timed out (it was then killed).
  const std::optional<ExitStatus> &status() const noexcept { return status_; }
  const std::string &stderr_tail() const noexcept { return stderr_tail_; }

private:
  std::string command_;
  std::optional<ExitStatus> status_;
  std::string stderr_tail_;
};

struct RunResult {
  ExitStatus status = ExitStatus::exited(0);
  std::string out;         // all of stdout
  std::string stderr_tail; // the last kStderrTailBytes of stderr
};
inline constexpr std::size_t kStderrTailBytes = 8192;

// Runs to completion with stdout captured and stderr's tail kept (the
// options' out/err are replaced by pipes; stdin defaults to /dev/null when
// it is inherit).  With `input`, stdin is a pipe fed with it, then closed;
// a child that exits without reading it all is no error (and raises no
// SIGPIPE here).  A timeout kills the child and throws ProcessError.
RunResult run(SpawnOptions opts, std::optional<std::chrono::milliseconds> timeout = std::nullopt,
              std::optional<std::string_view> input = std::nullopt);
// run() that throws ProcessError unless the command exited 0; returns stdout.
std::string run_capture(SpawnOptions opts,
                        std::optional<std::chrono::milliseconds> timeout = std::nullopt,
                        std::optional<std::string_view> input = std::nullopt);
std::string run_capture(const std::vector<std::string> &argv,
                        std::optional<std::chrono::milliseconds> timeout = std::nullopt);

// Writes all of `data` to a pipe; false if its reader is gone (EPIPE),
// without SIGPIPE killing us.  Throws Error("write", what, errno) otherwise.
bool write_all_nosigpipe(int fd, std::string_view data, const std::string &what);

// argv as a shell would show it: words with special characters quoted.
std::string shell_join(const std::vector<std::string> &argv);

} // namespace rundkit
