// Parked processes: a process started ahead of time inside a pool entry's
// cgroups that waits there until a claim hands it the command to exec.
//
// On stock cgroup v1 a new process reaches a sandbox's cgroups only by a
// write to cgroup.procs in every hierarchy, each under cgroup_mutex and the
// cgroup_threadgroup_rwsem write side; on cgroup2 CLONE_INTO_CGROUP still
// takes cgroup_mutex.  A parked process pays that at fill time, off the
// start-up path: the claim only tells it what to exec.
//
// The protocol needs no socket (the guest and test kernels may have no
// CONFIG_NET), only a pipe and pidfds:
//
//   fd 3 of the parked process   read end of its request pipe
//   fd 4 of the parked process   a write end of the same pipe, so that it
//                                never reads EOF while parked
//
// A claimer opens a pidfd on the parked process (checking its start time,
// so a recycled pid is never mistaken for it), takes a copy of fd 4 with
// pidfd_getfd(2) and writes one request: argv, the environment, and the
// numbers of its own stdin/stdout/stderr, working directory and status
// pipe, which the parked process takes in turn with pidfd_getfd(2).  The
// status pipe says 'G' once the descriptors are taken, then EOF once exec
// succeeded (it is close-on-exec) or four bytes of errno.
//
// Until the filler has placed it in every cgroup and said so (byte 'A'),
// the parked process holds no write end of its pipe: a filler killed
// half-way leaves it reading EOF, and it exits instead of lingering
// outside any pool entry.  It answers 'R' on a second pipe once it holds
// fd 4, and only then is the entry published.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "util/proc.h"

namespace rundkit {

// Forks a parked process (reparented to init, in a session of its own),
// calls place(pid) to move it into its cgroups, then releases it.  If
// place() throws, the process is killed and the exception propagates.
ProcessId park_process(const std::function<void(pid_t)> &place,
                       const std::string &proc_root = "/proc");

// Makes `parked` exec argv (searched in PATH) with this process's
// environment, working directory and stdio (or, with `output`, stdin from
// /dev/null and stdout+stderr appended to that file).  Returns its pid once
// exec succeeded; nothing if the parked process is gone (the caller starts
// the command another way); throws Error("exec", argv[0], errno) if exec
// failed (the parked process has exited then).
std::optional<pid_t> exec_in_parked(const ProcessId &parked, const std::vector<std::string> &argv,
                                    const std::optional<std::string> &output,
                                    const std::string &proc_root = "/proc");

} // namespace rundkit
