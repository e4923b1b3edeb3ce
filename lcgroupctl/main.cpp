// lcgroupctl OBJECT VERB: parses arguments, calls librundkit, prints.
// Exit codes: 0 ok, 1 the operation failed, 2 bad command line or value.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <optional>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "bench/cgroup_bench.h"
#include "bench/lock_bench.h"
#include "bench/report.h"
#include "cgroup/backend.h"
#include "cgroup/host_info.h"
#include "cgroup/names.h"
#include "cgroup/oci_runtime.h"
#include "cgroup/pool_keeper.h"
#include "util/cli.h"
#include "util/error.h"
#include "util/process.h"
#include "util/units.h"

using namespace rundkit;

namespace {


struct LimitOptions {
  std::optional<std::string> cpus, memory, pids, devices;
  void add_to(CLI::App *cmd) {
    cmd->add_option("--cpus", cpus, "CPU bandwidth in CPUs, e.g. 0.5");
    cmd->add_option("--memory", memory, "memory limit, e.g. 128M");
    cmd->add_option("--pids", pids, "task limit, a count or 'max'");
    cmd->add_option("--devices", devices, "device policy: oci-default or inherit");
  }
  Limits parse() const { return parse_limits(cpus, memory, pids, devices); }
};

std::string text_of(const ClaimRecord &r) {
  std::string s = fmt::format("claimed {} under {} ({}, {})\n", r.name, r.parent, r.backend,
                              r.hit ? "pool hit" : "pool miss");
  for (const auto &p : r.paths)
    s += fmt::format("  cgroup {}\n", p);
  if (r.pid)
    s += fmt::format("  pid {}\n", r.pid);
  return s;
}

std::string text_of(const PoolStatus &s) {
  return fmt::format("pool {} ({}): target {} available {} hits {} misses {}\n", s.parent,
                     s.backend, s.target, s.available, s.hits, s.misses);
}

std::string text_of_info(const nlohmann::json &j) {
  std::string s = fmt::format("backend   {}\nkernel    {} (lwcg: {})\nstate     {}\n",
                              j["backend"].get<std::string>(),
                              j["kernel_release"].get<std::string>(),
                              j["kernel_lwcg"].get<bool>() ? "yes" : "no",
                              j["state_dir"].get<std::string>());
  if (j["state_dir_tmpfs"] == false)
    s += "          not on tmpfs: each claim pays for its state files on disk, and records\n"
         "          outlive a reboot that the cgroups do not (gc removes them)\n";
  for (const auto &h : j["hierarchies"])
    s += fmt::format("  {} v{} {:<28} {}{}{}\n", h["used"].get<bool>() ? "*" : " ",
                     h["version"].get<int>(), h["mount_point"].get<std::string>(),
                     fmt::join(h["controllers"].get<std::vector<std::string>>(), ","),
                     h.contains("name") ? " name=" + h["name"].get<std::string>() : "",
                     h["lwcg"].get<bool>() ? " lwcg" : "");
  return s + "  (* = used by the backend)\n";
}

std::string text_of(const GcReport &r) {
  std::string s;
  for (const auto &a : r.actions)
    s += a + "\n";
  for (const auto &k : r.skipped)
    s += "kept: " + k + "\n";
  for (const auto &f : r.failed)
    s += "failed: " + f + "\n";
  return s.empty() ? "nothing to clean\n" : s;
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"lcgroupctl: pools of sandbox cgroups (cpu, memory, pids, devices)\n"
               "usage: lcgroupctl [OPTIONS] OBJECT VERB ...; see Documentation/lcgroupctl.md"};
  app.require_subcommand(1);
  CliOutput out;
  Config cfg;
  out.add_flags(app); // first: the objects below inherit its fallthrough
  app.add_option("--backend", cfg.backend, "auto, v1, v2 or kernel-pool")->capture_default_str();
  app.add_option("--state-dir", cfg.state_dir, "where claims and pools are recorded")
      ->capture_default_str();
  app.add_option("--mountinfo", cfg.layout.mountinfo, "where to read mounts from")
      ->capture_default_str();
  app.add_option("--features", cfg.layout.features, "kernel cgroup features file")
      ->capture_default_str();

  auto *info = app.add_subcommand("info", "backend, kernel features and hierarchies");

