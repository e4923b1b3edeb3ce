#include "cgroup/host_info.h"

#include <linux/magic.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace rundkit {

namespace {

// Whether the state directory (or, before its first use, the nearest
// directory above it) is on tmpfs, as the crash model assumes: records
// vanish at reboot together with the cgroups they describe.
std::optional<bool> state_dir_on_tmpfs(std::string dir) {
  struct statfs st;
  while (::statfs(dir.c_str(), &st) < 0) {
    size_t slash = dir.rfind('/');
    if (errno != ENOENT || slash == std::string::npos || dir == "/")
      return std::nullopt;
    dir = slash == 0 ? "/" : dir.substr(0, slash);
  }
  return st.f_type == TMPFS_MAGIC;
}

} // namespace

nlohmann::json host_info(const Config &cfg) {
  Layout layout = detect_layout(cfg.layout);
  struct utsname u;
  ::uname(&u);
  auto backend = make_backend(cfg, layout);
  nlohmann::json hier = nlohmann::json::array();
  for (const auto &h : layout.hierarchies) {
    auto j = to_json(h);
    j["used"] = std::any_of(backend->trees().begin(), backend->trees().end(), [&](const auto &t) {
      return t->hierarchy().mount_point == h.mount_point;
    });
    hier.push_back(j);
  }
  auto tmpfs = state_dir_on_tmpfs(cfg.state_dir);
  return {{"backend", backend->name()},
          {"kernel_release", u.release},
          {"kernel_lwcg", layout.kernel_lwcg},
          {"state_dir", cfg.state_dir},
          {"state_dir_tmpfs", tmpfs ? nlohmann::json(*tmpfs) : nlohmann::json(nullptr)},
          {"hierarchies", hier}};
}

void require_root(const std::string &what) {
  if (::geteuid() != 0)
    throw Error(fmt::format("{} needs root (running as uid {}): it writes cgroupfs and {}", what,
                            ::geteuid(), "the state directory"));
}

} // namespace rundkit
