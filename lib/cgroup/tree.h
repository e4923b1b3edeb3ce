// One mounted cgroup hierarchy seen through its flavour: what differs
// between cgroup v1 and cgroup2 when a sandbox cgroup is made, limited,
// entered and emptied.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "cgroup/fs.h"
#include "cgroup/layout.h"
#include "cgroup/limits.h"
#include "util/fd.h"

namespace rundkit {

// One mounted hierarchy and what its flavour (v1 or v2) knows about files.
class Tree {
public:
  explicit Tree(Hierarchy h) : h_(std::move(h)) {}
  virtual ~Tree() = default;
  Tree(const Tree &) = delete;
  Tree &operator=(const Tree &) = delete;

  const Hierarchy &hierarchy() const { return h_; }
  int version() const { return h_.version; }
  std::string path(const std::string &rel) const { return cgfs::join(h_.mount_point, rel); }

  // Which of "cpu", "memory", "pids", "devices" this tree enforces for
  // children of `parent`.
  virtual std::set<std::string> enforceable(const std::string &parent) const = 0;
  // Why it cannot enforce `what` (for the error message).
  virtual std::string why_not(const std::string &parent, const std::string &what) const = 0;
  // Right after mkdir, before any process may enter (v1 cpuset needs its
  // cpus and mems).
  virtual void prepare(const std::string &cg) const { (void)cg; }
  // Makes the controllers this tree enforces available to children of
  // `parent` (cgroup2 delegates them down every level; v1 has nothing to
  // delegate).
  virtual void enable_for_children(const std::string &parent) const { (void)parent; }
  // The cgroup a new process is created in by CLONE_INTO_CGROUP (cgroup2),
  // or nothing when it has to enter() after it exists (v1).
  virtual std::optional<Fd> clone_target(const std::string &cg) const {
    (void)cg;
    return std::nullopt;
  }
  // Whether a device policy set on a parent also polices children made
  // before it (cgroup2: a BPF program of an ancestor runs for every
  // descendant; v1 copies the parent's list once, at the child's mkdir).
  virtual bool children_inherit_device_policy() const = 0;
  // Whether apply() of DevicePolicy::kInherit takes a policy off again
  // (v1: devices.allow "a"; cgroup2 would have to find and detach the
  // program, so a pool entry made with one is not handed to a claim
  // that wants none).
  virtual bool can_clear_device_policy() const { return true; }
  // Writes the limits this tree enforces; others are ignored.
  virtual void apply(const std::string &cg, const Limits &l) const = 0;
  // Moves the existing process `pid` in (cgroup.procs: the same on both
  // versions).  A child cloned into clone_target() needs no enter there.
  void enter(const std::string &cg, pid_t pid) const {
    cgfs::write(cg, cgfs::kProcs, std::to_string(pid));
  }
  // Kills every process inside and waits until the cgroup is empty.
  virtual void kill_all(const Cgroup &cg) const = 0;

private:
  Hierarchy h_;
};

std::unique_ptr<Tree> make_v1_tree(const Hierarchy &h);
std::unique_ptr<Tree> make_v2_tree(const Hierarchy &h);

} // namespace rundkit
