// lib/util/process against real processes and the real cgroupfs.
#include "util/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS.
extern "C" {
#include <sys/pidfd.h>
}
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/magic.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>
#include <stdexcept>

#include <gtest/gtest.h>

#include "testing/scratch_cgroup2.h"
#include "util/fd.h"

using namespace rundkit;
using namespace std::chrono_literals;

namespace rundkit {
void PrintTo(const ExitStatus &s, std::ostream *os) { *os << s.describe(); }
} // namespace rundkit

namespace {

SpawnOptions cmd(std::vector<std::string> argv) {
  SpawnOptions o;
  o.argv = std::move(argv);
  return o;
}

std::string read_all(Fd &fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// True once the process behind `pidfd` has exited, waiting at most `limit`.
bool exits_within(int pidfd, std::chrono::milliseconds limit) {
  struct pollfd p = {pidfd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(limit.count())) == 1;
}

bool proc_exists(pid_t pid) {
  struct stat st;
  return ::stat(("/proc/" + std::to_string(pid)).c_str(), &st) == 0;
}

} // namespace

TEST(ExitStatus, Describes) {
  EXPECT_EQ(ExitStatus::exited(0).describe(), "exited 0");
  EXPECT_EQ(ExitStatus::exited(3).describe(), "exited 3");
  EXPECT_EQ(ExitStatus::signalled(SIGKILL).describe(), "killed by SIGKILL");
  EXPECT_TRUE(ExitStatus::exited(0).ok());
  EXPECT_FALSE(ExitStatus::exited(1).ok());
  EXPECT_FALSE(ExitStatus::signalled(SIGTERM).ok());
  EXPECT_EQ(ExitStatus::signalled(SIGTERM).shell_code(), 128 + SIGTERM);
}

TEST(Spawn, ExitCodeAndSignal) {
  EXPECT_EQ(spawn(cmd({"true"})).wait(), ExitStatus::exited(0));
  EXPECT_EQ(spawn(cmd({"sh", "-c", "exit 7"})).wait(), ExitStatus::exited(7));
  EXPECT_EQ(spawn(cmd({"sh", "-c", "kill -TERM $$"})).wait(), ExitStatus::signalled(SIGTERM));
}

TEST(Spawn, ExecFailureCarriesErrno) {
  try {
    spawn(cmd({"/nonexistent/rundkit-no-such-binary"}));
    FAIL() << "spawn of a missing binary returned";
  } catch (const Error &e) {
    EXPECT_EQ(e.err(), ENOENT);
    EXPECT_STREQ(e.what(), "exec '/nonexistent/rundkit-no-such-binary': No such file or directory");
  }
  try {
    spawn(cmd({"rundkit-no-such-binary-on-path"}));
    FAIL() << "spawn of a name not on PATH returned";
  } catch (const Error &e) {
    EXPECT_EQ(e.err(), ENOENT);
    EXPECT_STREQ(e.what(), "exec 'rundkit-no-such-binary-on-path': No such file or directory");
  }
  // A file that exists but is not executable: the errno comes from the
  // child's execve, through the report pipe.
  char path[] = "/tmp/rundkit-noexec.XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  try {
    spawn(cmd({path}));
    FAIL() << "spawn of a non-executable file returned";
  } catch (const Error &e) {
    EXPECT_EQ(e.err(), EACCES) << e.what();
    EXPECT_EQ(e.op(), "exec");
  }
  ::unlink(path);
  SpawnOptions o = cmd({"true"});
  o.cwd = "/nonexistent-rundkit-dir";
  try {
    spawn(o);
    FAIL() << "spawn into a missing cwd returned";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "chdir '/nonexistent-rundkit-dir': No such file or directory");
  }
}

