#include "bench/lock_bench.h"

#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "bench/report.h"
#include "cgroup/bpf_device.h"
#include "cgroup/fs.h"
#include "cgroup/layout.h"
#include "testing/vm_setup.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/process.h"

namespace rundkit {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char *kLockStat = "/proc/lock_stat";
constexpr const char *kMutex = "cgroup_mutex";
constexpr const char *kThreadgroup = "cgroup_threadgroup_rwsem";
constexpr const char *kKernfsRwsem = "&root->kernfs_rwsem";
// Directory inode locks print as "&type->i_mutex_dir_key#N" (N: the file
// system type's registration order), "/1" when taken as a parent.
constexpr const char *kDirLockPrefix = "&type->i_mutex_dir_key";
constexpr const char *kParentName = "lcgroupctl-locks";
const std::vector<std::string> kSteps = {"create", "limits", "devices", "place"};

// The sandbox's limits, the same in every mode.
constexpr const char *kMemoryBytes = "268435456";
constexpr const char *kCpuQuotaUs = "100000"; // one CPU at the default 100 ms period
constexpr const char *kPidsMax = "1024";

std::string sandbox_name(int i) { return fmt::format("s{}", i); }

struct GlobalLocks {
  LockClassStat mutex;
  LockClassStat threadgroup_write;
  LockClassStat dir_write;
  LockClassStat kernfs_write;
};

bool ends_with(const std::string &s, const std::string &tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

GlobalLocks pick_global_locks(const std::map<std::string, LockClassStat> &m) {
  auto get = [&](const std::string &k) {
    auto it = m.find(k);
    return it == m.end() ? LockClassStat{} : it->second;
  };
  GlobalLocks g;
  g.mutex = get(kMutex);
  // A class only ever taken for writing prints as "name:", one taken both
  // ways as "name-W:" and "name-R:".
  auto write_side = [&](const std::string &name) {
    LockClassStat w = get(name + "-W");
    return w.acquisitions ? w : get(name);
  };
  g.threadgroup_write = write_side(kThreadgroup);
  g.kernfs_write = write_side(kKernfsRwsem);
  for (const auto &[name, st] : m)
    if (name.rfind(kDirLockPrefix, 0) == 0 && !ends_with(name, "-R")) {
      g.dir_write.acquisitions += st.acquisitions;
      g.dir_write.hold_total_us += st.hold_total_us;
    }
  return g;
}

void clear_lock_stat() { write_file(kLockStat, "0"); }
GlobalLocks read_global_locks() { return pick_global_locks(parse_lock_stat(read_file(kLockStat))); }

// The teardowns of the steps and modes before leave work behind (css
// offlining and freeing, v1's release path) that takes cgroup_mutex from
// kworkers for a while: a window starts once 300 ms pass without any.
void wait_until_quiet(const Progress &progress) {
  auto deadline = Clock::now() + 60s;
  for (;;) {
    clear_lock_stat();
    std::this_thread::sleep_for(300ms);
    auto g = read_global_locks();
    if (g.mutex.acquisitions == 0)
      return;
    if (Clock::now() > deadline) {
      if (progress)
        progress(fmt::format("  note: cgroup_mutex still taken in the background ({} times in "
                             "300 ms) after 60 s; measuring anyway",
                             g.mutex.acquisitions));
      return;
    }
  }
}

// A window: lock_stat cleared (once the machine is quiet, unless the
// window is to catch work already due), n operations by k threads (thread
// t does t, t + k, ...), lock_stat read.
LockStepCost measure(const std::string &mode, const std::string &step, int n, int k,
                     const std::function<void(int)> &op, const Progress &progress,
                     bool after_quiet = true) {
  if (after_quiet)
    wait_until_quiet(progress);
  clear_lock_stat();
  auto t0 = Clock::now();
  if (k == 1) {
    for (int i = 0; i < n; ++i)
      op(i);
  } else {
    std::vector<std::exception_ptr> failed(static_cast<size_t>(k));
    std::vector<std::thread> threads;
    for (int t = 0; t < k; ++t)
      threads.emplace_back([&, t] {
        try {
          for (int i = t; i < n; i += k)
            op(i);
        } catch (...) {
          failed[static_cast<size_t>(t)] = std::current_exception();
        }
      });
    for (auto &th : threads)
      th.join();
    for (auto &e : failed)
      if (e)
        std::rethrow_exception(e);
  }
  double wall_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  GlobalLocks g = read_global_locks();
  LockStepCost c;
  c.mode = mode;
  c.step = step;
  c.concurrency = k;
  c.operations = n;
  double per = 1.0 / n;
  c.mutex_acquisitions = g.mutex.acquisitions * per;
  c.mutex_hold_us = g.mutex.hold_total_us * per;
  c.mutex_wait_us = g.mutex.wait_total_us * per;
  c.threadgroup_write_acquisitions = g.threadgroup_write.acquisitions * per;
  c.threadgroup_write_hold_us = g.threadgroup_write.hold_total_us * per;
  c.dir_write_acquisitions = g.dir_write.acquisitions * per;
  c.dir_write_hold_us = g.dir_write.hold_total_us * per;
  c.kernfs_write_acquisitions = g.kernfs_write.acquisitions * per;
  c.kernfs_write_hold_us = g.kernfs_write.hold_total_us * per;
  c.wall_ms = wall_ms * per;
  if (progress)
    progress(fmt::format("  {:<17} {:<8} x{:<3} cgroup_mutex {:6.2f} acq {:9.1f} us held {:9.1f} "
                         "us waited; threadgroup write {:5.2f} acq {:9.1f} us held",
                         mode, step, k, c.mutex_acquisitions, c.mutex_hold_us, c.mutex_wait_us,
                         c.threadgroup_write_acquisitions, c.threadgroup_write_hold_us));
  return c;
}

// cgroup2's mount options, to switch favordynmods and lwcg one at a time.
// A cgroup2 reconfigure applies every flag from its options, so each
// remount passes the mount's own options (nsdelegate, ...) with them.
class Cgroup2Mount {
public:
  Cgroup2Mount() {
    Layout l = detect_layout();
    if (!l.v2())
      throw Error("bench locks: no cgroup2 mount (the VM mounts one at /sys/fs/cgroup)");
    mount_point_ = l.v2()->mount_point;
    original_ = l.v2()->options;
    original_.erase("rw");
    base_ = original_;
    base_.erase("favordynmods");
    base_.erase("lwcg");
  }
  ~Cgroup2Mount() {
    try {
      remount(original_);
    } catch (...) { // nothing to do about it in a destructor; the VM ends
    }
  }
  const std::string &mount_point() const { return mount_point_; }
  // Base options plus `extra` (empty: base alone).
  void remount_with(const std::string &extra) const {
    auto o = base_;
    if (!extra.empty())
      o.insert(extra);
    remount(o);
  }

private:
  void remount(const std::set<std::string> &options) const {
    std::string data = fmt::format("{}", fmt::join(options, ","));
    check_sys(::mount(nullptr, mount_point_.c_str(), nullptr, MS_REMOUNT, data.c_str()),
              "mount -o remount", fmt::format("{} ({})", mount_point_, data));
  }
  std::string mount_point_;
  std::set<std::string> original_, base_;
};

void enable_controllers(const std::string &dir) {
  for (const char *c : {"+memory", "+cpu", "+pids"})
    cgfs::write(dir, cgfs::kSubtreeControl, c);
}

// One mode's four steps and its teardown.
struct ModeSteps {
  std::function<void(int)> create, limits, devices, place;
  std::function<void()> teardown;
};

// The three cgroup2 modes share everything but the mount option, the
// placement and where the device program goes.
class V2Mode {
public:
  enum class Kind { mkdir, dynmods_clone, kernel_pool };
  V2Mode(const Cgroup2Mount &mount, Kind kind, int n)
      : kind_(kind), n_(n), program_(DeviceProgram::load(oci_default_rules())) {
    mount.remount_with(kind == Kind::dynmods_clone ? "favordynmods"
                       : kind == Kind::kernel_pool ? "lwcg"
                                                   : "");
    enable_controllers(mount.mount_point());
    parent_ = cgfs::join(mount.mount_point(), kParentName);
  }

  // Before each level: the parent (and its full pool); the teardown of
  // the level's steps removes it.
  void begin(const Progress &progress) {
    cgfs::make(parent_);
    enable_controllers(parent_);
    cgroups_.clear();
    cgroups_.resize(static_cast<size_t>(n_));
    children_.clear();
    children_.resize(static_cast<size_t>(n_));
    if (kind_ == Kind::kernel_pool)
      fill_pool(progress);
  }

  ModeSteps steps() {
    ModeSteps s;
    s.create = [this](int i) {
      std::string path = cgfs::join(parent_, sandbox_name(i));
      cgfs::make(path);
      cgroups_[static_cast<size_t>(i)] = Cgroup::open(path);
      if (!cgroups_[static_cast<size_t>(i)])
        throw Error("open", path, ENOENT);
    };
    s.limits = [this](int i) {
      const Cgroup &cg = *cgroups_[static_cast<size_t>(i)];
      cg.write("memory.max", kMemoryBytes);
      cg.write("cpu.max", fmt::format("{} 100000", kCpuQuotaUs));
      cg.write("pids.max", kPidsMax);
    };
    s.devices = [this](int i) {
      // The pool's parent carries the program for all its children.
      if (kind_ != Kind::kernel_pool)
        program_.attach(cgroups_[static_cast<size_t>(i)]->dir());
    };
    s.place = [this](int i) {
      const Cgroup &cg = *cgroups_[static_cast<size_t>(i)];
      SpawnOptions o;
      o.idle = true;
      if (kind_ == Kind::mkdir) {
        // runc: the process exists first and is moved in.
        o.held = true;
        Child c = spawn(o);
        cg.write(cgfs::kProcs, std::to_string(c.pid()));
        c.start();
        children_[static_cast<size_t>(i)] = std::move(c);
      } else {
        o.cgroup = &cg.dir();
        children_[static_cast<size_t>(i)] = spawn(o);
      }
    };
    s.teardown = [this] {
      children_.clear(); // SIGKILL and reap
      for (auto &cg : cgroups_)
        if (cg)
          cg->remove();
      cgroups_.clear();
      cgfs::remove(parent_); // drains what is left of a pool
    };
    return s;
  }

  // The refill of the claims just made, as a window of its own: the work
  // the pool moves off the burst (children created under cgroup_mutex).
  void wait_refilled() const { wait_available(static_cast<size_t>(n_), 600s); }

  // Fails the run if the refill ran before the claim window was read: its
  // acquisitions would then be counted as the claims'.
  void check_not_refilled_yet() const {
    auto f = cgfs::read_pool(parent_);
    if (f.available != 0)
      throw Error(fmt::format("bench locks: the pool's refill started within the claim window "
                              "({} of {} children back); its cgroup_mutex acquisitions would count "
                              "as the claims'",
                              f.available, n_));
    if (f.hits < static_cast<uint64_t>(n_))
      throw Error(fmt::format("bench locks: {} of {} mkdirs claimed a pooled child", f.hits, n_));
  }

private:
  void fill_pool(const Progress &progress) {
    auto parent = Cgroup::open(parent_);
    if (!parent)
      throw Error("open", parent_, ENOENT);
    program_.attach(parent->dir());
    cgfs::write(parent_, cgfs::kPool, std::to_string(n_));
    if (progress)
      progress(fmt::format("  filling a kernel pool of {} under {}", n_, parent_));
    wait_available(static_cast<size_t>(n_), 600s);
  }
  void wait_available(size_t want, std::chrono::seconds limit) const {
    auto deadline = Clock::now() + limit;
    while (cgfs::read_pool(parent_).available < want) {
      if (Clock::now() > deadline)
        throw Error(fmt::format("bench locks: the pool under {} did not reach {} children in {} s",
                                parent_, want, limit.count()));
      std::this_thread::sleep_for(20ms);
    }
  }

  Kind kind_;
  int n_;
  DeviceProgram program_;
  std::string parent_;
  std::vector<std::optional<Cgroup>> cgroups_;
  std::vector<Child> children_;
};

// Every controller on a v1 hierarchy of its own (as vm_mount_v1 mounts
// them): one mkdir, one cgroup.procs write per hierarchy and set-up.
class V1Mode {
public:
  V1Mode(int n, const Progress &progress) : n_(n) {
    vm_mount_v1(progress);
    Layout l = detect_layout();
    for (const Hierarchy *h : l.v1()) {
      Tree t;
      t.controllers = h->controllers;
      t.parent = cgfs::join(h->mount_point, kParentName);
      // A v1 cpuset cgroup takes no task until it has CPUs and nodes.
      if (t.controllers.count("cpuset"))
        for (const char *f : {"cpuset.cpus", "cpuset.mems"})
          t.cpuset[f] = cgfs::read(h->mount_point, f);
      trees_.push_back(std::move(t));
    }
    if (trees_.empty())
      throw Error("bench locks: no v1 hierarchy could be mounted");
  }

  void begin(const Progress &) {
    for (auto &t : trees_) {
      cgfs::make(t.parent);
      for (const auto &[file, value] : t.cpuset)
        cgfs::write(t.parent, file, value);
    }
    children_.clear();
    children_.resize(static_cast<size_t>(n_));
  }
  ~V1Mode() {
    try {
      vm_unmount_v1();
    } catch (...) { // dying cgroups may pin a hierarchy; the VM ends
    }
  }

  ModeSteps steps() {
    ModeSteps s;
    s.create = [this](int i) {
      for (auto &t : trees_)
        cgfs::make(cgfs::join(t.parent, sandbox_name(i)));
    };
    s.limits = [this](int i) {
      for (auto &t : trees_) {
        std::string dir = cgfs::join(t.parent, sandbox_name(i));
        if (t.controllers.count("memory"))
          cgfs::write(dir, "memory.limit_in_bytes", kMemoryBytes);
        if (t.controllers.count("cpu"))
          cgfs::write(dir, "cpu.cfs_quota_us", kCpuQuotaUs);
        if (t.controllers.count("pids"))
          cgfs::write(dir, "pids.max", kPidsMax);
        for (const auto &[file, value] : t.cpuset)
          cgfs::write(dir, file, value);
      }
    };
    s.devices = [this](int i) {
      for (auto &t : trees_) {
        if (!t.controllers.count("devices"))
          continue;
        std::string dir = cgfs::join(t.parent, sandbox_name(i));
        cgfs::write(dir, "devices.deny", "a");
        for (const auto &r : oci_default_rules())
          cgfs::write(dir, "devices.allow", v1_rule(r));
      }
    };
    s.place = [this](int i) {
      SpawnOptions o;
      o.idle = true;
      o.held = true;
      Child c = spawn(o);
      for (auto &t : trees_)
        cgfs::write(cgfs::join(t.parent, sandbox_name(i)), cgfs::kProcs, std::to_string(c.pid()));
      c.start();
      children_[static_cast<size_t>(i)] = std::move(c);
    };
    s.teardown = [this] {
      size_t n = children_.size();
      children_.clear();
      for (auto &t : trees_) {
        for (size_t i = 0; i < n; ++i)
          cgfs::remove(cgfs::join(t.parent, sandbox_name(static_cast<int>(i))));
        cgfs::remove(t.parent);
      }
    };
    return s;
  }

private:
  struct Tree {
    std::set<std::string> controllers;
    std::string parent;
    std::map<std::string, std::string> cpuset;
  };
  int n_;
  std::vector<Tree> trees_;
  std::vector<Child> children_;
};

std::vector<LockStepCost> run_steps(const std::string &mode, ModeSteps s, int n, int k,
                                    const Progress &progress,
                                    const std::function<void()> &after_create = {}) {
  std::vector<LockStepCost> rows;
  rows.push_back(measure(mode, "create", n, k, s.create, progress));
  if (after_create)
    after_create();
  rows.push_back(measure(mode, "limits", n, k, s.limits, progress));
  rows.push_back(measure(mode, "devices", n, k, s.devices, progress));
  rows.push_back(measure(mode, "place", n, k, s.place, progress));
  s.teardown();
  return rows;
}

int mode_rank(const std::string &mode) {
  // cgroup2 first, lwcg next, v1 last (testing/vm_setup.h says why).
  if (mode == "v2-mkdir")
    return 0;
  if (mode == "v2-dynmods-clone")
    return 1;
  if (mode == "kernel-pool")
    return 2;
  return 3;
}

} // namespace

std::map<std::string, LockClassStat> parse_lock_stat(const std::string &text) {
  if (text.rfind("lock_stat version", 0) != 0)
    throw InputError("not /proc/lock_stat output: no 'lock_stat version' first line");
  std::map<std::string, LockClassStat> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    // "<name>:" (or "<name>-W:", "<name>-R:") and twelve numbers:
    // con-bounces, contentions, waittime min/max/total/avg, acq-bounces,
    // acquisitions, holdtime min/max/total/avg.  Anything else (headers,
    // separators, contention points) has no such tail.
    size_t colon = line.rfind(':');
    if (colon == std::string::npos)
      continue;
    std::istringstream fields(line.substr(colon + 1));
    double v[12];
    int n = 0;
    while (n < 12 && fields >> v[n])
      ++n;
    std::string more;
    if (n != 12 || (fields >> more))
      continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    if (name.empty())
      continue;
    // Classes of one name (locks initialised at several places) add up.
    LockClassStat &s = out[name];
    s.contentions += static_cast<unsigned long>(v[1]);
    s.wait_total_us += v[4];
    s.acquisitions += static_cast<unsigned long>(v[7]);
    s.hold_total_us += v[10];
  }
  return out;
}

