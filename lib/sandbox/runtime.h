// rundctl's runtime: microVM sandboxes from the project's parts, as RunD
// runs them.  A sandbox is
//
//   a host cgroup      claimed from lcgroupctl's pool (kernel pool on an lwcg
//                      host, userspace pool otherwise, mkdir on a miss)
//   a writable layer   a reflink clone of the template's ext4 image, opened
//                      O_DIRECT and nameless (O_TMPFILE): it goes when QEMU
//                      closes it, however QEMU ends
//   a read-only view   the image layers as one nosuid,nodev overlay (rolayer),
//                      shared with the guest over virtio-9p
//   a QEMU             started inside the cgroup from its first instruction,
//                      restored from a VM template (or booted: --cold)
//   the guest agent    PID 1 of the guest, told the sandbox's identity,
//                      layers, command and limits once the VM runs
//
// State lives under the state root (default /run/rundctl, tmpfs):
//
//   templates/NAME/            a vm::Template directory (ram, state,
//                              template.json) plus rundctl.json and the
//                              agent's initramfs; made under
//                              templates/.NAME.PID-START and renamed in
//   sandboxes/NAME/            record.json, QEMU's qmp.sock and log, the
//                              agent socket, the console log and rootfs/
//                              (the view's mount point); made under
//                              sandboxes/.NAME.PID-START and renamed in
//                              with RENAME_NOREPLACE (the name's one owner)
//
// and the writable-layer images under the layer directory (default
// /var/lib/rundctl/layers, which must be able to reflink: XFS or btrfs):
// LAYERDIR/NAME.ext4 (+ .json, + .owner naming the state directory whose
// template it is: a layer directory may be shared), one per template.
//
// Every record is written with write_file_staged().  Whoever works on a
// sandbox (start, exec, stop, gc) holds flock(2) on its directory; the
// record says which phase it is in and who the actor is, so gc can finish
// the work of a rundctl killed at any instruction: a sandbox whose actor is
// gone, or whose QEMU is gone, is torn down (QEMU killed by pidfd, cgroup
// released, which also kills anything still inside, view unmounted,
// directory removed).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "cgroup/backend.h"
#include "util/proc.h"
#include "util/process.h"

