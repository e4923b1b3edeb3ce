// What the tests that boot the condensed guest kernel share: where the
// kernel is (RUNDKIT_TEST_GUEST_KERNEL_DIR, as scripts/check sets it once
// scripts/build-guest-kernel has run), the static busybox their images
// carry, and the accelerator (TCG unless RUNDKIT_ACCEL says otherwise).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include "util/error.h"
#include "util/process.h"
#include "vm/qemu.h"

namespace rundkit::testing {

// The directory with bzImage and vmlinux, or "" (the tests skip).
inline std::string guest_kernel_dir() {
  const char *d = std::getenv("RUNDKIT_TEST_GUEST_KERNEL_DIR");
  if (!d || !*d)
    return {};
  if (!std::filesystem::exists(std::string(d) + "/bzImage") ||
      !std::filesystem::exists(std::string(d) + "/vmlinux"))
    return {};
  return d;
}

// busybox on PATH (Debian's busybox-static), or "".
inline std::string busybox() {
  try {
    std::string p = run_capture({"sh", "-c", "command -v busybox"});
    while (!p.empty() && p.back() == '\n')
      p.pop_back();
    return p;
  } catch (const Error &) {
    return {};
  }
}

inline vm::Accel test_accel() {
  const char *a = std::getenv("RUNDKIT_ACCEL");
  return a && *a ? vm::parse_accel(a) : vm::Accel::tcg;
}

} // namespace rundkit::testing
