#include "util/units.h"

#include <gtest/gtest.h>

#include "util/error.h"

using namespace rundkit;

TEST(Units, SizesTakeBinaryUnitsAndRejectTheRest) {
  EXPECT_EQ(parse_size("134217728"), 134217728u);
  EXPECT_EQ(parse_size("128M"), 128u << 20);
  EXPECT_EQ(parse_size("128Mi"), 128u << 20);
  EXPECT_EQ(parse_size("1G"), 1ull << 30);
  EXPECT_EQ(parse_size("4k"), 4096u);
  for (const char *bad : {"12X", "", "M", "-1", "0", "1.5G", "12 M", "99999999999999999999"})
    EXPECT_THROW(parse_size(bad), InputError) << bad;
  try {
    parse_size("12X");
  } catch (const InputError &e) {
    EXPECT_STREQ(e.what(), "invalid size '12X': unknown unit (use K, M, G or T)");
  }
}
