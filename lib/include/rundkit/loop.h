// Loop devices and throw-away loop-mounted file systems, for tests and
// benchmarks that need XFS with reflink, btrfs or ext4 without touching the
// host's disks.
#pragma once

#include <cstdint>
#include <string>

#include "rundkit/fd.h"
#include "rundkit/mount.h"

namespace rundkit {

// A loop device bound to a file, with LO_FLAGS_AUTOCLEAR: the kernel detaches
// it when the last user goes (our descriptor and any mount), so even a
// killed test leaves no bound device once its mount is gone.
class LoopDevice {
public:
  static LoopDevice attach(const std::string &file);

  const std::string &path() const noexcept { return dev_.path(); }

private:
  explicit LoopDevice(Fd dev) : dev_(std::move(dev)) {}
  Fd dev_;
};

// Whether mkfs.<fs> is installed (tests skip, not fail, without it).
bool mkfs_available(const std::string &fs);

// mkfs arguments used for scratch file systems; XFS gets reflink=1
// explicitly, since that is the point of having it.
std::string scratch_mkfs_description(const std::string &fs);

// A fresh file system in a sparse file under a new temporary directory,
// loop-mounted at mountpoint().  The destructor unmounts it, lets the loop
// device go and removes the directory, backing file included.
class ScratchFs {
public:
  // fs: "xfs" (reflink=1), "btrfs", "ext4"; `parent` holds the temp dir.
  ScratchFs(const std::string &fs, uint64_t size, const std::string &parent = "");
  ScratchFs(const ScratchFs &) = delete;
  ScratchFs &operator=(const ScratchFs &) = delete;
  ~ScratchFs();

  const std::string &mountpoint() const noexcept { return mnt_; }
  const std::string &fs() const noexcept { return fs_; }

private:
  std::string fs_;
  std::string dir_;
  std::string backing_;
  std::string mnt_;
  Mount mount_;
};

} // namespace rundkit
