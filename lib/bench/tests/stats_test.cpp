#include "bench/stats.h"

#include <gtest/gtest.h>

TEST(Bench, NearestRankPercentiles) {
  std::vector<double> s;
  for (int i = 1; i <= 100; ++i)
    s.push_back(i);
  EXPECT_DOUBLE_EQ(rundkit::percentile(s, 0.50), 50);
  EXPECT_DOUBLE_EQ(rundkit::percentile(s, 0.99), 99);
  EXPECT_DOUBLE_EQ(rundkit::percentile(s, 1.0), 100);
  EXPECT_DOUBLE_EQ(rundkit::percentile({}, 0.5), 0);
}

TEST(Bench, SummaryThroughputIsOpsPerWallSecond) {
  auto r = rundkit::summarize("m", 10, {1, 2, 3, 4}, 2.0);
  EXPECT_EQ(r.samples, 4u);
  EXPECT_DOUBLE_EQ(r.throughput_per_s, 2.0);
  EXPECT_DOUBLE_EQ(r.max_ms, 4);
}
