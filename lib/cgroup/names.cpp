#include "cgroup/names.h"

#include <algorithm>

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
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f)
      throw bad(c == '\n' ? "contains a newline" : "contains a control character");
  if (name == "." || name == "..")
    throw bad("not a cgroup name");
  if (name.size() > 200)
    throw bad("longer than 200 bytes");
  if (name.rfind(kReservedPrefix, 0) == 0)
    throw bad("the 'lcg-' prefix is reserved for pool entries");
  if (auto why = control_file_name_reason(name); !why.empty())
    throw bad(why.c_str());
}

std::string control_file_name_reason(const std::string &part) {
  // v1 keeps these in every cgroup directory (the last two in the root).
  for (const char *file : {"tasks", "notify_on_release", "release_agent"})
    if (part == file)
      return fmt::format("'{}' is a cgroup v1 control file", file);
  // Every controller's files are CONTROLLER.KEY, cgroup2's core ones
  // cgroup.KEY; a controller this kernel lacks may come with the next.
  static const char *const kPrefixes[] = {
      "cgroup", "cpu",     "cpuacct",  "cpuset",  "memory", "memsw",  "pids",  "devices",
      "freezer", "blkio",  "io",       "hugetlb", "net_cls", "net_prio", "perf_event",
      "rdma",   "misc",    "irq"};
  size_t dot = part.find('.');
  if (dot != std::string::npos)
    for (const char *prefix : kPrefixes)
      if (part.compare(0, dot, prefix) == 0)
        return fmt::format("the '{}.' prefix names the kernel's control files", prefix);
  return "";
}

std::vector<std::string> path_components(const std::string &parent) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < parent.size()) {
    size_t j = parent.find('/', i);
    if (j == std::string::npos)
      j = parent.size();
    if (j > i)
      out.push_back(parent.substr(i, j - i));
    i = j + 1;
  }
  return out;
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
    bool control = std::any_of(part.begin(), part.end(),
                               [](unsigned char c) { return c < 0x20 || c == 0x7f; });
    if (part == "." || part == ".." || control)
      throw InputError(fmt::format("invalid parent '{}': component '{}'", parent,
                                   control ? "with a control character" : part));
    if (auto why = control_file_name_reason(part); !why.empty())
      throw InputError(fmt::format("invalid parent '{}': component '{}': {}", parent, part, why));
    out += (out.empty() ? "" : "/") + part;
  }
  if (out.empty())
    throw InputError(fmt::format(
        "invalid parent '{}': sandboxes live below a non-root cgroup", parent));
  return out;
}

} // namespace rundkit