const std::vector<std::string> &lock_bench_modes() {
  static const std::vector<std::string> m = {"v1-per-hierarchy", "v2-mkdir", "v2-dynmods-clone",
                                             "kernel-pool"};
  return m;
}

void check_lock_bench_options(const LockBenchOptions &opts) {
  if (opts.modes.empty())
    throw InputError("--modes: at least one mode");
  for (const auto &m : opts.modes)
    if (std::find(lock_bench_modes().begin(), lock_bench_modes().end(), m) ==
        lock_bench_modes().end())
      throw InputError(fmt::format("--modes: unknown mode '{}' (expected one of {})", m,
                                   fmt::join(lock_bench_modes(), ", ")));
  // cgroup.pool takes at most 1024.
  if (opts.setups < 1 || opts.setups > 1024)
    throw InputError(fmt::format("--setups {}: between 1 and 1024", opts.setups));
  if (opts.rounds < 1 || opts.rounds > 100)
    throw InputError(fmt::format("--rounds {}: between 1 and 100", opts.rounds));
  if (opts.concurrency.empty())
    throw InputError("--concurrency: at least one level");
  for (int k : opts.concurrency)
    if (k < 1 || k > opts.setups)
      throw InputError(fmt::format("--concurrency {}: between 1 and --setups ({})", k,
                                   opts.setups));
  if (!opts.png.empty() && opts.csv.empty())
    throw InputError("--png needs --csv (the plot is drawn from it)");
  if (!opts.setup_vm)
    throw InputError("bench locks rearranges the machine's cgroup mounts (remounts of cgroup2, "
                     "controllers moved to v1 hierarchies): run it in a bare VM with --setup-vm");
}

