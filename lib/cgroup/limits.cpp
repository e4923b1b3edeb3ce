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


int64_t parse_pids(const std::string &text) {
  if (text == "max")
    return -1;
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || errno || *end)
    throw InputError(fmt::format("invalid pids '{}': expected a count or 'max'", text));
  if (v <= 0)
    throw InputError(fmt::format("invalid pids '{}': must be greater than 0", text));
  return v;
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
    l.memory_bytes = parse_size(*memory);
  if (pids)
    l.pids = parse_pids(*pids);
  if (devices)
    l.devices = parse_device_policy(*devices);
  return l;
}

nlohmann::json to_json(const Limits &l) {
  nlohmann::json j = nlohmann::json::object();
  if (l.cpus)
    j["cpus"] = *l.cpus;
  if (l.memory_bytes)
    j["memory_bytes"] = *l.memory_bytes;
  if (l.pids)
    j["pids"] = *l.pids;
  if (l.devices)
    j["devices"] = device_policy_name(*l.devices);
  return j;
}

Limits limits_from_json(const nlohmann::json &j) {
  Limits l;
  if (j.contains("cpus"))
    l.cpus = j["cpus"].get<double>();
  if (j.contains("memory_bytes"))
    l.memory_bytes = j["memory_bytes"].get<uint64_t>();
  if (j.contains("pids"))
    l.pids = j["pids"].get<int64_t>();
  if (j.contains("devices"))
    l.devices = parse_device_policy(j["devices"].get<std::string>());
  return l;
}

} // namespace rundkit
