#include "util/fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "util/error.h"

namespace rundkit {

Fd &Fd::operator=(Fd &&other) noexcept {
  if (this != &other) {
    reset(other.release());
    path_ = std::move(other.path_);
  }
  return *this;
}

std::string Fd::path_of(const std::string &name) const {
  if (path_.empty() || (!name.empty() && name[0] == '/'))
    return name;
  return path_ + "/" + name;
}

void Fd::reset(int fd) noexcept {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = fd;
}

Fd Fd::open(const std::string &path, int flags, unsigned mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  check_sys(fd, "open", path);
  return Fd(fd, path);
}

Fd Fd::openat(const Fd &dir, const std::string &name, int flags, unsigned mode) {
  int fd = ::openat(dir.get(), name.c_str(), flags | O_CLOEXEC, mode);
  check_sys(fd, "open", dir.path_of(name));
  return Fd(fd, dir.path_of(name));
}

namespace {

std::string read_all(int fd, const std::string &what) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    check_sys(n, "read", what);
    if (n == 0)
      return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

void write_all(int fd, const std::string &data, const std::string &what) {
  // cgroupfs takes one value per write(2): never split it.
  ssize_t n;
  do {
    n = ::write(fd, data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  check_sys(n, "write", what);
  if (static_cast<size_t>(n) != data.size())
    throw Error("write", what, EIO);
}

} // namespace

std::string read_file(const std::string &path) {
  Fd fd = Fd::open(path, O_RDONLY);
  return read_all(fd.get(), path);
}

std::string read_file_at(const Fd &dir, const std::string &name) {
  Fd fd = Fd::openat(dir, name, O_RDONLY);
  return read_all(fd.get(), fd.path());
}

void write_file(const std::string &path, const std::string &data) {
  Fd fd = Fd::open(path, O_WRONLY);
  write_all(fd.get(), data, path);
}

void write_file_at(const Fd &dir, const std::string &name,
                   const std::string &data) {
  Fd fd = Fd::openat(dir, name, O_WRONLY);
  write_all(fd.get(), data, fd.path());
}

} // namespace rundkit
