#include "cgroup/names.h"

#include <fmt/format.h>

#include "util/error.h"

namespace rundkit {

void validate_name(const std::string &name) {
  auto bad = [&](const char *why) {
    return InputError(fmt::format("invalid name '{}': {}", name, why));
  };
  if (name.empty())
    throw bad("empty");
  if (name.find('/') != std::string::npos)
    throw bad("contains '/'");
  if (name.find('\n') != std::string::npos)
    throw bad("contains a newline");
  if (name.find('\0') != std::string::npos)
    throw bad("contains a NUL byte");
  if (name == "." || name == "..")
    throw bad("not a cgroup name");
  if (name.size() > 200)
    throw bad("longer than 200 bytes");
  if (name.rfind(kReservedPrefix, 0) == 0)
    throw bad("the 'lcg-' prefix is reserved for pool entries");
  // Names are also state file names; control files use dots, so a name
  // like "cgroup.procs" would clash with the kernel's own files.
  if (name.rfind("cgroup.", 0) == 0)
    throw bad("the 'cgroup.' prefix is the kernel's");
}

std::string normalize_parent(const std::string &parent) {
  std::string out;
  size_t i = 0;
  while (i <= parent.size()) {
    size_t j = parent.find('/', i);
    if (j == std::string::npos)
      j = parent.size();
    std::string part = parent.substr(i, j - i);
    i = j + 1;
    if (part.empty())
      continue;
    if (part == "." || part == ".." || part.find('\n') != std::string::npos)
      throw InputError(fmt::format("invalid parent '{}': component '{}'", parent,
                                   part == "\n" ? "\\n" : part));
    out += (out.empty() ? "" : "/") + part;
  }
  if (out.empty())
    throw InputError(fmt::format(
        "invalid parent '{}': sandboxes live below a non-root cgroup", parent));
  return out;
}

} // namespace rundkit
