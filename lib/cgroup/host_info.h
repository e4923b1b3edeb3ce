// What `lcgroupctl info` reports about this machine, and the privilege
// check every state-changing command makes first.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "cgroup/backend.h"

namespace rundkit {

// What `lcgroupctl info` shows: kernel, features, every hierarchy, the
// backend this machine gets and the hierarchies it uses.
nlohmann::json host_info(const Config &cfg);

// Throws Error unless running as root (every command that changes state).
void require_root(const std::string &what);

} // namespace rundkit
