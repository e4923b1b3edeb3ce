// rundctl OBJECT VERB: microVM sandboxes (lib/sandbox).  Parses arguments,
// calls the runtime, prints.  Exit codes: 0 ok, 1 the operation failed, 2
// bad command line or value.  See Documentation/rundctl.md.
#include <unistd.h>

#include <iostream>
#include <optional>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "bench/sandbox_bench.h"
#include "cgroup/limits.h"
#include "sandbox/runtime.h"
#include "storage/oci_image.h"
#include "util/cli.h"
#include "util/error.h"
#include "util/units.h"

using namespace rundkit;
using namespace rundkit::sandbox;

namespace {

double ms(uint64_t us) { return static_cast<double>(us) / 1000.0; }

std::string text_of(const TemplateSummary &t) {
  std::string s = fmt::format(
      "template {}: {} MiB, {} vCPU, {}, {}, layer {} MiB\n  kernel {}\n  dir {}\n  layer image {}\n"
      "  boot {} ms, save {} ms, state {} KiB, RAM file {} MiB allocated\n",
      t.name, t.memory_mib, t.cpus, t.machine, t.accel, t.layer_bytes >> 20, t.kernel, t.dir,
      t.layer_image, t.boot_ms, t.save_ms, t.state_bytes >> 10, t.ram_bytes_allocated >> 20);
  if (!t.modules.empty())
    s += fmt::format("  modules {}\n", t.modules);
  if (!t.users.empty())
    s += fmt::format("  sandboxes: {}\n", fmt::join(t.users, " "));
  return s;
}

std::string text_of(const SandboxRecord &r) {
  const PhaseTimes &t = r.times;
  std::string s = fmt::format("sandbox {} {} from {}{} ({}), guest pid {}\n", r.name, r.phase,
                              r.template_name, r.cold ? " (cold boot)" : "", r.accel,
                              r.guest_pid);
  if (r.qemu)
    s += fmt::format("  qemu pid {}\n", r.qemu->pid);
  for (const auto &c : r.cgroups)
    s += fmt::format("  cgroup {} ({}, {})\n", c, r.backend, r.pool_hit ? "pool hit" : "pool miss");
  s += fmt::format("  view {}\n", r.view);
  s += fmt::format("  ms from start: checked {:.1f}  cgroup {:.1f}  layer {:.1f}  view {:.1f}  "
                   "spawn {:.1f}  {} {:.1f}  running {:.1f}\n",
                   ms(t.checked_us), ms(t.cgroup_us), ms(t.layer_us), ms(t.view_us),
                   ms(t.spawn_us), r.cold ? "boot" : "restore", ms(t.restore_us),
                   ms(t.agent_us));
  return s;
}

std::string text_of(const SandboxStatus &st) {
  std::string s = text_of(st.record);
  if (st.qemu_alive)
    s += fmt::format("  host memory: PSS {} KiB, RSS {} KiB\n", st.pss_kib, st.rss_kib);
  else
    s += "  QEMU is not running (rundctl gc removes it)\n";
  return s;
}

std::string text_of(const GcOutcome &g) {
  std::string s;
  for (const auto &a : g.removed)
    s += a + "\n";
  for (const auto &k : g.kept)
    s += "kept: " + k + "\n";
  for (const auto &f : g.failed)
    s += "failed: " + f + "\n";
  return s.empty() ? "nothing to clean\n" : s;
}

} // namespace

nlohmann::json to_json(const OciImage &i) {
  nlohmann::json j = {{"name", i.name},         {"manifest", i.manifest_digest},
                      {"config", i.config_digest}, {"layers", i.layers},
                      {"layer_digests", i.layer_digests}, {"entrypoint", i.entrypoint},
                      {"cmd", i.cmd},           {"env", i.env},
                      {"cwd", i.cwd}};
  if (!i.notes.empty() || i.layers_unpacked || i.layers_reused) {
    j["notes"] = i.notes;
    j["layers_unpacked"] = i.layers_unpacked;
    j["layers_reused"] = i.layers_reused;
  }
  return j;
}

