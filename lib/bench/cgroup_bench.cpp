#include "bench/cgroup_bench.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <new>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "bench/report.h"
#include "cgroup/fs.h"
#include "cgroup/names.h"
#include "cgroup/state.h"
#include "testing/vm_setup.h"
#include "util/error.h"
#include "util/process.h"

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

// The run record (StateDir runs/ID.json) a bench keeps while it works:
// written before its first mkdir and before each mode's parent, removed
// after its own clean-up, so a bench killed at any point leaves what
// gc_bench_runs() can find and undo.
struct BenchRun {
  std::string id;        // lcgroupctl-bench-PID
  ProcessId actor;
  std::string base;      // PARENT/lcgroupctl-bench-PID
  std::string state_dir; // the run's own lcgroupctl state
  std::vector<std::pair<std::string, std::string>> parents; // backend, parent
};

nlohmann::json to_json(const BenchRun &r) {
  nlohmann::json parents = nlohmann::json::array();
  for (const auto &[backend, parent] : r.parents)
    parents.push_back({{"backend", backend}, {"parent", parent}});
  return {{"actor", rundkit::to_json(r.actor)},
          {"base", r.base},
          {"state_dir", r.state_dir},
          {"parents", parents}};
}

BenchRun bench_run_from_json(const std::string &id, const nlohmann::json &j) {
  BenchRun r;
  r.id = id;
  r.actor = process_id_from_json(j.at("actor"));
  r.base = j.at("base").get<std::string>();
  r.state_dir = j.at("state_dir").get<std::string>();
  for (const auto &p : j.at("parents"))
    r.parents.emplace_back(p.at("backend").get<std::string>(), p.at("parent").get<std::string>());
  return r;
}

// Kills what runs in `dir` and below and removes it all, children first.
// For a bench run's own base only: everything under it is the run's.
void remove_subtree(const Tree &tree, const std::string &dir) {
  if (!cgfs::exists(dir))
    return; // never made in this hierarchy, or removed by an earlier undo
  for (const auto &child : cgfs::children(dir))
    remove_subtree(tree, cgfs::join(dir, child));
  if (auto cg = Cgroup::open(dir)) {
    tree.kill_all(*cg);
    cg->remove();
  }
}

// Removes the run's base cgroup (and all below it: claims, pool entries and
// their parked processes, parents) in every hierarchy of every backend it
// used, then its private state; the record goes last, so an undo that is
// itself killed is simply done again.  Works from wherever the run was
// killed: a parent made in some hierarchies only, a claim half made.
void undo_run(const BenchRun &run, const Config &cfg, GcReport &report) {
  Layout layout = detect_layout(cfg.layout);
  size_t failed_before = report.failed.size();
  std::set<std::string> backends;
  for (const auto &[backend, parent] : run.parents)
    backends.insert(backend);
  for (const auto &backend : backends) {
    try {
      Config sub = cfg;
      sub.backend = backend;
      sub.state_dir = run.state_dir;
      auto b = make_backend(sub, layout);
      for (const auto &t : b->trees())
        remove_subtree(*t, t->path(run.base));
    } catch (const std::exception &e) {
      report.failed.push_back(fmt::format("bench run {}: {} cgroups under '{}': {}", run.id,
                                          backend, run.base, e.what()));
    }
  }
  if (report.failed.size() != failed_before)
    return; // keep the record: a later gc tries again
  std::error_code ec;
  std::filesystem::remove_all(run.state_dir, ec);
  if (ec) {
    report.failed.push_back(
        fmt::format("bench run {}: remove '{}': {}", run.id, run.state_dir, ec.message()));
    return;
  }
  StateDir(cfg.state_dir).remove_run(run.id);
}

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
  if (mode == "userspace-pool")
    return {mode, layout.limits_on_v1() ? "v1" : "v2", true};
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

// What worker processes report back, in shared memory; the parent writes
// the release instants.  steady_clock is CLOCK_MONOTONIC, one clock for
// every process of the machine.
struct Shared {
  Clock::time_point go, down;
  double setup_ms[1024];
  double teardown_ms[1024];
  int failed[1024];
  char error[256];
};

void write_bytes(int fd, int n) {
  std::string b(static_cast<size_t>(n), 'x');
  check_sys(::write(fd, b.data(), b.size()), "write", "bench pipe");
}

