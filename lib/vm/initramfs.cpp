#include "vm/initramfs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

#include "util/error.h"
#include "util/fd.h"

namespace rundkit::vm {

void Cpio::entry(const std::string &name, uint32_t mode, const std::string &data, unsigned rmajor,
                 unsigned rminor) {
  // newc: "070701", 13 eight-digit hex fields, the name with its NUL, both
  // padded to 4 bytes.
  out_ += fmt::format("070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}"
                      "{:08x}{:08x}",
                      ino_++, mode, 0, 0, S_ISDIR(mode) ? 2 : 1, 0, data.size(), 0, 0, rmajor,
                      rminor, name.size() + 1, 0);
  out_ += name;
  out_ += '\0';
  out_.append((4 - out_.size() % 4) % 4, '\0');
  out_ += data;
  out_.append((4 - out_.size() % 4) % 4, '\0');
}

void Cpio::add_dir(const std::string &name, unsigned mode) { entry(name, S_IFDIR | mode, {}); }

void Cpio::add_file(const std::string &name, const std::string &data, unsigned mode) {
  entry(name, S_IFREG | mode, data);
}

void Cpio::add_file_from(const std::string &name, const std::string &path, unsigned mode) {
  entry(name, S_IFREG | mode, read_file(path));
}

void Cpio::add_symlink(const std::string &name, const std::string &target) {
  entry(name, S_IFLNK | 0777, target);
}

void Cpio::add_char_device(const std::string &name, unsigned major, unsigned minor, unsigned mode) {
  entry(name, S_IFCHR | mode, {}, major, minor);
}

std::string Cpio::finish() {
  entry("TRAILER!!!", 0, {});
  return std::move(out_);
}

void Cpio::write_to(const std::string &path) {
  Fd fd = Fd::open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::string data = finish();
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      throw Error("write", path, errno);
    off += static_cast<size_t>(n);
  }
}

} // namespace rundkit::vm