std::string text_of(const OciImage &i) {
  std::string s = fmt::format("image {}: manifest {}\n", i.name, i.manifest_digest);
  if (i.layers_unpacked || i.layers_reused)
    s += fmt::format("  {} layer(s) unpacked, {} already in the store\n", i.layers_unpacked,
                     i.layers_reused);
  for (size_t k = 0; k < i.layers.size(); ++k)
    s += fmt::format("  layer {} {}\n", k + 1, i.layers[k]);
  std::vector<std::string> cmd = i.entrypoint;
  cmd.insert(cmd.end(), i.cmd.begin(), i.cmd.end());
  s += fmt::format("  command [{}]  cwd {}\n", fmt::join(cmd, " "), i.cwd.empty() ? "/" : i.cwd);
  for (const auto &n : i.notes)
    s += "  note: " + n + "\n";
  return s;
}

int main(int argc, char **argv) {
  CLI::App app{"rundctl: microVM sandboxes from VM templates, pooled cgroups, reflink layers\n"
               "usage: rundctl [OPTIONS] OBJECT VERB ...; see Documentation/rundctl.md"};
  app.require_subcommand(1);
  CliOutput out;
  RuntimeOptions ro;
  out.add_flags(app);
  app.add_option("--state-dir", ro.state_root, "records, templates, sockets (tmpfs)")
      ->capture_default_str();
  app.add_option("--layer-dir", ro.layer_dir,
                 "writable-layer images and clones (XFS or btrfs: must reflink)")
      ->capture_default_str();
  app.add_option("--qemu", ro.qemu, "the QEMU binary")->capture_default_str();
  app.add_option("--tcg-tb-size", ro.tcg_tb_mib,
                 "bound TCG's translation cache to this many MiB (0: QEMU's default)")
      ->check(CLI::Range(0u, 4096u))
      ->capture_default_str();
  app.add_option("--agent", ro.agent, "the guest agent binary (default: next to rundctl)");
  std::string image_dir = "/var/lib/rundctl/images";
  app.add_option("--image-dir", image_dir, "the OCI image store (rundctl image import)")
      ->capture_default_str();
  app.add_option("--cgroup-state-dir", ro.cgroups.state_dir, "lcgroupctl's state directory")
      ->capture_default_str();
  app.add_option("--backend", ro.cgroups.backend, "cgroup backend: auto, v1, v2, kernel-pool")
      ->capture_default_str();

  // template
  auto *tmpl = app.add_subcommand("template", "VM templates sandboxes are restored from");
  tmpl->require_subcommand(1);
  std::string name;
  TemplateRequest treq;
  std::string memory = "128M", layer_size = "256M";
  auto *tcreate = tmpl->add_subcommand("create", "boot a VM with the agent idle and save it");
  tcreate->add_option("NAME", treq.name, "template name")->required();
  tcreate->add_option("--kernel", treq.kernel,
                      "guest kernel: a PVH vmlinux (microvm) or a bzImage (q35)")
      ->required();
  tcreate->add_option("--machine", treq.machine, "microvm (no ACPI, virtio-mmio) or q35")
      ->capture_default_str();
  tcreate->add_option("--modules", treq.modules,
                      "directory with modules.load and the .ko files the agent loads");
  tcreate->add_option("--memory", memory, "guest RAM")->capture_default_str();
  tcreate->add_option("--cpus", treq.cpus, "vCPUs")->capture_default_str();
  tcreate->add_option("--layer-size", layer_size, "every sandbox's writable layer")
      ->capture_default_str();
  tcreate->add_option("--accel", ro.accel, "auto, tcg or kvm")->capture_default_str();
  auto *tshow = tmpl->add_subcommand("show", "one template");
  tshow->add_option("NAME", name, "template name")->required();
  auto *tlist = tmpl->add_subcommand("list", "every template");
  auto *tremove = tmpl->add_subcommand("remove", "remove a template no sandbox uses");
  tremove->add_option("NAME", name, "template name")->required();

  // sandbox
  auto *sb = app.add_subcommand("sandbox", "microVM sandboxes");
  sb->require_subcommand(1);
  StartRequest sreq;
  std::optional<std::string> cpus, smemory, pids;
  std::vector<std::string> env;
  std::string timeout = "60s", grace = "5s", exec_timeout = "10s";
  std::vector<std::string> command;
  auto *start = sb->add_subcommand("start", "start a sandbox from a template");
  start->add_option("NAME", sreq.name, "sandbox name")->required();
  start->add_option("--template", sreq.template_name, "template to restore")->required();
  // One value per --rootfs/--env: a vector option would otherwise swallow
  // the words up to "--" and leave the command's own flags unexpected.
  std::string image_name;
  start->add_option("--image", image_name,
                    "an imported OCI image: its layers (below any --rootfs), command, env, cwd");
  start->add_option("--rootfs", sreq.layers, "image layer directory, bottom first (repeat)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  bool cwd_given = false;
  start->add_option("--cpus", cpus, "CPU time in CPUs (<= the template's vCPUs)");
  start->add_option("--memory", smemory, "guest memory: must be the template's");
  start->add_option("--pids", pids, "task limit inside the guest");
  start->add_option("--cgroup-parent", sreq.cgroup_parent, "host cgroup parent (default rundctl)");
  start->add_option("--env", env, "KEY=VALUE for the command (repeat)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  start->add_option("--cwd", sreq.cwd, "the command's working directory")
      ->capture_default_str()
      ->each([&](const std::string &) { cwd_given = true; });
  start->add_flag("--cold", sreq.cold, "boot the kernel instead of restoring the template");
  start->add_option("--writable", sreq.writable,
                    "writable layer: reflink (clone of the template's image) or qcow2 (overlay)")
      ->capture_default_str();
  start->add_option("--timeout", timeout, "how long the guest may take to report")
      ->capture_default_str();
  start->footer("After --: the command and its arguments (default /bin/sh).");
  auto *exec = sb->add_subcommand("exec", "run a command in a running sandbox");
  exec->add_option("NAME", name, "sandbox name")->required();
  exec->add_option("--timeout", exec_timeout, "kill it after this long")->capture_default_str();
  exec->footer("After --: the command and its arguments.");
  auto *stop = sb->add_subcommand("stop", "power off, release everything");
  stop->add_option("NAME", name, "sandbox name")->required();
  stop->add_option("--grace", grace, "how long the guest may take to power off")
      ->capture_default_str();
  auto *slist = sb->add_subcommand("list", "every sandbox");
  auto *sshow = sb->add_subcommand("show", "one sandbox: record, phases, host memory");
  sshow->add_option("NAME", name, "sandbox name")->required();

  auto *gc = app.add_subcommand("gc", "remove what killed or crashed runs left behind");

  // image
  auto *image = app.add_subcommand("image", "OCI images: layers for sandboxes");
  image->require_subcommand(1);
  OciImportOptions iopt;
  auto *iimport = image->add_subcommand("import", "unpack an OCI image layout into the store");
  iimport->add_option("DIR", iopt.layout, "the image layout (skopeo copy ... oci:DIR)")->required();
  iimport->add_option("--name", iopt.name, "the image's name here (default: its ref name)");
  iimport->add_option("--ref", iopt.ref, "which manifest of the layout (its ref name)");
  auto *ilist = image->add_subcommand("list", "every imported image");
  auto *ishow = image->add_subcommand("show", "one image: layers, command, env");
  ishow->add_option("NAME", name, "image name")->required();
  auto *iremove = image->add_subcommand("remove", "remove an image no sandbox runs on, and its "
                                                  "layers no other image has");
  iremove->add_option("NAME", name, "image name")->required();
  auto *igc = image->add_subcommand("gc", "remove layers no image has and no sandbox runs on");

  // bench
  auto *bench = app.add_subcommand("bench", "whole-sandbox benchmarks, modes side by side");
  bench->require_subcommand(1);
  SandboxBenchOptions bo;
  auto bench_common = [&](CLI::App *b) {
    b->add_option("--kernel", bo.kernel, "the condensed guest vmlinux (every mode but the "
                                         "distro kernel's needs it)");
    b->add_option("--distro-kernel", bo.distro_kernel,
                  "baseline and distro-kernel modes: directory with bzImage and modules/ "
                  "(scripts/build-distro-guest-kernel)");
    b->add_option("--modes", bo.modes, "rundkit,no-template,no-pool")
        ->delimiter(',')
        ->capture_default_str();
    b->add_option("--cgroup-parent", bo.cgroup_parent, "parent of the bench's cgroups")
        ->capture_default_str();
    b->add_option("--accel", ro.accel, "auto, tcg or kvm")->capture_default_str();
  };
  auto *bstart = bench->add_subcommand("start", "start latency from a common release");
  bench_common(bstart);
  bstart->add_option("--concurrency", bo.concurrency, "concurrent starts per round")
      ->delimiter(',')
      ->capture_default_str();
  bstart->add_option("--rounds", bo.rounds, "rounds per level")->capture_default_str();
  bstart->add_option("--csv", bo.csv, "write latency per cell as CSV");
  bstart->add_option("--png", bo.png, "draw latency against concurrency (gnuplot)");
  bstart->add_option("--title", bo.title, "plot title");
  auto *bdensity = bench->add_subcommand("density", "host memory and CPU of N idle sandboxes");
  bench_common(bdensity);
  bdensity->add_option("--count", bo.counts, "idle sandboxes at once")
      ->delimiter(',')
      ->capture_default_str();
  bdensity->add_option("--csv", bo.csv, "write the cells as CSV");
  bdensity->add_option("--png", bo.png, "draw PSS per sandbox, split, per mode and count (gnuplot)");
  bdensity->add_option("--title", bo.title, "plot title");
  std::string density_replot;
  bdensity->add_option("--replot", density_replot,
                       "only draw --png from this CSV of an earlier run and exit");
  bdensity->add_option("--settle", bo.settle_s, "seconds the sandboxes idle before measuring")
      ->check(CLI::Range(0, 600))
      ->capture_default_str();
  bdensity->add_option("--idle-window", bo.idle_window_s, "seconds of idle CPU measured")
      ->check(CLI::Range(1, 600))
      ->capture_default_str();

  // Everything after the first "--" is the command, taken as it is (CLI11
  // would still parse a "-c" there as an option of ours).
  int our_argc = argc;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--") {
      our_argc = i;
      command.assign(argv + i + 1, argv + argc);
      break;
    }
  if (auto code = parse_command_line(app, our_argc, argv, out))
    return *code;
  if (*exec && command.empty())
    return out.fail(kExitUsage, "sandbox exec NAME -- CMD ...: no command given");

  return run_command(out, [&]() -> int {
    if (*bdensity && !density_replot.empty()) {
      if (bo.png.empty())
        throw InputError("--replot needs --png (where to draw the plot)");
      replot_density(density_replot, bo.png, bo.title);
      out.print({{"csv", density_replot}, {"png", bo.png}}, fmt::format("wrote {}\n", bo.png));
      return kExitOk;
    }
    if (*bench) {
      bo.runtime = ro;
      bo.progress = progress_line;
      check_sandbox_bench_options(bo);
      if (*bstart) {
        auto cells = run_start_bench(bo);
        end_progress_line();
        out.print(to_json(cells), format_start_table(cells));
      } else {
        auto cells = run_density_bench(bo);
        end_progress_line();
        out.print(to_json(cells), format_density_table(cells));
      }
      return kExitOk;
    }
    if (*iimport) {
      iopt.store = image_dir;
      auto i = import_oci_image(iopt);
      out.print(to_json(i), text_of(i));
      return kExitOk;
    }
    if (*ilist) {
      nlohmann::json j = nlohmann::json::array();
      std::string text;
      for (const auto &n : list_oci_images(image_dir)) {
        auto i = read_oci_image(image_dir, n);
        j.push_back(to_json(i));
        text += fmt::format("{:<30} {} layer(s)  {}\n", i.name, i.layers.size(),
                            i.manifest_digest);
      }
      out.print(j, text.empty() ? "no images\n" : text);
      return kExitOk;
    }
    if (*ishow) {
      auto i = read_oci_image(image_dir, name);
      out.print(to_json(i), text_of(i));
      return kExitOk;
    }
    if (*iremove || *igc) {
      // The layers running sandboxes have mounted are never removed.
      std::vector<std::string> in_use;
      for (const auto &s : Runtime(ro).list())
        in_use.insert(in_use.end(), s.record.layers.begin(), s.record.layers.end());
      LayerGc g = *iremove ? remove_oci_image(image_dir, name, in_use)
                           : gc_oci_layers(image_dir, in_use);
      std::string text;
      for (const auto &r : g.removed)
        text += "removed " + r + "\n";
      for (const auto &k : g.kept)
        text += "kept " + k + "\n";
      out.print({{"removed", g.removed}, {"kept", g.kept}}, text.empty() ? "nothing to remove\n" : text);
      return kExitOk;
    }
    Runtime rt(ro);
    if (*tcreate) {
      treq.memory_mib = parse_size(memory) >> 20;
      treq.layer_bytes = parse_size(layer_size);
      auto t = rt.create_template(treq, progress_line);
      end_progress_line();
      out.print(to_json(t), text_of(t));
    } else if (*tshow) {
      auto t = rt.show_template(name);
      out.print(to_json(t), text_of(t));
    } else if (*tlist) {
      nlohmann::json j = nlohmann::json::array();
      std::string text;
      for (const auto &t : rt.list_templates()) {
        j.push_back(to_json(t));
        text += fmt::format("{:<20} {:>5} MiB {:>2} vCPU {:<4} {} sandbox(es)\n", t.name,
                            t.memory_mib, t.cpus, t.accel, t.users.size());
      }
      out.print(j, text.empty() ? "no templates\n" : text);
    } else if (*tremove) {
      rt.remove_template(name);
      out.print({{"removed", name}}, fmt::format("removed template {}\n", name));
    } else if (*start) {
      if (cpus)
        sreq.cpus = parse_cpus(*cpus);
      if (smemory)
        sreq.memory_bytes = parse_size(*smemory);
      if (pids)
        sreq.pids = parse_limits(std::nullopt, std::nullopt, pids, std::nullopt).pids;
      if (!image_name.empty()) {
        // The image's layers first (bottom first), --rootfs layers on top;
        // its command, environment and cwd unless given here.
        OciImage i = read_oci_image(image_dir, image_name);
        sreq.layers.insert(sreq.layers.begin(), i.layers.begin(), i.layers.end());
        std::vector<std::string> cmd = i.entrypoint;
        cmd.insert(cmd.end(), i.cmd.begin(), i.cmd.end());
        if (!cmd.empty())
          sreq.command = cmd;
        if (!i.env.empty())
          sreq.env = i.env;
        if (!cwd_given && !i.cwd.empty())
          sreq.cwd = i.cwd;
      }
      if (!command.empty())
        sreq.command = command;
      for (const auto &e : env) {
        if (e.find('=') == std::string::npos || e[0] == '=')
          throw InputError(fmt::format("invalid --env '{}': KEY=VALUE", e));
        sreq.env.push_back(e);
      }
      sreq.agent_timeout = parse_ms(timeout, "--timeout");
      auto r = rt.start(sreq);
      out.print(to_json(r), text_of(r));
    } else if (*exec) {
      auto r = rt.exec(name, command, parse_ms(exec_timeout, "--timeout"));
      if (out.json) {
        out.print_json(to_json(r));
      } else {
        std::cout << r.out << std::flush;
        std::cerr << r.err << std::flush;
        if (!r.status.ok())
          std::cerr << fmt::format("rundctl: {} {}\n", command[0],
                                   r.timed_out ? "timed out" : r.status.describe());
      }
      return r.status.ok() ? kExitOk : kExitFailure;
    } else if (*stop) {
      rt.stop(name, parse_ms(grace, "--grace"));
      out.print({{"stopped", name}}, fmt::format("stopped {}\n", name));
    } else if (*slist) {
      nlohmann::json j = nlohmann::json::array();
      std::string text;
      for (const auto &s : rt.list()) {
        j.push_back(to_json(s));
        text += fmt::format("{:<20} {:<9} {:<16} qemu {:<8} PSS {:>7} KiB\n", s.record.name,
                            s.record.phase, s.record.template_name,
                            s.record.qemu ? std::to_string(s.record.qemu->pid) : "-",
                            s.pss_kib);
      }
      out.print(j, text.empty() ? "no sandboxes\n" : text);
    } else if (*sshow) {
      auto s = rt.show(name);
      out.print(to_json(s), text_of(s));
    } else if (*gc) {
      auto g = rt.gc();
      out.print(to_json(g), text_of(g));
      if (!g.failed.empty())
        return kExitFailure;
    }
    return kExitOk;
  });
}