TEST(Spawn, DropKillsAndReaps) {
  pid_t pid;
  Fd watch;
  {
    Child c = spawn(cmd({"sleep", "1000"}));
    pid = c.pid();
    watch = Fd(::pidfd_open(pid, 0));
    ASSERT_TRUE(watch.valid());
    EXPECT_FALSE(c.try_wait()) << "sleep 1000 ended by itself";
  }
  // Dropped: killed, and reaped (no zombie: /proc/PID is gone).
  EXPECT_TRUE(exits_within(watch.get(), 0ms));
  EXPECT_FALSE(proc_exists(pid)) << "pid " << pid << " still in /proc (a zombie?)";
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(Spawn, DetachKeepsRunning) {
  Fd pidfd;
  pid_t pid;
  {
    Child c = spawn(cmd({"sleep", "1000"}));
    pid = c.pid();
    pidfd = c.detach();
  }
  ASSERT_TRUE(pidfd.valid());
  EXPECT_FALSE(exits_within(pidfd.get(), 0ms)) << "a detached child died with its handle";
  EXPECT_EQ(::pidfd_send_signal(pidfd.get(), 0, nullptr, 0), 0);
  // Still our child: end it and reap it ourselves.
  ASSERT_EQ(::pidfd_send_signal(pidfd.get(), SIGKILL, nullptr, 0), 0);
  siginfo_t info;
  ASSERT_EQ(::waitid(P_PIDFD, static_cast<id_t>(pidfd.get()), &info, WEXITED), 0);
  EXPECT_EQ(info.si_pid, pid);
  EXPECT_EQ(info.si_code, CLD_KILLED);
}

TEST(Spawn, WaitForTimesOutThenKill) {
  Child c = spawn(cmd({"sleep", "1000"}));
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(c.wait_for(200ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 200ms);
  EXPECT_EQ(c.kill(), ExitStatus::signalled(SIGKILL));
  EXPECT_EQ(c.status(), ExitStatus::signalled(SIGKILL));
}

TEST(Spawn, WaitForReturnsOnExit) {
  // The child waits for our byte, so wait_for sees it running first.
  SpawnOptions o = cmd({"sh", "-c", "read x; exit 5"});
  o.in = Stdio::pipe();
  Child c = spawn(o);
  EXPECT_FALSE(c.wait_for(0ms));
  ASSERT_EQ(::write(c.stdin_pipe().get(), "\n", 1), 1);
  auto t0 = std::chrono::steady_clock::now();
  auto st = c.wait_for(30s);
  ASSERT_TRUE(st);
  EXPECT_EQ(*st, ExitStatus::exited(5));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}

TEST(Spawn, MovedHandleOwnsTheChild) {
  Child a = spawn(cmd({"sleep", "1000"}));
  Fd watch(::pidfd_open(a.pid(), 0));
  Child b = std::move(a);
  EXPECT_FALSE(a.valid());
  EXPECT_TRUE(b.valid());
  EXPECT_FALSE(exits_within(watch.get(), 0ms));
  b = spawn(cmd({"true"})); // replaces (kills) the sleep
  EXPECT_TRUE(exits_within(watch.get(), 0ms));
  EXPECT_TRUE(b.wait().ok());
}

TEST(Spawn, StdioEnvAndCwd) {
  SpawnOptions o = cmd({"sh", "-c", "echo \"$RUNDKIT_X\"; pwd; cat"});
  o.env = std::vector<std::string>{"RUNDKIT_X=hello world"};
  o.cwd = "/usr";
  o.in = Stdio::pipe();
  o.out = Stdio::pipe();
  Child c = spawn(o);
  ASSERT_EQ(::write(c.stdin_pipe().get(), "piped\n", 6), 6);
  c.stdin_pipe().reset();
  EXPECT_EQ(read_all(c.stdout_pipe()), "hello world\n/usr\npiped\n");
  EXPECT_TRUE(c.wait().ok());
}

TEST(Spawn, OnlyStdioAndPassedFdsReachTheChild) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0); // no O_CLOEXEC: a leak would show
  Fd rd(p[0]), wr(p[1]);
  int leaky = ::dup(wr.get()); // also not close-on-exec
  ASSERT_GE(leaky, 0);
  Fd leak(leaky);
  // sh opens nothing of its own; once it says "ready" (startup done: no
  // transient descriptor such as a locale file), its table is what we gave.
  SpawnOptions o = cmd({"sh", "-c", "echo ready; read x"});
  o.in = Stdio::pipe();
  o.out = Stdio::pipe();
  o.pass_fds = {{wr.get(), 5}};
  Child c = spawn(o);
  char ready[6];
  ASSERT_EQ(::read(c.stdout_pipe().get(), ready, sizeof(ready)), 6);
  std::set<std::string> fds;
  for (const auto &e : std::filesystem::directory_iterator("/proc/" + std::to_string(c.pid()) + "/fd"))
    fds.insert(e.path().filename());
  EXPECT_EQ(fds, (std::set<std::string>{"0", "1", "2", "5"}));
  EXPECT_EQ(std::filesystem::read_symlink("/proc/" + std::to_string(c.pid()) + "/fd/5"),
            std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(wr.get())));
  EXPECT_EQ(std::filesystem::read_symlink("/proc/" + std::to_string(c.pid()) + "/fd/1"),
            std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(c.stdout_pipe().get())));
  c.stdin_pipe().reset(); // read x sees EOF
  EXPECT_EQ(c.wait_for(std::chrono::seconds(30)), ExitStatus::exited(1));
}

