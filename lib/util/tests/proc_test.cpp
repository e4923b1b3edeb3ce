#include "util/proc.h"

#include <unistd.h>

#include <gtest/gtest.h>

using namespace rundkit;

TEST(Proc, IdentityIsPidPlusStartTime) {
  ProcessId me = ProcessId::self();
  EXPECT_EQ(me.pid, ::getpid());
  EXPECT_TRUE(me.alive());
  ProcessId recycled = me;
  recycled.start += 1;
  EXPECT_FALSE(recycled.alive()) << "a reused pid must not look alive";
  EXPECT_FALSE(ProcessId::of(0x3ffffff).has_value());
}
