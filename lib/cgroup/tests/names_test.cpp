#include "cgroup/names.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "util/error.h"

using namespace rundkit;

TEST(Names, NamesAreOneSafeComponent) {
  EXPECT_NO_THROW(validate_name("sandbox-1"));
  EXPECT_NO_THROW(validate_name("a.b_c"));
  for (const std::string &bad : std::vector<std::string>{"", "a/b", "a\nb", ".", "..", "lcg-pool-1", "cgroup.procs",
                                std::string(201, 'x')})
    EXPECT_THROW(validate_name(bad), InputError) << bad;
}

TEST(Names, ParentsAreNormalisedAndNeverTheRoot) {
  EXPECT_EQ(normalize_parent("/kata//sandboxes/"), "kata/sandboxes");
  EXPECT_EQ(normalize_parent("p"), "p");
  for (const char *bad : {"/", "", "a/../b", "./a", "a/\n"})
    EXPECT_THROW(normalize_parent(bad), InputError) << bad;
}