std::vector<LockStepCost> run_lock_bench(const LockBenchOptions &opts, const Progress &progress) {
  check_lock_bench_options(opts);
  if (::geteuid() != 0)
    throw Error("bench locks: needs root");
  if (::access(kLockStat, R_OK | W_OK) != 0)
    throw Error(fmt::format("bench locks: {} is missing: the kernel needs CONFIG_LOCK_STAT (the "
                            "debug variant of scripts/build-host-kernel)",
                            kLockStat));
  auto modes = opts.modes;
  std::stable_sort(modes.begin(), modes.end(),
                   [](const auto &a, const auto &b) { return mode_rank(a) < mode_rank(b); });
  const int n = opts.setups;
  std::vector<LockStepCost> rows;
  auto add = [&rows](std::vector<LockStepCost> more, int round) {
    for (auto &r : more)
      r.round = round;
    rows.insert(rows.end(), more.begin(), more.end());
  };
  {
    Cgroup2Mount mount;
    for (const auto &mode : modes) {
      if (mode_rank(mode) > 2)
        continue;
      if (mode == "kernel-pool" && !detect_layout().kernel_lwcg) {
        if (progress)
          progress("  kernel-pool: skipped (no lwcg in /sys/kernel/cgroup/features)");
        continue;
      }
      if (progress)
        progress(fmt::format("{}: {} set-ups", mode, n));
      auto kind = mode == "v2-mkdir"           ? V2Mode::Kind::mkdir
                  : mode == "v2-dynmods-clone" ? V2Mode::Kind::dynmods_clone
                                               : V2Mode::Kind::kernel_pool;
      V2Mode m(mount, kind, n);
      for (int r = 0; r < opts.rounds; ++r)
      for (int k : opts.concurrency) {
        m.begin(progress);
        std::function<void()> after_create;
        if (kind == V2Mode::Kind::kernel_pool)
          after_create = [&] {
            // Right after the claims, not after a quiet spell: the refill
            // is due 100 ms after the last claim.  Checked after the
            // clear, so a child it made before is seen and fails the run.
            auto refill = [&m, n](int i) {
              if (i == 0)
                m.check_not_refilled_yet();
              if (i == n - 1) // one wait for the whole refill, counted per child
                m.wait_refilled();
            };
            rows.push_back(measure(mode, "refill", n, 1, refill, progress, false));
            rows.back().round = r;
          };
        add(run_steps(mode, m.steps(), n, k, progress, after_create), r);
      }
    }
    // Back to the plain mount before the controllers leave for v1.
    mount.remount_with("");
  }
  if (std::find(modes.begin(), modes.end(), "v1-per-hierarchy") != modes.end()) {
    if (progress)
      progress(fmt::format("v1-per-hierarchy: {} set-ups", n));
    V1Mode m(n, progress);
    for (int r = 0; r < opts.rounds; ++r)
      for (int k : opts.concurrency) {
        m.begin(progress);
        add(run_steps("v1-per-hierarchy", m.steps(), n, k, progress), r);
      }
  }
  if (!opts.csv.empty())
    write_lock_csv(opts.csv, rows);
  if (!opts.png.empty())
    plot_lock_costs(opts.csv, opts.png);
  return rows;
}

