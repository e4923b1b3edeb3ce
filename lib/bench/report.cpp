#include "bench/report.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/error.h"

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

  int pipefd[2];
  check_sys(::pipe2(pipefd, O_CLOEXEC), "pipe", "gnuplot");
  pid_t pid = ::fork();
  check_sys(pid, "fork", "gnuplot");
  if (pid == 0) {
    ::dup2(pipefd[0], 0);
    ::execlp("gnuplot", "gnuplot", static_cast<char *>(nullptr));
    ::_exit(127);
  }
  ::close(pipefd[0]);
  size_t off = 0;
  while (off < script.size()) {
    ssize_t n = ::write(pipefd[1], script.data() + off, script.size() - off);
    if (n <= 0)
      break;
    off += static_cast<size_t>(n);
  }
  ::close(pipefd[1]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error(fmt::format("gnuplot failed drawing '{}' (exit {}); is gnuplot installed?", png,
                            WIFEXITED(status) ? WEXITSTATUS(status) : -1));
}

} // namespace rundkit
