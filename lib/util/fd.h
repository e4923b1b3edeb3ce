// A move-only owner of a file descriptor, remembering the path it was
// opened by so that every error can name it.  Move-assignment closes the
// descriptor it replaces; there is no implicit conversion to int.
#pragma once

#include <string>
#include <utility>

namespace rundkit {

class Fd {
public:
  Fd() = default;
  explicit Fd(int fd, std::string path = {}) noexcept
      : fd_(fd), path_(std::move(path)) {}
  Fd(const Fd &) = delete;
  Fd &operator=(const Fd &) = delete;
  Fd(Fd &&other) noexcept
      : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}
  Fd &operator=(Fd &&other) noexcept;
  ~Fd() { reset(); }

  int get() const noexcept { return fd_; }
  const std::string &path() const noexcept { return path_; }
  // path() joined with `name`, for messages about files opened at this fd.
  std::string path_of(const std::string &name) const;
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }
  // Gives up ownership without closing.
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept;

  // open(2)/openat(2) that throw rundkit::Error naming the path.
  static Fd open(const std::string &path, int flags, unsigned mode = 0);
  static Fd openat(const Fd &dir, const std::string &name, int flags,
                   unsigned mode = 0);

private:
  int fd_ = -1;
  std::string path_;
};

// Whole-file helpers on a path or relative to a directory fd; they throw
// rundkit::Error with the path and errno.
std::string read_file(const std::string &path);
std::string read_file_at(const Fd &dir, const std::string &name);
void write_file(const std::string &path, const std::string &data);
void write_file_at(const Fd &dir, const std::string &name,
                   const std::string &data);

} // namespace rundkit
