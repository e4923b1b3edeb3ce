#include "bench/stats.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "util/error.h"

namespace rundkit {

double percentile(std::vector<double> samples_ms, double q) {
  if (samples_ms.empty())
    return 0;
  std::sort(samples_ms.begin(), samples_ms.end());
  auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(samples_ms.size())));
  rank = std::clamp<size_t>(rank, 1, samples_ms.size());
  return samples_ms[rank - 1];
}

LatencySummary summarize(std::string mode, int concurrency,
                         const std::vector<double> &samples_ms,
                         double wall_seconds) {
  LatencySummary s;
  s.mode = std::move(mode);
  s.concurrency = concurrency;
  s.samples = samples_ms.size();
  s.p50_ms = percentile(samples_ms, 0.50);
  s.p99_ms = percentile(samples_ms, 0.99);
  s.max_ms = samples_ms.empty() ? 0 : *std::max_element(samples_ms.begin(), samples_ms.end());
  s.throughput_per_s = wall_seconds > 0 ? static_cast<double>(s.samples) / wall_seconds : 0;
  return s;
}

} // namespace rundkit
