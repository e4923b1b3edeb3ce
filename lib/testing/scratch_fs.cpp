#include "testing/scratch_fs.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include <fmt/format.h>

#include "storage/image.h"
#include "storage/loop.h"
#include "util/error.h"
#include "util/fd.h"

namespace rundkit {

namespace {

std::vector<std::string> scratch_mkfs(const std::string &fs, const std::string &dev) {
  if (fs == "xfs")
    return {"mkfs.xfs", "-q", "-f", "-m", "reflink=1", dev};
  if (fs == "btrfs")
    return {"mkfs.btrfs", "-q", "-f", dev};
  if (fs == "ext4")
    return {"mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,nodiscard", dev};
  throw Error(fmt::format("no scratch file system of type '{}' (xfs, btrfs or ext4)", fs));
}

} // namespace

std::string scratch_mkfs_description(const std::string &fs) {
  auto argv = scratch_mkfs(fs, "DEV");
  std::string out;
  for (const auto &a : argv)
    out += (out.empty() ? "" : " ") + a;
  return out;
}

ScratchFs::ScratchFs(const std::string &fs, uint64_t size, const std::string &parent) : fs_(fs) {
  std::string base = parent;
  if (base.empty()) {
    const char *tmp = ::getenv("TMPDIR");
    base = tmp && *tmp ? tmp : "/tmp";
  }
  std::string templ = base + "/rundkit-scratch-" + fs + ".XXXXXX";
  if (!::mkdtemp(templ.data()))
    throw Error("mkdtemp", templ, errno);
  dir_ = templ;
  backing_ = dir_ + "/backing.img";
  mnt_ = dir_ + "/mnt";
  try {
    {
      Fd f = Fd::open(backing_, O_RDWR | O_CREAT | O_EXCL, 0600);
      check_sys(::ftruncate(f.get(), static_cast<off_t>(size)), "truncate", backing_);
    }
    check_sys(::mkdir(mnt_.c_str(), 0755), "mkdir", mnt_);
    // The loop device lives while this scope holds it and then while it is
    // mounted; autoclear detaches it at unmount.
    LoopDevice loop = LoopDevice::attach(backing_);
    run_image_tool(scratch_mkfs(fs, loop.path()));
    mount_ = mount_fs(loop.path(), mnt_, fs, 0);
  } catch (...) {
    ::rmdir(mnt_.c_str());
    ::unlink(backing_.c_str());
    ::rmdir(dir_.c_str());
    throw;
  }
}

ScratchFs::~ScratchFs() {
  try {
    mount_.unmount();
  } catch (const Error &) {
    // Still busy (a test left a descriptor open): detach lazily so the loop
    // device goes when that descriptor does.
    mount_ = Mount();
  }
  ::rmdir(mnt_.c_str());
  ::unlink(backing_.c_str());
  ::rmdir(dir_.c_str());
}

} // namespace rundkit
