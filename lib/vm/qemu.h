// QEMU command lines for the machine profiles rundkit boots:
//
//   q35      a bzImage, virtio over PCI (virtio-*-pci), ACPI, hotplug slots
//   microvm  a PVH vmlinux, virtio over MMIO (virtio-*-device), acpi=off:
//            no legacy timer under TCG otherwise (see vm-guest-kernel)
//
// One QemuConfig describes a VM; qemu_argv() turns it into argv in a fixed
// order (tests compare exact strings).  Descriptors (a disk's image, a
// pre-listening QMP or agent socket) are named by their number in QEMU's
// process: the caller (or Vm) passes them at that number (PassFd).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace rundkit::vm {

enum class Machine { q35, microvm };
enum class Accel { tcg, kvm };

const char *to_string(Machine m);
const char *to_string(Accel a);
// "q35"/"microvm", "tcg"/"kvm"; InputError otherwise.
Machine parse_machine(const std::string &s);
Accel parse_accel(const std::string &s);

// -accel and -cpu for an accelerator: KVM with the host's CPU, or
// multi-threaded TCG with every feature it emulates (and, if not 0, a
// translation cache of tcg_tb_mib MiB).
std::vector<std::string> accel_args(Accel a, unsigned tcg_tb_mib = 0);

// A UNIX socket QEMU listens on: a path it binds itself, or (preferred: no
// connect race, no path left behind) a descriptor already bound and
// listening, passed into QEMU at number `fd`.
struct ListenSocket {
  std::string path;
  int fd = -1;
};

// -serial: the legacy UARTs (ttyS0, ttyS1, ...), in order.
struct Serial {
  enum class Kind { file, stdio } kind = Kind::file;
  std::string path; // Kind::file
};

// A virtio console (hvc0, ...) written to a file.
struct VirtioConsole {
  std::string id;
  std::string path;
};

// A named virtio-serial port (/dev/virtio-ports/NAME in the guest) backed by
// a UNIX socket QEMU listens on: the host side of a guest agent.
struct VirtioSerialPort {
  std::string id;
  std::string name;
  ListenSocket socket;
};

// Image formats QEMU reads a disk in.  qcow2: an overlay whose backing
// file (named in its header, opened by QEMU by that path) holds what the
// overlay has not written.
enum class DiskFormat { raw, qcow2 };
const char *to_string(DiskFormat f);

// A virtio-blk disk: an image path QEMU opens, or an open descriptor
// passed in through -add-fd (the image path need not exist any more).
struct Disk {
  std::string id;
  std::string path; // when fd < 0
  int fd = -1;      // in QEMU's process; fdset `fdset` is made for it
  // A read-only descriptor of the same file in the same fdset: QEMU opens
  // the image read-only first (probing) and takes the fdset member whose
  // access mode matches.  Vm makes it from /proc/self/fd/FD when unset.
  int ro_fd = -1;
  int fdset = 0;    // 0: the disk's index + 1
  bool readonly = false;
  bool direct = false; // cache.direct=on (O_DIRECT: no host page cache)
  DiskFormat format = DiskFormat::raw;
};

// A virtio-9p share (security_model=none).
struct Share9p {
  std::string id;
  std::string tag;
  std::string path;
  bool readonly = true;
};

// User-mode networking with a virtio-net device.
struct UserNet {
  std::string id;
  std::string mac;
};

// Guest RAM as a memory-backend-file (a template's RAM on tmpfs; clones
// map the same file share=off, copy-on-write).
struct RamFile {
  std::string path;
  bool share = true;
};

struct QemuConfig {
  std::string binary = "qemu-system-x86_64";
  Machine machine = Machine::q35;
  Accel accel = Accel::tcg;
  // TCG's translation cache in MiB (tb-size): QEMU's default is 1 GiB of
  // address space, filled as the guest runs code, and every page of it is
  // the QEMU's own anonymous memory; 0 leaves QEMU's default.
  unsigned tcg_tb_mib = 0;
  unsigned cpus = 1;
  unsigned max_cpus = 0; // > cpus: vCPU hotplug slots
  uint64_t memory_mib = 256;
  unsigned memory_slots = 0; // pc-dimm hotplug
  uint64_t max_memory_mib = 0;
  std::optional<RamFile> ram_file;
  std::string kernel; // empty: firmware boot (tests that keep the VM at -S)
  std::string initrd;
  std::string append;
  std::vector<Serial> serials;
  std::vector<VirtioConsole> consoles;
  std::vector<VirtioSerialPort> ports;
  std::vector<Disk> disks;
  std::vector<Share9p> shares;
  std::vector<UserNet> nets;
  std::optional<unsigned> vsock_cid;
  std::optional<ListenSocket> qmp;
  std::string pidfile;
  bool no_reboot = true;  // a guest reboot ends QEMU
  bool paused = false;    // -S: vCPUs start stopped
  bool incoming_defer = false; // -incoming defer: state by migrate-incoming
  std::vector<std::string> extra; // appended as they are
};

// Doubles the commas of a value for QEMU's option syntax (a,b -> a,,b).
std::string qemu_escape(const std::string &value);

// The whole command line, binary first.  InputError on an inconsistent
// config (max_cpus below cpus, a disk with neither path nor fd, ...).
std::vector<std::string> qemu_argv(const QemuConfig &c);

} // namespace rundkit::vm
