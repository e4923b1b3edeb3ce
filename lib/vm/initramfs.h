// An initramfs written directly as an uncompressed newc cpio archive: every
// kernel with BLK_DEV_INITRD unpacks it, device nodes need no mknod and no
// external cpio runs.
#pragma once

#include <cstdint>
#include <string>

namespace rundkit::vm {

class Cpio {
public:
  void add_dir(const std::string &name, unsigned mode = 0755);
  void add_file(const std::string &name, const std::string &data, unsigned mode = 0644);
  // The contents of host file `path`.
  void add_file_from(const std::string &name, const std::string &path, unsigned mode = 0755);
  void add_symlink(const std::string &name, const std::string &target);
  void add_char_device(const std::string &name, unsigned major, unsigned minor,
                       unsigned mode = 0600);
  // The archive with its trailer.
  std::string finish();
  // finish() written to `path` (created or truncated).
  void write_to(const std::string &path);

private:
  void entry(const std::string &name, uint32_t mode, const std::string &data, unsigned rmajor = 0,
             unsigned rminor = 0);
  std::string out_;
  uint32_t ino_ = 1;
};

} // namespace rundkit::vm
