#include "rundkit/loop.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "rundkit/error.h"
#include "rundkit/image.h"

namespace rundkit {

LoopDevice LoopDevice::attach(const std::string &file) {
  Fd backing = Fd::open(file, O_RDWR);
  Fd ctl = Fd::open("/dev/loop-control", O_RDWR);
  // Another process may take the free device between GET_FREE and
  // CONFIGURE (EBUSY); a few attempts settle it, more would hide a leak.
  for (int attempt = 0; attempt < 16; ++attempt) {
    int n = ::ioctl(ctl.get(), LOOP_CTL_GET_FREE);
    check_sys(n, "LOOP_CTL_GET_FREE", "/dev/loop-control");
    Fd dev = Fd::open(fmt::format("/dev/loop{}", n), O_RDWR);
    struct loop_config cfg;
    std::memset(&cfg, 0, sizeof(cfg));
    cfg.fd = static_cast<__u32>(backing.get());
    // DIRECT_IO: the backing file's pages would otherwise sit in the host
    // page cache as a second copy of everything on the loop file system,
    // hiding exactly the double caching the benchmarks look for.
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
    std::strncpy(reinterpret_cast<char *>(cfg.info.lo_file_name), file.c_str(),
                 LO_NAME_SIZE - 1);
    if (::ioctl(dev.get(), LOOP_CONFIGURE, &cfg) == 0)
      return LoopDevice(std::move(dev));
    if (errno != EBUSY)
      throw Error("LOOP_CONFIGURE", dev.path(), errno);
  }
  throw Error("attach loop device for", file, EBUSY);
}

bool mkfs_available(const std::string &fs) {
  for (const char *dir : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"})
    if (::access((std::string(dir) + "mkfs." + fs).c_str(), X_OK) == 0)
      return true;
  return false;
}

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
