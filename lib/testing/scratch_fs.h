// Throw-away loop-mounted file systems, for tests and benchmarks that need
// XFS with reflink, btrfs or ext4 without touching the host's disks.
#pragma once

#include <cstdint>
#include <string>

#include "storage/mount.h"

namespace rundkit {

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
