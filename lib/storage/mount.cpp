#include "storage/mount.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "util/error.h"

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

} // namespace rundkit
