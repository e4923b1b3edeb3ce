// VM templates: one booted VM saved once, restored many times without
// copying guest RAM (RunD's templating, on Debian's QEMU 7.2, TCG or KVM).
//
// A template is a directory the caller names:
//
//   DIR/ram            the guest RAM (memory-backend-file, made share=on by
//                      the template VM; on tmpfs or hugetlbfs)
//   DIR/state          the device state, migrated with x-ignore-shared: no
//                      guest RAM in it (a few hundred KiB)
//   DIR/template.json  what the template was made with; written last, by a
//                      staged rename, so a directory without it is an
//                      unfinished template (never one that looks complete)
//
// Making one:
//
//   TemplateBuilder b = TemplateBuilder::start(dir, "T", opts); // boots
//   ... wait for the guest to be idle (its agent says so) ...
//   TemplateRecord r = b.save();   // stop, migrate to DIR/state, record
//
// A clone maps DIR/ram share=off (copy-on-write: the file never changes),
// starts with -incoming defer and -S, loads DIR/state by migrate-incoming
// (the state file passed in at spawn) and continues:
//
//   Template t = Template::open(dir);
//   Clone c = t.restore(opts);     // opts.config: the template's devices,
//                                  // the clone's own backends
//
// The clone's config must match the template's in everything the guest has
// already seen (machine, accelerator and CPU model, vCPUs, memory, kernel and
// initrd contents, command line, the device set in order with ids and disk
// sizes); disk images, share directories, sockets and console files may
// differ.  A mismatch is an InputError naming each field, before QEMU
// starts (the QEMU version, known from query-version, before the state is
// loaded).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "vm/qemu.h"
#include "vm/vm.h"

namespace rundkit::vm {

inline constexpr const char *kTemplateRam = "ram";
inline constexpr const char *kTemplateState = "state";
inline constexpr const char *kTemplateRecord = "template.json";
inline constexpr int kTemplateFormat = 1;

// The sha256 of a file's contents, lower-case hex.
std::string file_sha256(const std::string &path);

// A file the guest booted from: where it was, its size and sha256, and a
// stat identity (device, inode, size, mtime and ctime in ns) that lets a
// check skip re-hashing an untouched file (empty when the file was changed
// too recently for its timestamps to prove anything).
struct FileRecord {
  std::string path;
  uint64_t size = 0;
  std::string sha256;
  std::string stat_key;
  bool operator==(const FileRecord &) const = default;
};

// One device the guest sees, in command-line order: kind ("serial",
// "virtconsole", "virtserialport", "virtio-blk", "virtio-9p", "virtio-net",
// "vhost-vsock"), the id of its backend, and what the guest sees of it
// ("name=rundkit.agent", "size=67108864 readonly=off", "tag=rootfs
// readonly=on").
struct TemplateDevice {
  std::string kind;
  std::string id;
  std::string detail;
  bool operator==(const TemplateDevice &) const = default;
};

// template.json.
struct TemplateRecord {
  int format = kTemplateFormat;
  std::string name;
  std::string created;      // UTC, ISO 8601
  std::string qemu_version; // query-version: "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"
  std::string machine;      // "q35", "microvm"
  std::string accel;        // "tcg", "kvm"
  std::string cpu_model;    // "max", "host"
  unsigned cpus = 0;
  unsigned max_cpus = 0;
  uint64_t memory_mib = 0;
  unsigned memory_slots = 0;
  uint64_t max_memory_mib = 0;
  std::optional<FileRecord> kernel, initrd;
  std::string append;
  std::vector<TemplateDevice> devices;
  std::vector<std::string> extra; // QemuConfig::extra, compared as given
  std::vector<std::string> argv;  // the template VM's full command line
  uint64_t state_bytes = 0;
  std::string state_sha256;
  uint64_t save_ms = 0; // stop to state file in place
};

nlohmann::json to_json(const TemplateRecord &r);
// InputError naming `what` (the record's path) when a field is missing or
// of the wrong type.
TemplateRecord template_record_from_json(const nlohmann::json &j, const std::string &what);

// The parts of a record a config decides (everything but the name, times,
// QEMU version and state): the kernel and initrd hashed, disk sizes from
// their descriptors or paths.  InputError for an unreadable kernel/initrd
// or disk.
TemplateRecord describe_config(const QemuConfig &config);

// Boots the template VM and saves it.
class TemplateBuilder {
public:
  // Makes DIR (it must not exist; its parent must be on tmpfs or hugetlbfs:
  // guest RAM in a disk file would be written back to the disk), records
  // `opts.config` (hashes the kernel and initrd before QEMU reads them) and
  // starts QEMU with its RAM at DIR/ram, share=on.  opts.config.ram_file,
  // incoming_defer must be unset.  InputError for a bad DIR or config.
  static TemplateBuilder start(const std::string &dir, const std::string &name, VmOptions opts);
  TemplateBuilder(TemplateBuilder &&) noexcept;
  TemplateBuilder &operator=(TemplateBuilder &&) = delete;
  // Kills QEMU; unless save() succeeded, removes DIR.
  ~TemplateBuilder();

