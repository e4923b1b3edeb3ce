// What a sandbox cgroup is given: cpu, memory and pids limits and a device
// policy, parsed from the strings an operator types.  Every parser rejects
// the whole value rather than guessing ("12X" is not 12 bytes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace rundkit {

// "max" (no limit) as a value: written as such, so a pooled cgroup made
// with a limit loses it when the claim asks for none.
inline constexpr double kCpusMax = -1;
inline constexpr uint64_t kMemoryMax = UINT64_MAX;
inline constexpr int64_t kPidsMax = -1;
// The kernel's ranges: pids.max takes at most PID_MAX_LIMIT (4194304 on
// 64-bit, kernel/cgroup/pids.c); a memory limit below one page rounds down
// to zero pages, and one at or above 2^63 is not a limit.
inline constexpr int64_t kPidsLimitMax = 4194304;
inline constexpr uint64_t kMemoryLimitMin = 4096;
inline constexpr uint64_t kMemoryLimitMax = (1ULL << 63) - 1;

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
  // Whether each is set to a real limit (not unset, not "max").
  bool limits_cpus() const { return cpus && *cpus != kCpusMax; }
  bool limits_memory() const { return memory_bytes && *memory_bytes != kMemoryMax; }
  bool limits_pids() const { return pids && *pids != kPidsMax; }
  // `over` wins field by field: claim options over pool defaults.
  static Limits merge(const Limits &base, const Limits &over);
};

// cfs/cpu.max period in microseconds; the quota is cpus * this.
inline constexpr int64_t kCpuPeriodUs = 100000;

// "0.5", "2": > 0, at most 4096, and at least 1 ms of quota per period
// (the kernel refuses less); "max" is kCpusMax.
double parse_cpus(const std::string &text);
// "128M" (at least one page, below 2^63) or "max" (kMemoryMax).
uint64_t parse_memory(const std::string &text);
// "1024" (1 to 4194304) or "max" (kPidsMax).
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
