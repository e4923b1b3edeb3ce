// The writable-layer benchmark: how long it takes to get a ready writable
// layer for a sandbox by reflink clone (named, and volatile O_DIRECT), by a
// qcow2 overlay on the template, by formatting a fresh image and by a full
// copy, all in one run side by side at each concurrency level; and the
// page-cache experiment for O_DIRECT layers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "bench/stats.h"
#include "storage/image.h"

namespace rundkit {

struct ReflinkBenchOptions {
  std::vector<int> concurrency{1, 10, 50, 100, 200};
  std::vector<std::string> modes{"reflink", "volatile", "qcow2", "mkfs", "copy"};
  uint64_t template_size = 1ULL << 30;
  int samples = 200;              // at least this many per cell: ceil(samples/c) rounds
  int copy_max_concurrency = 10;  // full copy writes template_size per op: bounded
  int copy_samples = 10;
  std::string dir;                // empty: a loop-mounted scratch XFS made here
  std::string scratch_size_text = "48G";
  std::string csv, png;
  bool page_cache = false;
};

// Every method `reflinkfs bench` knows.
const std::vector<std::string> &reflink_bench_modes();

// Throws InputError for anything the command line got wrong (an unknown
// mode, a level out of range, --png without --csv, a bad scratch size), so
// that no scratch file system is made before a usage error.
void check_reflink_bench_options(const ReflinkBenchOptions &opts);

// What was measured: the file system, the template and the run's bounds.
struct ReflinkBenchSetup {
  std::string fs; // the scratch XFS and its mkfs line, or the operator's directory
  TemplateInfo template_info;
  double template_create_ms = 0;
  std::string started; // UTC; empty for the page-cache experiment
  int samples_min = 0;
  std::string copy; // how the full copy is bounded
};

// Another method's p50 and p99 over reflink's, at one concurrency level.
struct RatioToReflink {
  int concurrency = 0;
  std::string mode;
  double p50_ratio = 0, p99_ratio = 0;
};

struct BenchResult {
  std::vector<LatencySummary> rows;
  ReflinkBenchSetup setup;
  std::vector<RatioToReflink> ratios;

  nlohmann::json to_json() const;
  std::string format() const;
};

// Checks the options first (check_reflink_bench_options).  Progress goes
// to stderr.  Writes opts.csv / opts.png when set.
BenchResult run_reflink_bench(const ReflinkBenchOptions &opts);

// fio 4k random writes then reads on a volatile layer opened without and
// with O_DIRECT; host Cached/file pages and the layer's resident pages
// before and after each.
nlohmann::json run_page_cache_bench(const ReflinkBenchOptions &opts);

// Runs argv (fio) with this process's descriptor `keep_fd` open at the same
// number (--filename=/proc/self/fd/N names it) and returns its stdout.
// Throws Error("exec", ...) if it cannot run, ProcessError (with the end of
// its stderr) if it does not exit 0.
std::string capture_with_fd(const std::vector<std::string> &argv, int keep_fd);
std::string format_page_cache(const nlohmann::json &result);

} // namespace rundkit
