// Loop devices: a file system image attached as a block device.
#pragma once

#include <string>

#include "util/fd.h"

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

} // namespace rundkit