  Vm &vm() noexcept { return *vm_; }
  const std::string &dir() const noexcept { return dir_; }

  // Pauses the guest (stop, STOP event), migrates its device state with
  // x-ignore-shared through a descriptor (getfd "tmplstate", migrate
  // fd:tmplstate) into a staged file, waits for MIGRATION completed (events
  // capability), fsyncs it and renames it to DIR/state, then writes
  // DIR/template.json the same way.  QEMU is left paused (postmigrate); the
  // guest must not run again (its RAM is the template's), so the caller
  // only stops it (or drops the builder).  Error with QEMU's words when the
  // migration fails or does not finish within `timeout`.
  TemplateRecord save(std::chrono::milliseconds timeout = std::chrono::milliseconds(60000));

private:
  TemplateBuilder() = default;
  std::string dir_;
  std::string name_;
  TemplateRecord record_;
  std::optional<Vm> vm_;
  bool saved_ = false;
};

// How long each phase of a restore took, in microseconds.
struct RestoreTimes {
  uint64_t check_us = 0;  // config and state checks, before QEMU starts
  uint64_t spawn_us = 0;  // Vm::start: spawn to QMP handshake done
  uint64_t hook_us = 0;   // before_load (e.g. connecting the agent port)
  uint64_t load_us = 0;   // migrate-incoming to MIGRATION completed
  uint64_t resume_us = 0; // cont to RESUME
  uint64_t total_us = 0;
};

struct RestoreOptions {
  // Called once the clone's QEMU runs and before its state loads: connect
  // to the port sockets here (vm.port_path(name)) so that the guest never
  // sees its host side disconnect (the template was saved with its agent
  // connected).
  std::function<void(Vm &)> before_load;
  // Chardev ids of ports that must be connected before the state loads
  // (checked with query-chardev after before_load; Error if not).
  std::vector<std::string> connected_ports;
  bool resume = true; // cont once loaded; false: left paused
  std::chrono::milliseconds timeout{30000};
};

struct Clone {
  Vm vm;
  RestoreTimes times;
};

class Template {
public:
  // Reads DIR/template.json.  InputError when DIR is no template, is an
  // unfinished one (no template.json) or has a damaged record.
  static Template open(const std::string &dir);

  const std::string &dir() const noexcept { return dir_; }
  const std::string &name() const noexcept { return record_.name; }
  const TemplateRecord &record() const noexcept { return record_; }
  std::string ram_path() const { return dir_ + "/" + kTemplateRam; }
  std::string state_path() const { return dir_ + "/" + kTemplateState; }

  // What differs between `config` (a clone's, before ram_file is set) and
  // the template, one sentence each; empty when it fits.
  std::vector<std::string> mismatches(const QemuConfig &config) const;
  // InputError listing mismatches(), if any.
  void check(const QemuConfig &config) const;

  // check()s opts.config and the state file (size and sha256), then starts
  // QEMU with DIR/ram share=off, -incoming defer, -S and DIR/state open
  // read-only at a descriptor; checks the QEMU version; calls before_load;
  // sets x-ignore-shared and events, migrate-incoming fd:N, waits for
  // MIGRATION completed and (unless !resume) conts.  On any failure QEMU is
  // killed and reaped before the Error (with the end of QEMU's log) leaves.
  Clone restore(VmOptions opts, const RestoreOptions &ro = {}) const;

private:
  std::string dir_;
  TemplateRecord record_;
};

} // namespace rundkit::vm