namespace {

// The per-operation figures of a step: summed over the steps of a set-up,
// and each the median over rounds.
constexpr double LockStepCost::*kCostFields[] = {
    &LockStepCost::mutex_acquisitions,        &LockStepCost::mutex_hold_us,
    &LockStepCost::mutex_wait_us,             &LockStepCost::threadgroup_write_acquisitions,
    &LockStepCost::threadgroup_write_hold_us, &LockStepCost::dir_write_acquisitions,
    &LockStepCost::dir_write_hold_us,         &LockStepCost::kernfs_write_acquisitions,
    &LockStepCost::kernfs_write_hold_us,      &LockStepCost::wall_ms};

double median(std::vector<double> v) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
}

// The steps of a set-up summed per mode, level and round (the refill kept
// apart).
std::vector<LockStepCost> totals(const std::vector<LockStepCost> &rows) {
  std::vector<LockStepCost> out;
  for (const auto &r : rows) {
    if (r.step == "refill")
      continue;
    auto it = std::find_if(out.begin(), out.end(), [&](const auto &t) {
      return t.mode == r.mode && t.concurrency == r.concurrency && t.round == r.round;
    });
    if (it == out.end()) {
      out.push_back(r);
      out.back().step = "set-up";
      continue;
    }
    for (auto field : kCostFields)
      (*it).*field += r.*field;
  }
  return out;
}

