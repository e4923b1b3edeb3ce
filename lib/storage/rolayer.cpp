#include "storage/rolayer.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

#include "util/error.h"

namespace rundkit {

std::string layer_root(const std::string &layer) {
  struct stat st;
  std::string fs = layer + "/fs";
  if (::stat(fs.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    return fs;
  check_sys(::stat(layer.c_str(), &st), "stat", layer);
  if (!S_ISDIR(st.st_mode))
    throw Error("layer", layer, ENOTDIR);
  return layer;
}

RoLayerMount mount_ro_layers(const std::vector<std::string> &layers, const std::string &target) {
  if (layers.empty())
    throw Error("rolayer mount needs at least one layer");
  std::vector<std::string> roots;
  for (const auto &l : layers) {
    std::string root = layer_root(l);
    // overlayfs splits lowerdir on ':' and mount(2) data on ','; escaping
    // is fragile across kernels, so such paths are refused outright.
    if (root.find_first_of(":,\\") != std::string::npos)
      throw Error(fmt::format("layer path '{}' contains ':', ',' or '\\', which overlayfs "
                              "options cannot carry",
                              root));
    roots.push_back(root);
  }
  struct stat st;
  check_sys(::stat(target.c_str(), &st), "stat", target);
  if (!S_ISDIR(st.st_mode))
    throw Error("mount", target, ENOTDIR);
  if (is_mountpoint(target))
    throw Error(fmt::format("'{}' is already a mount point", target));

  RoLayerMount out;
  if (roots.size() == 1) {
    out.kind = "bind";
    out.lowerdir = roots[0];
    out.mount = mount_fs(roots[0], target, "", MS_BIND);
    // A bind mount ignores MS_RDONLY on creation; read-only takes a remount.
    if (::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0)
      throw Error("remount read-only", target, errno);
    return out;
  }
  out.kind = "overlay";
  std::vector<std::string> top_first(roots.rbegin(), roots.rend());
  for (const auto &r : top_first)
    out.lowerdir += (out.lowerdir.empty() ? "" : ":") + r;
  std::string data = "lowerdir=" + out.lowerdir;
  if (data.size() >= 4096)
    throw Error(fmt::format("{} layers make a lowerdir option of {} bytes; mount(2) takes "
                            "one page (4096)",
                            roots.size(), data.size()));
  out.mount = mount_fs("overlay", target, "overlay", MS_RDONLY, data);
  return out;
}

void umount_ro_layers(const std::string &target) {
  if (!is_mountpoint(target))
    throw Error(fmt::format("'{}' is not a mount point", target));
  check_sys(::umount2(target.c_str(), 0), "umount", target);
}

} // namespace rundkit
