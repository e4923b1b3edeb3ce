// What a sandbox cgroup is given: cpu, memory and pids limits and a device
// policy, parsed from the strings an operator types.  Every parser rejects
// the whole value rather than guessing ("12X" is not 12 bytes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace rundkit {

enum class DevicePolicy {
  kInherit,    // no policy of our own: whatever the parent allows
  kOciDefault, // the OCI runtime-spec default allowlist
};

struct Limits {
  std::optional<double> cpus;           // CPUs worth of time per period
  std::optional<uint64_t> memory_bytes; // hard limit
  std::optional<int64_t> pids;          // max tasks
  std::optional<DevicePolicy> devices;

  bool empty() const { return !cpus && !memory_bytes && !pids && !devices; }
  // `over` wins field by field: claim options over pool defaults.
  static Limits merge(const Limits &base, const Limits &over);
};

// cfs/cpu.max period in microseconds; the quota is cpus * this.
inline constexpr int64_t kCpuPeriodUs = 100000;

// "0.5", "2": > 0, at most 4096, and at least 1 ms of quota per period
// (the kernel refuses less).
double parse_cpus(const std::string &text);
// "1024" or "max"; max is returned as -1.
int64_t parse_pids(const std::string &text);
DevicePolicy parse_device_policy(const std::string &text);
std::string device_policy_name(DevicePolicy p);

// The command-line form: each option given as text, or not at all.
Limits parse_limits(const std::optional<std::string> &cpus,
                    const std::optional<std::string> &memory,
                    const std::optional<std::string> &pids,
                    const std::optional<std::string> &devices);

nlohmann::json to_json(const Limits &l);
Limits limits_from_json(const nlohmann::json &j);

} // namespace rundkit
