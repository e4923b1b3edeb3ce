// How every rundkit benchmark reports its cells side by side in one run:
// a table, JSON, CSV and a gnuplot PNG of latency against concurrency.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "bench/stats.h"

namespace rundkit {

std::string format_table(const std::vector<LatencySummary> &rows);
nlohmann::json to_json(const std::vector<LatencySummary> &rows);
void write_csv(const std::string &path, const std::vector<LatencySummary> &rows);

// Draws p99 (solid) and p50 (dashed) latency against concurrency, one line
// per mode, log-scale y, into `png` with gnuplot.  Throws
// Error("exec", "gnuplot", ENOENT) if gnuplot is missing, ProcessError with
// gnuplot's exit status and the end of its stderr if it fails.
void plot_latency(const std::string &csv, const std::string &png,
                  const std::string &title);

// Runs a gnuplot script (on its stdin) that writes `png`; the errors of
// plot_latency.
void run_gnuplot(const std::string &script, const std::string &png);

} // namespace rundkit
