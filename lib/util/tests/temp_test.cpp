#include "util/temp.h"

#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

using namespace rundkit;

TEST(TempNames, CarryThePid) {
  std::string n = make_temp_name();
  EXPECT_EQ(n.rfind(std::string(".reflinkfs-tmp.") + std::to_string(::getpid()) + ".", 0), 0u);
  EXPECT_EQ(temp_name_pid(n), ::getpid());
  EXPECT_EQ(temp_name_pid(".reflinkfs-tmp.42.abcdef"), 42);
  EXPECT_FALSE(temp_name_pid("layer.img"));
  EXPECT_FALSE(temp_name_pid(".reflinkfs-tmp.x42.abcdef"));
  EXPECT_FALSE(temp_name_pid(".reflinkfs-tmp..abcdef"));
  // Numbers no pid can be: never thrown, never wrapped into a live pid
  // (2^32 + 1 used to come back as pid 1, which is always alive).
  EXPECT_FALSE(temp_name_pid(".reflinkfs-tmp.4294967297.abcdef"));
  EXPECT_FALSE(temp_name_pid(".reflinkfs-tmp.99999999999999999999999.abcdef"));
  EXPECT_FALSE(temp_name_pid(".reflinkfs-tmp.4194305.abcdef"));
  EXPECT_FALSE(temp_name_pid(".reflinkfs-tmp.0.abcdef"));
  EXPECT_FALSE(temp_name_pid(".reflinkfs-tmp.0042.abcdef"));
  EXPECT_EQ(temp_name_pid(".reflinkfs-tmp.4194304.abcdef"), 4194304);
}