  auto *pool = app.add_subcommand("pool", "pre-made cgroups under a parent");
  pool->require_subcommand(1);
  std::string parent, name;
  std::string size_text;
  LimitOptions fill_limits;
  auto *fill = pool->add_subcommand("fill", "make the pool hold SIZE entries");
  fill->add_option("PARENT", parent, "parent cgroup, relative to each hierarchy root")->required();
  fill->add_option("--size", size_text,
                   fmt::format("entries to keep ready, 0 to {} (fewer than it holds: trims)",
                               kMaxPoolSize))
      ->required();
  fill_limits.add_to(fill);
  bool park = false;
  fill->add_flag("--park", park,
                 "start a parked process in every entry; a claim's command is exec'd in it, "
                 "so it needs no migration (v1) or CLONE_INTO_CGROUP (cgroup2) on the "
                 "start-up path (userspace pools only)");
  auto *keep = pool->add_subcommand(
      "keep", "keep the pool at SIZE entries until SIGTERM: gc, fill, refill after claims");
  keep->add_option("PARENT", parent, "parent cgroup, relative to each hierarchy root")->required();
  keep->add_option("--size", size_text, fmt::format("entries to keep ready, 1 to {}", kMaxPoolSize))
      ->required();
  LimitOptions keep_limits;
  keep_limits.add_to(keep);
  keep->add_flag("--park", park, "a parked process in every entry (as pool fill --park)");
  std::string interval = "200ms";
  keep->add_option("--interval", interval, "how often the pool is checked")->capture_default_str();
  auto *status = pool->add_subcommand("status", "target, available, hits and misses");
  status->add_option("PARENT", parent, "parent cgroup")->required();
  auto *drain = pool->add_subcommand("drain", "remove every pooled entry");
  drain->add_option("PARENT", parent, "parent cgroup")->required();

  auto *par = app.add_subcommand("parent", "the cgroup sandboxes live under");
  par->require_subcommand(1);
  auto *pcreate = par->add_subcommand("create", "mkdir -p in every hierarchy, enable controllers");
  pcreate->add_option("PARENT", parent, "parent cgroup")->required();
  auto *premove = par->add_subcommand("remove", "drain the pool and remove the parent");
  premove->add_option("PARENT", parent, "parent cgroup")->required();

  auto *claim = app.add_subcommand("claim", "hand out a configured sandbox cgroup");
  LimitOptions claim_limits;
  std::vector<std::string> command;
  std::optional<pid_t> owner;
  claim->add_option("PARENT", parent, "parent cgroup")->required();
  claim->add_option("NAME", name, "sandbox name (one path component)")->required();
  claim_limits.add_to(claim);
  claim->add_option("--owner", owner, "gc releases the claim when this pid is gone");
  std::string output = "/dev/null";
  claim->add_option("--output", output,
                    "the command's stdout and stderr (appended); '-' inherits ours")
      ->capture_default_str();
  claim->add_option("CMD", command, "after --: a command to start inside the cgroup");

  auto *oci = app.add_subcommand(
      "oci-runtime", "an OCI runtime in front of runc/crun: create and run get pooled cgroups");
  std::string oci_runtime, oci_log;
  std::vector<std::string> oci_args;
  oci->add_option("--runtime", oci_runtime, "the real runtime (/usr/sbin/runc, /usr/bin/crun)")
      ->required();
  oci->add_option("--log", oci_log, "append one line per served create/run to this file");
  oci->add_option("ARGS", oci_args, "after --: the runtime's arguments, as containerd gives them");
  oci->footer("Install through a wrapper as containerd's runc BinaryName: "
              "pairing/containerd/runc-pooled.");

  auto *release = app.add_subcommand("release", "kill what runs inside, remove the cgroup");
  release->add_option("NAME", name, "sandbox name")->required();
  std::string force_parent;
  release->add_option("--force", force_parent,
                      "PARENT: release PARENT/NAME from the cgroups alone, for a record that is "
                      "lost or corrupt (gc names such cgroups)");

  auto *gc = app.add_subcommand("gc", "remove what crashed commands left behind");
  std::vector<std::string> gc_parents;
  gc->add_option("PARENT", gc_parents, "also scan these parents for pool leftovers");

  auto *bench = app.add_subcommand("bench", "sandbox cgroup set-up latency per mode");
  CgroupBenchOptions bo;
  bench->add_option("--modes", bo.modes, "v1-per-hierarchy,v2-mkdir,v1-pool,v2-pool,"
                                         "userspace-pool,kernel-pool")
      ->delimiter(',')
      ->check(CLI::IsMember(cgroup_bench_modes()))
      ->capture_default_str();
  bench->add_option("--concurrency", bo.concurrency, "concurrent set-ups per round")
      ->delimiter(',')
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  bench->add_option("--rounds", bo.rounds, "rounds per level")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  bench->add_option("--op", bo.op,
                    "setup: whole sandbox set-up (create or claim, limits, device policy, "
                    "a process inside); create: mkdir(2) alone")
      ->check(CLI::IsMember({"setup", "create"}))
      ->capture_default_str();
  bench->add_option("--from", bo.from,
                    "release: latency from the round's common release (waiting for a CPU "
                    "counts); start: from each worker's own start (it does not)")
      ->check(CLI::IsMember({"release", "start"}))
      ->capture_default_str();
  bench->add_option("--parent", bo.parent,
                    "make the bench's cgroups under this parent (PARENT/lcgroupctl-bench-PID; "
                    "default: each hierarchy's root)");
  bench->add_option("--settle-ms", bo.settle_ms, "pause before each round")
      ->capture_default_str();
  bench->add_option("--csv", bo.csv, "write the table as CSV");
  bench->add_option("--png", bo.png, "draw latency against concurrency (gnuplot)");
  bench->add_option("--title", bo.title, "plot title");
  std::string replot;
  bench->add_option("--replot", replot,
                    "only draw --png from this CSV of an earlier run (one a VM printed, "
                    "say) and exit")
      ->check(CLI::ExistingFile);
  bench->add_flag("--include-teardown", bo.include_teardown,
                  "time set-up and teardown together (default: set-up only)");
  bench->add_flag("--setup-vm", bo.setup_vm,
                  "bare VM with cgroup2 only: v2 modes, then kernel-pool after a remount "
                  "with lwcg, then v1 modes on v1 hierarchies the controllers move to, "
                  "in that order (see Documentation/lcgroupctl.md)");

