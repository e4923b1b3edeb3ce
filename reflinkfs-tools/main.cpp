// reflinkfs OBJECT VERB: parses arguments, calls librundkit, prints.
// Objects: template, layer, rolayer, gc, bench.  --json on every read; in
// JSON mode errors are {"error": "..."} on stdout.  Exit 0 ok, 1 failure,
// 2 usage.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/reflink_bench.h"
#include "storage/image.h"
#include "storage/layer.h"
#include "storage/rolayer.h"
#include "util/cli.h"
#include "util/error.h"
#include "util/units.h"

using namespace rundkit;
using nlohmann::json;

namespace {



Fallback parse_fallback(const std::string &s) {
  return s == "copy" ? Fallback::kCopy : Fallback::kNone;
}

void print_template(const CliOutput &out, const TemplateInfo &t) {
  if (out.json)
    return out.print_json(t.to_json());
  std::string mkfs;
  for (const auto &a : t.mkfs)
    mkfs += (mkfs.empty() ? "" : " ") + a;
  fmt::print("{}: {} image, {} bytes ({} allocated), inode {}\n  mkfs: {}\n", t.path, t.fs,
             t.size, t.allocated, t.ino, mkfs);
}

} // namespace

int main(int argc, char **argv) {
  CliOutput out;
  CLI::App app{"reflinkfs: per-sandbox writable layers by reflink clone of a template "
               "image, read-only image layers shared by overlayfs",
               "reflinkfs"};
  app.require_subcommand(1);
  out.add_flags(app); // first: the objects below inherit its fallthrough

  // template create PATH --size S [--fs ext4] | template show PATH
  auto *tmpl = app.add_subcommand("template", "pre-formatted template images")->require_subcommand(1);
  std::string path, size_text = "1G", fs = "ext4";
  auto *tcreate = tmpl->add_subcommand("create", "make a sparse, fully initialised image and PATH.json");
  tcreate->add_option("PATH", path, "image to create (must not exist)")->required();
  tcreate->add_option("--size", size_text, "image size (K, M, G, T suffixes)")->capture_default_str();
  tcreate->add_option("--fs", fs, "file system in the image")->capture_default_str()
      ->check(CLI::IsMember({"ext4", "ext3", "ext2"}));
  auto *tshow = tmpl->add_subcommand("show", "print and verify a template against PATH.json");
  tshow->add_option("PATH", path, "template image")->required();

  // layer clone TEMPLATE DEST | layer volatile TEMPLATE --dir D [--direct] -- CMD...
  auto *layer = app.add_subcommand("layer", "writable layers cloned from a template")->require_subcommand(1);
  std::string dest, dir, fallback = "none";
  std::optional<pid_t> owner;
  bool direct = false;
  std::vector<std::string> command;
  auto *lclone = layer->add_subcommand("clone", "reflink TEMPLATE to the new file DEST");
  lclone->add_option("TEMPLATE", path, "template image")->required();
  lclone->add_option("DEST", dest, "new layer file, on the template's file system")->required();
  lclone->add_option("--owner", owner,
                     "pid owning the clone: 'gc' removes it once that process is gone");
  auto *lvol = layer->add_subcommand(
      "volatile", "clone TEMPLATE into an unnamed file in DIR and exec CMD with it open; "
                  "'{fd}' and '{path}' in CMD become the descriptor number and /proc/self/fd/N");
  lvol->add_option("TEMPLATE", path, "template image")->required();
  lvol->add_option("--dir", dir, "directory on the template's file system")->required();
  lvol->add_flag("--direct", direct, "open the layer O_DIRECT (no host page cache copy)");
  lvol->add_option("CMD", command, "command to exec (after --), e.g. a VMM")->required();
  for (auto *c : {lclone, lvol})
    c->add_option("--fallback", fallback, "without reflink: fail (none) or copy the data")
        ->capture_default_str()->check(CLI::IsMember({"none", "copy"}));

  // rolayer mount LAYERS... --target T | rolayer umount T
  auto *rol = app.add_subcommand("rolayer", "read-only image layers for the guest's shared fs")
                  ->require_subcommand(1);
  std::vector<std::string> layers;
  std::string target;
  auto *rmount = rol->add_subcommand("mount", "overlay LAYERS (bottom first) read-only at --target");
  rmount->add_option("LAYERS", layers, "layer dirs or containerd snapshot dirs (with fs/)")->required();
  rmount->add_option("--target", target, "existing empty directory, named without symlinks")
      ->required();
  bool allow_exec = false;
  rmount->add_flag("--exec", allow_exec,
                   "allow executing programs through the view (nosuid, nodev stay)");
  auto *rumount = rol->add_subcommand("umount", "unmount a rolayer mount");
  rumount->add_option("TARGET", target, "mount point of a view made by 'rolayer mount'")
      ->required();

  // gc --dir D [--dry-run]
  auto *gc = app.add_subcommand("gc", "remove layers and temporary files left by dead processes");
  bool dry_run = false;
  gc->add_option("--dir", dir, "directory holding layers")->required();
  gc->add_flag("-n,--dry-run", dry_run, "only list what would be removed");

  // bench [options]
  ReflinkBenchOptions bopt;
  std::string bsize_text = "1G";
  auto *bench = app.add_subcommand("bench", "time getting a ready writable layer by reflink, "
                                            "qcow2 overlay, fresh mkfs and full copy");
  bench->add_option("--concurrency", bopt.concurrency, "comma-separated levels")
      ->delimiter(',')
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  bench->add_option("--modes", bopt.modes, "methods to time")
      ->delimiter(',')
      ->check(CLI::IsMember(reflink_bench_modes()))
      ->capture_default_str();
  bench->add_option("--size", bsize_text, "template size")->capture_default_str();
  bench->add_option("--samples", bopt.samples, "minimum samples per cell (rounds of N)")
      ->capture_default_str();
  bench->add_option("--copy-max-concurrency", bopt.copy_max_concurrency,
                    "highest level at which full copy runs (it writes SIZE per op)")
      ->capture_default_str();
  bench->add_option("--copy-samples", bopt.copy_samples, "minimum samples per copy cell")
      ->capture_default_str();
  bench->add_option("--dir", bopt.dir, "use this directory (on XFS/btrfs) instead of a "
                                       "loop-mounted scratch XFS");
  bench->add_option("--scratch-size", bopt.scratch_size_text, "size of the scratch XFS")
      ->capture_default_str();
  bench->add_option("--csv", bopt.csv, "write results as CSV");
  bench->add_option("--png", bopt.png, "plot p50/p99 against concurrency (gnuplot)");
  bench->add_flag("--page-cache", bopt.page_cache,
                  "instead: run fio on a volatile layer with and without --direct and report "
                  "host page cache figures");

  if (auto code = parse_command_line(app, argc, argv, out))
    return *code;

  return run_command(out, [&]() -> int {
    if (*tcreate) {
      uint64_t size = parse_size(size_text);
      check_template_request(path, size, fs); // exit 2 before any work
      print_template(out, create_template(path, size, fs));
    } else if (*tshow) {
      print_template(out, Template::open(path).info());
    } else if (*lclone) {
      split_new_file_path(dest, "destination"); // exit 2 before the template is read
      CloneOptions opts;
      opts.fallback = parse_fallback(fallback);
      if (owner) {
        opts.owner = ProcessId::of(*owner);
        if (!opts.owner)
          throw InputError(fmt::format("--owner {}: no such process", *owner));
      }
      auto method = clone_layer(Template::open(path), dest, opts);
      if (out.json)
        out.print_json({{"layer", dest}, {"template", path}, {"method", clone_method_name(method)}});
      else
        fmt::print("{}: {} of {}\n", dest, clone_method_name(method), path);
    } else if (*lvol) {
      auto vl = open_volatile_layer(Template::open(path), dir, direct, parse_fallback(fallback));
      exec_with_layer(std::move(vl.fd), command);
    } else if (*rmount) {
      RoLayerOptions ropts;
      ropts.exec = allow_exec;
      auto m = mount_ro_layers(layers, target, ropts);
      json j = {{"target", target}, {"kind", m.kind}, {"lowerdir", m.lowerdir}};
      m.mount.release();
      if (out.json)
        out.print_json(j);
      else
        fmt::print("{}: read-only {} of {}\n", target, m.kind, m.lowerdir);
    } else if (*rumount) {
      umount_ro_layers(target);
      if (out.json)
        out.print_json({{"target", target}, {"unmounted", true}});
      else
        fmt::print("{}: unmounted\n", target);
    } else if (*gc) {
      auto entries = gc_layers(dir, dry_run);
      size_t removed = 0, failed = 0;
      for (const auto &e : entries) {
        removed += e.removed || (dry_run && e.reason.ends_with(": would remove"));
        failed += e.failed;
      }
      if (out.json) {
        out.print_json(to_json(entries));
      } else {
        for (const auto &e : entries)
          fmt::print("{} {}: {}\n", e.removed ? "removed" : "kept   ", e.name, e.reason);
        fmt::print("{}: {} {}, {} kept{}\n", dir, dry_run ? "would remove" : "removed",
                   removed, entries.size() - removed,
                   failed ? fmt::format(", {} could not be checked or removed", failed) : "");
      }
      if (failed)
        return kExitFailure;
    } else if (*bench) {
      bopt.template_size = parse_size(bsize_text);
      check_reflink_bench_options(bopt);
      if (bopt.page_cache) {
        auto r = run_page_cache_bench(bopt);
        if (out.json)
          out.print_json(r);
        else
          std::cout << format_page_cache(r);
      } else {
        auto result = run_reflink_bench(bopt);
        if (out.json)
          out.print_json(result.to_json());
        else
          std::cout << result.format();
      }
    }
    return kExitOk;
  });
}