TEST(Spawn, PassFdOntoItsOwnNumberAndSwapped) {
  // Sources that are each other's targets: the child side must not clobber
  // one while placing the other.
  int a[2], b[2];
  ASSERT_EQ(::pipe2(a, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(b, O_CLOEXEC), 0);
  Fd ar(a[0]), aw(a[1]), br(b[0]), bw(b[1]);
  SpawnOptions o = cmd({"sh", "-c", "echo A >&" + std::to_string(bw.get()) + "; echo B >&" +
                                        std::to_string(aw.get())});
  o.pass_fds = {{aw.get(), bw.get()}, {bw.get(), aw.get()}};
  Child c = spawn(o);
  aw.reset();
  bw.reset();
  EXPECT_TRUE(c.wait().ok());
  EXPECT_EQ(read_all(ar), "A\n");
  EXPECT_EQ(read_all(br), "B\n");
}

TEST(Spawn, NewSession) {
  SpawnOptions o = cmd({"sleep", "1000"});
  o.new_session = true;
  Child c = spawn(o);
  EXPECT_EQ(::getsid(c.pid()), c.pid());
  Child d = spawn(cmd({"sleep", "1000"}));
  EXPECT_EQ(::getsid(d.pid()), ::getsid(0));
}

TEST(Spawn, PdeathsigKillsTheOrphan) {
  // A worker spawns `sleep` with PDEATHSIG and exits; the sleep must die.
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  Fd rd(p[0]), wr(p[1]);
  Child w = fork_worker([&] {
    SpawnOptions o = cmd({"sleep", "1000"});
    o.pdeathsig = SIGKILL;
    Child c = spawn(o);
    pid_t pid = c.detach().release() >= 0 ? c.pid() : -1;
    if (::write(wr.get(), &pid, sizeof(pid)) != sizeof(pid))
      return 1;
    return 0;
  });
  wr.reset();
  pid_t grandchild = -1;
  ASSERT_EQ(::read(rd.get(), &grandchild, sizeof(grandchild)),
            static_cast<ssize_t>(sizeof(grandchild)));
  Fd watch(::pidfd_open(grandchild, 0));
  ASSERT_TRUE(watch.valid()) << "grandchild " << grandchild << " already gone";
  EXPECT_TRUE(w.wait().ok());
  EXPECT_TRUE(exits_within(watch.get(), 10000ms)) << "the orphan outlived its parent";
}

using ScratchCgroup = rundkit::testing::ScratchCgroup2;

TEST(Spawn, IntoCgroup) {
  ScratchCgroup cg("rundkit-process-test");
  if (!cg.ok())
    GTEST_SKIP() << "no writable cgroup2 mount";
  SpawnOptions o = cmd({"grep", "^0::", "/proc/self/cgroup"});
  o.cgroup = &cg.dir();
  o.out = Stdio::pipe();
  Child c = spawn(o);
  EXPECT_EQ(read_all(c.stdout_pipe()), "0::/" + cg.name() + "\n");
  EXPECT_TRUE(c.wait().ok());
  SpawnOptions s = cmd({"sleep", "1000"});
  s.cgroup = &cg.dir();
  Child sleeper = spawn(s);
  EXPECT_EQ(read_file_at(cg.dir(), "cgroup.procs"), std::to_string(sleeper.pid()) + "\n");
  sleeper.kill();
  // A missing binary is reported the same way from inside a cgroup.
  SpawnOptions bad = cmd({"/nonexistent/x"});
  bad.cgroup = &cg.dir();
  EXPECT_THROW(spawn(bad), Error);
}

TEST(Spawn, IntoCgroupFromTheFirstInstruction) {
  // With pids.max 0 no process can be created inside, and clone3 fails
  // itself: proof the child is created there, not moved there afterwards.
  ScratchCgroup cg("rundkit-process-test");
  if (!cg.ok())
    GTEST_SKIP() << "no writable cgroup2 mount";
  if (::faccessat(cg.dir().get(), "pids.max", W_OK, 0) != 0)
    GTEST_SKIP() << "no pids controller in cgroup2 here (bound to v1?)";
  write_file_at(cg.dir(), "pids.max", "0");
  SpawnOptions o = cmd({"true"});
  o.cgroup = &cg.dir();
  try {
    spawn(o);
    FAIL() << "a process was created in a cgroup with pids.max 0";
  } catch (const Error &e) {
    EXPECT_EQ(e.err(), EAGAIN) << e.what();
    EXPECT_EQ(e.path(), cg.path());
  }
  EXPECT_EQ(read_file_at(cg.dir(), "cgroup.procs"), "");
}

TEST(ForkWorker, ReturnsItsExitCode) {
  Child w = fork_worker([] { return 5; });
  EXPECT_EQ(w.wait(), ExitStatus::exited(5));
}

TEST(ForkWorker, ThrowingWorkerNeverRunsParentCode) {
  // Parent code after fork_worker appends 'P'; a worker that unwound into
  // it would append a second one.
  char path[] = "/tmp/rundkit-worker.XXXXXX";
  int f = ::mkstemp(path);
  ASSERT_GE(f, 0);
  Fd marks(f);
  ::unlink(path);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  Fd err_r(p[0]), err_w(p[1]);
  int saved = ::dup(2);
  ASSERT_GE(saved, 0);
  ::dup2(err_w.get(), 2);
  std::optional<ExitStatus> st;
  try {
    WorkerOptions wo;
    wo.name = "thrower";
    Child w = fork_worker([]() -> int { throw std::runtime_error("boom"); }, wo);
    ::dup2(saved, 2);
    ASSERT_EQ(::write(marks.get(), "P", 1), 1);
    st = w.wait();
  } catch (...) {
    ::dup2(saved, 2);
    ASSERT_EQ(::write(marks.get(), "X", 1), 1);
  }
  ::close(saved);
  err_w.reset();
  ASSERT_TRUE(st);
  EXPECT_EQ(*st, ExitStatus::exited(kWorkerThrew));
  EXPECT_EQ(read_all(err_r), "thrower: boom\n");
  EXPECT_EQ(::pread(marks.get(), nullptr, 0, 0), 0);
  char buf[8] = {};
  EXPECT_EQ(::pread(marks.get(), buf, sizeof(buf), 0), 1);
  EXPECT_STREQ(buf, "P");
}

TEST(ForkWorker, JoinsItsCgroup) {
  ScratchCgroup cg("rundkit-process-test");
  if (!cg.ok())
    GTEST_SKIP() << "no writable cgroup2 mount";
  WorkerOptions wo;
  wo.cgroup = &cg.dir();
  std::string want = "0::/" + cg.name() + "\n";
  Child w = fork_worker(
      [&] { return read_file("/proc/self/cgroup").find("\n" + want) != std::string::npos ? 0 : 1; },
      wo);
  EXPECT_EQ(w.wait(), ExitStatus::exited(0));
}

TEST(Run, CapturesStdout) {
  EXPECT_EQ(run_capture({"echo", "hi"}), "hi\n");
}

TEST(Run, FailureCarriesCommandStatusAndStderrTail) {
  try {
    run_capture({"sh", "-c", "echo out; echo first >&2; echo last line >&2; exit 3"});
    FAIL() << "a failing command did not throw";
  } catch (const ProcessError &e) {
    ASSERT_TRUE(e.status());
    EXPECT_EQ(*e.status(), ExitStatus::exited(3));
    EXPECT_EQ(e.stderr_tail(), "first\nlast line\n");
    EXPECT_STREQ(e.what(), "'sh -c 'echo out; echo first >&2; echo last line >&2; exit 3'' "
                           "exited 3: first\nlast line");
  }
  try {
    run_capture({"sh", "-c", "kill -KILL $$"});
    FAIL() << "a killed command did not throw";
  } catch (const ProcessError &e) {
    EXPECT_EQ(*e.status(), ExitStatus::signalled(SIGKILL));
    EXPECT_NE(std::string(e.what()).find("killed by SIGKILL"), std::string::npos) << e.what();
  }
}

TEST(Run, TimeoutKills) {
  auto t0 = std::chrono::steady_clock::now();
  try {
    run_capture({"sleep", "1000"}, 300ms);
    FAIL() << "sleep 1000 finished within 300 ms";
  } catch (const ProcessError &e) {
    EXPECT_FALSE(e.status());
    EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
  }
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 10s);
}

