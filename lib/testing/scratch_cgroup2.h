// A scratch cgroup2 directory for tests that spawn into a cgroup (util's
// process tests, vm's QEMU tests).  Header-only and built on util/fd alone,
// so the util and vm test binaries need no link to the cgroup library.
#pragma once

#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <string>

#include <fcntl.h>
#include <gtest/gtest.h>

#include "util/fd.h"

namespace rundkit::testing {

// Where cgroup2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a
// hybrid host), from mountinfo; empty if nowhere.
inline std::string cgroup2_mount() {
  std::istringstream in(read_file("/proc/self/mountinfo"));
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point;
    f >> id >> parent >> dev >> root >> point;
    size_t dash = line.find(" - ");
    if (dash != std::string::npos && line.compare(dash + 3, 8, "cgroup2 ") == 0)
      return point;
  }
  return {};
}

// A fresh cgroup2 directory PREFIX.PID at the cgroup2 root, removed at the
// end (a test failure if it is still busy then).  ok() is false where no
// writable cgroup2 is mounted.
class ScratchCgroup2 {
public:
  explicit ScratchCgroup2(const std::string &prefix) {
    std::string root = cgroup2_mount();
    struct statfs fs;
    if (root.empty() || ::statfs(root.c_str(), &fs) != 0 || fs.f_type != CGROUP2_SUPER_MAGIC)
      return;
    name_ = prefix + "." + std::to_string(::getpid());
    path_ = root + "/" + name_;
    ::rmdir(path_.c_str());
    if (::mkdir(path_.c_str(), 0755) != 0) {
      path_.clear();
      return;
    }
    dir_ = Fd::open(path_, O_RDONLY | O_DIRECTORY);
  }
  ~ScratchCgroup2() {
    dir_.reset();
    if (!path_.empty()) {
      EXPECT_EQ(::rmdir(path_.c_str()), 0)
          << "cgroup still busy: rmdir " << path_ << ": " << std::strerror(errno);
    }
  }
  ScratchCgroup2(const ScratchCgroup2 &) = delete;
  ScratchCgroup2 &operator=(const ScratchCgroup2 &) = delete;

  bool ok() const { return dir_.valid(); }
  const Fd &dir() const { return dir_; }
  const std::string &name() const { return name_; }
  const std::string &path() const { return path_; }

private:
  std::string name_, path_;
  Fd dir_;
};

} // namespace rundkit::testing
