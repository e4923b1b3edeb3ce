// A child started already inside its sandbox cgroup, held at a gate until
// every hierarchy has it (v1) or created inside by CLONE_INTO_CGROUP (v2).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "util/fd.h"

namespace rundkit {

// A child created stopped at a gate: it exists (so v1 callers can write its
// pid to cgroup.procs) but runs nothing until start().  With a cgroup2
// directory it is created inside that cgroup by clone3(CLONE_INTO_CGROUP),
// so it never runs a single instruction outside it and is never migrated.
// An empty argv makes a placeholder that sleeps until killed (benchmarks).
// Destroying a HeldChild that was never started kills and reaps it.
class HeldChild {
public:
  HeldChild(HeldChild &&) noexcept;
  HeldChild &operator=(HeldChild &&) = delete;
  ~HeldChild();

  pid_t pid() const noexcept { return pid_; }
  // Opens the gate.  For a command, waits until exec succeeded and throws
  // Error("exec", argv[0], errno) if it did not (the child is reaped).
  void start();
  // The caller takes over the child (it is no longer killed on destruction).
  pid_t detach() noexcept;

private:
  friend HeldChild spawn_held(const std::vector<std::string> &, const Fd *,
                              const std::optional<std::string> &);
  HeldChild(pid_t pid, Fd gate, Fd exec_status, std::string what)
      : pid_(pid), gate_(std::move(gate)), exec_status_(std::move(exec_status)),
        what_(std::move(what)) {}
  pid_t pid_ = -1;
  Fd gate_;
  Fd exec_status_;
  std::string what_;
  bool started_ = false;
};

// `output`: where the command's stdout and stderr go (appended; stdin is
// /dev/null), so that a caller reading our output to EOF is not held open
// by a long-lived VMM.  Nothing: inherit all three.
HeldChild spawn_held(const std::vector<std::string> &argv, const Fd *cgroup2_dir,
                     const std::optional<std::string> &output = std::nullopt);

// SIGKILL and waitpid: for children of this process (benchmark teardown).
void kill_and_reap(pid_t pid);

} // namespace rundkit
