// reflink_bench's fio runner against real children: the descriptor it
// passes, and what is left when no child can be made (a pids.max reached).
#include <fcntl.h>

#include <cerrno>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "bench/reflink_bench.h"
#include "bench/tests/pids_limit.h"
#include "util/error.h"
#include "util/fd.h"

using namespace rundkit;

TEST(CaptureWithFd, TheDescriptorReachesTheChildAtItsNumber) {
  Fd f = Fd::open("/dev/null", O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(capture_with_fd({"readlink", fmt::format("/proc/self/fd/{}", f.get())}, f.get()),
            "/dev/null\n");
}

TEST(CaptureWithFd, FailureNamesTheCommand) {
  Fd f = Fd::open("/dev/null", O_RDONLY | O_CLOEXEC);
  try {
    capture_with_fd({"sh", "-c", "exit 4"}, f.get());
    FAIL() << "a command that exited 4 succeeded";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("sh"), std::string::npos) << e.what();
  }
}

// Found failing on 5b152d3 (the fork-and-pipe helper): both pipe ends
// stayed open when fork() failed.
TEST(CaptureWithFd, NoDescriptorLeaksWhenTheChildCannotBeMade) {
  benchtest::PidsLimit limit(0);
  if (!limit.ok())
    GTEST_SKIP() << "needs root and a cgroup v1 pids hierarchy at " << benchtest::PidsLimit::kRoot;
  Fd f = Fd::open("/dev/null", O_RDONLY | O_CLOEXEC);
  size_t before = benchtest::open_fds();
  try {
    capture_with_fd({"true"}, f.get());
    ADD_FAILURE() << "a child was made beyond pids.max";
  } catch (const Error &e) {
    EXPECT_EQ(e.err(), EAGAIN) << e.what();
  }
  EXPECT_EQ(benchtest::open_fds(), before) << "descriptors leaked by a failed start";
}
