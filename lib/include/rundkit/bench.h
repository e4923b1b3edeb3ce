// What every rundkit benchmark reports: latency percentiles and throughput
// per (mode, concurrency) cell, side by side in one run, as a table, CSV
// and a gnuplot PNG of latency against concurrency.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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

std::string format_table(const std::vector<LatencySummary> &rows);
nlohmann::json to_json(const std::vector<LatencySummary> &rows);
void write_csv(const std::string &path, const std::vector<LatencySummary> &rows);

// Draws p99 (solid) and p50 (dashed) latency against concurrency, one line
// per mode, log-scale y, into `png` with gnuplot.  Throws rundkit::Error if
// gnuplot is missing or fails.
void plot_latency(const std::string &csv, const std::string &png,
                  const std::string &title);

} // namespace rundkit
