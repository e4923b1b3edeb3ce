// lcgroupctl's library: pools of sandbox cgroups behind one interface, one
// backend per kernel flavour, picked once at start-up.
//
//   v1           stock cgroup v1, one hierarchy per controller: a userspace
//                pool in every hierarchy, claimed by same-parent rename(2)
//   v2           stock cgroup2 (no rename): a userspace pool of pre-made
//                cgroups handed out as they are, NAME -> directory kept in
//                the state directory
//   kernel-pool  a rundkit kernel with `lwcg`: the in-kernel pool behind
//                cgroup.pool; a claim is mkdir(2) (v1 or cgroup2)
//
// Every cgroup a claim hands out has all its limits, its device policy and
// (when asked) its process in place before the claim record says
// "claimed"; every step before that is undone on failure or by gc.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rundkit/cgroup_fs.h"
#include "rundkit/cgroup_layout.h"
#include "rundkit/cgroup_limits.h"
#include "rundkit/cgroup_state.h"
#include "rundkit/proc.h"

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
  // Writes the limits this tree enforces; others are ignored.
  virtual void apply(const std::string &cg, const Limits &l) const = 0;
  // Moves `pid` in (v1).  A v2 tree takes its process at clone time.
  virtual void enter(const std::string &cg, pid_t pid) const;
  // Kills every process inside and waits until the cgroup is empty.
  virtual void kill_all(const std::string &cg) const = 0;

private:
  Hierarchy h_;
};

std::unique_ptr<Tree> make_v1_tree(const Hierarchy &h);
std::unique_ptr<Tree> make_v2_tree(const Hierarchy &h);

struct Config {
  LayoutSources layout;
  std::string state_dir = "/run/lcgroupctl";
  std::string proc_root = "/proc";
  std::string backend = "auto"; // auto | v1 | v2 | kernel-pool
};

struct ClaimRequest {
  std::string parent;
  std::string name;
  Limits limits;
  std::vector<std::string> command; // started inside, if not empty
  std::optional<std::string> output; // command's stdout+stderr; nothing: inherit
  bool placeholder = false;         // start a sleeping process (benchmarks)
  std::optional<ProcessId> owner;   // gc releases the claim once it is gone
};

struct PoolStatus {
  std::string backend;
  std::string parent;
  size_t target = 0;
  size_t available = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  Limits defaults;
};

struct GcReport {
  std::vector<std::string> actions; // one line per thing removed
  std::vector<std::string> skipped; // kept, and why
};

using Progress = std::function<void(const std::string &)>;

class Backend {
public:
  Backend(std::string name, std::vector<std::unique_ptr<Tree>> trees, const Config &cfg);
  virtual ~Backend() = default;

  const std::string &name() const { return name_; }
  const std::vector<std::unique_ptr<Tree>> &trees() const { return trees_; }
  StateDir &state() { return state_; }
  const StateDir &state() const { return state_; }

  // mkdir -p PARENT in every hierarchy; on cgroup2 also enables the cpu,
  // memory and pids controllers down to it where the hierarchy has them.
  void create_parent(const std::string &parent);
  // rmdir PARENT in every hierarchy, after draining its pool.
  void remove_parent(const std::string &parent);
  // Throws Error naming the first hierarchy where PARENT is missing.
  void require_parent(const std::string &parent) const;

  // Makes the pool hold `size` entries, each made with `defaults`.  With
  // `park`, every entry also gets a parked process (rundkit/parked.h)
  // that a claim's command is exec'd in, so the command needs no
  // migration (v1) or CLONE_INTO_CGROUP (cgroup2) on the start-up path.
  virtual void fill(const std::string &parent, size_t size, const Limits &defaults, bool park,
                    const Progress &progress) = 0;
  virtual PoolStatus status(const std::string &parent) = 0;
  virtual void drain(const std::string &parent, const Progress &progress) = 0;

  ClaimRecord claim(const ClaimRequest &req);
  void release(const std::string &name);
  GcReport gc(const std::vector<std::string> &parents);

  // Refuses limits no hierarchy can enforce, before anything changes.
  void check_enforceable(const std::string &parent, const Limits &l) const;
  virtual nlohmann::json describe() const;

protected:
  // What acquire() hands a claim.
  struct Acquired {
    std::vector<std::string> paths;  // one per tree, same order as trees()
    std::optional<Limits> has;       // limits already in place (a pool entry)
    std::optional<ProcessId> parked; // a parked process inside
  };
  // Hands out the claim's cgroups, from the pool or created directly;
  // sets rec.hit / rec.pool_id.  `pool` is the pool's record as the claim
  // read it (nothing if none), so no backend reads it again.
  virtual Acquired acquire(ClaimRecord &rec, const std::optional<PoolConfig> &pool) = 0;
  // Every directory a claim may own, including pool-entry leftovers.
  virtual std::vector<std::string> claim_paths(const ClaimRecord &rec) const;
  virtual void gc_pool(const std::string &parent, GcReport &report) {
    (void)parent;
    (void)report;
  }
  // mkdir PARENT/NAME in every tree (the direct way, and a pool miss).
  std::vector<std::string> create_direct(const ClaimRecord &rec);
  // Kills what runs in `paths` and removes them; missing ones are skipped.
  void destroy(const std::vector<std::string> &paths) const;
  const Tree &tree_of(const std::string &path) const;
  PoolRef pool_ref(const std::string &parent) const { return PoolRef{name_, parent}; }
  const Config &config() const { return cfg_; }

private:
  void start_process(const ClaimRequest &req, ClaimRecord &rec,
                     const std::optional<ProcessId> &parked);
  // A parked process nobody asked for: killed, and waited for.
  void stop_parked(const ClaimRecord &rec);
  void teardown(const ClaimRecord &rec);

  std::string name_;
  std::vector<std::unique_ptr<Tree>> trees_;
  Config cfg_;
  StateDir state_;
};

// The backend this machine calls for: kernel-pool where the hierarchies
// carry lwcg, else v1 when cpu, memory or pids is bound to v1, else v2.
std::string pick_backend(const Layout &layout);
std::unique_ptr<Backend> make_backend(const Config &cfg, const Layout &layout);
std::unique_ptr<Backend> make_v1_backend(const Config &cfg, const Layout &layout);
std::unique_ptr<Backend> make_v2_backend(const Config &cfg, const Layout &layout);
std::unique_ptr<Backend> make_kernel_pool_backend(const Config &cfg, const Layout &layout);

// What `lcgroupctl info` shows: kernel, features, every hierarchy, the
// backend this machine gets and the hierarchies it uses.
nlohmann::json host_info(const Config &cfg);

nlohmann::json to_json(const PoolStatus &s);
nlohmann::json to_json(const GcReport &r);

// Throws Error unless running as root (every command that changes state).
void require_root(const std::string &what);

} // namespace rundkit
