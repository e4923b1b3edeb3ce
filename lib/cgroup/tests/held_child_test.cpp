#include "cgroup/held_child.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "util/error.h"

using namespace rundkit;

// The command leaves a mark the moment it runs; none may appear while the
// child waits at its gate, however long we wait (a child without a gate
// runs /bin/sh within microseconds, far inside the 300 ms looked at here).
TEST(HeldChild, RunsOnlyAfterStart) {
  char dir[] = "/tmp/held-child-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::string mark = std::string(dir) + "/ran";
  HeldChild c = spawn_held({"/bin/sh", "-c", "echo > " + mark + "; exit 7"}, nullptr);
  pid_t pid = c.pid();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, WNOHANG), 0) << "exited before start()";
  EXPECT_NE(::access(mark.c_str(), F_OK), 0) << "ran before start()";
  c.start();
  c.detach();
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_EQ(WEXITSTATUS(status), 7);
  EXPECT_EQ(::access(mark.c_str(), F_OK), 0) << "did not run after start()";
  ::unlink(mark.c_str());
  ::rmdir(dir);
}

TEST(HeldChild, FailedExecIsAnErrorNamingTheCommand) {
  HeldChild c = spawn_held({"/nonexistent/vmm"}, nullptr);
  try {
    c.start();
    FAIL() << "exec of a missing file succeeded";
  } catch (const Error &e) {
    EXPECT_EQ(e.err(), ENOENT);
    EXPECT_STREQ(e.what(), "exec '/nonexistent/vmm': No such file or directory");
  }
}

TEST(HeldChild, UnstartedChildIsKilledOnDestruction) {
  pid_t pid;
  {
    HeldChild c = spawn_held({}, nullptr);
    pid = c.pid();
  }
  EXPECT_EQ(::kill(pid, 0), -1) << "placeholder survived its owner";
}
