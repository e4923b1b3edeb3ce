// lcgroupctl bench: how long a whole sandbox cgroup set-up takes when many
// arrive at once.  One operation = create or claim, limits (cpu, memory,
// pids), the OCI default device policy and one process placed inside; its
// teardown (kill, rmdir) follows in a second burst.  Each round starts C
// set-ups at one barrier; a set-up's latency runs from that common release
// to its sandbox being ready (waiting for a CPU or a lock counts); teardown
// is timed too when asked.
#pragma once

#include <string>
#include <vector>

#include "bench/stats.h"
#include "cgroup/backend.h"

namespace rundkit {

struct CgroupBenchOptions {
  // v1-per-hierarchy  mkdir in every v1 hierarchy (no pool)
  // v2-mkdir          mkdir on cgroup2 (no pool)
  // v1-pool, v2-pool  the userspace pools, entries made with the limits
  //                   and the device policy and a parked process inside
  // userspace-pool    the stock pool this machine would use (v1 where the
  //                   limit controllers are bound to v1, else v2)
  // kernel-pool       cgroup.pool of a rundkit lwcg kernel
  std::vector<std::string> modes = {"v1-per-hierarchy", "v2-mkdir", "userspace-pool",
                                    "kernel-pool"};
  std::vector<int> concurrency = {1, 10, 50, 100, 200};
  int rounds = 3;
  // setup: the whole sandbox (above); create: mkdir(2) alone, in every
  // hierarchy of the mode (not for userspace pools, which do no mkdir).
  std::string op = "setup";
  // release: latency from the common release of the round (CPU queueing
  // counts); start: from each worker's own start (it does not).
  std::string from = "release";
  std::string csv;
  std::string png;
  std::string title = "lcgroupctl: sandbox cgroup set-up latency";
  bool include_teardown = false;
  // Pause before each round (after the previous teardown and the fill).
  int settle_ms = 500;
  // A bare VM with only cgroup2 mounted: run v1 modes on v1 hierarchies it
  // mounts itself, unmount them, then v2 modes with controllers enabled,
  // then remount cgroup2 with lwcg for kernel-pool.
  bool setup_vm = false;
  // Where the bench makes its cgroups: PARENT/lcgroupctl-bench-PID in every
  // hierarchy (empty: at each hierarchy's root).
  std::string parent;
  Config config;
};

// Every mode lcgroupctl bench knows, in its default order of the help text.
const std::vector<std::string> &cgroup_bench_modes();

// Throws InputError for anything the command line got wrong (an unknown
// mode, --png without --csv, a level out of range), so that nothing runs
// before a usage error.
void check_cgroup_bench_options(const CgroupBenchOptions &opts);

// Checks the options first (check_cgroup_bench_options).  Modes that cannot
// run here are skipped with a note through `progress`.
std::vector<LatencySummary> run_bench(const CgroupBenchOptions &opts, const Progress &progress);

// Undoes what bench runs killed before their own clean-up left behind:
// their claims, pools, cgroups and private state, found through the run
// records (runs/ID.json) in cfg.state_dir.  A live run is left alone.
GcReport gc_bench_runs(const Config &cfg);

} // namespace rundkit