// Per mode and level, the median over rounds of each per-set-up figure.
std::vector<LockStepCost> median_totals(const std::vector<LockStepCost> &rows) {
  auto sums = totals(rows);
  std::vector<LockStepCost> out;
  for (const auto &t : sums) {
    if (std::any_of(out.begin(), out.end(), [&](const auto &o) {
          return o.mode == t.mode && o.concurrency == t.concurrency;
        }))
      continue;
    std::vector<const LockStepCost *> same;
    for (const auto &u : sums)
      if (u.mode == t.mode && u.concurrency == t.concurrency)
        same.push_back(&u);
    auto med = [&](double LockStepCost::*field) {
      std::vector<double> v;
      for (const auto *u : same)
        v.push_back(u->*field);
      return median(v);
    };
    LockStepCost m = t;
    m.step = "median";
    m.round = static_cast<int>(same.size()); // how many rounds
    for (auto field : kCostFields)
      m.*field = med(field);
    out.push_back(m);
  }
  return out;
}

nlohmann::json row_json(const LockStepCost &r) {
  return {{"mode", r.mode},
          {"step", r.step},
          {"concurrency", r.concurrency},
          {"round", r.round},
          {"operations", r.operations},
          {"cgroup_mutex_acquisitions", r.mutex_acquisitions},
          {"cgroup_mutex_hold_us", r.mutex_hold_us},
          {"cgroup_mutex_wait_us", r.mutex_wait_us},
          {"threadgroup_write_acquisitions", r.threadgroup_write_acquisitions},
          {"threadgroup_write_hold_us", r.threadgroup_write_hold_us},
          {"dir_write_acquisitions", r.dir_write_acquisitions},
          {"dir_write_hold_us", r.dir_write_hold_us},
          {"kernfs_write_acquisitions", r.kernfs_write_acquisitions},
          {"kernfs_write_hold_us", r.kernfs_write_hold_us},
          {"wall_ms", r.wall_ms}};
}

} // namespace

