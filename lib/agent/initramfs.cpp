#include "agent/initramfs.h"

#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "util/error.h"
#include "util/temp.h"
#include "vm/initramfs.h"

namespace rundkit::agent {

namespace {

// The module names of `module_dir`/modules.load, checked: each a plain file
// name of a file in the directory.
std::vector<std::string> module_list(const std::string &module_dir) {
  std::string list_path = module_dir + "/modules.load";
  std::ifstream list(list_path);
  if (!list)
    throw InputError(fmt::format("guest modules: no {} (make distro-guest-kernel writes it)",
                                 list_path));
  std::vector<std::string> names;
  std::string name;
  while (std::getline(list, name)) {
    if (name.empty())
      continue;
    if (name.find('/') != std::string::npos || name == "." || name == ".." ||
        name.size() < 4 || name.compare(name.size() - 3, 3, ".ko") != 0)
      throw InputError(fmt::format("{}: '{}' is not the file name of a .ko module", list_path,
                                   name));
    names.push_back(name);
  }
  if (names.empty())
    throw InputError(fmt::format("{} lists no modules", list_path));
  return names;
}

} // namespace

void write_agent_initramfs(const std::string &agent_binary, const std::string &out_path,
                           const std::string &module_dir) {
  vm::Cpio cpio;
  for (const char *d : {"dev", "proc", "sys", "tmp", "mnt", "mnt/rw", "mnt/lower", "newroot"})
    cpio.add_dir(d);
  cpio.add_char_device("dev/console", 5, 1);
  cpio.add_char_device("dev/null", 1, 3, 0666);
  cpio.add_file_from("init", agent_binary, 0755);
  if (!module_dir.empty()) {
    std::vector<std::string> names = module_list(module_dir);
    cpio.add_dir("modules");
    std::string load;
    for (const auto &n : names) {
      cpio.add_file_from("modules/" + n, module_dir + "/" + n, 0644);
      load += n + "\n";
    }
    cpio.add_file("modules/modules.load", load);
  }
  write_file_staged(out_path, cpio.finish());
}

} // namespace rundkit::agent