  // bench locks: counted, not timed (bench/lock_bench.h).
  auto *locks = bench->add_subcommand(
      "locks", "cgroup_mutex and cgroup_threadgroup_rwsem per sandbox set-up, counted by "
               "lock_stat (a CONFIG_LOCK_STAT kernel in a bare VM)");
  bench->require_subcommand(0, 1);
  LockBenchOptions lo;
  locks->add_option("--modes", lo.modes, "v1-per-hierarchy,v2-mkdir,v2-dynmods-clone,kernel-pool")
      ->delimiter(',')
      ->check(CLI::IsMember(lock_bench_modes()))
      ->capture_default_str();
  locks->add_option("--setups", lo.setups, "set-ups per mode, one at a time")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  locks->add_option("--concurrency", lo.concurrency,
                    "levels: each step run by that many threads at once (lock contention)")
      ->delimiter(',')
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  locks->add_option("--rounds", lo.rounds, "every level this many times (medians reported)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  locks->add_flag("--setup-vm", lo.setup_vm,
                  "required: remounts cgroup2 (favordynmods, lwcg) and moves the controllers to "
                  "v1 hierarchies, in that order");
  locks->add_option("--csv", lo.csv, "write the steps as CSV");
  locks->add_option("--png", lo.png, "draw cgroup_mutex hold time per set-up (gnuplot)");
  std::string locks_replot;
  locks->add_option("--replot", locks_replot,
                    "only draw --png from this CSV of an earlier run (one a VM printed) and exit")
      ->check(CLI::ExistingFile);

  if (auto code = parse_command_line(app, argc, argv, out))
    return *code;