std::string format_lock_table(const std::vector<LockStepCost> &rows) {
  // Acquisitions per set-up, hold and wait in microseconds per set-up.
  std::string s = fmt::format(
      "{:<17} {:<8} {:>3} | {:>16} {:>9} | {:>16} | {:>16} | {:>16} | {:>9}\n", "", "", "",
      "cgroup_mutex", "", "threadgroup (W)", "dir i_rwsem (W)", "kernfs_rwsem (W)", "");
  s += fmt::format("{:<17} {:<8} {:>3} | {:>5} {:>10} {:>9} | {:>5} {:>10} | {:>5} {:>10} | "
                   "{:>5} {:>10} | {:>9}\n",
                   "mode", "step", "k", "acq", "held us", "wait us", "acq", "held us", "acq",
                   "held us", "acq", "held us", "wall ms");
  auto line = [&s](const LockStepCost &r) {
    s += fmt::format("{:<17} {:<8} {:>3} | {:>5.2f} {:>10.1f} {:>9.1f} | {:>5.2f} {:>10.1f} | "
                     "{:>5.2f} {:>10.1f} | {:>5.2f} {:>10.1f} | {:>9.2f}\n",
                     r.mode, r.step, r.concurrency, r.mutex_acquisitions, r.mutex_hold_us,
                     r.mutex_wait_us, r.threadgroup_write_acquisitions,
                     r.threadgroup_write_hold_us, r.dir_write_acquisitions, r.dir_write_hold_us,
                     r.kernfs_write_acquisitions, r.kernfs_write_hold_us, r.wall_ms);
  };
  for (const auto &r : rows)
    line(r);
  s += "per set-up (create + limits + devices + place; the refill apart), each round:\n";
  for (const auto &t : totals(rows))
    line(t);
  s += "per set-up, median of the rounds:\n";
  for (const auto &t : median_totals(rows))
    line(t);
  return s;
}