TEST(Run, BothStreamsLargeNoDeadlock) {
  RunResult r = run(cmd({"sh", "-c", "head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2"}),
                    60s);
  EXPECT_TRUE(r.status.ok());
  EXPECT_EQ(r.out.size(), 1000000u);
  EXPECT_EQ(r.stderr_tail.size(), kStderrTailBytes);
}

// --- held and idle children, adopt ----------------------------------------

namespace {

std::string exe_of(pid_t pid) {
  return std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/exe").string();
}

std::string temp_dir() {
  char tmpl[] = "/tmp/rundkit-held-XXXXXX";
  if (!::mkdtemp(tmpl))
    throw Error("mkdtemp", tmpl, errno);
  return tmpl;
}

} // namespace

// Until start() the child is still a copy of us (it cannot have exec'd:
// exec comes after its gate), however long we look.
TEST(Spawn, HeldChildRunsNothingUntilStart) {
  std::string dir = temp_dir();
  std::string mark = dir + "/ran";
  SpawnOptions o = cmd({"sh", "-c", "echo > " + mark + "; exit 7"});
  o.held = true;
  Child c = spawn(o);
  EXPECT_TRUE(c.held());
  EXPECT_EQ(exe_of(c.pid()), exe_of(::getpid()));
  EXPECT_FALSE(c.try_wait());
  EXPECT_FALSE(std::filesystem::exists(mark));
  c.start();
  EXPECT_FALSE(c.held());
  EXPECT_EQ(c.wait(), ExitStatus::exited(7));
  EXPECT_TRUE(std::filesystem::exists(mark));
  std::filesystem::remove_all(dir);
}