  return run_command(out, [&]() -> int {
    // Every value is checked before anything else happens (exit 2).
    size_t size = *fill ? parse_count(size_text, "--size", 0, kMaxPoolSize) : 0;
    if (*fill)
      fill_limits.parse();
    std::chrono::milliseconds keep_interval{0};
    if (*keep) {
      size = parse_count(size_text, "--size", 1, kMaxPoolSize);
      keep_limits.parse();
      keep_interval = parse_ms(interval, "--interval");
      if (keep_interval.count() < 10)
        throw InputError(fmt::format("--interval {}: at least 10ms", interval));
    }
    if (*claim) {
      claim_limits.parse();
      validate_name(name);
    }
    if (*release)
      validate_name(name);
    if (*oci) {
      // Whatever happens to the pool, the runtime runs: it is the
      // container's, and the shim must not fail what it would start.
      std::string runtime = find_executable(oci_runtime);
      OciInvocation inv = parse_oci_args(oci_args);
      std::string did;
      if (::geteuid() == 0 && (inv.command == "create" || inv.command == "run")) {
        try {
          auto backend = make_backend(cfg, detect_layout(cfg.layout));
          did = serve_pooled_cgroup(*backend, inv);
        } catch (const std::exception &e) {
          did = fmt::format("not served from a pool: {}", e.what());
        }
      }
      if (!oci_log.empty() && !did.empty()) {
        std::ofstream log(oci_log, std::ios::app);
        log << inv.command << " " << inv.id << ": " << did << "\n";
      }
      exec_runtime(runtime, oci_args);
    }
    if (*info) {
      auto j = host_info(cfg);
      out.print(j, text_of_info(j));
      return kExitOk;
    }
    if (*locks && !locks_replot.empty()) {
      if (lo.png.empty())
        throw InputError("--replot needs --png (where to draw the plot)");
      plot_lock_costs(locks_replot, lo.png);
      out.print({{"csv", locks_replot}, {"png", lo.png}}, fmt::format("wrote {}\n", lo.png));
      return kExitOk;
    }
    if (*locks) {
      check_lock_bench_options(lo); // a usage error before the privilege check
      require_root("lcgroupctl bench locks");
      auto rows = run_lock_bench(lo, progress_line);
      end_progress_line();
      out.print(to_json(rows), format_lock_table(rows));
      return kExitOk;
    }
    if (*bench && !replot.empty()) {
      if (bo.png.empty())
        throw InputError("--replot needs --png (where to draw the plot)");
      plot_latency(replot, bo.png, bo.title);
      out.print({{"csv", replot}, {"png", bo.png}}, fmt::format("wrote {}\n", bo.png));
      return kExitOk;
    }
    if (*bench) {
      check_cgroup_bench_options(bo); // a usage error before the privilege check
      require_root("lcgroupctl bench");
      bo.config = cfg;
      auto rows = run_bench(bo, progress_line);
      out.print(to_json(rows), format_table(rows));
      return kExitOk;
    }
    if (!*pool || !*status)
      require_root(fmt::format("lcgroupctl {}", app.get_subcommands().front()->get_name()));
    auto backend = make_backend(cfg, detect_layout(cfg.layout));
    if (*fill) {
      backend->fill(parent, size, fill_limits.parse(), park, progress_line);
      end_progress_line();
      auto s = backend->status(parent);
      out.print(to_json(s), text_of(s));
    } else if (*keep) {
      // SIGTERM and SIGINT arrive through a descriptor the keeper polls:
      // it stops between two checks, never inside a fill.
      sigset_t stop;
      sigemptyset(&stop);
      sigaddset(&stop, SIGTERM);
      sigaddset(&stop, SIGINT);
      ::sigprocmask(SIG_BLOCK, &stop, nullptr);
      int sfd = ::signalfd(-1, &stop, SFD_CLOEXEC);
      if (sfd < 0)
        throw Error("signalfd", "SIGTERM, SIGINT", errno);
      Fd stop_fd(sfd, "signalfd");
      KeepOptions ko;
      ko.parent = parent;
      ko.size = size;
      ko.defaults = keep_limits.parse();
      ko.park = park;
      ko.interval = keep_interval;
      ko.log = [](const std::string &line) {
        std::cerr << "lcgroupctl pool keep: " << line << std::endl;
      };
      int code = keep_pool(*backend, ko, stop_fd.get());
      auto s = backend->status(parent);
      out.print(to_json(s), text_of(s));
      return code;
    } else if (*status) {
      auto s = backend->status(parent);
      nlohmann::json j = to_json(s);
      std::string text = text_of(s);
      if (auto k = read_keeper(backend->state(), normalize_parent(parent))) {
        j["keeper"] = to_json(*k);
        text += fmt::format("  kept by pid {} since {}: size {}, {} refills, {} entries made{}\n",
                            k->process.pid, k->since, k->size, k->refills, k->entries_made,
                            k->last_error.empty() ? "" : ", last error: " + k->last_error);
      } else {
        j["keeper"] = nullptr;
      }
      out.print(j, text);
    } else if (*drain) {
      backend->drain(parent, progress_line);
      end_progress_line();
      auto s = backend->status(parent);
      out.print(to_json(s), text_of(s));
    } else if (*pcreate) {
      backend->create_parent(parent);
      out.print({{"parent", normalize_parent(parent)}, {"created", true}},
                fmt::format("parent {} ready\n", normalize_parent(parent)));
    } else if (*premove) {
      backend->remove_parent(parent);
      out.print({{"parent", normalize_parent(parent)}, {"removed", true}},
                fmt::format("parent {} removed\n", normalize_parent(parent)));
    } else if (*claim) {
      ClaimRequest req{parent, name, claim_limits.parse(), command, std::nullopt, false,
                       std::nullopt};
      if (output != "-")
        req.output = output;
      if (owner) {
        req.owner = ProcessId::of(*owner, cfg.proc_root);
        if (!req.owner)
          throw InputError(fmt::format("invalid --owner {}: no such process", *owner));
      }
      auto r = backend->claim(req);
      out.print(to_json(r), text_of(r));
    } else if (*release) {
      auto left = force_parent.empty() ? backend->release(name)
                                       : backend->force_release(force_parent, name);
      std::string text = fmt::format("released {}\n", name);
      for (const auto &note : left)
        text += fmt::format("  kept: {}\n", note);
      out.print({{"released", name}, {"kept", left}}, text);
    } else if (*gc) {
      auto r = backend->gc(gc_parents);
      // Bench runs keep their cgroups under their own state: undone here too.
      auto runs = gc_bench_runs(cfg);
      for (auto part : {&GcReport::actions, &GcReport::skipped, &GcReport::failed})
        (r.*part).insert((r.*part).end(), (runs.*part).begin(), (runs.*part).end());
      out.print(to_json(r), text_of(r));
      if (!r.failed.empty())
        return kExitFailure;
    }
    return kExitOk;
  });
}