// The worker's side: one byte, the parent's release.
void await_byte(int fd) {
  char c;
  ssize_t got;
  while ((got = ::read(fd, &c, 1)) < 0 && errno == EINTR) {
  }
  check_sys(got, "read", "bench pipe");
  if (got == 0)
    throw Error("bench pipe closed before the release");
}

// The parent's side: `n` bytes from the workers, or an error naming the
// first worker that exited before it wrote its byte (no wait forever on
// one that died).
void await_workers(int fd, int n, std::vector<Child> &workers) {
  std::vector<struct pollfd> p;
  p.push_back({fd, POLLIN, 0});
  for (const auto &w : workers)
    p.push_back({w.pidfd().get(), POLLIN, 0});
  char buf[1024];
  while (n > 0) {
    int rc = ::poll(p.data(), p.size(), -1);
    if (rc < 0 && errno == EINTR)
      continue;
    check_sys(rc, "poll", "bench workers");
    if (p[0].revents) {
      ssize_t got = ::read(fd, buf, std::min<size_t>(sizeof buf, static_cast<size_t>(n)));
      if (got < 0 && errno == EINTR)
        continue;
      check_sys(got, "read", "bench pipe");
      if (got == 0)
        throw Error("bench workers exited early");
      n -= static_cast<int>(got);
      continue;
    }
    for (size_t i = 1; i < p.size(); ++i)
      if (p[i].revents) {
        Child &w = workers[i - 1];
        ExitStatus st = w.wait();
        throw Error(fmt::format("{} {} before the whole round was ready", w.name(),
                                st.describe()));
      }
  }
}

std::pair<Fd, Fd> bench_pipe() {
  int p[2];
  check_sys(::pipe2(p, O_CLOEXEC), "pipe", "bench");
  return {Fd(p[0], "bench pipe"), Fd(p[1], "bench pipe")};
}

// The round's shared results, unmapped however the round ends.
class SharedMap {
public:
  SharedMap() {
    mem_ = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                  -1, 0);
    if (mem_ == MAP_FAILED)
      throw Error("mmap", "bench results", errno);
    sh_ = new (mem_) Shared{};
  }
  ~SharedMap() { ::munmap(mem_, sizeof(Shared)); }
  SharedMap(const SharedMap &) = delete;
  SharedMap &operator=(const SharedMap &) = delete;
  Shared *operator->() const noexcept { return sh_; }

private:
  void *mem_;
  Shared *sh_;
};

// One worker process per concurrent set-up, as on a real node where each
// sandbox has its own runtime process: their clone3 calls do not contend on
// one address space, which threads of a single process would.  Once all are
// forked, they pause `settle_ms` (the previous teardown's and the fill's
// deferred kernel work, css offlining and RCU callbacks, is done, as when a
// pool is filled ahead of a burst) and are released at once.  A sample runs
// from that common release instant to the worker's sandbox being ready, as
// a node sees a burst of starts: waiting for a CPU or a lock counts, and a
// worker that wakes late is not let off.  With `from_release` false it runs
// from the worker's own start instead: lock waits count, waiting for a CPU
// before the start does not (what a node with a free core per start sees).
//
// No warm-up set-up per worker: tried, its 200 teardowns right before the
// burst left v1's asynchronous css destruction queued on cgroup_mutex
// behind the timed renames (p99 x4), and under TCG it did not lower the
// fork's first-touch cost measurably.
// What a worker times: a set-up and its teardown, for one sandbox name.
// set_up returns the pid placed inside (0: none) and throws on failure.
struct SandboxOp {
  std::function<pid_t(const std::string &name)> set_up;
  std::function<void(const std::string &name, pid_t pid)> tear_down;
};

// --op setup: the whole sandbox, through the backend (state, limits,
// device policy, a process inside).
SandboxOp whole_sandbox(Backend &b, const std::string &parent, const Limits &limits) {
  return {[&b, parent, limits](const std::string &name) {
            pid_t pid = b.claim(ClaimRequest{parent, name, limits, {}, std::nullopt, true,
                                             std::nullopt})
                            .pid;
            // A pool hit hands out the entry's parked process, which is not
            // ours to reap (release kills it); a miss starts our child.
            siginfo_t info{};
            bool ours = pid > 0 && ::waitid(P_PID, static_cast<id_t>(pid), &info,
                                            WEXITED | WNOHANG | WNOWAIT) == 0;
            return ours ? pid : pid_t{0};
          },
          [&b](const std::string &name, pid_t pid) {
            b.release(name);
            if (pid) // the claim left its process to us, its parent
              Child::adopt(pid, "sandbox " + name).wait();
          }};
}

