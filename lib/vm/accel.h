// TCG or KVM, decided by a probe.  On a PVM host /dev/kvm exists and opens
// but a standard guest hangs, so the only reliable test is to boot one: a
// kernel that reaches a busybox userspace under KVM within the timeout.
// The answer is cached per boot of the host (the probe costs its timeout
// where KVM does not work) in CACHE_DIR/accel.BOOT_ID, the file lib.sh's
// detect_accel also reads.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "vm/qemu.h"

namespace rundkit::vm {

struct AccelProbe {
  std::string cache_dir;            // empty: no cache
  std::vector<std::string> kernels; // bzImages; the first that exists is booted
  std::string busybox = "busybox";  // statically linked, looked up on PATH
  std::string qemu = "qemu-system-x86_64";
  std::chrono::milliseconds timeout{15000};
  Accel accel = Accel::kvm; // what kvm_boots() boots with (tests: tcg)
};

// RUNDKIT_ACCEL (tcg or kvm) if set; tcg without a writable /dev/kvm;
// the cached answer for this boot; else the probe's, cached.
Accel detect_accel(const AccelProbe &probe);

// The probe itself: boots `kernel` (under probe.accel, KVM) with a busybox
// initramfs and says whether its userspace ran; `why` gets the reason when
// it did not.
bool kvm_boots(const AccelProbe &probe, const std::string &kernel, std::string *why = nullptr);

// /proc/sys/kernel/random/boot_id.
std::string boot_id();

} // namespace rundkit::vm
