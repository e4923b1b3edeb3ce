// The command line of each profile in use, string for string.
#include "vm/qemu.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "util/error.h"

using namespace rundkit;
using namespace rundkit::vm;
using Argv = std::vector<std::string>;

TEST(QemuArgv, HostTestVm) {
  // scripts/vm-run: q35, a bzImage and an initramfs, two serial files.
  QemuConfig c;
  c.accel = Accel::tcg;
  c.cpus = 2;
  c.memory_mib = 1024;
  c.kernel = "/k/bzImage";
  c.initrd = "/w/initramfs.gz";
  c.append = "console=ttyS0 rdinit=/init";
  c.serials = {{Serial::Kind::file, "/l/console.log"}, {Serial::Kind::file, "/l/output.log"}};
  EXPECT_EQ(qemu_argv(c),
            (Argv{"qemu-system-x86_64", "-nodefaults", "-display", "none", "-machine", "q35",
                  "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "1024M",
                  "-kernel", "/k/bzImage", "-initrd", "/w/initramfs.gz", "-append",
                  "console=ttyS0 rdinit=/init", "-no-reboot", "-serial", "file:/l/console.log",
                  "-serial", "file:/l/output.log"}));
}

TEST(QemuArgv, GuestKernelQ35WithHotplug) {
  // scripts/vm-guest-kernel on q35: PCI devices, vCPU and DIMM slots, QMP.
  QemuConfig c;
  c.accel = Accel::kvm;
  c.cpus = 1;
  c.max_cpus = 2;
  c.memory_mib = 256;
  c.memory_slots = 2;
  c.max_memory_mib = 1024;
  c.kernel = "/g/bzImage";
  c.initrd = "/w/initramfs.cpio";
  c.append = "console=ttyS0";
  c.serials = {{Serial::Kind::file, "/l/console.log"}};
  c.consoles = {{"results", "/l/hvc.log"}};
  c.disks = {{"disk", "/l/disk.img"}};
  c.shares = {{"share", "share", "/w/share"}};
  c.nets = {{"net", "52:54:00:12:34:56"}};
  c.vsock_cid = 3;
  c.qmp = ListenSocket{"/tmp/q/qmp.sock", -1};
  EXPECT_EQ(qemu_argv(c),
            (Argv{"qemu-system-x86_64", "-nodefaults", "-display", "none", "-machine", "q35",
                  "-accel", "kvm", "-cpu", "host", "-smp", "1,maxcpus=2", "-m",
                  "256M,slots=2,maxmem=1024M", "-kernel", "/g/bzImage", "-initrd",
                  "/w/initramfs.cpio", "-append", "console=ttyS0", "-no-reboot", "-serial",
                  "file:/l/console.log", "-device", "virtio-serial-pci", "-chardev",
                  "file,id=results,path=/l/hvc.log", "-device", "virtconsole,chardev=results",
                  "-drive", "file=/l/disk.img,format=raw,if=none,id=disk", "-device",
                  "virtio-blk-pci,drive=disk", "-fsdev",
                  "local,id=share,path=/w/share,security_model=none,readonly=on", "-device",
                  "virtio-9p-pci,fsdev=share,mount_tag=share", "-netdev", "user,id=net",
                  "-device", "virtio-net-pci,netdev=net,mac=52:54:00:12:34:56", "-device",
                  "vhost-vsock-pci,guest-cid=3", "-qmp",
                  "unix:/tmp/q/qmp.sock,server=on,wait=off"}));
}

TEST(QemuArgv, GuestKernelMicrovm) {
  // scripts/vm-guest-kernel on microvm: PVH vmlinux, virtio-mmio, acpi=off.
  QemuConfig c;
  c.machine = Machine::microvm;
  c.cpus = 2;
  c.kernel = "/g/vmlinux";
  c.consoles = {{"results", "/l/hvc.log"}};
  c.disks = {{"disk", "/l/disk.img"}};
  c.shares = {{"share", "share", "/w/share"}};
  c.nets = {{"net", ""}};
  EXPECT_EQ(qemu_argv(c),
            (Argv{"qemu-system-x86_64", "-nodefaults", "-display", "none", "-machine",
                  "microvm,acpi=off", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2",
                  "-m", "256M", "-kernel", "/g/vmlinux", "-no-reboot", "-device",
                  "virtio-serial-device", "-chardev", "file,id=results,path=/l/hvc.log",
                  "-device", "virtconsole,chardev=results", "-drive",
                  "file=/l/disk.img,format=raw,if=none,id=disk", "-device",
                  "virtio-blk-device,drive=disk", "-fsdev",
                  "local,id=share,path=/w/share,security_model=none,readonly=on", "-device",
                  "virtio-9p-device,fsdev=share,mount_tag=share", "-netdev", "user,id=net",
                  "-device", "virtio-net-device,netdev=net"}));
}

