// lcgroupctl bench locks: what one sandbox cgroup set-up costs the host's
// global cgroup locks, counted by the kernel's lock_stat (CONFIG_LOCK_STAT,
// the debug kernel variant), not inferred from latency.
//
// A set-up is the same four steps in every mode: create (mkdir, or the
// claim of a pooled child), limits (memory, cpu, pids), the device policy,
// and one process placed inside.  The steps run step-major (all N creates,
// then all N limits, ...), each step in a window of its own: lock_stat is
// cleared once the machine is quiet (no cgroup_mutex acquisition for a
// while: the teardowns of the mode before have finished their asynchronous
// work), the N operations run one after the other, lock_stat is read.  A
// window's acquisitions and hold time divided by N are that step's share
// of a set-up.  One at a time on purpose: the hold time is what a set-up
// serialises, which is what many concurrent set-ups queue for; the wait
// time of a burst follows from it (Documentation/benchmarks.md has the
// model) and is not something two vCPUs can show.
//
// Modes, all in one boot (they rearrange the VM's cgroup mounts, hence
// --setup-vm):
//   v2-mkdir          cgroup2, default options: mkdir, the limit files, a
//                     BPF_CGROUP_DEVICE program attached, the process
//                     forked then moved in by writing cgroup.procs (runc)
//   v2-dynmods-clone  cgroup2 remounted with favordynmods, the process
//                     created inside by clone3(CLONE_INTO_CGROUP): the
//                     upstream answer to migration cost
//   kernel-pool       cgroup2 remounted with lwcg: mkdir claims a pooled
//                     child of a parent with cgroup.pool = N; the device
//                     program is attached once to that parent and
//                     inherited; CLONE_INTO_CGROUP.  The pool's refill is
//                     a window of its own (the work moved off the burst)
//   v1-per-hierarchy  each controller on its own v1 hierarchy: mkdir in
//                     every one, v1 limit files, devices.deny/allow, the
//                     pid written to every hierarchy's cgroup.procs
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "cgroup/backend.h" // Progress

namespace rundkit {

// One line of /proc/lock_stat: a lock class, or its write (-W) or read
// (-R) side for a class taken both ways.  Times in microseconds.
struct LockClassStat {
  unsigned long contentions = 0;
  double wait_total_us = 0;
  unsigned long acquisitions = 0;
  double hold_total_us = 0;
};

// Parses /proc/lock_stat (version 0.4, the format of kernels 2.6.35 to
// today): keyed by class name as printed, "-W"/"-R" suffix kept.
// Contention-point lines and headers are skipped.  Throws InputError if
// the text is not lock_stat's.
std::map<std::string, LockClassStat> parse_lock_stat(const std::string &text);

// What a step costs the two global locks, per set-up.
struct LockStepCost {
  std::string mode;
  std::string step; // create, limits, devices, place, refill
  int concurrency = 1; // threads running the step's operations at once
  int round = 0;       // 0 .. rounds-1
  int operations = 0;
  double mutex_acquisitions = 0; // cgroup_mutex, per operation
  double mutex_hold_us = 0;
  double mutex_wait_us = 0;
  double threadgroup_write_acquisitions = 0; // cgroup_threadgroup_rwsem
  double threadgroup_write_hold_us = 0;
  // The locks a claim still takes, for the same comparison: the parent
  // directory's i_rwsem (VFS: mkdir, rmdir, rename in it), write side, and
  // the hierarchy's kernfs_rwsem (kernfs: adding, removing, renaming,
  // activating nodes), write side.
  double dir_write_acquisitions = 0;
  double dir_write_hold_us = 0;
  double kernfs_write_acquisitions = 0;
  double kernfs_write_hold_us = 0;
  double wall_ms = 0; // the window's length per operation
};

struct LockBenchOptions {
  std::vector<std::string> modes = {"v1-per-hierarchy", "v2-mkdir", "v2-dynmods-clone",
                                    "kernel-pool"};
  int setups = 50; // per mode and level
  // Each level runs every step with that many threads at once: the lock
  // is then contended, and the wait and the step's wall time are what a
  // model of the queue on cgroup_mutex is checked against.
  std::vector<int> concurrency = {1};
  int rounds = 1; // every level this many times (medians in the report)
  bool setup_vm = false;
  std::string csv;
  std::string png;
};

const std::vector<std::string> &lock_bench_modes();
// InputError for a bad option, before anything runs.
void check_lock_bench_options(const LockBenchOptions &opts);
// Root, a bare VM (--setup-vm), /proc/lock_stat.  Steps of every mode.
std::vector<LockStepCost> run_lock_bench(const LockBenchOptions &opts, const Progress &progress);

// Per set-up totals of each mode and level (the steps summed; refill apart).
std::string format_lock_table(const std::vector<LockStepCost> &rows);
nlohmann::json to_json(const std::vector<LockStepCost> &rows);
void write_lock_csv(const std::string &path, const std::vector<LockStepCost> &rows);
// cgroup_mutex hold time per set-up, by mode and step (stacked bars), one
// at a time (the lowest level in the CSV).
void plot_lock_costs(const std::string &csv, const std::string &png);

} // namespace rundkit
