// Helpers shared by the cgroup integration tests: they run against the
// machine's real cgroup filesystems, each under its own parent, and skip
// (with the reason) only where a filesystem or privilege is absent.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "cgroup/backend.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/process.h"

namespace rundkit::cgtest {

inline std::string make_temp_dir(const char *what) {
  std::string tmpl = std::string("/tmp/lcgroupctl-") + what + "-XXXXXX";
  if (!::mkdtemp(tmpl.data()))
    throw Error("mkdtemp", tmpl, errno);
  return tmpl;
}

inline std::string unique_parent(const char *what) {
  static int seq = 0;
  return std::string("lcgroupctl-test-") + what + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(seq++);
}

// Exit status of a child of this process (claims start their command as
// our child), in the shell's convention; -1 if it is not our child.  Taken
// over by util/process, the one owner of children, and waited for there.
inline int wait_status(pid_t pid) {
  try {
    return Child::adopt(pid, "claimed command").wait().shell_code();
  } catch (const Error &) {
    return -1;
  }
}

// /proc/PID/cgroup names `path` (relative to its hierarchy) for some line.
inline bool in_cgroup(pid_t pid, const std::string &rel) {
  std::string text = read_file("/proc/" + std::to_string(pid) + "/cgroup");
  return text.find(":/" + rel + "\n") != std::string::npos;
}

} // namespace rundkit::cgtest
