#include "storage/loop.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "util/error.h"

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

} // namespace rundkit