TEST(Spawn, HeldExecFailureIsReportedByStart) {
  SpawnOptions o = cmd({"/nonexistent/rundkit-vmm"});
  o.held = true;
  Child c = spawn(o);
  try {
    c.start();
    FAIL() << "exec of a missing file succeeded";
  } catch (const Error &e) {
    EXPECT_EQ(e.err(), ENOENT);
    EXPECT_STREQ(e.what(), "exec '/nonexistent/rundkit-vmm': No such file or directory");
  }
  EXPECT_TRUE(c.status()) << "not reaped";
}

// Given up (or its parent gone) before start(), a held child reads EOF at
// its gate and exits without running the command.
TEST(Spawn, AbandonedHeldChildExitsWithoutRunning) {
  std::string dir = temp_dir();
  std::string mark = dir + "/ran";
  SpawnOptions o = cmd({"sh", "-c", "echo > " + mark});
  o.held = true;
  Child c = spawn(o);
  pid_t pid = c.pid();
  Fd pidfd = c.detach();
  siginfo_t info = {};
  ASSERT_EQ(::waitid(P_PIDFD, static_cast<id_t>(pidfd.get()), &info, WEXITED), 0);
  EXPECT_EQ(info.si_pid, pid);
  EXPECT_EQ(ExitStatus::from_siginfo(info.si_code, info.si_status), ExitStatus::exited(126));
  EXPECT_FALSE(std::filesystem::exists(mark));
  std::filesystem::remove_all(dir);
}

