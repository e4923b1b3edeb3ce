// lcgroupctl oci-runtime: an OCI runtime in front of the real one (runc,
// crun), installed as containerd's runc BinaryName through a one-line
// wrapper (pairing/containerd/runc-pooled), so that containers started by
// unmodified containerd get pooled cgroups on a stock kernel.
//
// On `create` and `run`, the bundle's config.json names the container's
// cgroup (linux.cgroupsPath "/PARENT/NAME", the cgroupfs driver's form).
// If this state directory has a pool under PARENT with an entry ready, the
// entry is claimed as NAME: on cgroup v1 the userspace pool renames it to
// exactly PARENT/NAME in every hierarchy, so the runtime finds its cgroup
// made (and sets its limits in it as it always does).  Then the claim is
// handed over: its record is removed, the cgroup is the runtime's from
// then on (its `delete` removes it), and the real runtime is exec'd with
// the arguments unchanged.  Every other command, and a create that cannot
// be served (no pool, an empty one, a systemd cgroup path, a cgroup of that
// name already there, any error), goes to the runtime as it is: the shim
// never makes a container fail that the runtime alone would have started.
//
// Not on cgroup2: there the pool's entries are siblings named lcg-N, and
// the default hierarchy refuses rename(2) of a cgroup (the host series'
// rename without cgroup_mutex is for its own lwcg mounts); rewriting the
// path in a copy of config.json would need a copy of the bundle the
// runtime records as the container's, which containerd does not expect.
// On a cgroup2 host use the kernel pool, which serves the runtime's own
// mkdir.
//
// Killed at any point: before the claim nothing is taken; during it, the
// claim's own crash safety; after it and before the hand-over, a claim
// whose owner (this process) is gone, which `lcgroupctl gc` releases.
#pragma once

#include <string>
#include <vector>

#include "cgroup/backend.h"

namespace rundkit {

// The runtime's command line as containerd's shim writes it.
struct OciInvocation {
  std::string command; // create, run, start, delete, state, ... ("" if none)
  std::string bundle;  // create/run: --bundle, or the working directory
  std::string id;      // create/run: the container id
  bool systemd_cgroup = false;
};

// InputError only for what no runtime would accept either (no arguments).
OciInvocation parse_oci_args(const std::vector<std::string> &args);

// For a create or run: claims the container's cgroup from the pool and
// hands it over, as above.  Returns what it did, for the log: empty when
// it left the command alone.  Never throws: a failure is a log line.
std::string serve_pooled_cgroup(Backend &backend, const OciInvocation &inv);

// Execs `runtime` with `args`; returns only by throwing (the runtime
// cannot run).
[[noreturn]] void exec_runtime(const std::string &runtime, const std::vector<std::string> &args);

} // namespace rundkit
