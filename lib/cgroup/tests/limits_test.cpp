#include "cgroup/limits.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "util/error.h"

using namespace rundkit;

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
