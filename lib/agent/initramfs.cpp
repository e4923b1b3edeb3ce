#include "agent/initramfs.h"

#include "util/temp.h"
#include "vm/initramfs.h"

namespace rundkit::agent {

void write_agent_initramfs(const std::string &agent_binary, const std::string &out_path) {
  vm::Cpio cpio;
  for (const char *d : {"dev", "proc", "sys", "tmp", "mnt", "mnt/rw", "mnt/lower", "newroot"})
    cpio.add_dir(d);
  cpio.add_char_device("dev/console", 5, 1);
  cpio.add_char_device("dev/null", 1, 3, 0666);
  cpio.add_file_from("init", agent_binary, 0755);
  write_file_staged(out_path, cpio.finish());
}

} // namespace rundkit::agent