TEST(Spawn, StartOfAChildThatDiedWhileHeldIsAnError) {
  SpawnOptions o = cmd({"true"});
  o.held = true;
  Child c = spawn(o);
  c.signal(SIGKILL);
  ASSERT_TRUE(exits_within(c.pidfd().get(), 10s));
  // Its gate has no reader now: EPIPE, and no SIGPIPE kills us.
  try {
    c.start();
    FAIL() << "a dead child was started";
  } catch (const Error &e) {
    EXPECT_EQ(e.err(), EPIPE) << e.what();
  }
  EXPECT_EQ(c.wait(), ExitStatus::signalled(SIGKILL));
}

TEST(Spawn, HeldChildIsInItsCgroupBeforeStart) {
  ScratchCgroup cg("rundkit-process-test");
  if (!cg.ok())
    GTEST_SKIP() << "no writable cgroup2 mount";
  SpawnOptions o = cmd({"true"});
  o.held = true;
  o.cgroup = &cg.dir();
  Child c = spawn(o);
  EXPECT_EQ(read_file_at(cg.dir(), "cgroup.procs"), std::to_string(c.pid()) + "\n");
  c.start();
  EXPECT_TRUE(c.wait().ok());
}

// An idle child keeps only 0-2 and sleeps until killed; spawn returns once
// it has closed the rest.
TEST(Spawn, IdleChildHoldsNoDescriptorAndSleeps) {
  SpawnOptions o;
  o.idle = true;
  o.held = true;
  Child c = spawn(o);
  c.start();
  std::set<std::string> fds;
  for (const auto &e : std::filesystem::directory_iterator("/proc/" + std::to_string(c.pid()) + "/fd"))
    fds.insert(e.path().filename());
  EXPECT_EQ(fds, (std::set<std::string>{"0", "1", "2"}));
  EXPECT_FALSE(c.try_wait());
  EXPECT_EQ(c.kill(), ExitStatus::signalled(SIGKILL));
}

TEST(Child, AdoptTakesOverAChildKnownByPid) {
  Child c = spawn(cmd({"sleep", "1000"}));
  pid_t pid = c.pid();
  c.detach(); // its pidfd closed: known by pid alone now
  Child a = Child::adopt(pid, "sleeper");
  EXPECT_EQ(a.pid(), pid);
  EXPECT_EQ(a.kill(), ExitStatus::signalled(SIGKILL));
  EXPECT_THROW(Child::adopt(0, "nobody"), Error);
}

// --- input on stdin, SIGPIPE ---------------------------------------------

namespace {

bool sigpipe_pending() {
  sigset_t s;
  sigpending(&s);
  return sigismember(&s, SIGPIPE) == 1;
}

} // namespace

