// Pools of sandbox cgroups behind one interface, one backend per kernel
// flavour, picked once at start-up.
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
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "cgroup/layout.h"
#include "cgroup/limits.h"
#include "cgroup/state.h"
#include "cgroup/tree.h"
#include "util/proc.h"

namespace rundkit {

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
  std::vector<std::string> failed;  // could not be cleaned (gc exits 1), and why
};

// The most entries a userspace pool keeps (cgroups: this times the
// hierarchies): RunD's densest node ran 2,500 sandboxes.
inline constexpr size_t kMaxPoolSize = 4096;

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
  // `park`, every entry also gets a parked process (cgroup/parked.h)
  // that a claim's command is exec'd in, so the command needs no
  // migration (v1) or CLONE_INTO_CGROUP (cgroup2) on the start-up path.
  virtual void fill(const std::string &parent, size_t size, const Limits &defaults, bool park,
                    const Progress &progress) = 0;
  virtual PoolStatus status(const std::string &parent) = 0;
  virtual void drain(const std::string &parent, const Progress &progress) = 0;

  ClaimRecord claim(const ClaimRequest &req);
  // Returns what it left alone and why (a cgroup that is no longer the
  // claim's: removed by someone else and the name taken again).
  std::vector<std::string> release(const std::string &name);
  // Releases PARENT/NAME from the cgroups alone, whatever the record says
  // (lost, corrupt): kills what runs inside, removes the cgroups and any
  // record of NAME.
  std::vector<std::string> force_release(const std::string &parent, const std::string &name);
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
  // Counts a claim that succeeded as a hit or a miss (userspace pools).
  virtual void count_outcome(const ClaimRecord &rec) { (void)rec; }
  // mkdir PARENT/NAME in every tree (the direct way, and a pool miss).
  std::vector<std::string> create_direct(const ClaimRecord &rec);
  // Kills what runs in `paths` and removes them; missing ones are skipped.
  // For lcgroupctl's own reserved names only (pool entries, parents).
  void destroy(const std::vector<std::string> &paths) const;
  void destroy(const std::vector<Cgroup> &cgroups) const;
  const Tree &tree_of(const std::string &path) const;
  PoolRef pool_ref(const std::string &parent) const { return PoolRef{name_, parent}; }
  const Config &config() const { return cfg_; }

private:
  void start_process(const ClaimRequest &req, ClaimRecord &rec,
                     const std::optional<ProcessId> &parked);
  // A parked process nobody asked for: killed, and waited for.
  void stop_parked(const ClaimRecord &rec);
  // Destroys the claim's own cgroups (by the ids it recorded) and its
  // record; returns what it left alone and why.
  std::vector<std::string> teardown(const ClaimRecord &rec);
  std::vector<std::string> destroy_claim(const ClaimRecord &rec) const;
  // Why a claimed record no longer has its cgroups; "" if it has.
  std::string replaced_or_gone(const ClaimRecord &rec) const;
  void gc_claim(const std::string &name, GcReport &report);
  void gc_parents(const std::vector<std::string> &parents, GcReport &report);
  void report_unknown_children(const std::string &parent, GcReport &report) const;

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

nlohmann::json to_json(const PoolStatus &s);
nlohmann::json to_json(const GcReport &r);

} // namespace rundkit
