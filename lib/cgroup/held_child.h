// A child started already inside its sandbox cgroup, held at a gate until
// every hierarchy has it (v1) or created inside by CLONE_INTO_CGROUP (v2).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "util/fd.h"
#include "util/process.h"

namespace rundkit {

// A child created stopped at a gate: it exists (so v1 callers can write its
// pid to cgroup.procs) but runs nothing until start().  With a cgroup2
// directory it is created inside that cgroup by clone3(CLONE_INTO_CGROUP),
// so it never runs a single instruction outside it and is never migrated.
// An empty argv makes a placeholder that sleeps until killed (benchmarks).
// Destroying a HeldChild that was never started kills and reaps it; a
// started one is left running, the caller's child to reap.
// (A SpawnOptions::held util Child, see util/process.h.)
class HeldChild {
public:
  HeldChild(HeldChild &&) noexcept = default;
  HeldChild &operator=(HeldChild &&) = delete;
  ~HeldChild();

  pid_t pid() const noexcept { return child_.pid(); }
  // Opens the gate.  For a command, waits until exec succeeded and throws
  // Error("exec", argv[0], errno) if it did not (the child is reaped).
  void start();
  // The caller takes over the child (it is no longer killed on destruction).
  pid_t detach() noexcept;

private:
  friend HeldChild spawn_held(const std::vector<std::string> &, const Fd *,
                              const std::optional<std::string> &);
  explicit HeldChild(Child child) noexcept : child_(std::move(child)) {}
  Child child_;
  bool started_ = false;
};

// `output`: where the command's stdout and stderr go (appended; stdin is
// /dev/null), so that a caller reading our output to EOF is not held open
// by a long-lived VMM.  Nothing: inherit all three.
HeldChild spawn_held(const std::vector<std::string> &argv, const Fd *cgroup2_dir,
                     const std::optional<std::string> &output = std::nullopt);

} // namespace rundkit