TEST(Run, InputReachesStdin) {
  EXPECT_EQ(run_capture(cmd({"cat"}), std::nullopt, "hello\n"), "hello\n");
  // Far more than a pipe holds, both ways at once.
  std::string big(3 << 20, 'x');
  RunResult r = run(cmd({"cat"}), 60s, big);
  EXPECT_TRUE(r.status.ok());
  EXPECT_EQ(r.out.size(), big.size());
}

TEST(Run, ChildThatIgnoresItsInputIsNoError) {
  std::string big(3 << 20, 'x');
  RunResult r = run(cmd({"true"}), 60s, big);
  EXPECT_TRUE(r.status.ok());
  EXPECT_FALSE(sigpipe_pending());
}

TEST(WriteAllNoSigpipe, ReaderGoneIsFalseWithoutASignal) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  Fd rd(p[0]), wr(p[1]);
  EXPECT_TRUE(write_all_nosigpipe(wr.get(), "abc", "test pipe"));
  rd.reset();
  EXPECT_FALSE(write_all_nosigpipe(wr.get(), "abc", "test pipe"));
  EXPECT_FALSE(sigpipe_pending());
}

// flush_stdio false: neither we nor the worker flush what we buffered.
TEST(ForkWorker, FlushStdioOffLeavesOurBufferAlone) {
  for (bool flush : {true, false}) {
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    Fd rd(p[0]);
    FILE *f = ::fdopen(p[1], "w");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::setvbuf(f, nullptr, _IOFBF, 4096), 0);
    std::fputs("x", f);
    WorkerOptions wo;
    wo.flush_stdio = flush;
    Child w = fork_worker([] { return 0; }, wo);
    EXPECT_TRUE(w.wait().ok());
    int queued = -1;
    ASSERT_EQ(::ioctl(rd.get(), FIONREAD, &queued), 0);
    EXPECT_EQ(queued, flush ? 1 : 0) << "flush_stdio " << flush;
    std::fclose(f);
    EXPECT_EQ(read_all(rd), "x") << "written once, flush_stdio " << flush;
  }
}

// What a claim checks before it takes a pooled cgroup: the same answer
// execve would give, before anything runs.
TEST(FindExecutable, ResolvesOrSaysWhyNot) {
  EXPECT_EQ(find_executable("/bin/sh"), "/bin/sh");
  EXPECT_NE(find_executable("sh").find("/sh"), std::string::npos);
  auto err_of = [](const std::string &name) {
    try {
      find_executable(name);
    } catch (const Error &e) {
      EXPECT_EQ(e.op(), "exec");
      return e.err();
    }
    return 0;
  };
  EXPECT_EQ(err_of("/nonexistent/command"), ENOENT);
  EXPECT_EQ(err_of("rundkit-no-such-binary-on-path"), ENOENT);
  EXPECT_EQ(err_of("/tmp"), EACCES) << "a directory";
  char path[] = "/tmp/rundkit-noexec.XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_EQ(err_of(path), EACCES) << "not executable";
  ::unlink(path);
}

// A detached process found again by pid + start time, as a later run of a
// tool finds the VMM an earlier one started.
TEST(OpenProcess, HoldsByIdentityAndKills) {
  Child c = spawn(cmd({"sleep", "1000"}));
  auto id = ProcessId::of(c.pid());
  ASSERT_TRUE(id);
  ProcessId wrong = *id;
  wrong.start += 1;
  EXPECT_FALSE(open_process(wrong)) << "a process of another start time";
  auto h = open_process(*id);
  ASSERT_TRUE(h);
  EXPECT_FALSE(wait_process_exit(*h, std::chrono::milliseconds(50)));
  EXPECT_TRUE(kill_process(*h, std::chrono::milliseconds(5000)));
  EXPECT_TRUE(c.wait_for(std::chrono::milliseconds(5000)));
  EXPECT_FALSE(open_process(*id)) << "reaped, yet opened";
}
