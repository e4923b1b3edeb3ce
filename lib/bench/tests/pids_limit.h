// This test process in a cgroup v1 pids group of its own whose pids.max
// leaves room for exactly `room` more tasks, so that the next fork or clone
// beyond them fails with EAGAIN: a real failure to make a child, no mock.
// On destruction the process moves back to the hierarchy's root, and
// anything left in the group (children a defect left hanging) is killed
// and reaped, so one failing test does not disturb the next.
#pragma once

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "util/error.h"
#include "util/fd.h"

namespace rundkit::benchtest {

class PidsLimit {
public:
  static constexpr const char *kRoot = "/sys/fs/cgroup/pids";

  explicit PidsLimit(int room) {
    struct stat st;
    if (::geteuid() != 0 || ::stat((std::string(kRoot) + "/cgroup.procs").c_str(), &st) != 0)
      return;
    dir_ = std::string(kRoot) + "/rundkit-bench-test-" + std::to_string(::getpid());
    check_sys(::mkdir(dir_.c_str(), 0755), "mkdir", dir_);
    write_file(dir_ + "/cgroup.procs", std::to_string(::getpid()));
    write_file(dir_ + "/pids.max", std::to_string(current() + room));
  }
  ~PidsLimit() {
    if (dir_.empty())
      return;
    try {
      write_file(std::string(kRoot) + "/cgroup.procs", std::to_string(::getpid()));
      for (pid_t p : procs()) {
        ::kill(p, SIGKILL);
        ::waitpid(p, nullptr, 0); // ours: a test's own leftovers
      }
      ::rmdir(dir_.c_str());
    } catch (const Error &) {
    }
  }
  PidsLimit(const PidsLimit &) = delete;
  PidsLimit &operator=(const PidsLimit &) = delete;

  bool ok() const { return !dir_.empty(); }
  // Tasks in the group now (this process's threads included).
  int current() const { return std::stoi(read_file(dir_ + "/pids.current")); }
  // Processes in the group other than this one.
  std::vector<pid_t> procs() const {
    std::istringstream in(read_file(dir_ + "/cgroup.procs"));
    std::vector<pid_t> out;
    for (pid_t p; in >> p;)
      if (p != ::getpid())
        out.push_back(p);
    return out;
  }

private:
  std::string dir_;
};

// Descriptors open in this process now.
inline size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto &e : std::filesystem::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
}

} // namespace rundkit::benchtest
