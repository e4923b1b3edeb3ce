// What every backend shares: the claim / release / gc protocol around the
// state directory.  Backends only say where a claim's cgroups come from.
#include "cgroup/backend.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cgroup/held_child.h"
#include "cgroup/names.h"
#include "cgroup/parked.h"
#include "util/process.h"
#include "util/error.h"
#include "util/fd.h"

namespace rundkit {

namespace {

// What a cgroup that already has `has` (a pool entry, made with the
// pool's defaults of its day) needs written to end with exactly `want`:
// what differs, and "max" or no device policy where the entry limits
// something `want` does not.
Limits still_needed(const Limits &want, const Limits &has) {
  Limits out;
  auto field = [](auto &todo, const auto &w, const auto &h, auto unlimited) {
    auto target = w ? *w : unlimited;
    if (target != (h ? *h : unlimited))
      todo = target;
  };
  field(out.cpus, want.cpus, has.cpus, kCpusMax);
  field(out.memory_bytes, want.memory_bytes, has.memory_bytes, kMemoryMax);
  field(out.pids, want.pids, has.pids, kPidsMax);
  field(out.devices, want.devices, has.devices, DevicePolicy::kInherit);
  return out;
}

// An --output file is opened by the started process; open it here first,
// so that a bad path is reported as such before anything is made.
void check_output(const std::optional<std::string> &output) {
  if (!output)
    return;
  int fd = ::open(output->c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0)
    throw InputError(fmt::format("cannot open --output '{}': {}", *output, std::strerror(errno)));
  ::close(fd);
}

} // namespace

Backend::Backend(std::string name, std::vector<std::unique_ptr<Tree>> trees, const Config &cfg)
    : name_(std::move(name)), trees_(std::move(trees)), cfg_(cfg), state_(cfg.state_dir) {}

void Backend::require_parent(const std::string &parent) const {
  for (const auto &t : trees_)
    if (!cgfs::exists(t->path(parent)))
      throw Error(fmt::format("parent cgroup '{}' does not exist: no directory '{}' "
                              "(create it with: lcgroupctl parent create {})",
                              parent, t->path(parent), parent));
}

void Backend::create_parent(const std::string &raw) {
  std::string parent = normalize_parent(raw);
  // Checked in every tree before anything is made: a component that is a
  // control file (P/tasks, P/cpu.shares) is no parent in any of them.
  for (const auto &t : trees_) {
    std::string dir = t->hierarchy().mount_point;
    for (const auto &part : path_components(parent)) {
      dir = cgfs::join(dir, part);
      struct stat st;
      if (::lstat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
        throw InputError(fmt::format("invalid parent '{}': '{}' is a control file, not a cgroup",
                                     parent, dir));
    }
  }
  std::vector<std::string> made;
  try {
    for (const auto &t : trees_) {
      for (const auto &dir : cgfs::make_all(t->path(parent))) {
        made.push_back(dir);
        t->prepare(dir);
      }
      t->enable_for_children(parent);
    }
  } catch (...) {
    // Undo what this call made, innermost first; what existed stays.
    for (auto it = made.rbegin(); it != made.rend(); ++it)
      ::rmdir(it->c_str());
    throw;
  }
}

void Backend::remove_parent(const std::string &raw) {
  std::string parent = normalize_parent(raw);
  require_parent(parent);
  drain(parent, {});
  for (const auto &t : trees_)
    cgfs::remove(t->path(parent));
  state_.remove_pool(pool_ref(parent));
}

void Backend::check_enforceable(const std::string &parent, const Limits &l) const {
  std::vector<std::string> wanted;
  // "max" needs no controller: nothing to enforce.
  if (l.limits_cpus())
    wanted.push_back("cpu");
  if (l.limits_memory())
    wanted.push_back("memory");
  if (l.limits_pids())
    wanted.push_back("pids");
  if (l.devices && *l.devices != DevicePolicy::kInherit)
    wanted.push_back("devices");
  if (wanted.empty())
    return;
  std::set<std::string> can;
  for (const auto &t : trees_)
    can.merge(t->enforceable(parent));
  for (const auto &w : wanted) {
    if (can.count(w))
      continue;
    std::string why;
    for (const auto &t : trees_) {
      std::string one = t->why_not(parent, w);
      if (!one.empty())
        why += (why.empty() ? "" : "; ") + one;
    }
    if (why.empty())
      why = fmt::format("no hierarchy of this backend has the {} controller", w);
    throw Error(fmt::format("cannot enforce the {} limit under '{}' with the {} backend: {}", w,
                            parent, name_, why));
  }
}

nlohmann::json Backend::describe() const {
  nlohmann::json trees = nlohmann::json::array();
  for (const auto &t : trees_)
    trees.push_back(to_json(t->hierarchy()));
  return {{"backend", name_}, {"hierarchies", trees}, {"state_dir", state_.root()}};
}

const Tree &Backend::tree_of(const std::string &path) const {
  for (const auto &t : trees_) {
    const std::string &mp = t->hierarchy().mount_point;
    if (path.size() > mp.size() && path.compare(0, mp.size(), mp) == 0 && path[mp.size()] == '/')
      return *t;
  }
  throw Error(fmt::format("'{}' is in none of the {} backend's hierarchies", path, name_));
}

std::vector<std::string> Backend::create_direct(const ClaimRecord &rec) {
  std::vector<std::string> paths;
  for (const auto &t : trees_) {
    std::string p = t->path(cgfs::join(rec.parent, rec.name));
    cgfs::make(p);
    t->prepare(p);
    paths.push_back(p);
  }
  return paths;
}

std::vector<std::string> Backend::claim_paths(const ClaimRecord &rec) const {
  std::vector<std::string> out = rec.paths;
  for (const auto &t : trees_) {
    std::string p = t->path(cgfs::join(rec.parent, rec.name));
    if (std::find(out.begin(), out.end(), p) == out.end())
      out.push_back(p);
  }
  return out;
}

void Backend::destroy(const std::vector<std::string> &paths) const {
  std::vector<Cgroup> held;
  for (const auto &p : paths)
    if (auto cg = Cgroup::open(p))
      held.push_back(std::move(*cg));
  destroy(held);
}

void Backend::destroy(const std::vector<Cgroup> &cgroups) const {
  // Kill everywhere first: on v1 the same tasks sit in every hierarchy.
  for (const auto &cg : cgroups)
    tree_of(cg.path()).kill_all(cg);
  for (const auto &cg : cgroups)
    cg.remove();
}

std::vector<std::string> Backend::destroy_claim(const ClaimRecord &rec) const {
  auto is_pool_entry = [](const std::string &path) {
    return path.substr(path.rfind('/') + 1).rfind(kReservedPrefix, 0) == 0;
  };
  std::vector<Cgroup> held;
  std::vector<std::string> left;
  bool took_entry = !rec.pool_id.empty() || state_.read_take(rec.name).has_value();
  for (const auto &p : claim_paths(rec)) {
    auto it = std::find(rec.paths.begin(), rec.paths.end(), p);
    size_t i = static_cast<size_t>(it - rec.paths.begin());
    std::optional<Cgroup> cg;
    if (i < rec.ids.size()) {
      cg = Cgroup::open_if_same(p, rec.ids[i]);
      if (!cg && cgroup_id(p))
        left.push_back(fmt::format("'{}' is another cgroup than the claim's (id {} now {}): "
                                   "left alone",
                                   p, rec.ids[i], *cgroup_id(p)));
    } else if (rec.ids.empty() && rec.phase != "claiming") {
      cg = Cgroup::open(p); // a record from before ids were kept
    } else if (is_pool_entry(p) || took_entry) {
      // lcgroupctl's reserved names, or a pool entry this claim took and
      // renamed to NAME (it may hold the entry's parked process): ours.
      cg = Cgroup::open(p);
    } else if ((cg = Cgroup::open(p)) && !cg->procs().empty()) {
      // A claim killed between its mkdir and recording the id: the name
      // was free when it started, and its own cgroup holds no task yet.
      left.push_back(fmt::format("'{}' holds tasks but the claim never recorded its id: "
                                 "left alone",
                                 p));
      cg.reset();
    }
    if (cg)
      held.push_back(std::move(*cg));
  }
  destroy(held);
  return left;
}

void Backend::start_process(const ClaimRequest &req, ClaimRecord &rec,
                            const std::optional<ProcessId> &parked) {
  if (parked && parked->alive(cfg_.proc_root)) {
    if (req.command.empty()) {
      rec.pid = parked->pid; // a placeholder: the parked process is one
      return;
    }
    if (auto pid = exec_in_parked(*parked, req.command, req.output, cfg_.proc_root)) {
      rec.pid = *pid;
      return;
    }
    // It died meanwhile (killed, OOM): start the command the direct way.
  }
  // Born inside the one tree that can clone into a cgroup, moved into the
  // others while it waits at its gate.
  std::optional<Fd> into;
  size_t born_in = trees_.size();
  for (size_t i = 0; i < trees_.size() && !into; ++i)
    if ((into = trees_[i]->clone_target(rec.paths[i])))
      born_in = i;
  HeldChild child = spawn_held(req.command, into ? &*into : nullptr, req.output);
  for (size_t i = 0; i < trees_.size(); ++i)
    if (i != born_in)
      trees_[i]->enter(rec.paths[i], child.pid());
  child.start();
  rec.pid = child.detach();
}

void Backend::stop_parked(const ClaimRecord &rec) {
  for (size_t i = 0; i < trees_.size(); ++i)
    if (auto cg = Cgroup::open_if_same(rec.paths[i], rec.ids.at(i)))
      trees_[i]->kill_all(*cg);
}

ClaimRecord Backend::claim(const ClaimRequest &req) {
  validate_name(req.name);
  ClaimRecord rec;
  rec.name = req.name;
  rec.parent = normalize_parent(req.parent);
  rec.backend = name_;
  rec.actor = ProcessId::self(cfg_.proc_root);
  rec.owner = req.owner;
  require_parent(rec.parent);
  auto pool = state_.read_pool(pool_ref(rec.parent));
  rec.limits = pool ? Limits::merge(pool->defaults, req.limits) : req.limits;
  check_enforceable(rec.parent, rec.limits);
  if (auto other = state_.read_claim(rec.name))
    throw Error(fmt::format("claim '{}' already exists under '{}' (release it first)", rec.name,
                            other->parent));
  // Never adopt (and later tear down) a cgroup someone else made; a
  // control file of that name is no place for a sandbox either.
  for (const auto &t : trees_) {
    std::string p = t->path(cgfs::join(rec.parent, rec.name));
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0)
      throw InputError(
          S_ISDIR(st.st_mode)
              ? fmt::format("cannot claim '{}': the cgroup '{}' exists and is not a claim of this "
                            "state directory ({})",
                            rec.name, p, state_.root())
              : fmt::format("invalid name '{}': '{}' is a control file of the parent", rec.name,
                            p));
  }

  // A command that cannot run is refused before a cgroup is taken: a
  // kernel pool counts its hit at mkdir, whatever happens after.
  if (!req.command.empty())
    find_executable(req.command[0]);
  check_output(req.output); // last: it may create the file
  state_.create_claim(rec); // from here on gc can find and undo everything
  try {
    Acquired got = acquire(rec, pool);
    if (got.has && got.has->devices == DevicePolicy::kOciDefault &&
        rec.limits.devices != DevicePolicy::kOciDefault &&
        std::any_of(trees_.begin(), trees_.end(),
                    [](const auto &t) { return !t->can_clear_device_policy(); })) {
      // An entry whose device policy cannot be taken off: not this
      // claim's; made directly instead (a miss).
      destroy(got.paths);
      got = Acquired{create_direct(rec), {}, {}};
      rec.hit = false;
    }
    rec.paths = got.paths;
    // Recorded before anything else happens to them: from here on release
    // and gc act on these cgroups only, whoever takes the name later.
    for (const auto &p : rec.paths) {
      auto id = cgroup_id(p);
      if (!id)
        throw Error("stat", p, ENOENT);
      rec.ids.push_back(*id);
    }
    state_.update_claim(rec);
    // A pool entry was made with the defaults of its day: write what
    // differs, so the claim ends with exactly the limits it asked for.
    Limits todo = rec.limits;
    if (got.has) {
      todo = still_needed(rec.limits, *got.has);
      rec.limits = Limits::merge(rec.limits, todo);
    }
    for (size_t i = 0; i < trees_.size(); ++i)
      trees_[i]->apply(rec.paths[i], todo);
    if (!req.command.empty() || req.placeholder)
      start_process(req, rec, got.parked);
    else if (got.parked)
      stop_parked(rec);
    rec.phase = "claimed";
    state_.update_claim(rec);
    count_outcome(rec); // only claims that succeeded count as hits or misses
  } catch (...) {
    try {
      teardown(rec);
    } catch (const std::exception &) {
      // The record stays behind: gc finishes the teardown once we exit.
    }
    throw;
  }
  return rec;
}

std::vector<std::string> Backend::teardown(const ClaimRecord &rec) {
  auto left = destroy_claim(rec);
  state_.remove_claim(rec.name);
  return left;
}

std::vector<std::string> Backend::release(const std::string &name) {
  validate_name(name);
  // Serialised per name with other releases and gc: the record is read
  // under the lock, so a release that was slowed down never tears down a
  // newer claim from what it read before.
  auto held = state_.lock("claim:" + name);
  auto rec = state_.read_claim(name);
  if (!rec)
    throw Error(fmt::format("no claim named '{}' in {}/claims", name, state_.root()));
  if (rec->backend != name_)
    throw Error(fmt::format("claim '{}' belongs to the {} backend, not {} (use --backend {})",
                            name, rec->backend, name_, rec->backend));
  if (rec->phase == "claiming" && rec->actor.alive(cfg_.proc_root))
    throw Error(fmt::format("claim '{}' is still being set up by pid {}", name, rec->actor.pid));
  // Marked first, so that a release killed half-way is finished by gc
  // instead of leaving a claimed record over a half-removed cgroup.
  rec->phase = "releasing";
  rec->actor = ProcessId::self(cfg_.proc_root);
  std::vector<std::string> notes;
  try {
    state_.update_claim(*rec);
  } catch (const Error &e) {
    // A full state directory must not stop a release, which frees space.
    // Killed from here on, the record still says claimed: gc then finds
    // its cgroup gone and finishes.
    if (e.err() != ENOSPC && e.err() != EDQUOT)
      throw;
    notes.push_back(fmt::format("could not mark the claim releasing ({}): released anyway",
                                e.what()));
  }
  for (auto &n : teardown(*rec))
    notes.push_back(std::move(n));
  return notes;
}

std::vector<std::string> Backend::force_release(const std::string &raw_parent,
                                                const std::string &name) {
  validate_name(name);
  std::string parent = normalize_parent(raw_parent);
  auto held = state_.lock("claim:" + name);
  std::vector<std::string> notes;
  std::vector<std::string> paths;
  for (const auto &t : trees_)
    paths.push_back(t->path(cgfs::join(parent, name)));
  // The record may be corrupt or lost: it is not read, only removed.
  try {
    if (auto rec = state_.read_claim(name); rec && rec->parent != parent)
      throw InputError(fmt::format("claim '{}' is under '{}', not '{}'", name, rec->parent,
                                   parent));
  } catch (const InputError &) {
    throw;
  } catch (const Error &e) {
    notes.push_back(fmt::format("record unreadable, removed: {}", e.what()));
  }
  destroy(paths);
  state_.remove_claim(name);
  return notes;
}

std::string Backend::replaced_or_gone(const ClaimRecord &rec) const {
  for (size_t i = 0; i < rec.paths.size(); ++i) {
    auto id = cgroup_id(rec.paths[i]);
    if (!id)
      return "its cgroup is gone";
    if (i < rec.ids.size() && *id != rec.ids[i])
      return fmt::format("its cgroup '{}' was removed and the name taken by another",
                         rec.paths[i]);
  }
  return "";
}

GcReport Backend::gc(const std::vector<std::string> &parents) {
  GcReport report;
  for (const auto &name : state_.claim_names()) {
    try {
      gc_claim(name, report);
    } catch (const std::exception &e) {
      // One bad record never stops gc from cleaning the rest.
      report.failed.push_back(fmt::format("claim '{}': {}", name, e.what()));
    }
  }
  for (const auto &path : state_.gc_staging(cfg_.proc_root))
    report.actions.push_back(fmt::format("removed staged file '{}' of a killed writer", path));
  gc_parents(parents, report);
  return report;
}

void Backend::gc_claim(const std::string &name, GcReport &report) {
  auto held = state_.lock("claim:" + name);
  {
    std::optional<ClaimRecord> rec;
    try {
      rec = state_.read_claim(name);
    } catch (const Error &e) {
      report.skipped.push_back(fmt::format("{} (lcgroupctl release --force PARENT {} removes it)",
                                           e.what(), name));
      return;
    }
    if (!rec)
      return; // released meanwhile
    if (rec->backend != name_) {
      report.skipped.push_back(
          fmt::format("claim '{}': belongs to the {} backend", name, rec->backend));
      return;
    }
    std::string why;
    if (rec->phase != "claimed") {
      if (rec->actor.alive(cfg_.proc_root))
        return; // work in progress
      why = fmt::format("{} interrupted (pid {} gone)", rec->phase, rec->actor.pid);
    } else if (auto gone = replaced_or_gone(*rec); !gone.empty()) {
      why = gone;
    } else if (rec->owner && !rec->owner->alive(cfg_.proc_root)) {
      why = fmt::format("owner pid {} is gone", rec->owner->pid);
    } else {
      return;
    }
    for (auto &note : teardown(*rec))
      report.skipped.push_back(fmt::format("claim '{}': {}", name, note));
    report.actions.push_back(fmt::format("removed claim '{}': {}", name, why));
  }
}

void Backend::gc_parents(const std::vector<std::string> &parents, GcReport &report) {
  std::set<std::string> scan;
  for (const auto &p : parents)
    scan.insert(normalize_parent(p));
  for (const auto &ref : state_.pools())
    if (ref.backend == name_)
      scan.insert(ref.parent);
  for (const auto &parent : scan) {
    bool present = std::all_of(trees_.begin(), trees_.end(), [&](const auto &t) {
      return cgfs::exists(t->path(parent));
    });
    if (!present) {
      report.skipped.push_back(fmt::format("pool '{}': parent cgroup missing", parent));
      continue;
    }
    try {
      gc_pool(parent, report);
      report_unknown_children(parent, report);
    } catch (const std::exception &e) {
      report.failed.push_back(fmt::format("pool '{}': {}", parent, e.what()));
    }
  }
}

void Backend::report_unknown_children(const std::string &parent, GcReport &report) const {
  // Children of PARENT that no record of this state directory names: a
  // lost state directory leaks them silently otherwise.
  std::set<std::string> known;
  for (const auto &name : state_.claim_names()) {
    known.insert(name);
    try {
      if (auto rec = state_.read_claim(name))
        for (const auto &p : rec->paths)
          known.insert(p.substr(p.rfind('/') + 1));
    } catch (const Error &) {
      // Reported by gc_claim.
    }
  }
  std::set<std::string> unknown;
  for (const auto &t : trees_)
    for (const auto &child : cgfs::children(t->path(parent)))
      if (!known.count(child) && child.rfind(kReservedPrefix, 0) != 0)
        unknown.insert(child);
  for (const auto &child : unknown)
    report.skipped.push_back(fmt::format(
        "cgroup '{}/{}': no claim of {} names it (if it is a lost claim: lcgroupctl release "
        "--force {} {})",
        parent, child, state_.root(), parent, child));
}

std::string pick_backend(const Layout &layout) {
  if (layout.limits_on_v1()) {
    auto v1 = layout.v1_limit_hierarchies();
    bool all_lwcg = std::all_of(v1.begin(), v1.end(), [](auto *h) { return h->lwcg(); });
    return layout.kernel_lwcg && all_lwcg ? "kernel-pool" : "v1";
  }
  if (auto *v2 = layout.v2())
    return layout.kernel_lwcg && v2->lwcg() ? "kernel-pool" : "v2";
  throw Error("no cgroup hierarchy is mounted (nothing of type cgroup or cgroup2 in mountinfo)");
}

std::unique_ptr<Backend> make_backend(const Config &cfg, const Layout &layout) {
  std::string kind = cfg.backend == "auto" ? pick_backend(layout) : cfg.backend;
  if (kind == "v1")
    return make_v1_backend(cfg, layout);
  if (kind == "v2")
    return make_v2_backend(cfg, layout);
  if (kind == "kernel-pool")
    return make_kernel_pool_backend(cfg, layout);
  throw InputError(
      fmt::format("unknown backend '{}': expected auto, v1, v2 or kernel-pool", cfg.backend));
}

nlohmann::json to_json(const PoolStatus &s) {
  return {{"backend", s.backend}, {"parent", s.parent},       {"target", s.target},
          {"available", s.available}, {"hits", s.hits}, {"misses", s.misses},
          {"defaults", to_json(s.defaults)}};
}

nlohmann::json to_json(const GcReport &r) {
  return {{"removed", r.actions}, {"skipped", r.skipped}, {"failed", r.failed}};
}

} // namespace rundkit