// --op create: cgroup creation alone, mkdir(2) in every hierarchy of the
// backend (on an lwcg kernel with a pool, the mkdir that takes a pooled
// child): what RunD's "cgroup creation time" measures.
SandboxOp mkdir_only(Backend &b, const std::string &parent) {
  return {[&b, parent](const std::string &name) {
            for (const auto &t : b.trees())
              cgfs::make(t->path(cgfs::join(parent, name)));
            return pid_t{0};
          },
          [&b, parent](const std::string &name, pid_t) {
            for (const auto &t : b.trees())
              cgfs::remove(t->path(cgfs::join(parent, name)));
          }};
}

Round run_round(const SandboxOp &op, int conc, const std::string &tag, int settle_ms,
                bool from_release) {
  SharedMap sh;
  auto [go_r, go_w] = bench_pipe();
  auto [ready_r, ready_w] = bench_pipe();
  auto [down_r, down_w] = bench_pipe();
  // Workers leave by _exit whatever happens in them (fork_worker): an
  // exception can never unwind into this loop in a worker.  Any return
  // from here (an error, a fork that failed half-way) kills and reaps
  // those already made.
  std::vector<Child> workers;
  workers.reserve(static_cast<size_t>(conc));
  for (int i = 0; i < conc; ++i) {
    workers.push_back(fork_worker(
        [&, i] {
          // Only the ends a worker uses: were it to keep the write ends of
          // go and down, a bench killed at any point would leave it
          // waiting for a byte nobody can send any more.
          go_w.reset();
          down_w.reset();
          ready_r.reset();
          std::string name = fmt::format("{}-{}", tag, i);
          pid_t pid = 0;
          bool made = false;
          write_bytes(ready_w.get(), 1);
          await_byte(go_r.get());
          auto t0 = from_release ? sh->go : Clock::now();
          try {
            pid = op.set_up(name);
            made = true;
          } catch (const std::exception &e) {
            sh->failed[i] = 1;
            std::snprintf(sh->error, sizeof sh->error, "%s", e.what());
          }
          sh->setup_ms[i] = ms_since(t0);
          write_bytes(ready_w.get(), 1);
          await_byte(down_r.get());
          t0 = from_release ? sh->down : Clock::now();
          try {
            if (made)
              op.tear_down(name, pid);
          } catch (const std::exception &e) {
            sh->failed[i] = 1;
            std::snprintf(sh->error, sizeof sh->error, "%s", e.what());
          }
          sh->teardown_ms[i] = ms_since(t0);
          return 0;
        },
        // Killed with the bench (kill -9 included): gc undoes what it made.
        {.name = fmt::format("bench worker {}", i), .pdeathsig = SIGKILL}));
  }
  Round r;
  await_workers(ready_r.get(), conc, workers); // all forked and waiting
  std::this_thread::sleep_for(std::chrono::milliseconds(settle_ms));
  sh->go = Clock::now();
  write_bytes(go_w.get(), conc);
  await_workers(ready_r.get(), conc, workers); // all set up
  r.setup_wall_s = ms_since(sh->go) / 1000;
  sh->down = Clock::now();
  auto t0 = sh->down;
  write_bytes(down_w.get(), conc);
  std::string died;
  for (auto &w : workers)
    if (ExitStatus st = w.wait(); !st.ok() && died.empty())
      died = fmt::format("{} {}", w.name(), st.describe());
  r.teardown_wall_s = ms_since(t0) / 1000;
  int failed = 0;
  for (int i = 0; i < conc; ++i) {
    r.setup_ms.push_back(sh->setup_ms[i]);
    r.teardown_ms.push_back(sh->teardown_ms[i]);
    failed += sh->failed[i];
  }
  if (!died.empty())
    throw Error(fmt::format("{} (its teardown is not timed)", died));
  if (failed)
    throw Error(fmt::format("{} of {} operations failed; one: {}", failed, conc, sh->error));
  return r;
}

