// Boots a real kernel: the guest kernel of scripts/build-guest-kernel
// (bzImage on q35, vmlinux through PVH on microvm) with a busybox init that
// writes to the agent's virtio-serial port.  Runs when
// RUNDKIT_TEST_GUEST_KERNEL_DIR names a directory with both images.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include <poll.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/fd.h"
#include "util/process.h"
#include "vm/accel.h"
#include "testing/guest_kernel.h"
#include "vm/initramfs.h"
#include "vm/vm.h"

using namespace rundkit;
using namespace rundkit::vm;
using namespace std::chrono_literals;

namespace {

using rundkit::testing::busybox;
using rundkit::testing::guest_kernel_dir;
using rundkit::testing::test_accel;




constexpr const char *kInit = R"INIT(#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "rundkit-boot: userspace $(/bin/busybox uname -r)"
for p in /sys/class/virtio-ports/*; do
  if [ "$(/bin/busybox cat $p/name)" = rundkit.agent ]; then
    echo "hello from ${p##*/}" > /dev/${p##*/}
  fi
done
/bin/busybox sync
/bin/busybox reboot -f
)INIT";

class Boot : public ::testing::TestWithParam<Machine> {};

} // namespace

TEST_P(Boot, ReachesUserspaceAndTalksOverTheAgentPort) {
  std::string kdir = guest_kernel_dir();
  if (kdir.empty())
    GTEST_SKIP() << "RUNDKIT_TEST_GUEST_KERNEL_DIR does not name a directory with bzImage and "
                    "vmlinux (scripts/build-guest-kernel makes build/kernel/6.1/guest)";
  std::string bb = busybox();
  if (bb.empty())
    GTEST_SKIP() << "no busybox (apt-get install busybox-static)";
  char tmpl[] = "/tmp/rundkit-boot-test.XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  Cpio cpio;
  for (const char *d : {"bin", "dev", "proc", "sys"})
    cpio.add_dir(d);
  cpio.add_char_device("dev/console", 5, 1);
  cpio.add_file_from("bin/busybox", bb, 0755);
  cpio.add_file("init", kInit, 0755);
  cpio.write_to(dir + "/initramfs.cpio");

  Machine m = GetParam();
  VmOptions o;
  QemuConfig &c = o.config;
  c.machine = m;
  c.accel = test_accel();
  c.memory_mib = 256;
  c.kernel = kdir + (m == Machine::q35 ? "/bzImage" : "/vmlinux");
  c.initrd = dir + "/initramfs.cpio";
  c.append = "console=ttyS0 panic=-1 rdinit=/init";
  if (m == Machine::microvm)
    c.append += " acpi=off pci=off";
  c.serials = {{Serial::Kind::file, dir + "/console.log"}};
  c.ports = {{"agent", "rundkit.agent", {}}};
  Vm vm = Vm::start(std::move(o));
  // The port's socket is listening since before QEMU started: connect now,
  // read until the guest has written its line.
  Fd agent = connect_unix(vm.port_path("rundkit.agent"));
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + 120s;
  while (got.find('\n') == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    ASSERT_GT(left.count(), 0) << "nothing from the agent port within 120 s; console:\n"
                               << read_file(dir + "/console.log");
    struct pollfd p = {agent.get(), POLLIN, 0};
    ASSERT_GE(::poll(&p, 1, static_cast<int>(left.count())), 0);
    if (!p.revents)
      continue;
    char buf[256];
    ssize_t n = ::read(agent.get(), buf, sizeof(buf));
    ASSERT_GT(n, 0) << "agent port closed; console:\n" << read_file(dir + "/console.log");
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(got.substr(0, 15), "hello from vpor") << got;
  auto st = vm.wait_for(60s);
  ASSERT_TRUE(st) << "the guest did not reboot (end QEMU) within 60 s";
  EXPECT_EQ(*st, ExitStatus::exited(0));
  std::string console = read_file(dir + "/console.log");
  EXPECT_NE(console.find("rundkit-boot: userspace 6.1"), std::string::npos) << console;
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(GuestKernel, Boot, ::testing::Values(Machine::q35, Machine::microvm),
                         [](const auto &info) { return std::string(to_string(info.param)); });

TEST(AccelProbe, BootsTheProbeGuestUnderTcg) {
  // The probe's own machinery (initramfs, marker, power-off) under TCG,
  // where it must succeed; under KVM on a PVM host it times out instead.
  std::string kdir = guest_kernel_dir();
  if (kdir.empty())
    GTEST_SKIP() << "RUNDKIT_TEST_GUEST_KERNEL_DIR not set to a built guest kernel";
  if (busybox().empty())
    GTEST_SKIP() << "no busybox";
  AccelProbe p;
  p.accel = Accel::tcg;
  p.timeout = 120s;
  std::string why;
  EXPECT_TRUE(kvm_boots(p, kdir + "/bzImage", &why)) << why;
}

TEST(AccelProbe, OverrideAndCache) {
  ::setenv("RUNDKIT_ACCEL", "tcg", 1);
  EXPECT_EQ(detect_accel({}), Accel::tcg);
  ::setenv("RUNDKIT_ACCEL", "bogus", 1);
  EXPECT_THROW(detect_accel({}), InputError);
  ::unsetenv("RUNDKIT_ACCEL");
  char tmpl[] = "/tmp/rundkit-accel-test.XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  AccelProbe p;
  p.cache_dir = dir;
  p.kernels = {dir + "/no-such-bzImage"};
  bool kvm_usable = ::access("/dev/kvm", W_OK) == 0;
  for (const char *cached : {"kvm", "tcg"}) {
    {
      Fd f = Fd::open(dir + "/accel." + boot_id(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ASSERT_EQ(::write(f.get(), cached, 3), 3);
    }
    // Without a writable /dev/kvm the cache is never consulted.
    EXPECT_STREQ(to_string(detect_accel(p)), kvm_usable ? cached : "tcg");
  }
  // No cache entry and no kernel to probe with: TCG, and nothing cached.
  std::filesystem::remove(dir + "/accel." + boot_id());
  EXPECT_EQ(detect_accel(p), Accel::tcg);
  EXPECT_FALSE(std::filesystem::exists(dir + "/accel." + boot_id()));
  std::filesystem::remove_all(dir);
}
