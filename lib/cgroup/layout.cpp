#include "cgroup/layout.h"

#include <algorithm>
#include <sstream>

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/fd.h"

namespace rundkit {

namespace {

std::vector<std::string> split(const std::string &s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep))
    if (!cur.empty())
      out.push_back(cur);
  return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string &s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

// v1 superblock options that are not controllers.
bool is_v1_flag(const std::string &opt) {
  static const std::set<std::string> flags = {"rw", "ro", "noprefix", "xattr", "clone_children",
                                              "cpuset_v2_mode", "favordynmods", "lwcg",
                                              "all", "none"};
  return flags.count(opt) || opt.find('=') != std::string::npos;
}

} // namespace

const Hierarchy *Layout::v2() const {
  for (const auto &h : hierarchies)
    if (h.version == 2)
      return &h;
  return nullptr;
}

std::vector<const Hierarchy *> Layout::v1() const {
  std::vector<const Hierarchy *> out;
  for (const auto &h : hierarchies)
    if (h.version == 1)
      out.push_back(&h);
  return out;
}

const Hierarchy *Layout::v1_with(const std::string &controller) const {
  for (const auto &h : hierarchies)
    if (h.version == 1 && h.controllers.count(controller))
      return &h;
  return nullptr;
}

// The controllers a sandbox limit needs; devices is left out on purpose:
// it is policed by a BPF program on cgroup2 even when bound to v1.
constexpr const char *kLimitControllers[] = {"cpu", "memory", "pids"};

std::vector<const Hierarchy *> Layout::v1_limit_hierarchies() const {
  std::vector<const Hierarchy *> out;
  for (const char *c : kLimitControllers)
    if (const Hierarchy *h = v1_with(c); h && std::find(out.begin(), out.end(), h) == out.end())
      out.push_back(h);
  return out;
}

bool Layout::limits_on_v1() const { return !v1_limit_hierarchies().empty(); }

Layout parse_mountinfo(const std::string &text) {
  Layout layout;
  std::set<std::string> seen;
  for (const auto &line : split(text, '\n')) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
    auto f = split(line, ' ');
    size_t dash = 0;
    while (dash < f.size() && f[dash] != "-")
      ++dash;
    if (f.size() < 5 || dash + 3 >= f.size())
      continue;
    const std::string &fstype = f[dash + 1];
    if (fstype != "cgroup" && fstype != "cgroup2")
      continue;
    if (!seen.insert(f[2]).second)
      continue;
    Hierarchy h;
    h.mount_point = unescape(f[4]);
    h.device = f[2];
    h.version = fstype == "cgroup2" ? 2 : 1;
    for (const auto &opt : split(f[dash + 3], ',')) {
      h.options.insert(opt);
      if (opt.rfind("name=", 0) == 0)
        h.name = opt.substr(5);
      else if (h.version == 1 && !is_v1_flag(opt))
        h.controllers.insert(opt);
    }
    layout.hierarchies.push_back(std::move(h));
  }
  return layout;
}

bool parse_features_lwcg(const std::string &text) {
  for (const auto &tok : split(text, '\n'))
    if (tok == "lwcg")
      return true;
  return false;
}

Layout detect_layout(const LayoutSources &src) {
  Layout layout = parse_mountinfo(read_file(src.mountinfo));
  for (auto &h : layout.hierarchies)
    if (h.version == 2)
      for (const auto &line : split(read_file(h.mount_point + "/cgroup.controllers"), '\n'))
        for (const auto &c : split(line, ' '))
          h.controllers.insert(c);
  try {
    layout.kernel_lwcg = parse_features_lwcg(read_file(src.features));
  } catch (const Error &e) {
    if (e.err() != ENOENT)
      throw;
  }
  return layout;
}

nlohmann::json to_json(const Hierarchy &h) {
  nlohmann::json j = {{"mount_point", h.mount_point},
                      {"version", h.version},
                      {"controllers", h.controllers},
                      {"lwcg", h.lwcg()}};
  if (!h.name.empty())
    j["name"] = h.name;
  return j;
}

} // namespace rundkit
