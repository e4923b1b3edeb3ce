// Both benchmarks' options in one translation unit, as in any binary that
// links both: two types of one name with different layouts would be an ODR
// violation that no linker reports, so each has its own name.
#include <gtest/gtest.h>

#include "util/error.h"

#include "bench/cgroup_bench.h"
#include "bench/reflink_bench.h"

using namespace rundkit;

TEST(BenchOptions, EachBenchmarkHasItsOwnType) {
  CgroupBenchOptions cgroup;
  ReflinkBenchOptions reflink;
  EXPECT_EQ(cgroup.rounds, 3);
  EXPECT_EQ(cgroup.op, "setup");
  EXPECT_EQ(reflink.samples, 200);
  EXPECT_EQ(reflink.modes.front(), "reflink");
}

TEST(BenchOptions, CgroupBenchRefusesBadOptionsBeforeAnyWork) {
  CgroupBenchOptions o;
  o.modes = {"v2-mkdir", "bogus"};
  EXPECT_THROW(check_cgroup_bench_options(o), InputError);
  o = {};
  o.png = "/tmp/x.png";
  EXPECT_THROW(check_cgroup_bench_options(o), InputError) << "--png without --csv";
  o = {};
  o.concurrency = {0};
  EXPECT_THROW(check_cgroup_bench_options(o), InputError);
  EXPECT_NO_THROW(check_cgroup_bench_options(CgroupBenchOptions{}));
}

TEST(BenchOptions, ReflinkBenchRefusesBadOptionsBeforeAnyWork) {
  ReflinkBenchOptions o;
  o.png = "/tmp/x.png";
  EXPECT_THROW(check_reflink_bench_options(o), InputError) << "--png without --csv";
  o = {};
  o.modes = {"reflink", "bogus"};
  EXPECT_THROW(check_reflink_bench_options(o), InputError);
  o = {};
  o.scratch_size_text = "48X";
  EXPECT_THROW(check_reflink_bench_options(o), InputError);
  EXPECT_NO_THROW(check_reflink_bench_options(ReflinkBenchOptions{}));
}
