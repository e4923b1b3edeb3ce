#include "bench/report.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/process.h"

namespace rundkit {

std::string format_table(const std::vector<LatencySummary> &rows) {
  std::string out = fmt::format("{:<18} {:>5} {:>7} {:>10} {:>10} {:>10} {:>10}\n", "mode",
                                "conc", "ops", "p50_ms", "p99_ms", "max_ms", "ops/s");
  for (const auto &r : rows)
    out += fmt::format("{:<18} {:>5} {:>7} {:>10.3f} {:>10.3f} {:>10.3f} {:>10.1f}\n", r.mode,
                       r.concurrency, r.samples, r.p50_ms, r.p99_ms, r.max_ms,
                       r.throughput_per_s);
  return out;
}

nlohmann::json to_json(const std::vector<LatencySummary> &rows) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto &r : rows)
    arr.push_back({{"mode", r.mode},
                   {"concurrency", r.concurrency},
                   {"ops", r.samples},
                   {"p50_ms", r.p50_ms},
                   {"p99_ms", r.p99_ms},
                   {"max_ms", r.max_ms},
                   {"ops_per_s", r.throughput_per_s}});
  return arr;
}

void write_csv(const std::string &path, const std::vector<LatencySummary> &rows) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f)
      throw Error("open", tmp, errno);
    f << "mode,concurrency,ops,p50_ms,p99_ms,max_ms,ops_per_s\n";
    for (const auto &r : rows)
      f << fmt::format("{},{},{},{:.4f},{:.4f},{:.4f},{:.2f}\n", r.mode, r.concurrency,
                       r.samples, r.p50_ms, r.p99_ms, r.max_ms, r.throughput_per_s);
    if (!f.flush())
      throw Error("write", tmp, errno);
  }
  check_sys(::rename(tmp.c_str(), path.c_str()), "rename", path);
}

void plot_latency(const std::string &csv, const std::string &png, const std::string &title) {
  // One data block per mode, so gnuplot draws one line each.
  std::ifstream in(csv);
  if (!in)
    throw Error("open", csv, errno);
  std::string line;
  std::getline(in, line); // header
  std::map<std::string, std::vector<std::string>> by_mode;
  std::vector<std::string> order;
  while (std::getline(in, line)) {
    auto comma = line.find(',');
    std::string mode = line.substr(0, comma);
    if (!by_mode.count(mode))
      order.push_back(mode);
    by_mode[mode].push_back(line);
  }
  std::string script = fmt::format(
      "set terminal pngcairo size 900,560 noenhanced\nset output '{}'\n"
      "set title '{}'\nset datafile separator ','\nset logscale y\n"
      "set xlabel 'concurrency'\nset ylabel 'latency (ms), p99 solid, p50 dashed'\n"
      "set key left top\nset grid\n",
      png, title);
  std::string data;
  std::string plots;
  int idx = 0;
  for (const auto &mode : order) {
    for (const auto &l : by_mode[mode])
      data += l + "\n";
    data += "e\n";
    for (const auto &l : by_mode[mode])
      data += l + "\n";
    data += "e\n";
    plots += fmt::format("{}'-' using 2:5 with linespoints lw 2 lc {} title '{} p99', "
                         "'-' using 2:4 with linespoints dt 2 lc {} notitle",
                         idx ? ", " : "plot ", idx + 1, mode, idx + 1);
    ++idx;
  }
  script += plots + "\n" + data;
  run_gnuplot(script, png);
}

void run_gnuplot(const std::string &script, const std::string &png) {
  // The script on gnuplot's stdin (a pipe), its stderr kept for the error.
  // Its stdout is captured and dropped: where the output file cannot be
  // opened gnuplot writes the PNG there, and ours may be a report.
  SpawnOptions o;
  o.argv = {"gnuplot"};
  RunResult r = run(o, std::nullopt, script);
  if (r.status.ok())
    return;
  std::string said = r.stderr_tail;
  while (!said.empty() && (said.back() == '\n' || said.back() == ' '))
    said.pop_back();
  if (said.size() > 600)
    said = "..." + said.substr(said.size() - 600);
  throw ProcessError("gnuplot", r.status, r.stderr_tail,
                     fmt::format("gnuplot failed drawing '{}' ({}){}{}", png, r.status.describe(),
                                 said.empty() ? "" : ": ", said));
}

} // namespace rundkit
