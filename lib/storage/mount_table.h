// The kernel's mount table (/proc/self/mountinfo) read through libmount, the
// parser util-linux's own mount(8) and findmnt(8) use, so escapes, optional
// fields and odd sources are parsed the one way every other tool parses
// them.  Kept in its own unit: Debian ships no libmount.a, so statically
// linked binaries (lcgroupctl.static) must never pull this object in.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace rundkit {

struct MountEntry {
  int id = 0;
  int parent_id = 0;
  std::string source;       // "/dev/loop0", "overlay", "reflinkfs", ...
  std::string target;       // the mount point, unescaped
  std::string fstype;       // "xfs", "overlay", ...
  std::string root;         // the directory of the file system mounted there
  std::string vfs_options;  // per-mount: "ro,nosuid,nodev,noexec,relatime"
  std::string fs_options;   // per-superblock: "ro,lowerdir=..."
  std::string optional;     // propagation: "shared:1 master:2", "" when private

  // Whether `name` is among the per-mount (vfs) options.
  bool has_vfs_option(const std::string &name) const;
  // The value of the superblock option `name` ("lowerdir"), if present.
  std::optional<std::string> fs_option(const std::string &name) const;
};

// Parses mountinfo text; `origin` names it in errors.
std::vector<MountEntry> parse_mount_table(const std::string &text, const std::string &origin);
// Reads `path` (default: this process's mount namespace).
std::vector<MountEntry> read_mount_table(const std::string &path = "/proc/self/mountinfo");
// The entry of mount `id` (statx STATX_MNT_ID) in this namespace, if any.
std::optional<MountEntry> find_mount(int id);

} // namespace rundkit
