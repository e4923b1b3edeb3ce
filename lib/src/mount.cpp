#include "rundkit/mount.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "rundkit/error.h"

namespace rundkit {

std::string fs_type_name(long f_type) {
  switch (static_cast<unsigned long>(f_type)) {
  case XFS_SUPER_MAGIC: return "xfs";
  case BTRFS_SUPER_MAGIC: return "btrfs";
  case EXT4_SUPER_MAGIC: return "ext4";
  case TMPFS_MAGIC: return "tmpfs";
  case OVERLAYFS_SUPER_MAGIC: return "overlay";
  case 0x01021997: return "9p";
  case 0x65735546: return "fuse";
  case NFS_SUPER_MAGIC: return "nfs";
  case SQUASHFS_MAGIC: return "squashfs";
  case 0xE0F5E1E2: return "erofs";
  case 0xCA451A4E: return "bcachefs";
  case 0x2FC12FC1: return "zfs";
  case 0xF2F52010: return "f2fs";
  default: return fmt::format("unknown (0x{:x})", static_cast<unsigned long>(f_type));
  }
}

std::string filesystem_of(const std::string &path) {
  struct statfs sfs;
  check_sys(::statfs(path.c_str(), &sfs), "statfs", path);
  return fs_type_name(sfs.f_type);
}

std::string filesystem_of(const Fd &fd) {
  struct statfs sfs;
  check_sys(::fstatfs(fd.get(), &sfs), "statfs", fd.path());
  return fs_type_name(sfs.f_type);
}

bool is_mountpoint(const std::string &path) {
  struct statx self, parent;
  check_sys(::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &self), "stat",
            path);
  if (self.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
    return self.stx_attributes & STATX_ATTR_MOUNT_ROOT;
  std::string up = path + "/..";
  check_sys(::statx(AT_FDCWD, up.c_str(), 0, STATX_MNT_ID, &parent), "stat", up);
  return self.stx_mnt_id != parent.stx_mnt_id;
}

Mount &Mount::operator=(Mount &&o) noexcept {
  if (this != &o) {
    if (!target_.empty())
      ::umount2(target_.c_str(), MNT_DETACH);
    target_ = std::exchange(o.target_, {});
  }
  return *this;
}

Mount::~Mount() {
  if (target_.empty())
    return;
  // A destructor cannot report EBUSY; detach so that the mount at least
  // goes away when its last user does, rather than staying forever.
  if (::umount2(target_.c_str(), 0) != 0)
    ::umount2(target_.c_str(), MNT_DETACH);
}

void Mount::unmount() {
  if (target_.empty())
    return;
  check_sys(::umount2(target_.c_str(), 0), "umount", target_);
  target_.clear();
}

Mount mount_fs(const std::string &source, const std::string &target, const std::string &fstype,
               unsigned long flags, const std::string &data) {
  if (::mount(source.c_str(), target.c_str(), fstype.empty() ? nullptr : fstype.c_str(), flags,
              data.empty() ? nullptr : data.c_str()) != 0)
    throw Error(fmt::format("mount {} on", source.empty() ? fstype : source), target, errno);
  return Mount(target);
}

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
