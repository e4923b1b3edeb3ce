#include "cgroup/limits.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/units.h"

namespace rundkit {

Limits Limits::merge(const Limits &base, const Limits &over) {
  Limits out = base;
  if (over.cpus)
    out.cpus = over.cpus;
  if (over.memory_bytes)
    out.memory_bytes = over.memory_bytes;
  if (over.pids)
    out.pids = over.pids;
  if (over.devices)
    out.devices = over.devices;
  return out;
}

double parse_cpus(const std::string &text) {
  if (text == "max")
    return kCpusMax;
  char *end = nullptr;
  errno = 0;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || errno || *end || !std::isfinite(v))
    throw InputError(fmt::format("invalid cpus '{}': expected a number such as 0.5", text));
  if (v <= 0)
    throw InputError(fmt::format("invalid cpus '{}': must be greater than 0", text));
  if (v > 4096)
    throw InputError(fmt::format("invalid cpus '{}': at most 4096", text));
  if (std::llround(v * kCpuPeriodUs) < 1000)
    throw InputError(fmt::format("invalid cpus '{}': at least 0.01 (1 ms per 100 ms)", text));
  return v;
}


uint64_t parse_memory(const std::string &text) {
  if (text == "max")
    return kMemoryMax;
  uint64_t v = parse_size(text);
  if (v < kMemoryLimitMin)
    throw InputError(fmt::format("invalid memory '{}': at least {} bytes (one page)", text,
                                 kMemoryLimitMin));
  if (v > kMemoryLimitMax)
    throw InputError(fmt::format("invalid memory '{}': below 2^63 bytes", text));
  return v;
}

int64_t parse_pids(const std::string &text) {
  if (text == "max")
    return kPidsMax;
  return static_cast<int64_t>(parse_count(text, "pids", 1, kPidsLimitMax));
}

DevicePolicy parse_device_policy(const std::string &text) {
  if (text == "oci-default")
    return DevicePolicy::kOciDefault;
  if (text == "inherit")
    return DevicePolicy::kInherit;
  throw InputError(
      fmt::format("invalid device policy '{}': expected oci-default or inherit", text));
}

std::string device_policy_name(DevicePolicy p) {
  return p == DevicePolicy::kOciDefault ? "oci-default" : "inherit";
}

Limits parse_limits(const std::optional<std::string> &cpus,
                    const std::optional<std::string> &memory,
                    const std::optional<std::string> &pids,
                    const std::optional<std::string> &devices) {
  Limits l;
  if (cpus)
    l.cpus = parse_cpus(*cpus);
  if (memory)
    l.memory_bytes = parse_memory(*memory);
  if (pids)
    l.pids = parse_pids(*pids);
  if (devices)
    l.devices = parse_device_policy(*devices);
  return l;
}

nlohmann::json to_json(const Limits &l) {
  nlohmann::json j = nlohmann::json::object();
  // "max" in JSON as in the kernel's files, not as its sentinel.
  if (l.cpus)
    j["cpus"] = l.limits_cpus() ? nlohmann::json(*l.cpus) : nlohmann::json("max");
  if (l.memory_bytes)
    j["memory_bytes"] =
        l.limits_memory() ? nlohmann::json(*l.memory_bytes) : nlohmann::json("max");
  if (l.pids)
    j["pids"] = l.limits_pids() ? nlohmann::json(*l.pids) : nlohmann::json("max");
  if (l.devices)
    j["devices"] = device_policy_name(*l.devices);
  return j;
}

Limits limits_from_json(const nlohmann::json &j) {
  Limits l;
  auto is_max = [&](const char *k) { return j[k].is_string() && j[k] == "max"; };
  if (j.contains("cpus"))
    l.cpus = is_max("cpus") ? kCpusMax : j["cpus"].get<double>();
  if (j.contains("memory_bytes"))
    l.memory_bytes = is_max("memory_bytes") ? kMemoryMax : j["memory_bytes"].get<uint64_t>();
  if (j.contains("pids"))
    l.pids = is_max("pids") ? kPidsMax : j["pids"].get<int64_t>();
  if (j.contains("devices"))
    l.devices = parse_device_policy(j["devices"].get<std::string>());
  return l;
}

} // namespace rundkit