nlohmann::json to_json(const std::vector<LockStepCost> &rows) {
  nlohmann::json steps = nlohmann::json::array(), sums = nlohmann::json::array();
  for (const auto &r : rows)
    steps.push_back(row_json(r));
  for (const auto &t : totals(rows))
    sums.push_back(row_json(t));
  nlohmann::json medians = nlohmann::json::array();
  for (const auto &t : median_totals(rows)) {
    auto j = row_json(t);
    j.erase("step");
    j.erase("round");
    j["rounds"] = t.round;
    medians.push_back(j);
  }
  return {{"steps", steps}, {"per_setup", sums}, {"per_setup_median", medians}};
}

void write_lock_csv(const std::string &path, const std::vector<LockStepCost> &rows) {
  std::ofstream out(path);
  if (!out)
    throw Error("open", path, errno);
  out << "mode,step,concurrency,round,operations,mutex_acquisitions,mutex_hold_us,mutex_wait_us,"
         "threadgroup_write_acquisitions,threadgroup_write_hold_us,dir_write_acquisitions,"
         "dir_write_hold_us,kernfs_write_acquisitions,kernfs_write_hold_us,wall_ms\n";
  for (const auto &r : rows)
    out << fmt::format("{},{},{},{},{},{:.3f},{:.2f},{:.2f},{:.3f},{:.2f},{:.3f},{:.2f},{:.3f},{:.2f},"
                       "{:.3f}\n",
                       r.mode, r.step, r.concurrency, r.round, r.operations,
                       r.mutex_acquisitions, r.mutex_hold_us, r.mutex_wait_us, r.threadgroup_write_acquisitions,
                       r.threadgroup_write_hold_us, r.dir_write_acquisitions, r.dir_write_hold_us,
                       r.kernfs_write_acquisitions, r.kernfs_write_hold_us, r.wall_ms);
  if (!out.flush())
    throw Error("write", path, errno);
}

