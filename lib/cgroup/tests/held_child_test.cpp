#include "cgroup/held_child.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "util/error.h"

using namespace rundkit;

TEST(HeldChild, RunsOnlyAfterStart) {
  HeldChild c = spawn_held({"/bin/sh", "-c", "exit 7"}, nullptr);
  pid_t pid = c.pid();
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, WNOHANG), 0) << "ran before start()";
  c.start();
  c.detach();
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_EQ(WEXITSTATUS(status), 7);
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
