// What every rundkit benchmark measures: latency percentiles and
// throughput per (mode, concurrency) cell.
#pragma once

#include <string>
#include <vector>

namespace rundkit {

struct LatencySummary {
  std::string mode;
  int concurrency = 0;
  size_t samples = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  double throughput_per_s = 0; // operations / wall-clock second
};

// Nearest-rank percentile of `samples_ms` (0 < q <= 1); 0 if empty.
double percentile(std::vector<double> samples_ms, double q);

LatencySummary summarize(std::string mode, int concurrency,
                         const std::vector<double> &samples_ms,
                         double wall_seconds);

} // namespace rundkit