void plot_lock_costs(const std::string &csv, const std::string &png) {
  // mode -> step -> hold time at the lowest level, from the CSV (one a VM
  // printed, say).
  std::map<std::string, std::map<std::string, std::vector<double>>> hold;
  std::vector<std::string> order;
  int lowest = 0;
  std::istringstream in(read_file(csv));
  std::string line;
  std::getline(in, line);
  if (line.rfind("mode,step,", 0) != 0)
    throw InputError(fmt::format("{}: not a bench locks CSV (header '{}')", csv, line));
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::istringstream fs(line);
    std::string cell;
    while (std::getline(fs, cell, ','))
      f.push_back(cell);
    if (f.size() != 15)
      throw InputError(fmt::format("{}: bad line '{}'", csv, line));
    int k = 0;
    double held = 0;
    try {
      k = std::stoi(f[2]);
      held = std::stod(f[6]);
    } catch (const std::exception &) {
      throw InputError(fmt::format("{}: bad numbers in '{}'", csv, line));
    }
    if (lowest == 0 || k < lowest) {
      lowest = k;
      hold.clear();
      order.clear();
    }
    if (k != lowest)
      continue;
    if (!hold.count(f[0]))
      order.push_back(f[0]);
    hold[f[0]][f[1]].push_back(held);
  }
  if (order.empty())
    throw InputError(fmt::format("{}: no rows", csv));
  std::string data;
  for (const auto &m : order) {
    data += fmt::format("\"{}\"", m);
    for (const auto &st : kSteps)
      data += fmt::format(" {:.2f}", hold[m].count(st) ? median(hold[m][st]) : 0.0);
    data += "\n";
  }
  std::string script = fmt::format(
      "set terminal pngcairo size 900,520\n"
      "set output '{}'\n"
      "set title 'cgroup\\_mutex held per sandbox set-up (lock\\_stat, one at a time, median "
      "of rounds)'\n"
      "set ylabel 'microseconds held per set-up'\n"
      "set style data histograms\n"
      "set style histogram rowstacked\n"
      "set style fill solid 0.8 border -1\n"
      "set boxwidth 0.6\n"
      "set key top left reverse Left\n"
      "set offsets 0, 0, graph 0.12, 0\n"
      "set yrange [0:*]\n"
      "set grid ytics\n"
      "$d << EOD\n{}EOD\n"
      "plot $d using 2:xtic(1) title 'create', '' using 3 title 'limits', "
      "'' using 4 title 'devices', '' using 5 title 'place'\n",
      png, data);
  run_gnuplot(script, png);
}

} // namespace rundkit