TEST(QemuArgv, SandboxClone) {
  // What rundctl starts: template RAM mapped share=off, state restored by
  // migrate-incoming, the agent's port on a listening descriptor, the
  // writable layer from an open descriptor (O_DIRECT), layers over 9p.
  QemuConfig c;
  c.machine = Machine::microvm;
  c.memory_mib = 128;
  c.ram_file = RamFile{"/dev/shm/t,1/ram", false};
  c.kernel = "/g/vmlinux";
  c.ports = {{"agent", "rundkit.agent", ListenSocket{"", 7}}};
  Disk layer;
  layer.id = "layer";
  layer.fd = 9;
  layer.ro_fd = 10;
  layer.direct = true;
  c.disks = {layer};
  c.shares = {{"ro", "rootfs", "/run/v/ro", true}};
  c.qmp = ListenSocket{"/tmp/q/qmp.sock", 5};
  c.incoming_defer = true;
  c.paused = true;
  EXPECT_EQ(qemu_argv(c),
            (Argv{"qemu-system-x86_64", "-nodefaults", "-display", "none", "-machine",
                  "microvm,acpi=off,memory-backend=ram", "-accel", "tcg,thread=multi", "-cpu",
                  "max", "-smp", "1", "-m", "128M", "-object",
                  "memory-backend-file,id=ram,size=128M,mem-path=/dev/shm/t,,1/ram,share=off",
                  "-kernel", "/g/vmlinux", "-no-reboot", "-device", "virtio-serial-device",
                  "-chardev", "socket,id=agent,fd=7,server=on,wait=off", "-device",
                  "virtserialport,chardev=agent,name=rundkit.agent", "-add-fd", "fd=9,set=1", "-add-fd", "fd=10,set=1",
                  "-drive", "file=/dev/fdset/1,format=raw,if=none,id=layer,cache.direct=on",
                  "-device", "virtio-blk-device,drive=layer", "-fsdev",
                  "local,id=ro,path=/run/v/ro,security_model=none,readonly=on", "-device",
                  "virtio-9p-device,fsdev=ro,mount_tag=rootfs", "-chardev",
                  "socket,id=qmp,fd=5,server=on,wait=off", "-mon", "chardev=qmp,mode=control",
                  "-S", "-incoming", "defer"}));
}

TEST(QemuArgv, Qcow2DiskAndBoundedTranslationCache) {
  // The baseline's writable disk (a qcow2 overlay on a descriptor) and a
  // TCG whose translation cache is bounded; KVM has none to bound.
  QemuConfig c;
  c.machine = Machine::q35;
  c.tcg_tb_mib = 16;
  c.kernel = "/g/bzImage";
  Disk layer;
  layer.id = "layer";
  layer.fd = 9;
  layer.format = DiskFormat::qcow2;
  c.disks = {layer};
  Argv a = qemu_argv(c);
  auto has = [&](const std::string &opt, const std::string &value) {
    for (size_t i = 0; i + 1 < a.size(); ++i)
      if (a[i] == opt && a[i + 1] == value)
        return true;
    return false;
  };
  EXPECT_TRUE(has("-accel", "tcg,thread=multi,tb-size=16")) << fmt::format("{}", fmt::join(a, " "));
  EXPECT_TRUE(has("-drive", "file=/dev/fdset/1,format=qcow2,if=none,id=layer"))
      << fmt::format("{}", fmt::join(a, " "));
  c.accel = Accel::kvm;
  a = qemu_argv(c);
  EXPECT_TRUE(has("-accel", "kvm")) << fmt::format("{}", fmt::join(a, " "));
}

TEST(QemuArgv, SerialStdioPidfileAndExtra) {
  // scripts/bench-guest: the serial console on QEMU's stdio.
  QemuConfig c;
  c.kernel = "/k";
  c.serials = {{Serial::Kind::stdio, ""}};
  c.pidfile = "/r/qemu.pid";
  c.no_reboot = false;
  c.extra = {"-rtc", "base=utc"};
  EXPECT_EQ(qemu_argv(c), (Argv{"qemu-system-x86_64", "-nodefaults", "-display", "none",
                                "-machine", "q35", "-accel", "tcg,thread=multi", "-cpu", "max",
                                "-smp", "1", "-m", "256M", "-kernel", "/k", "-serial", "stdio",
                                "-pidfile", "/r/qemu.pid", "-rtc", "base=utc"}));
}

TEST(QemuArgv, RejectsInconsistentConfigs) {
  QemuConfig c;
  c.cpus = 2;
  c.max_cpus = 1;
  EXPECT_THROW(qemu_argv(c), InputError);
  c = QemuConfig{};
  c.memory_slots = 2; // without maxmem
  EXPECT_THROW(qemu_argv(c), InputError);
  c = QemuConfig{};
  c.disks = {{"d", ""}};
  EXPECT_THROW(qemu_argv(c), InputError);
  c = QemuConfig{};
  c.ports = {{"p", "name", ListenSocket{}}};
  EXPECT_THROW(qemu_argv(c), InputError);
}

TEST(QemuArgv, NamesAndEscapes) {
  EXPECT_EQ(qemu_escape("a,b,,c"), "a,,b,,,,c");
  EXPECT_EQ(parse_machine("microvm"), Machine::microvm);
  EXPECT_EQ(parse_accel("kvm"), Accel::kvm);
  EXPECT_THROW(parse_machine("pc"), InputError);
  EXPECT_THROW(parse_accel("hvf"), InputError);
}
