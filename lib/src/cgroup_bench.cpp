#include "rundkit/cgroup_bench.h"

#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "rundkit/error.h"

namespace rundkit {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct ModePlan {
  std::string mode;
  std::string backend; // v1 | v2 | kernel-pool
  bool pooled = false;
};

ModePlan plan_of(const std::string &mode, const Layout &layout) {
  if (mode == "v1-per-hierarchy")
    return {mode, "v1", false};
  if (mode == "v2-mkdir")
    return {mode, "v2", false};
  if (mode == "v1-pool")
    return {mode, "v1", true};
  if (mode == "v2-pool")
    return {mode, "v2", true};
  if (mode == "kernel-pool")
    return {mode, "kernel-pool", true};
  if (mode == "userspace-pool") {
    bool v1 = layout.v1_with("cpu") || layout.v1_with("memory") || layout.v1_with("pids");
    return {mode, v1 ? "v1" : "v2", true};
  }
  throw InputError(fmt::format("unknown bench mode '{}': expected v1-per-hierarchy, v2-mkdir, "
                               "v1-pool, v2-pool, userspace-pool or kernel-pool",
                               mode));
}

// The sandbox every operation sets up: as much of it as this backend can
// enforce here (and the bench says what it left out).
Limits sandbox_limits(const Backend &b, const std::string &parent, const Progress &progress) {
  Limits want;
  want.cpus = 0.5;
  want.memory_bytes = 128ULL << 20;
  want.pids = 1024;
  want.devices = DevicePolicy::kOciDefault;
  Limits got;
  std::vector<std::string> missing;
  auto try_one = [&](Limits one, auto set, const char *what) {
    try {
      b.check_enforceable(parent, one);
      set(got);
    } catch (const Error &) {
      missing.push_back(what);
    }
  };
  try_one(Limits{want.cpus, {}, {}, {}}, [&](Limits &l) { l.cpus = want.cpus; }, "cpu");
  try_one(Limits{{}, want.memory_bytes, {}, {}},
          [&](Limits &l) { l.memory_bytes = want.memory_bytes; }, "memory");
  try_one(Limits{{}, {}, want.pids, {}}, [&](Limits &l) { l.pids = want.pids; }, "pids");
  try_one(Limits{{}, {}, {}, want.devices}, [&](Limits &l) { l.devices = want.devices; },
          "devices");
  if (!missing.empty() && progress)
    progress(fmt::format("  note: {} cannot enforce {} here; those limits are left out",
                         b.name(), fmt::join(missing, ", ")));
  return got;
}

struct Round {
  std::vector<double> setup_ms, teardown_ms;
  double setup_wall_s = 0, teardown_wall_s = 0;
};

Round run_round(Backend &b, const std::string &parent, const Limits &limits, int conc,
                const std::string &tag) {
  Round r;
  r.setup_ms.resize(conc);
  r.teardown_ms.resize(conc);
  std::vector<std::string> errors;
  std::mutex mu;
  Clock::time_point setup_start, teardown_start;
  std::barrier go(conc, [&]() noexcept { setup_start = Clock::now(); });
  std::barrier done(conc, [&]() noexcept {
    r.setup_wall_s = std::chrono::duration<double>(Clock::now() - setup_start).count();
    teardown_start = Clock::now();
  });
  std::vector<std::thread> threads;
  for (int i = 0; i < conc; ++i)
    threads.emplace_back([&, i] {
      std::string name = fmt::format("{}-{}", tag, i);
      ClaimRequest req{parent, name, limits, {}, std::nullopt, true, std::nullopt};
      pid_t pid = 0;
      go.arrive_and_wait();
      auto t0 = Clock::now();
      try {
        pid = b.claim(req).pid;
      } catch (const std::exception &e) {
        std::lock_guard l(mu);
        errors.push_back(e.what());
      }
      r.setup_ms[i] = ms_since(t0);
      done.arrive_and_wait();
      t0 = Clock::now();
      try {
        if (pid)
          b.release(name);
      } catch (const std::exception &e) {
        std::lock_guard l(mu);
        errors.push_back(e.what());
      }
      if (pid)
        ::waitpid(pid, nullptr, 0);
      r.teardown_ms[i] = ms_since(t0);
    });
  for (auto &t : threads)
    t.join();
  r.teardown_wall_s = std::chrono::duration<double>(Clock::now() - teardown_start).count();
  if (!errors.empty())
    throw Error(fmt::format("{} of {} operations failed; first: {}", errors.size(), conc,
                            errors.front()));
  return r;
}

// --- bare-VM set-up: v1 hierarchies first, then cgroup2, then lwcg ------

constexpr const char *kVmV1Root = "/run/lcgroupctl-bench-v1";

std::vector<std::string> vm_v1_controllers() {
  // /proc/cgroups: name, hierarchy, num_cgroups, enabled.
  std::vector<std::string> out;
  std::istringstream in(read_file("/proc/cgroups"));
  std::string line;
  static const std::set<std::string> wanted = {"cpu",     "cpuacct", "cpuset", "memory",
                                               "devices", "freezer", "blkio",  "io", "pids"};
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string name;
    int hier = 0, num = 0, enabled = 0;
    if (line[0] == '#' || !(f >> name >> hier >> num >> enabled))
      continue;
    if (enabled && wanted.count(name))
      out.push_back(name);
  }
  return out;
}

