// bench locks: the lock_stat parser on text in the kernel's exact format,
// the option checks, the per-set-up totals, and the plot from a CSV with
// the real gnuplot.  The measurement itself needs a CONFIG_LOCK_STAT
// kernel in a bare VM (scripts/bench-cgroup-locks).
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "bench/lock_bench.h"
#include "testing/run_tool.h"
#include "util/error.h"
#include "util/process.h"

using namespace rundkit;

namespace {

// As lockdep_proc.c prints it (6.1): "%40s:" or "%38s-W:"/"%38s-R:", then
// con-bounces, contentions, wait min/max/total/avg, acq-bounces,
// acquisitions, hold min/max/total/avg (microseconds); contention points
// below a contended class.
const char *kSample =
    "lock_stat version 0.4\n"
    "-----------------------------------------------------------------------\n"
    "                              class name    con-bounces    contentions   waittime-min   "
    "waittime-max waittime-total   waittime-avg    acq-bounces   acquisitions   holdtime-min   "
    "holdtime-max holdtime-total   holdtime-avg\n"
    "-----------------------------------------------------------------------\n"
    "\n"
    "                            cgroup_mutex:             1              2           0.50      "
    "     3.00           3.50           1.75             10            120           0.20        "
    " 900.25        4200.50          35.00\n"
    "                           -------------\n"
    "                            cgroup_mutex              2          [<ffffffff811a2b3c>] "
    "cgroup_kn_lock_live+0x4a/0x1b0\n"
    "              cgroup_threadgroup_rwsem-W:             0              0           0.00      "
    "     0.00           0.00           0.00              3              5          10.00      "
    "   300.00         512.50         102.50\n"
    "              cgroup_threadgroup_rwsem-R:             4              1           1.00      "
    "     1.00           1.00           1.00             50            400           0.10      "
    "     2.00          80.00           0.20\n"
    "                   &root->kernfs_rwsem-W:             0              0           0.00      "
    "     0.00           0.00           0.00              0             28           8.02      "
    "    55.73         401.80          14.35\n"
    "              &type->i_mutex_dir_key#5/1:             0              0           0.00      "
    "     0.00           0.00           0.00              1              2        3513.44      "
    "  6602.06       10115.49        5057.75\n"
    "                                &p->lock:             0              0           0.00      "
    "     0.00           0.00           0.00              1              7           0.10      "
    "     1.00           2.00           0.29\n"
    "                                &p->lock:             0              0           0.00      "
    "     0.00           0.00           0.00              1              3           0.10      "
    "     1.00           1.00           0.33\n";

TEST(ParseLockStat, ReadsEachClassAndSide) {
  auto m = parse_lock_stat(kSample);
  ASSERT_EQ(m.count("cgroup_mutex"), 1u);
  EXPECT_EQ(m["cgroup_mutex"].contentions, 2u);
  EXPECT_DOUBLE_EQ(m["cgroup_mutex"].wait_total_us, 3.5);
  EXPECT_EQ(m["cgroup_mutex"].acquisitions, 120u);
  EXPECT_DOUBLE_EQ(m["cgroup_mutex"].hold_total_us, 4200.5);
  EXPECT_EQ(m["cgroup_threadgroup_rwsem-W"].acquisitions, 5u);
  EXPECT_DOUBLE_EQ(m["cgroup_threadgroup_rwsem-W"].hold_total_us, 512.5);
  EXPECT_EQ(m["cgroup_threadgroup_rwsem-R"].acquisitions, 400u);
  EXPECT_EQ(m["&root->kernfs_rwsem-W"].acquisitions, 28u);
  EXPECT_EQ(m["&type->i_mutex_dir_key#5/1"].acquisitions, 2u);
  // The contention point line is not a class.
  EXPECT_EQ(m.size(), 6u);
}

TEST(ParseLockStat, AddsUpClassesOfOneName) {
  auto m = parse_lock_stat(kSample);
  EXPECT_EQ(m["&p->lock"].acquisitions, 10u);
  EXPECT_DOUBLE_EQ(m["&p->lock"].hold_total_us, 3.0);
}

TEST(ParseLockStat, RefusesOtherText) {
  EXPECT_THROW(parse_lock_stat(""), InputError);
  EXPECT_THROW(parse_lock_stat("cgroup_mutex: 1 2 3\n"), InputError);
}

TEST(ParseLockStat, EmptyAfterAClear) {
  auto m = parse_lock_stat("lock_stat version 0.4\n----\n  class name  con-bounces\n----\n");
  EXPECT_TRUE(m.empty());
}

LockBenchOptions vm_options() {
  LockBenchOptions o;
  o.setup_vm = true;
  return o;
}

TEST(CheckLockBenchOptions, AcceptsTheDefaultsInAVm) {
  EXPECT_NO_THROW(check_lock_bench_options(vm_options()));
}

TEST(CheckLockBenchOptions, RefusesWhatWouldGoWrongLater) {
  auto o = vm_options();
  o.modes = {"v2-mkdir", "v3"};
  EXPECT_THROW(check_lock_bench_options(o), InputError);
  o = vm_options();
  o.modes = {};
  EXPECT_THROW(check_lock_bench_options(o), InputError);
  for (int bad : {0, -1, 1025}) {
    o = vm_options();
    o.setups = bad;
    EXPECT_THROW(check_lock_bench_options(o), InputError) << bad;
  }
  for (int bad : {0, 101}) {
    o = vm_options();
    o.rounds = bad;
    EXPECT_THROW(check_lock_bench_options(o), InputError) << bad;
  }
  for (int bad : {0, 51}) {
    o = vm_options();
    o.concurrency = {1, bad};
    EXPECT_THROW(check_lock_bench_options(o), InputError) << bad;
  }
  o = vm_options();
  o.concurrency = {};
  EXPECT_THROW(check_lock_bench_options(o), InputError);
  o = vm_options();
  o.png = "/tmp/x.png";
  EXPECT_THROW(check_lock_bench_options(o), InputError);
  // It remounts cgroup2 and moves controllers to v1: never by accident.
  o = vm_options();
  o.setup_vm = false;
  EXPECT_THROW(check_lock_bench_options(o), InputError);
}

std::vector<LockStepCost> sample_rows() {
  return {{"v2-mkdir", "create", 1, 0, 10, 1, 300, 0, 0, 0, 1, 250, 2, 30, 2},
          {"v2-mkdir", "limits", 1, 0, 10, 0, 0, 0, 0, 0, 1, 250, 2, 30, 1},
          {"v2-mkdir", "devices", 1, 0, 10, 1, 40, 0, 0, 0, 1, 250, 2, 30, 1},
          {"v2-mkdir", "place", 1, 0, 10, 1, 60, 5, 1, 50, 1, 250, 2, 30, 3},
          {"kernel-pool", "create", 1, 0, 10, 0, 0, 0, 0, 0, 1, 250, 2, 30, 1},
          {"kernel-pool", "refill", 1, 0, 10, 1, 280, 0, 0, 0, 1, 250, 2, 30, 9},
          {"kernel-pool", "place", 1, 0, 10, 1, 30, 0, 0, 0, 1, 250, 2, 30, 3}};
}

TEST(LockReport, TotalsAreKeptPerLevel) {
  auto rows = sample_rows();
  rows.push_back({"v2-mkdir", "create", 4, 0, 10, 1, 310, 900, 0, 0, 0, 0, 0, 0, 1});
  auto j = to_json(rows);
  ASSERT_EQ(j["per_setup"].size(), 3u);
  EXPECT_EQ(j["per_setup"][2]["concurrency"], 4);
  EXPECT_DOUBLE_EQ(j["per_setup"][2]["cgroup_mutex_wait_us"].get<double>(), 900.0);
}

TEST(LockReport, MediansOverRounds) {
  std::vector<LockStepCost> rows;
  for (int r = 0; r < 3; ++r) {
    double held[] = {100, 500, 200};
    rows.push_back({"kernel-pool", "create", 1, r, 10, 0, 0, 0, 0, 0, 1, 30, 2, 40, 1});
    rows.push_back({"kernel-pool", "place", 1, r, 10, 1, held[r], 0, 0, 0, 0, 0, 1, 10, 3});
  }
  auto j = to_json(rows);
  ASSERT_EQ(j["per_setup"].size(), 3u);
  ASSERT_EQ(j["per_setup_median"].size(), 1u);
  EXPECT_EQ(j["per_setup_median"][0]["rounds"], 3);
  EXPECT_DOUBLE_EQ(j["per_setup_median"][0]["cgroup_mutex_hold_us"].get<double>(), 200.0);
  EXPECT_DOUBLE_EQ(j["per_setup_median"][0]["kernfs_write_acquisitions"].get<double>(), 3.0);
}

TEST(LockReport, TotalsSumTheStepsAndLeaveTheRefillApart) {
  auto j = to_json(sample_rows());
  ASSERT_EQ(j["per_setup"].size(), 2u);
  EXPECT_EQ(j["per_setup"][0]["mode"], "v2-mkdir");
  EXPECT_DOUBLE_EQ(j["per_setup"][0]["cgroup_mutex_acquisitions"].get<double>(), 3.0);
  EXPECT_DOUBLE_EQ(j["per_setup"][0]["cgroup_mutex_hold_us"].get<double>(), 400.0);
  EXPECT_DOUBLE_EQ(j["per_setup"][0]["threadgroup_write_acquisitions"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["per_setup"][0]["dir_write_hold_us"].get<double>(), 1000.0);
  EXPECT_EQ(j["per_setup"][1]["mode"], "kernel-pool");
  EXPECT_DOUBLE_EQ(j["per_setup"][1]["cgroup_mutex_hold_us"].get<double>(), 30.0);
  EXPECT_EQ(j["steps"].size(), 7u);
  auto table = format_lock_table(sample_rows());
  EXPECT_NE(table.find("per set-up"), std::string::npos);
}


TEST(LockReport, PlotsFromItsCsv) {
  if (!have_program("gnuplot"))
    GTEST_SKIP() << "gnuplot is not installed";
  char tmpl[] = "/tmp/rundkit-locks-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  write_lock_csv(dir + "/l.csv", sample_rows());
  plot_lock_costs(dir + "/l.csv", dir + "/l.png");
  EXPECT_GT(std::filesystem::file_size(dir + "/l.png"), 1000u);
  // Not a CSV of this bench: a clear error, no plot.
  std::ofstream(dir + "/bad.csv") << "mode,concurrency,samples\n";
  EXPECT_THROW(plot_lock_costs(dir + "/bad.csv", dir + "/bad.png"), InputError);
  EXPECT_FALSE(std::filesystem::exists(dir + "/bad.png"));
  std::ofstream(dir + "/bad2.csv") << "mode,step,concurrency\nv2-mkdir,create,x,0,1,1,1,1,1,1,1,1,1,1,1\n";
  EXPECT_THROW(plot_lock_costs(dir + "/bad2.csv", dir + "/bad2.png"), InputError);
  std::filesystem::remove_all(dir);
}

} // namespace
