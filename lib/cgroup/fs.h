// The one owner of cgroupfs knowledge shared by v1 and v2: control-file
// names and the few operations every backend performs on a directory.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

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

} // namespace rundkit::cgfs

namespace rundkit::cgfs {
// SIGKILLs everything listed in cgroup.procs until it stays empty (new
// tasks may fork in meanwhile); throws Error(EBUSY) after `timeout_ms`.
void kill_until_empty(const std::string &path, int timeout_ms = 30000);
} // namespace rundkit::cgfs