void vm_mount_v1(const Progress &progress) {
  cgfs::make_all(kVmV1Root);
  check_sys(::mount("tmpfs", kVmV1Root, "tmpfs", 0, "mode=755"), "mount tmpfs", kVmV1Root);
  for (const auto &c : vm_v1_controllers()) {
    std::string dir = cgfs::join(kVmV1Root, c);
    cgfs::make(dir);
    if (::mount("cgroup", dir.c_str(), "cgroup", 0, c.c_str()) < 0) {
      if (progress)
        progress(fmt::format("  note: v1 mount of {} failed ({}); left out", c,
                             std::strerror(errno)));
      ::rmdir(dir.c_str());
    }
  }
}

void vm_unmount_v1(const Progress &progress) {
  for (const auto &c : cgfs::children(kVmV1Root)) {
    std::string dir = cgfs::join(kVmV1Root, c);
    ::umount2(dir.c_str(), 0);
  }
  check_sys(::umount2(kVmV1Root, MNT_DETACH), "umount", kVmV1Root);
  // The controllers return to cgroup2 only once each v1 root is gone,
  // which the kernel finishes asynchronously.
  auto deadline = Clock::now() + std::chrono::seconds(20);
  Layout l = detect_layout();
  const Hierarchy *v2 = l.v2();
  if (!v2)
    return;
  for (;;) {
    auto have = cgfs::words(v2->mount_point, cgfs::kControllers);
    bool back = std::count(have.begin(), have.end(), "cpu") &&
                std::count(have.begin(), have.end(), "memory") &&
                std::count(have.begin(), have.end(), "pids");
    if (back || Clock::now() > deadline) {
      if (progress)
        progress(fmt::format("  cgroup2 controllers now: {}", fmt::join(have, " ")));
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void vm_remount_lwcg(const Progress &progress) {
  Layout l = detect_layout();
  if (!l.v2())
    throw Error("--setup-vm: no cgroup2 mount to remount with lwcg");
  const std::string &mp = l.v2()->mount_point;
  check_sys(::mount(nullptr, mp.c_str(), nullptr, MS_REMOUNT, "lwcg"), "mount -o remount,lwcg",
            mp);
  if (progress)
    progress(fmt::format("  remounted {} with lwcg", mp));
}

int mode_rank(const std::string &m) {
  if (m.rfind("v1", 0) == 0)
    return 0;
  if (m == "kernel-pool")
    return 2;
  return 1; // v2 modes and userspace-pool (v2 once v1 is gone)
}

} // namespace

std::vector<LatencySummary> run_bench(const BenchOptions &opts, const Progress &progress) {
  if (opts.rounds < 1)
    throw InputError(fmt::format("invalid --rounds {}: at least 1", opts.rounds));
  for (int c : opts.concurrency)
    if (c < 1 || c > 1024)
      throw InputError(fmt::format("invalid concurrency {}: 1 to 1024", c));
  auto say = [&](const std::string &s) {
    if (progress)
      progress(s);
  };
  std::vector<std::string> modes = opts.modes;
  if (opts.setup_vm) {
    // Fairness in one boot: v1 modes while the controllers are bound to
    // v1, then cgroup2 with the same controllers, then lwcg.
    std::stable_sort(modes.begin(), modes.end(),
                     [](const auto &a, const auto &b) { return mode_rank(a) < mode_rank(b); });
    if (mode_rank(modes.front()) == 0)
      vm_mount_v1(progress);
  }
  std::vector<LatencySummary> rows;
  std::string base = fmt::format("lcgroupctl-bench-{}", ::getpid());
  bool v1_mounted = opts.setup_vm && mode_rank(modes.front()) == 0;
  for (const auto &mode : modes) {
    if (v1_mounted && mode_rank(mode) > 0) {
      say("setup-vm: unmounting the v1 hierarchies");
      vm_unmount_v1(progress);
      v1_mounted = false;
    }
    if (opts.setup_vm && mode == "kernel-pool")
      vm_remount_lwcg(progress);
    Config cfg = opts.config;
    Layout layout = detect_layout(cfg.layout);
    ModePlan plan = plan_of(mode, layout);
    cfg.backend = plan.backend;
    cfg.state_dir = fmt::format("{}/{}", opts.config.state_dir, base);
    std::unique_ptr<Backend> b;
    try {
      b = make_backend(cfg, layout);
    } catch (const InputError &) {
      throw;
    } catch (const Error &e) {
      say(fmt::format("skipping {}: {}", mode, e.what()));
      continue;
    }
    std::string parent = fmt::format("{}/{}", base, mode);
    say(fmt::format("{}: {} backend, {} pool, parent {}", mode, b->name(),
                    plan.pooled ? "with" : "no", parent));
    b->create_parent(parent);
    try {
      Limits limits = sandbox_limits(*b, parent, progress);
      for (int conc : opts.concurrency) {
        std::vector<double> samples;
        double wall = 0;
        for (int round = 0; round < opts.rounds; ++round) {
          if (plan.pooled)
            b->fill(parent, static_cast<size_t>(conc), {}, {});
          Round r = run_round(*b, parent, limits, conc, fmt::format("c{}r{}", conc, round));
          for (int i = 0; i < conc; ++i)
            samples.push_back(r.setup_ms[i] + (opts.include_teardown ? r.teardown_ms[i] : 0));
          wall += r.setup_wall_s + (opts.include_teardown ? r.teardown_wall_s : 0);
        }
        rows.push_back(summarize(mode, conc, samples, wall));
        const auto &s = rows.back();
        say(fmt::format("  {:>4}-way: p50 {:.3f} ms  p99 {:.3f} ms  max {:.3f} ms  {:.0f} ops/s",
                        conc, s.p50_ms, s.p99_ms, s.max_ms, s.throughput_per_s));
      }
    } catch (...) {
      try {
        b->remove_parent(parent);
      } catch (const std::exception &) {
      }
      throw;
    }
    b->remove_parent(parent);
    for (const auto &t : b->trees())
      ::rmdir(t->path(base).c_str());
  }
  if (v1_mounted)
    vm_unmount_v1(progress);
  if (!opts.csv.empty()) {
    write_csv(opts.csv, rows);
    say(fmt::format("wrote {}", opts.csv));
    if (!opts.png.empty()) {
      plot_latency(opts.csv, opts.png, opts.title);
      say(fmt::format("wrote {}", opts.png));
    }
  } else if (!opts.png.empty()) {
    throw InputError("--png needs --csv (the plot is drawn from it)");
  }
  return rows;
}

} // namespace rundkit
