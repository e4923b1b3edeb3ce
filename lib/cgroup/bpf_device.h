// The device policy of a sandbox: the OCI runtime-spec default allowlist,
// enforced on cgroup2 by a BPF_CGROUP_DEVICE program and on v1 by the
// devices controller.  The program is assembled from raw BPF instructions
// (as runc and crun do), so building it needs no clang and no BPF object.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <string>
#include <vector>

#include "util/fd.h"

namespace rundkit {

struct DeviceRule {
  char type = 'a';    // 'c' char, 'b' block, 'a' both
  int64_t major = -1; // -1: any
  int64_t minor = -1; // -1: any
  std::string access; // subset of "rwm"
};

// mknod of anything; read/write of null, zero, full, random, urandom, tty,
// console, ptmx and the pts devices.  /dev/net/tun is left out on purpose:
// a sandbox VMM that needs it gets it from its own policy.
const std::vector<DeviceRule> &oci_default_rules();

// The v1 devices.allow form, e.g. "c 1:3 rwm", "c *:* m".
std::string v1_rule(const DeviceRule &r);

// The program: allow (return 1) when any rule matches type, major, minor
// and covers every requested access bit; deny (return 0) otherwise.
std::vector<bpf_insn> device_filter(const std::vector<DeviceRule> &rules);

// A loaded program; attach it to as many cgroups as needed.
class DeviceProgram {
public:
  // Throws Error("bpf_prog_load", ...) with the verifier log on failure.
  static DeviceProgram load(const std::vector<DeviceRule> &rules);
  // BPF_F_ALLOW_MULTI: composes with programs on ancestors (all must allow).
  void attach(const Fd &cgroup_dir) const;
  const Fd &fd() const { return fd_; }

private:
  explicit DeviceProgram(Fd fd) : fd_(std::move(fd)) {}
  Fd fd_;
};

} // namespace rundkit
