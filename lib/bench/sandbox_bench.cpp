#include "bench/sandbox_bench.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "bench/report.h"
#include "cgroup/layout.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/process.h"
#include "util/temp.h"

namespace rundkit {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

const std::vector<std::string> &sandbox_bench_modes() {
  static const std::vector<std::string> m = {"baseline",      "rundkit",     "no-template",
                                             "distro-kernel", "qcow2-layer", "no-pool"};
  return m;
}

namespace {

// How a mode starts its sandboxes.
struct ModeChoices {
  bool distro_kernel = false; // the cloud kernel's q35 template
  bool cold = false;
  bool qcow2 = false;
  bool pool = true;
};

ModeChoices choices_of(const std::string &mode) {
  if (mode == "baseline")
    return {true, true, true, false};
  if (mode == "no-template")
    return {false, true, false, true};
  if (mode == "distro-kernel")
    return {true, false, false, true};
  if (mode == "qcow2-layer")
    return {false, false, true, true};
  if (mode == "no-pool")
    return {false, false, false, false};
  return {};
}

bool uses_distro_kernel(const std::vector<std::string> &modes) {
  return std::any_of(modes.begin(), modes.end(),
                     [](const std::string &m) { return choices_of(m).distro_kernel; });
}
bool uses_condensed_kernel(const std::vector<std::string> &modes) {
  return std::any_of(modes.begin(), modes.end(),
                     [](const std::string &m) { return !choices_of(m).distro_kernel; });
}

} // namespace

void check_sandbox_bench_options(const SandboxBenchOptions &o) {
  if (o.modes.empty())
    throw InputError("no --modes");
  for (const auto &m : o.modes)
    if (std::find(sandbox_bench_modes().begin(), sandbox_bench_modes().end(), m) ==
        sandbox_bench_modes().end())
      throw InputError(fmt::format("unknown mode '{}' (modes: {})", m,
                                   fmt::join(sandbox_bench_modes(), ", ")));
  for (int c : o.concurrency)
    if (c < 1 || c > 200)
      throw InputError(fmt::format("--concurrency {}: 1 to 200", c));
  for (int c : o.counts)
    if (c < 1 || c > 1000)
      throw InputError(fmt::format("--count {}: 1 to 1000", c));
  if (o.rounds < 1 || o.rounds > 100)
    throw InputError(fmt::format("--rounds {}: 1 to 100", o.rounds));
  if (uses_condensed_kernel(o.modes) && (o.kernel.empty() || !fs::exists(o.kernel)))
    throw InputError(fmt::format("--kernel '{}': no such file (the condensed guest vmlinux, "
                                 "scripts/build-guest-kernel)",
                                 o.kernel));
  if (uses_distro_kernel(o.modes)) {
    if (o.distro_kernel.empty())
      throw InputError("the baseline and distro-kernel modes need --distro-kernel DIR "
                       "(scripts/build-distro-guest-kernel)");
    for (const char *f : {"bzImage", "modules/modules.load"})
      if (!fs::exists(fs::path(o.distro_kernel) / f))
        throw InputError(fmt::format("--distro-kernel '{}': no {} there "
                                     "(scripts/build-distro-guest-kernel makes it)",
                                     o.distro_kernel, f));
  }
  if (!o.png.empty() && o.csv.empty())
    throw InputError("--png needs --csv (the plot is drawn from it)");
}

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

double cpu_seconds_self() {
  struct rusage ru;
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// CPU time used so far inside a sandbox's cgroup (v1 cpuacct or cgroup2
// cpu.stat), in ms; 0 if no hierarchy accounts it.
double cgroup_cpu_ms(const std::vector<std::string> &cgroups) {
  for (const auto &cg : cgroups) {
    std::error_code ec;
    if (fs::exists(cg + "/cpuacct.usage", ec)) {
      try {
        return std::stod(read_file(cg + "/cpuacct.usage")) / 1e6;
      } catch (const std::exception &) {
      }
    }
  }
  for (const auto &cg : cgroups) {
    std::error_code ec;
    if (!fs::exists(cg + "/cpu.stat", ec))
      continue;
    try {
      std::istringstream in(read_file(cg + "/cpu.stat"));
      std::string k;
      uint64_t v;
      while (in >> k >> v)
        if (k == "usage_usec")
          return static_cast<double>(v) / 1000;
    } catch (const std::exception &) {
    }
  }
  return 0;
}

uint64_t mem_available_kib() {
  std::istringstream in(read_file("/proc/meminfo"));
  std::string k;
  uint64_t v;
  std::string unit;
  while (in >> k >> v >> unit)
    if (k == "MemAvailable:")
      return v;
  return 0;
}

// The bench's own image, template, cgroup parent and pool, undone at the
// end whatever happened.
class Workspace {
public:
  explicit Workspace(const SandboxBenchOptions &o)
      : o_(o), rt_(o.runtime), tag_(fmt::format("bench{}", ::getpid())) {
    char tmpl[] = "/var/tmp/rundctl-bench.XXXXXX";
    if (!::mkdtemp(tmpl))
      throw Error("mkdtemp", tmpl, errno);
    dir_ = tmpl;
    base_ = dir_ + "/base";
    for (const char *d : {"bin", "etc", "tmp", "proc", "dev", "sys"})
      fs::create_directories(base_ + "/" + d);
    fs::copy_file("/bin/busybox", base_ + "/bin/busybox");
    for (const char *a : {"sh", "sleep", "true", "cat", "echo"})
      fs::create_symlink("busybox", base_ + "/bin/" + std::string(a));
    // One template per kernel: the condensed kernel's on microvm, the
    // distro kernel's on q35 (cold starts boot its kernel with its config).
    if (uses_condensed_kernel(o.modes)) {
      say("creating the bench template (condensed kernel, microvm)");
      sandbox::TemplateRequest tr;
      tr.name = tag_;
      tr.kernel = o.kernel;
      tr.memory_mib = o.memory_mib;
      tr.layer_bytes = 64ULL << 20;
      rt_.create_template(tr);
      templates_.push_back(tr.name);
    }
    if (uses_distro_kernel(o.modes)) {
      say("creating the bench template (distro kernel, q35)");
      sandbox::TemplateRequest tr;
      tr.name = tag_ + "-distro";
      tr.machine = "q35";
      tr.kernel = (fs::path(o.distro_kernel) / "bzImage").string();
      tr.modules = (fs::path(o.distro_kernel) / "modules").string();
      tr.memory_mib = o.memory_mib;
      tr.layer_bytes = 64ULL << 20;
      rt_.create_template(tr);
      templates_.push_back(tr.name);
    }
    backend_ = make_backend(o.runtime.cgroups, detect_layout(o.runtime.cgroups.layout));
    backend_->create_parent(o.cgroup_parent);
  }
  ~Workspace() {
    try {
      for (const auto &s : rt_.list())
        if (s.record.name.starts_with(tag_))
          rt_.stop(s.record.name, milliseconds(2000));
      rt_.gc();
    } catch (const std::exception &) {
    }
    for (const auto &t : templates_) {
      try {
        rt_.remove_template(t);
      } catch (const std::exception &) {
      }
    }
    try {
      if (backend_)
        backend_->remove_parent(o_.cgroup_parent);
    } catch (const std::exception &) {
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void say(const std::string &s) const {
    if (o_.progress)
      o_.progress(s);
  }
  void pool(size_t n) {
    if (n)
      backend_->fill(o_.cgroup_parent, n, {}, false, {});
    else
      backend_->drain(o_.cgroup_parent, {});
  }
  sandbox::StartRequest request(const std::string &mode, const std::string &name) const {
    sandbox::StartRequest r;
    r.name = name;
    r.template_name = tag_;
    r.layers = {base_};
    r.cgroup_parent = o_.cgroup_parent;
    r.command = {"/bin/sleep", "1000000"};
    ModeChoices c = choices_of(mode);
    r.template_name = c.distro_kernel ? tag_ + "-distro" : tag_;
    r.cold = c.cold;
    r.writable = c.qcow2 ? "qcow2" : "reflink";
    r.agent_timeout = milliseconds(120000);
    return r;
  }
  sandbox::Runtime &rt() { return rt_; }
  const std::string &tag() const { return tag_; }
  const std::string &dir() const { return dir_; }
  // The guest RAM file of the template a mode's sandboxes are cloned from.
  std::string ram_path(const std::string &mode) const {
    return rt_.show_template(choices_of(mode).distro_kernel ? tag_ + "-distro" : tag_).dir +
           "/vm/ram";
  }

private:
  const SandboxBenchOptions &o_;
  sandbox::Runtime rt_;
  std::string tag_, dir_, base_;
  std::vector<std::string> templates_;
  std::unique_ptr<Backend> backend_;
};

struct StartSample {
  double total_ms = 0;
  sandbox::PhaseTimes times;
  double cpu_ms = 0;
  bool hit = false;
  bool ok = false;
  std::string error; // when not ok
};

// N starts released together, each in its own forked process.
std::vector<StartSample> start_round(Workspace &w, const std::string &mode, int n, int round,
                                     double &wall_s) {
  int ready[2], gate[2];
  check_sys(::pipe2(ready, O_CLOEXEC), "pipe", "bench ready");
  check_sys(::pipe2(gate, O_CLOEXEC), "pipe", "bench gate");
  Fd ready_r(ready[0], "ready"), ready_w(ready[1], "ready"), gate_r(gate[0], "gate"),
      gate_w(gate[1], "gate");
  std::vector<std::string> names, results;
  std::vector<Child> workers;
  for (int i = 0; i < n; ++i) {
    names.push_back(fmt::format("{}-{}-{}-{}", w.tag(), mode, round, i));
    results.push_back(fmt::format("{}/result-{}.json", w.dir(), names.back()));
    auto req = w.request(mode, names.back());
    std::string out = results.back();
    WorkerOptions wo;
    wo.name = "bench start";
    workers.push_back(fork_worker(
        [&, req, out]() -> int {
          gate_w.reset();
          ready_r.reset();
          char c = 1;
          if (::write(ready_w.get(), &c, 1) != 1)
            return 1;
          ready_w.reset();
          (void)!::read(gate_r.get(), &c, 1); // EOF: released
          double cpu0 = cpu_seconds_self();
          nlohmann::json j;
          try {
            sandbox::Runtime rt(w.rt().options());
            auto rec = rt.start(req);
            j = {{"end_ns", now_ns()},
                 {"ok", true},
                 {"record", sandbox::to_json(rec)},
                 {"self_cpu_ms", (cpu_seconds_self() - cpu0) * 1000},
                 {"cgroup_cpu_ms", cgroup_cpu_ms(rec.cgroups)}};
          } catch (const std::exception &e) {
            j = {{"end_ns", now_ns()}, {"ok", false}, {"error", e.what()}};
          }
          write_file_staged(out, j.dump());
          return j["ok"].get<bool>() ? 0 : 1;
        },
        wo));
  }
  ready_w.reset();
  for (int i = 0; i < n; ++i) {
    char c;
    if (::read(ready_r.get(), &c, 1) != 1)
      throw Error("read", "bench workers' ready pipe", EPIPE);
  }
  int64_t release = now_ns();
  gate_w.reset();
  for (auto &c : workers)
    if (!c.wait_for(milliseconds(600000)))
      c.kill();
  wall_s = 0;
  std::vector<StartSample> out;
  for (size_t i = 0; i < results.size(); ++i) {
    StartSample s;
    try {
      auto j = nlohmann::json::parse(read_file(results[i]));
      double ms = static_cast<double>(j["end_ns"].get<int64_t>() - release) / 1e6;
      wall_s = std::max(wall_s, ms / 1000);
      if (j["ok"].get<bool>()) {
        auto rec = sandbox::sandbox_record_from_json(j["record"], results[i]);
        s = {ms, rec.times, j["self_cpu_ms"].get<double>() + j["cgroup_cpu_ms"].get<double>(),
             rec.pool_hit, true, {}};
      } else {
        s.error = fmt::format("{} failed: {}", names[i], j.value("error", std::string()));
      }
    } catch (const std::exception &e) {
      s.error = fmt::format("{}: no result ({})", names[i], e.what());
    }
    if (!s.ok)
      w.say(s.error);
    out.push_back(s);
  }
  for (const auto &name : names) {
    try {
      w.rt().stop(name, milliseconds(5000));
    } catch (const InputError &) {
      // never started
    }
  }
  return out;
}

double p50(std::vector<double> v) { return percentile(std::move(v), 0.5); }

// PSS of one QEMU split by mapping.
struct PssSplit {
  double total = 0, guest_written = 0, template_shared = 0, anon = 0, other = 0;
};

PssSplit pss_split(pid_t pid, const std::string &ram) {
  PssSplit s;
  std::ifstream in(fmt::format("/proc/{}/smaps", pid));
  std::string line, kind;
  // In the guest RAM mapping (MAP_PRIVATE of the template file) a page the
  // guest wrote is an anonymous copy ("Anonymous:"), wholly this clone's;
  // everything else there is the template file's page, shared by every
  // clone that touched it.  (Not Private_Dirty: tmpfs pages are always
  // dirty, so a template page only one clone has mapped would count.)
  uint64_t pss = 0, priv = 0;
  auto flush = [&] {
    double p = static_cast<double>(pss) / 1024, pr = static_cast<double>(priv) / 1024;
    s.total += p;
    if (kind == "ram") {
      s.guest_written += pr;
      s.template_shared += std::max(0.0, p - pr);
    } else if (kind == "anon") {
      s.anon += p;
    } else if (!kind.empty()) {
      s.other += p;
    }
    pss = priv = 0;
  };
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    bool header = !line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
                  line.find('-') < (colon == std::string::npos ? line.size() : colon);
    if (header) {
      flush();
      std::istringstream h(line);
      std::string range, perms, off, dev, ino, path;
      h >> range >> perms >> off >> dev >> ino;
      std::getline(h, path);
      path.erase(0, path.find_first_not_of(' '));
      kind = path == ram ? "ram" : (path.empty() || path == "[heap]") ? "anon" : "other";
      continue;
    }
    std::istringstream f(line);
    std::string key;
    uint64_t kib = 0;
    f >> key >> kib;
    if (key == "Pss:")
      pss = kib;
    else if (key == "Anonymous:")
      priv += kib;
  }
  flush();
  return s;
}

} // namespace

std::vector<StartCell> run_start_bench(const SandboxBenchOptions &o) {
  check_sandbox_bench_options(o);
  Workspace w(o);
  std::vector<StartCell> cells;
  for (int n : o.concurrency) {
    for (const auto &mode : o.modes) {
      std::vector<double> total, cgroup, layer, view, spawn, restore, agent, cpu;
      double wall = 0;
      size_t hits = 0, failed = 0;
      std::vector<std::string> errors;
      for (int r = 0; r < o.rounds; ++r) {
        w.say(fmt::format("start: {} x{} round {}/{}", mode, n, r + 1, o.rounds));
        w.pool(choices_of(mode).pool ? static_cast<size_t>(n) : 0);
        double wall_s = 0;
        for (const auto &s : start_round(w, mode, n, r, wall_s)) {
          if (!s.ok) {
            ++failed;
            errors.push_back(s.error);
            continue;
          }
          total.push_back(s.total_ms);
          auto ms = [](uint64_t us) { return static_cast<double>(us) / 1000; };
          cgroup.push_back(ms(s.times.cgroup_us));
          layer.push_back(ms(s.times.layer_us));
          view.push_back(ms(s.times.view_us));
          spawn.push_back(ms(s.times.spawn_us));
          restore.push_back(ms(s.times.restore_us));
          agent.push_back(ms(s.times.agent_us));
          cpu.push_back(s.cpu_ms);
          hits += s.hit;
        }
        wall += wall_s;
      }
      StartCell c;
      c.latency = summarize(mode, n, total, wall);
      c.cgroup_ms = p50(cgroup);
      c.layer_ms = p50(layer);
      c.view_ms = p50(view);
      c.spawn_ms = p50(spawn);
      c.restore_ms = p50(restore);
      c.agent_ms = p50(agent);
      double cpu_sum = 0;
      for (double x : cpu)
        cpu_sum += x;
      c.cpu_ms_per_start = cpu.empty() ? 0 : cpu_sum / static_cast<double>(cpu.size());
      c.pool_hits = hits;
      c.failed = failed;
      c.errors = std::move(errors);
      cells.push_back(c);
    }
  }
  w.pool(0);
  if (!o.csv.empty()) {
    std::vector<LatencySummary> rows;
    for (const auto &c : cells)
      rows.push_back(c.latency);
    write_csv(o.csv, rows);
    if (!o.png.empty())
      plot_latency(o.csv, o.png, o.title.empty() ? "sandbox start" : o.title);
  }
  return cells;
}

namespace {

void write_density_csv(const std::string &path, const std::vector<DensityCell> &cells) {
  std::string s = "mode,count,pss_mib,guest_written_mib,template_shared_mib,qemu_anon_mib,"
                  "other_mib,mem_available_drop_mib,idle_cpu_percent,exec_p50_ms,exec_p99_ms\n";
  for (const auto &c : cells)
    s += fmt::format("{},{},{:.1f},{:.1f},{:.1f},{:.1f},{:.1f},{:.1f},{:.1f},{:.1f},{:.1f}\n", c.mode,
                     c.count, c.pss_mib, c.guest_written_mib, c.template_shared_mib,
                     c.qemu_anon_mib, c.other_mib, c.mem_available_drop_mib, c.idle_cpu_percent,
                     c.exec_p50_ms, c.exec_p99_ms);
  write_file_staged(path, s);
}

// PSS per idle sandbox, one stacked bar per (mode, count): guest pages
// written, template pages shared, QEMU's anonymous memory (heap, TCG's
// translation cache; in a cold boot also the guest's RAM), the rest.
void plot_density(const std::string &csv, const std::string &png, const std::string &title) {
  std::string script = fmt::format(
      "set terminal pngcairo size 1000,560 noenhanced\nset output '{}'\nset title '{}'\n"
      "set datafile separator ','\nset style data histograms\nset style histogram rowstacked\n"
      "set style fill solid 0.8 border -1\nset boxwidth 0.75\n"
      "set ylabel 'MiB per idle sandbox (PSS of its QEMU)'\nset xtics rotate by -40\n"
      "set key outside right top vertical\nset grid y\nset yrange [0:*]\n"
      "plot '{}' skip 1 using 4:xtic(stringcolumn(1).' x'.stringcolumn(2)) title 'guest pages "
      "written', '' skip 1 using 5 title 'template pages shared', '' skip 1 using 6 title "
      "'QEMU anon', '' skip 1 using 7 title 'other'\n",
      png, title, csv);
  run_gnuplot(script, png);
}

} // namespace

void replot_density(const std::string &csv, const std::string &png, const std::string &title) {
  if (!fs::is_regular_file(csv))
    throw InputError(fmt::format("--replot {}: no such file", csv));
  plot_density(csv, png, title.empty() ? "idle sandboxes: host memory" : title);
}

std::vector<DensityCell> run_density_bench(const SandboxBenchOptions &o) {
  check_sandbox_bench_options(o);
  Workspace w(o);
  std::vector<DensityCell> cells;
  for (const auto &mode : o.modes) {
    if (mode == "no-pool")
      continue; // the pool changes nothing once a sandbox runs
    std::string ram = w.ram_path(mode);
    for (int n : o.counts) {
      DensityCell c;
      c.mode = mode;
      c.count = n;
      uint64_t avail0 = mem_available_kib();
      std::vector<std::string> names;
      w.pool(0);
      for (int i = 0; i < n; ++i) {
        std::string name = fmt::format("{}-d-{}-{}", w.tag(), mode, i);
        w.say(fmt::format("density: {} {} of {}", mode, i + 1, n));
        try {
          w.rt().start(w.request(mode, name));
          names.push_back(name);
        } catch (const std::exception &e) {
          ++c.failed;
          c.errors.push_back(fmt::format("{} failed: {}", name, e.what()));
          w.say(c.errors.back());
        }
      }
      // Settled: the guests idle (a fixed pause is fine here: it is not on
      // any start path, and the figures are of idle sandboxes).
      std::this_thread::sleep_for(std::chrono::seconds(o.settle_s));
      std::vector<sandbox::SandboxStatus> st;
      for (const auto &name : names)
        st.push_back(w.rt().show(name));
      for (const auto &s : st) {
        if (!s.record.qemu)
          continue;
        PssSplit p = pss_split(s.record.qemu->pid, ram);
        c.pss_mib += p.total;
        c.guest_written_mib += p.guest_written;
        c.template_shared_mib += p.template_shared;
        c.qemu_anon_mib += p.anon;
        c.other_mib += p.other;
      }
      double k = names.empty() ? 1 : static_cast<double>(names.size());
      c.pss_mib /= k;
      c.guest_written_mib /= k;
      c.template_shared_mib /= k;
      c.qemu_anon_mib /= k;
      c.other_mib /= k;
      c.mem_available_drop_mib =
          (static_cast<double>(avail0) - static_cast<double>(mem_available_kib())) / 1024 / k;
      // CPU of all N idle sandboxes over the idle window.
      double cpu0 = 0, cpu1 = 0;
      for (const auto &s : st)
        cpu0 += cgroup_cpu_ms(s.record.cgroups);
      auto t0 = Clock::now();
      std::this_thread::sleep_for(std::chrono::seconds(o.idle_window_s));
      for (const auto &s : st)
        cpu1 += cgroup_cpu_ms(s.record.cgroups);
      double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      c.idle_cpu_percent = (cpu1 - cpu0) / 10 / secs;
      // Is the node still usable: exec into the first one.
      std::vector<double> exec_ms;
      if (!names.empty())
        for (int i = 0; i < 10; ++i) {
          auto e0 = Clock::now();
          try {
            w.rt().exec(names.front(), {"/bin/true"}, milliseconds(30000));
            exec_ms.push_back(
                std::chrono::duration<double, std::milli>(Clock::now() - e0).count());
          } catch (const std::exception &e) {
            ++c.exec_failed; // the cell is reported with it, the run goes on
            c.errors.push_back(fmt::format("exec {} into {} failed: {}", i + 1, names.front(),
                                           e.what()));
            w.say(c.errors.back());
          }
        }
      c.exec_p50_ms = percentile(exec_ms, 0.5);
      c.exec_p99_ms = percentile(exec_ms, 0.99);
      for (const auto &name : names)
        w.rt().stop(name, milliseconds(5000));
      cells.push_back(c);
    }
  }
  if (!o.csv.empty()) {
    write_density_csv(o.csv, cells);
    if (!o.png.empty())
      plot_density(o.csv, o.png, o.title.empty() ? "idle sandboxes: host memory" : o.title);
  }
  return cells;
}

namespace {

// What failed, under the table: a benchmark that lost a sample says why.
template <typename Cell> std::string format_errors(const std::vector<Cell> &cells) {
  std::string s;
  for (const auto &c : cells)
    for (const auto &e : c.errors)
      s += "error: " + e + "\n";
  return s;
}

} // namespace

std::string format_start_table(const std::vector<StartCell> &cells) {
  std::string s = fmt::format("{:<13} {:>4} {:>5} {:>9} {:>9} {:>9} {:>8} | {:>7} {:>7} {:>7} "
                              "{:>7} {:>8} {:>8} | {:>9} {:>5}\n",
                              "mode", "N", "ok", "p50 ms", "p99 ms", "max ms", "starts/s",
                              "cgroup", "layer", "view", "spawn", "restore", "running",
                              "cpu ms", "hits");
  for (const auto &c : cells)
    s += fmt::format("{:<13} {:>4} {:>5} {:>9.1f} {:>9.1f} {:>9.1f} {:>8.2f} | {:>7.1f} {:>7.1f} "
                     "{:>7.1f} {:>7.1f} {:>8.1f} {:>8.1f} | {:>9.1f} {:>5}\n",
                     c.latency.mode, c.latency.concurrency, c.latency.samples, c.latency.p50_ms,
                     c.latency.p99_ms, c.latency.max_ms, c.latency.throughput_per_s, c.cgroup_ms,
                     c.layer_ms, c.view_ms, c.spawn_ms, c.restore_ms, c.agent_ms,
                     c.cpu_ms_per_start, c.pool_hits);
  s += "(phase columns: p50 of each phase's end, ms from the sandbox's own start; cpu ms: the "
       "sandbox cgroup's CPU up to running plus the starting process's own)\n";
  s += format_errors(cells);
  return s;
}

std::string format_density_table(const std::vector<DensityCell> &cells) {
  std::string s = fmt::format("{:<13} {:>5} {:>9} {:>9} {:>9} {:>9} {:>7} {:>10} {:>8} {:>9} "
                              "{:>9} {:>6}\n",
                              "mode", "N", "PSS MiB", "written", "shared", "anon", "other",
                              "MemAvail/N", "idle %", "exec p50", "exec p99", "failed");
  for (const auto &c : cells)
    s += fmt::format("{:<13} {:>5} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f} {:>7.1f} {:>10.1f} {:>8.1f} "
                     "{:>9.1f} {:>9.1f} {:>6}\n",
                     c.mode, c.count, c.pss_mib, c.guest_written_mib, c.template_shared_mib,
                     c.qemu_anon_mib, c.other_mib, c.mem_available_drop_mib, c.idle_cpu_percent,
                     c.exec_p50_ms, c.exec_p99_ms, c.failed + c.exec_failed);
  s += "(per sandbox, MiB: PSS of its QEMU = guest pages it wrote + its share of template pages "
       "+ QEMU anon (heap, TCG translation cache; and all guest RAM in no-template) + other; "
       "idle %: of one CPU, all N together)\n";
  s += format_errors(cells);
  return s;
}

nlohmann::json to_json(const std::vector<StartCell> &cells) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto &c : cells)
    j.push_back({{"mode", c.latency.mode},
                 {"concurrency", c.latency.concurrency},
                 {"samples", c.latency.samples},
                 {"p50_ms", c.latency.p50_ms},
                 {"p99_ms", c.latency.p99_ms},
                 {"max_ms", c.latency.max_ms},
                 {"starts_per_s", c.latency.throughput_per_s},
                 {"phase_p50_ms",
                  {{"cgroup", c.cgroup_ms},
                   {"layer", c.layer_ms},
                   {"view", c.view_ms},
                   {"spawn", c.spawn_ms},
                   {"restore", c.restore_ms},
                   {"running", c.agent_ms}}},
                 {"cpu_ms_per_start", c.cpu_ms_per_start},
                 {"pool_hits", c.pool_hits},
                 {"failed", c.failed},
                 {"errors", c.errors}});
  return j;
}

nlohmann::json to_json(const std::vector<DensityCell> &cells) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto &c : cells)
    j.push_back({{"mode", c.mode},
                 {"count", c.count},
                 {"pss_mib", c.pss_mib},
                 {"guest_written_mib", c.guest_written_mib},
                 {"template_shared_mib", c.template_shared_mib},
                 {"qemu_anon_mib", c.qemu_anon_mib},
                 {"other_mib", c.other_mib},
                 {"mem_available_drop_mib", c.mem_available_drop_mib},
                 {"idle_cpu_percent", c.idle_cpu_percent},
                 {"exec_p50_ms", c.exec_p50_ms},
                 {"exec_p99_ms", c.exec_p99_ms},
                 {"exec_failed", c.exec_failed},
                 {"errors", c.errors},
                 {"failed", c.failed}});
  return j;
}

} // namespace rundkit