int mode_rank(const std::string &m) {
  if (m == "kernel-pool")
    return 1;
  if (m.rfind("v1", 0) == 0)
    return 2;
  return 0; // v2 modes and userspace-pool (v2 until v1 is mounted)
}

} // namespace

const std::vector<std::string> &cgroup_bench_modes() {
  static const std::vector<std::string> modes = {"v1-per-hierarchy", "v2-mkdir", "v1-pool",
                                                 "v2-pool",          "userspace-pool",
                                                 "kernel-pool"};
  return modes;
}

void check_cgroup_bench_options(const CgroupBenchOptions &opts) {
  const auto &known = cgroup_bench_modes();
  for (const auto &m : opts.modes)
    if (std::find(known.begin(), known.end(), m) == known.end())
      throw InputError(fmt::format("unknown bench mode '{}': expected {}", m,
                                   fmt::join(known, ", ")));
  if (opts.modes.empty())
    throw InputError("no bench mode given");
  if (!opts.parent.empty())
    (void)normalize_parent(opts.parent); // InputError for a parent that cannot be
  if (!opts.png.empty() && opts.csv.empty())
    throw InputError("--png needs --csv (the plot is drawn from it)");
  if (opts.rounds < 1)
    throw InputError(fmt::format("invalid --rounds {}: at least 1", opts.rounds));
  if (opts.from != "release" && opts.from != "start")
    throw InputError(fmt::format("invalid --from '{}': expected release or start", opts.from));
  if (opts.op != "setup" && opts.op != "create")
    throw InputError(fmt::format("invalid --op '{}': expected setup or create", opts.op));
  for (int c : opts.concurrency)
    if (c < 1 || c > 1024)
      throw InputError(fmt::format("invalid concurrency {}: 1 to 1024", c));
  // Where the results go is checked before the run, not after it.
  for (const auto &[what, path] : {std::pair{"--csv", opts.csv}, std::pair{"--png", opts.png}}) {
    if (path.empty())
      continue;
    std::filesystem::path parent = std::filesystem::path(path).parent_path();
    const std::string dir = parent.empty() ? std::string(".") : parent.string();
    struct stat st;
    bool dir_ok = ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
                  ::access(dir.c_str(), W_OK) == 0;
    bool file_ok = ::stat(path.c_str(), &st) != 0 || (S_ISREG(st.st_mode) &&
                                                       ::access(path.c_str(), W_OK) == 0);
    if (!dir_ok)
      throw InputError(
          fmt::format("{} '{}': cannot write there (no writable directory '{}')", what, path, dir));
    if (!file_ok)
      throw InputError(fmt::format("{} '{}': cannot write there (not a writable file)", what, path));
  }
}