namespace rundkit::sandbox {

struct RuntimeOptions {
  std::string state_root = "/run/rundctl";
  std::string layer_dir = "/var/lib/rundctl/layers";
  std::string qemu = "qemu-system-x86_64";
  std::string qemu_img = "qemu-img"; // makes qcow2 writable layers
  // The guest agent (a static binary); empty: rundkit-agent next to the
  // running rundctl (or in its agent/ subdirectory, as the build puts it).
  std::string agent;
  Config cgroups;                       // lcgroupctl's backend and state dir
  std::string cgroup_parent = "rundctl"; // default parent of sandbox cgroups
  std::string accel = "auto";            // auto | tcg | kvm (template create)
  unsigned tcg_tb_mib = 0; // TCG translation cache bound (QEMU tb-size); 0: QEMU's default
  std::string proc_root = "/proc";
};

using Progress = std::function<void(const std::string &)>;

struct TemplateRequest {
  std::string name;
  // microvm: a PVH-bootable vmlinux, virtio over MMIO, no ACPI (the
  // condensed guest kernel).  q35: a bzImage (or PVH vmlinux) with ACPI
  // and virtio over PCI, as a distro guest kernel boots.
  std::string machine = "microvm";
  std::string kernel;
  // A kernel with its drivers as modules: the directory with modules.load
  // and the .ko files it names (scripts/build-distro-guest-kernel), put
  // into the agent's initramfs.  Empty: the kernel needs none.
  std::string modules;
  uint64_t memory_mib = 128;
  unsigned cpus = 1;
  uint64_t layer_bytes = 256ULL << 20; // the writable layer every clone gets
  std::chrono::milliseconds boot_timeout{120000};
};

struct TemplateSummary {
  std::string name;
  std::string dir;
  std::string layer_image;
  uint64_t memory_mib = 0;
  unsigned cpus = 0;
  uint64_t layer_bytes = 0;
  std::string accel;
  std::string machine;
  std::string kernel;
  std::string modules;
  uint64_t boot_ms = 0; // template create: QEMU start to the agent's hello
  uint64_t save_ms = 0;
  uint64_t state_bytes = 0;
  uint64_t ram_bytes_allocated = 0; // pages the RAM file holds (st_blocks)
  std::vector<std::string> users; // sandboxes started from it that exist
};

struct StartRequest {
  std::string name;
  std::string template_name;
  std::vector<std::string> layers; // bottom first
  std::optional<double> cpus;           // <= the template's vCPUs
  std::optional<uint64_t> memory_bytes; // must be the template's, if given
  std::optional<int64_t> pids;
  std::string cgroup_parent; // empty: RuntimeOptions::cgroup_parent
  std::vector<std::string> command{"/bin/sh"};
  std::vector<std::string> env{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  std::string cwd = "/";
  bool cold = false; // boot the kernel instead of restoring the template
  // The writable layer: a reflink clone of the template's layer image
  // (rundkit's), or a qcow2 overlay backed by that image (made by qemu-img,
  // as a plain QEMU set-up would have it).
  std::string writable = "reflink";
  std::chrono::milliseconds agent_timeout{60000};
  // Called after each phase with the record so far (tests kill there).
  std::function<void(const std::string &phase)> on_phase;
};

// Where a start spent its time, microseconds from its beginning (each
// phase's end), measured by the host's monotonic clock.
struct PhaseTimes {
  uint64_t checked_us = 0; // inputs checked, record made
  uint64_t cgroup_us = 0;  // cgroup claimed
  uint64_t layer_us = 0;   // writable layer cloned and opened
  uint64_t view_us = 0;    // read-only view mounted
  uint64_t spawn_us = 0;   // QEMU running, QMP up
  uint64_t restore_us = 0; // template state loaded and resumed (or booted)
  uint64_t agent_us = 0;   // the agent reported the command running
};

struct SandboxRecord {
  std::string name;
  std::string phase = "starting"; // starting -> running -> stopping
  std::string template_name;
  std::string created; // UTC, ISO 8601
  ProcessId actor;     // the rundctl of the phase in progress
  std::optional<ProcessId> qemu;
  std::string cgroup_parent;
  std::string claim; // lcgroupctl claim name (= the sandbox name)
  std::string backend;
  std::vector<std::string> cgroups;
  bool pool_hit = false;
  std::vector<std::string> layers;
  std::string view;
  std::vector<std::string> command;
  std::optional<double> cpus;
  std::optional<uint64_t> memory_bytes;
  std::optional<int64_t> pids;
  bool cold = false;
  std::string writable = "reflink";
  std::string accel;
  PhaseTimes times;
  int guest_pid = 0;
  // The agent's own clock (guest CLOCK_BOOTTIME, ns): request received,
  // root mounted, cgroup made, command exec'd.
  std::vector<int64_t> guest_times;
};

struct SandboxStatus {
  SandboxRecord record;
  bool qemu_alive = false;
  uint64_t pss_kib = 0; // QEMU's PSS (smaps_rollup), 0 if not running
  uint64_t rss_kib = 0;
};

struct ExecOutcome {
  ExitStatus status = ExitStatus::exited(0);
  bool timed_out = false;
  std::string out, err;
};

struct GcOutcome {
  std::vector<std::string> removed;
  std::vector<std::string> kept;
  std::vector<std::string> failed;
};

class Runtime {
public:
  explicit Runtime(RuntimeOptions opts);
  ~Runtime();
  Runtime(const Runtime &) = delete;
  Runtime &operator=(const Runtime &) = delete;

  const RuntimeOptions &options() const { return opts_; }

  TemplateSummary create_template(const TemplateRequest &req, const Progress &progress = {});
  std::vector<TemplateSummary> list_templates() const;
  TemplateSummary show_template(const std::string &name) const;
  // Refuses while sandboxes started from it exist.
  void remove_template(const std::string &name);

  SandboxRecord start(const StartRequest &req);
  ExecOutcome exec(const std::string &name, const std::vector<std::string> &argv,
                   std::chrono::milliseconds timeout);
  // Agent shutdown, QEMU killed if it has not exited within `grace`, view
  // unmounted, cgroup released, directory removed.
  void stop(const std::string &name, std::chrono::milliseconds grace);
  std::vector<SandboxStatus> list() const;
  SandboxStatus show(const std::string &name) const;
  GcOutcome gc();

private:
  struct Impl;
  RuntimeOptions opts_;
  std::unique_ptr<Impl> impl_;
};

nlohmann::json to_json(const TemplateSummary &t);
nlohmann::json to_json(const SandboxRecord &r);
nlohmann::json to_json(const SandboxStatus &s);
nlohmann::json to_json(const ExecOutcome &e);
nlohmann::json to_json(const GcOutcome &g);
SandboxRecord sandbox_record_from_json(const nlohmann::json &j, const std::string &what);

// Names of sandboxes and templates: they become directory, cgroup and
// socket names (the socket path must fit sun_path): 1-40 characters of
// [A-Za-z0-9_.-], not starting with '.' or '-'.  InputError otherwise.
void validate_sandbox_name(const std::string &name, const char *what);

} // namespace rundkit::sandbox
