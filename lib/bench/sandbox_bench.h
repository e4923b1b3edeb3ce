// rundctl bench start / density: whole sandboxes, one RunD idea switched
// off at a time, side by side in one run.
//
//   baseline      what a plain QEMU set-up (Kata-with-QEMU style) gets on
//                 this host: a cold boot of Debian's cloud kernel on q35
//                 with ACPI (its drivers loaded as modules by the agent), a
//                 qcow2 overlay over the layer image as writable disk, the
//                 host cgroup made by mkdir (an empty pool: a counted miss),
//                 no template
//   rundkit       template clone, condensed kernel, reflink volatile layer,
//                 pooled host cgroup (lcgroupctl's pool, filled before each
//                 round, off the clock)
// and the ablations, each switching one of rundkit's ideas back to the
// baseline's choice:
//   no-template   every sandbox boots the condensed kernel (--cold)
//   distro-kernel clones of a template of the cloud kernel on q35
//   qcow2-layer   a qcow2 overlay instead of the reflink clone
//   no-pool       the pool is empty: each start makes its cgroups directly
//
// `start` measures, per sandbox, the time from a common release to the
// agent's "running" (N concurrent starts per round, each in its own
// process as N rundctl invocations would be), the phase split and the host
// CPU time per start (the sandbox cgroup's usage up to "running" plus the
// starting process's own).  `density` starts N idle sandboxes and splits
// each QEMU's PSS into guest pages it wrote, template pages it shares, its
// own anonymous memory (heap and TCG translation cache) and the rest; it
// also reports MemAvailable's drop per sandbox, the CPU N idle sandboxes
// use, and exec latency into one of them.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "bench/stats.h"
#include "sandbox/runtime.h"

namespace rundkit {

const std::vector<std::string> &sandbox_bench_modes();

struct SandboxBenchOptions {
  std::vector<std::string> modes = {"baseline", "rundkit", "no-template", "distro-kernel",
                                    "qcow2-layer", "no-pool"};
  std::vector<int> concurrency = {1, 5, 10, 20}; // start
  std::vector<int> counts = {1, 10, 50, 100};     // density
  int rounds = 3;
  int settle_s = 3;      // density: idle time before measuring
  int idle_window_s = 5; // density: the window idle CPU is measured over
  std::string kernel; // the condensed guest vmlinux
  // baseline and distro-kernel: bzImage and modules/ (with modules.load),
  // as scripts/build-distro-guest-kernel makes them.
  std::string distro_kernel;
  uint64_t memory_mib = 128;
  sandbox::RuntimeOptions runtime;
  std::string cgroup_parent = "rundctl-bench";
  std::string csv, png, title;
  std::function<void(const std::string &)> progress;
};

// Usage errors (InputError) before any work: unknown modes, empty or
// out-of-range levels, a missing kernel (the distro kernel only when a
// mode boots it).
void check_sandbox_bench_options(const SandboxBenchOptions &o);

// One start cell (mode, concurrency): latency from the common release,
// p50 of each phase's end, host CPU per start.
struct StartCell {
  LatencySummary latency;
  double cgroup_ms = 0, layer_ms = 0, view_ms = 0, spawn_ms = 0, restore_ms = 0, agent_ms = 0;
  double cpu_ms_per_start = 0;
  size_t pool_hits = 0;
  size_t failed = 0;
  std::vector<std::string> errors; // one per failed start: which, and why
};

struct DensityCell {
  std::string mode;
  int count = 0;
  double pss_mib = 0;            // mean per sandbox (QEMU smaps)
  double guest_written_mib = 0;  // private pages of the guest RAM mapping
  double template_shared_mib = 0; // PSS of the guest RAM mapping's shared pages
  double qemu_anon_mib = 0;      // anonymous: heap, TCG translation cache
  double other_mib = 0;          // the binary, libraries, stacks
  double mem_available_drop_mib = 0; // MemAvailable before - after, / count
  double idle_cpu_percent = 0;   // of one CPU, all N together, over the idle window
  double exec_p50_ms = 0, exec_p99_ms = 0;
  size_t failed = 0;      // sandboxes that did not start
  size_t exec_failed = 0; // of the 10 execs
  std::vector<std::string> errors; // one per failed start or exec
};

std::vector<StartCell> run_start_bench(const SandboxBenchOptions &o);
std::vector<DensityCell> run_density_bench(const SandboxBenchOptions &o);
// Draws the density plot from the CSV of an earlier run (bench density
// --csv), without running anything.
void replot_density(const std::string &csv, const std::string &png, const std::string &title);

std::string format_start_table(const std::vector<StartCell> &cells);
std::string format_density_table(const std::vector<DensityCell> &cells);
nlohmann::json to_json(const std::vector<StartCell> &cells);
nlohmann::json to_json(const std::vector<DensityCell> &cells);

} // namespace rundkit