std::vector<LatencySummary> run_bench(const CgroupBenchOptions &opts, const Progress &progress) {
  check_cgroup_bench_options(opts);
  auto say = [&](const std::string &s) {
    if (progress)
      progress(s);
  };
  std::vector<std::string> modes = opts.modes;
  if (opts.setup_vm) {
    // Fairness in one boot: cgroup2, lwcg, then v1 (see vm_mount_v1).
    std::stable_sort(modes.begin(), modes.end(),
                     [](const auto &a, const auto &b) { return mode_rank(a) < mode_rank(b); });
  }
  std::vector<LatencySummary> rows;
  StateDir state(opts.config.state_dir);
  BenchRun run;
  run.id = fmt::format("lcgroupctl-bench-{}", ::getpid());
  run.actor = ProcessId::self();
  const std::string under = opts.parent.empty() ? "" : normalize_parent(opts.parent);
  run.base = under.empty() ? run.id : fmt::format("{}/{}", under, run.id);
  run.state_dir = fmt::format("{}/{}", opts.config.state_dir, run.id);
  state.write_run(run.id, to_json(run));
  const std::string &base = run.base;
  bool v1_mounted = false;
  try {
  for (const auto &mode : modes) {
    if (opts.setup_vm && mode_rank(mode) == 2 && !v1_mounted) {
      say("setup-vm: moving the controllers from cgroup2 to v1 hierarchies");
      vm_mount_v1(progress);
      v1_mounted = true;
    }
    if (opts.setup_vm && mode == "kernel-pool")
      vm_remount_lwcg(progress);
    Config cfg = opts.config;
    Layout layout = detect_layout(cfg.layout);
    ModePlan plan = plan_of(mode, layout);
    cfg.backend = plan.backend;
    cfg.state_dir = run.state_dir;
    std::unique_ptr<Backend> b;
    try {
      b = make_backend(cfg, layout);
    } catch (const InputError &) {
      throw;
    } catch (const Error &e) {
      say(fmt::format("skipping {}: {}", mode, e.what()));
      continue;
    }
    if (!under.empty())
      b->require_parent(under); // the user's parent: an error, not a skip
    if (opts.op == "create" && plan.pooled && plan.backend != "kernel-pool") {
      say(fmt::format("skipping {}: --op create times mkdir(2), which a userspace pool does "
                      "not do",
                      mode));
      continue;
    }
    std::string parent = fmt::format("{}/{}", base, mode);
    say(fmt::format("{}: {} backend, {} pool, parent {}", mode, b->name(),
                    plan.pooled ? "with" : "no", parent));
    run.parents.emplace_back(plan.backend, parent);
    state.write_run(run.id, to_json(run));
    b->create_parent(parent);
    try {
      Limits limits = sandbox_limits(*b, parent, progress);
      // One untimed set-up first: loads the BPF program once, before the
      // workers fork and inherit it.
      ClaimRequest warm{parent, "warmup", limits, {}, std::nullopt, true, std::nullopt};
      pid_t warm_pid = b->claim(warm).pid;
      b->release("warmup");
      if (warm_pid)
        Child::adopt(warm_pid, "warm-up sandbox").wait();
      for (int conc : opts.concurrency) {
        std::vector<double> samples;
        double wall = 0;
        for (int round = 0; round < opts.rounds; ++round) {
          // Pool entries are made as a runtime would make them: with the
          // sandbox limits, and (userspace pools) a parked process inside.
          // The same pause for every mode follows in run_round.
          if (plan.pooled)
            b->fill(parent, static_cast<size_t>(conc), limits, plan.backend != "kernel-pool", {});
          SandboxOp op =
              opts.op == "create" ? mkdir_only(*b, parent) : whole_sandbox(*b, parent, limits);
          Round r = run_round(op, conc, fmt::format("c{}r{}", conc, round), opts.settle_ms,
                              opts.from == "release");
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
  } catch (...) {
    // Whatever failed, nothing of this run stays (or its record, for gc).
    GcReport ignored;
    try {
      undo_run(run, opts.config, ignored);
    } catch (const std::exception &) {
    }
    throw;
  }
  if (v1_mounted)
    vm_unmount_v1();
  std::filesystem::remove_all(run.state_dir);
  state.remove_run(run.id);
  if (rows.empty())
    throw Error(fmt::format("no bench mode could run here (asked for: {}); the progress lines "
                            "say why each was skipped",
                            fmt::join(opts.modes, ", ")));
  if (!opts.csv.empty()) {
    write_csv(opts.csv, rows);
    say(fmt::format("wrote {}", opts.csv));
    if (!opts.png.empty()) {
      plot_latency(opts.csv, opts.png, opts.title);
      say(fmt::format("wrote {}", opts.png));
    }
  }
  return rows;
}

GcReport gc_bench_runs(const Config &cfg) {
  GcReport report;
  StateDir state(cfg.state_dir);
  for (const auto &id : state.run_ids()) {
    try {
      auto json = state.read_run(id);
      if (!json)
        continue; // finished meanwhile
      BenchRun run = bench_run_from_json(id, *json);
      if (run.actor.alive(cfg.proc_root)) {
        report.skipped.push_back(fmt::format("bench run {}: running (pid {})", id, run.actor.pid));
        continue;
      }
      size_t failed_before = report.failed.size();
      undo_run(run, cfg, report);
      if (report.failed.size() == failed_before)
        report.actions.push_back(fmt::format("removed bench run {} under '{}' (pid {} gone)", id,
                                             run.base, run.actor.pid));
    } catch (const std::exception &e) {
      report.failed.push_back(fmt::format("bench run {}: {}", id, e.what()));
    }
  }
  return report;
}

} // namespace rundkit
