// Shared by the reflink/image/mount tests: root check, scratch file systems
// made per test (and removed by RAII even when the test fails), small
// helpers to look at a directory and run a command.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <dirent.h>
#include <gtest/gtest.h>

#include "storage/image.h"
#include "storage/loop.h"
#include "testing/scratch_fs.h"
#include "util/process.h"

namespace rundkit::reflinktest {

// Template size in tests: big enough for ext4 with a journal, small enough
// to be cheap to format many times.
inline constexpr uint64_t kTemplateSize = 64ULL << 20;
// mkfs.xfs refuses file systems below 300 MiB.
inline constexpr uint64_t kScratchSize = 512ULL << 20;

// Sets `reason` (and returns null) when the test cannot run here.
inline std::unique_ptr<ScratchFs> make_scratch(const std::string &fs, std::string &reason) {
  if (::geteuid() != 0) {
    reason = "needs root for loop devices and mounts";
    return nullptr;
  }
  if (!mkfs_available(fs)) {
    reason = "mkfs." + fs + " is not installed";
    return nullptr;
  }
  return std::make_unique<ScratchFs>(fs, kScratchSize);
}

#define RUNDKIT_SCRATCH(var, fs)                                                               \
  std::string var##_skip;                                                                      \
  auto var = ::rundkit::reflinktest::make_scratch(fs, var##_skip);                                 \
  if (!var)                                                                                    \
  GTEST_SKIP() << var##_skip

// Names in `dir`, without "." and "..".
inline std::set<std::string> list_dir(const std::string &dir) {
  std::set<std::string> out;
  DIR *d = ::opendir(dir.c_str());
  if (!d)
    return out;
  while (struct dirent *e = ::readdir(d))
    if (std::string n = e->d_name; n != "." && n != "..")
      out.insert(n);
  ::closedir(d);
  return out;
}

// A file handle (name_to_handle_at) for an inode, to ask later whether the
// inode itself still exists: an unnamed layer has no path to stat, and
// free-inode counts are per chunk (XFS) or absent (btrfs).
class InodeHandle {
public:
  explicit InodeHandle(const std::string &path) : buf_(sizeof(struct file_handle) + MAX_HANDLE_SZ) {
    auto *h = reinterpret_cast<struct file_handle *>(buf_.data());
    h->handle_bytes = MAX_HANDLE_SZ;
    int mount_id = 0;
    ok_ = ::name_to_handle_at(AT_FDCWD, path.c_str(), h, &mount_id, AT_SYMLINK_FOLLOW) == 0;
  }
  bool valid() const { return ok_; }
  // Whether the inode can still be opened, after flushing deferred inode
  // freeing (XFS inodegc, btrfs transaction) with syncfs.
  bool exists(const std::string &mount) const {
    int mfd = ::open(mount.c_str(), O_RDONLY | O_DIRECTORY);
    ::syncfs(mfd);
    int fd = ::open_by_handle_at(
        mfd, reinterpret_cast<struct file_handle *>(const_cast<char *>(buf_.data())), O_RDONLY);
    bool found = fd >= 0;
    if (fd >= 0)
      ::close(fd);
    ::close(mfd);
    return found;
  }

private:
  std::vector<char> buf_;
  bool ok_ = false;
};

// stdout+stderr of a shell command and its exit status (-1 if killed by a
// signal), run by util/process like every other child.
inline std::string shell(const std::string &cmd, int *status = nullptr) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", cmd + " 2>&1"};
  RunResult r = run(o);
  if (status)
    *status = r.status.is_exited() ? r.status.code() : -1;
  return r.out;
}

} // namespace rundkit::reflinktest
