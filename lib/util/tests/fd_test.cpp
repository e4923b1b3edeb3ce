#include "util/fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "util/error.h"

using rundkit::Error;
using rundkit::Fd;

TEST(Fd, MoveAssignmentClosesTheReplacedDescriptor) {
  Fd a = Fd::open("/dev/null", O_RDONLY);
  int old = a.get();
  a = Fd::open("/dev/zero", O_RDONLY);
  EXPECT_EQ(fcntl(old, F_GETFD), -1) << "old descriptor still open";
  EXPECT_TRUE(a.valid());
}

TEST(Fd, ErrorNamesThePathAndErrno) {
  try {
    Fd::open("/nonexistent/rundkit", O_RDONLY);
    FAIL() << "open of a missing path did not throw";
  } catch (const Error &e) {
    EXPECT_EQ(e.err(), ENOENT);
    EXPECT_STREQ(e.what(), "open '/nonexistent/rundkit': No such file or directory");
  }
}

TEST(Fd, OpenatErrorsCarryTheJoinedPath) {
  Fd dir = Fd::open("/proc/self", O_RDONLY | O_DIRECTORY);
  try {
    Fd::openat(dir, "no-such-file", O_RDONLY);
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(e.path(), "/proc/self/no-such-file");
  }
}
