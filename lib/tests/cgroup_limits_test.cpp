#include "rundkit/cgroup_limits.h"

#include <gtest/gtest.h>

using namespace rundkit;

TEST(Limits, SizesTakeBinaryUnitsAndRejectTheRest) {
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

TEST(Limits, CpusMustBePositiveAndAtLeastOneMillisecond) {
  EXPECT_DOUBLE_EQ(parse_cpus("0.5"), 0.5);
  EXPECT_DOUBLE_EQ(parse_cpus("2"), 2);
  for (const char *bad : {"0", "-1", "-0.5", "abc", "", "0.001", "nan", "inf", "1e9"})
    EXPECT_THROW(parse_cpus(bad), InputError) << bad;
}

TEST(Limits, PidsAreACountOrMax) {
  EXPECT_EQ(parse_pids("1024"), 1024);
  EXPECT_EQ(parse_pids("max"), -1);
  for (const char *bad : {"0", "-5", "1k", ""})
    EXPECT_THROW(parse_pids(bad), InputError) << bad;
}

TEST(Limits, NamesAreOneSafeComponent) {
  EXPECT_NO_THROW(validate_name("sandbox-1"));
  EXPECT_NO_THROW(validate_name("a.b_c"));
  for (const std::string &bad : std::vector<std::string>{"", "a/b", "a\nb", ".", "..", "lcg-pool-1", "cgroup.procs",
                                std::string(201, 'x')})
    EXPECT_THROW(validate_name(bad), InputError) << bad;
}

TEST(Limits, ParentsAreNormalisedAndNeverTheRoot) {
  EXPECT_EQ(normalize_parent("/kata//sandboxes/"), "kata/sandboxes");
  EXPECT_EQ(normalize_parent("p"), "p");
  for (const char *bad : {"/", "", "a/../b", "./a", "a/\n"})
    EXPECT_THROW(normalize_parent(bad), InputError) << bad;
}

TEST(Limits, ClaimOptionsOverridePoolDefaultsFieldByField) {
  Limits pool = parse_limits("1", "64M", std::nullopt, "oci-default");
  Limits claim = parse_limits("0.5", std::nullopt, "100", std::nullopt);
  Limits m = Limits::merge(pool, claim);
  EXPECT_DOUBLE_EQ(*m.cpus, 0.5);
  EXPECT_EQ(*m.memory_bytes, 64u << 20);
  EXPECT_EQ(*m.pids, 100);
  EXPECT_EQ(*m.devices, DevicePolicy::kOciDefault);
  EXPECT_EQ(to_json(limits_from_json(to_json(m))), to_json(m));
}
