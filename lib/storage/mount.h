// Mounts as owned resources, and file-system identification by statfs
// magic.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>

#include "util/fd.h"

namespace rundkit {

// "xfs", "btrfs", "ext4" (ext2/3/4 share a magic), "tmpfs", "overlay", ...
// or "unknown (0x1234)".
std::string fs_type_name(long f_type);
// The file system type of the file at `path` / behind `fd`.
std::string filesystem_of(const std::string &path);
std::string filesystem_of(const Fd &fd);

// True when `path` is the root of a mount (its mount id differs from its
// parent's).
bool is_mountpoint(const std::string &path);

// A mounted file system, unmounted by the destructor unless released.
class Mount {
public:
  Mount() = default;
  explicit Mount(std::string target) : target_(std::move(target)) {}
  Mount(const Mount &) = delete;
  Mount &operator=(const Mount &) = delete;
  Mount(Mount &&o) noexcept : target_(std::exchange(o.target_, {})) {}
  Mount &operator=(Mount &&o) noexcept;
  ~Mount();

  const std::string &target() const noexcept { return target_; }
  // Keeps the mount after this object is gone (a CLI's `mount` verb).
  std::string release() noexcept { return std::exchange(target_, {}); }
  // Unmounts now; throws rundkit::Error (EBUSY names the target).
  void unmount();

private:
  std::string target_;
};

// mount(2) returning an owner; errors name the source and target.
Mount mount_fs(const std::string &source, const std::string &target,
               const std::string &fstype, unsigned long flags,
               const std::string &data = {});

} // namespace rundkit
