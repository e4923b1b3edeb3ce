// The one owner of cgroupfs knowledge shared by v1 and v2: control-file
// names and the few operations every backend performs on a directory.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "util/fd.h"

namespace rundkit::cgfs {

inline constexpr const char *kProcs = "cgroup.procs";
inline constexpr const char *kKill = "cgroup.kill";           // cgroup2, 5.14+
inline constexpr const char *kEvents = "cgroup.events";       // cgroup2
inline constexpr const char *kControllers = "cgroup.controllers";
inline constexpr const char *kSubtreeControl = "cgroup.subtree_control";
inline constexpr const char *kPool = "cgroup.pool";           // rundkit lwcg

std::string join(const std::string &dir, const std::string &name);
bool exists(const std::string &path);
// mkdir(2) with mode 0755; throws Error("mkdir", path, errno).
void make(const std::string &path);
// mkdir -p; returns the directories it created, outermost first.
std::vector<std::string> make_all(const std::string &path);
void rename(const std::string &from, const std::string &to);
// rmdir(2), retrying EBUSY for up to `timeout_ms` while killed tasks finish
// exiting.  False if the directory was already gone.
bool remove(const std::string &path, int timeout_ms = 30000);
std::vector<pid_t> procs(const std::string &path);
// Subdirectories (child cgroups) of `path`.
std::vector<std::string> children(const std::string &path);
// The file's content without the trailing newline.
std::string read(const std::string &path, const std::string &file);
void write(const std::string &path, const std::string &file, const std::string &value);
// Words of a space-separated control file (cgroup.controllers, ...).
std::vector<std::string> words(const std::string &path, const std::string &file);

// SIGKILLs everything listed in cgroup.procs until it stays empty (new
// tasks may fork in meanwhile); throws Error(EBUSY) after `timeout_ms`.
void kill_until_empty(const std::string &path, int timeout_ms = 30000);

// cgroup.pool of a rundkit lwcg kernel, as it reads.
struct PoolFile {
  size_t target = 0, available = 0;
  uint64_t hits = 0, misses = 0;
};
PoolFile read_pool(const std::string &dir);
} // namespace rundkit::cgfs

namespace rundkit {

// A cgroup held by handle: its directory descriptor and its id, the
// cgroupfs inode number (on cgroup2 the id bpf and name_to_handle_at use;
// every v1 hierarchy numbers its own).  A name removed and made again is
// another cgroup with another id, so a record that kept the id never acts
// on a newcomer that took the name: the way oomd holds cgroups.
class Cgroup {
public:
  // The cgroup at `path`; nothing if no directory is there.
  static std::optional<Cgroup> open(const std::string &path);
  // The cgroup at `path` only if it is still the one with `id`; nothing
  // if the name is gone or now belongs to another cgroup.
  static std::optional<Cgroup> open_if_same(const std::string &path, uint64_t id);

  uint64_t id() const noexcept { return id_; }
  const std::string &path() const noexcept { return dir_.path(); }
  const Fd &dir() const noexcept { return dir_; }

  std::vector<pid_t> procs() const;
  void write(const std::string &file, const std::string &value) const;
  // SIGKILLs what cgroup.procs lists until it stays empty (tasks may fork
  // meanwhile); throws Error(EBUSY) after `timeout_ms`.
  void kill_until_empty(int timeout_ms = 30000) const;
  // rmdir(2) of the name, only while it still names this cgroup, retrying
  // EBUSY for up to `timeout_ms` while killed tasks finish exiting.  False
  // if the name is gone or was taken by another cgroup meanwhile.
  bool remove(int timeout_ms = 30000) const;

private:
  Cgroup(Fd dir, uint64_t id) noexcept : dir_(std::move(dir)), id_(id) {}
  Fd dir_;
  uint64_t id_ = 0;
};

// The id of the cgroup directory at `path`; nothing if there is none.
std::optional<uint64_t> cgroup_id(const std::string &path);

} // namespace rundkit
