// What every backend shares: the claim / release / gc protocol around the
// state directory.  Backends only say where a claim's cgroups come from.
#include "cgroup/backend.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cgroup/held_child.h"
#include "cgroup/parked.h"
#include "cgroup/names.h"
#include "util/error.h"
#include "util/fd.h"

namespace rundkit {

namespace {

// The part of `want` that a cgroup which already has `has` still needs.
Limits still_needed(const Limits &want, const Limits &has) {
  Limits out = want;
  if (out.cpus == has.cpus)
    out.cpus.reset();
  if (out.memory_bytes == has.memory_bytes)
    out.memory_bytes.reset();
  if (out.pids == has.pids)
    out.pids.reset();
  if (out.devices == has.devices)
    out.devices.reset();
  return out;
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
  for (const auto &t : trees_) {
    for (const auto &made : cgfs::make_all(t->path(parent)))
      t->prepare(made);
    t->enable_for_children(parent);
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
  if (l.cpus)
    wanted.push_back("cpu");
  if (l.memory_bytes)
    wanted.push_back("memory");
  if (l.pids)
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
    } else if (is_pool_entry(p)) {
      cg = Cgroup::open(p); // lcgroupctl's reserved names: nobody else's
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
  // Never adopt (and later tear down) a cgroup someone else made.
  for (const auto &t : trees_)
    if (cgfs::exists(t->path(cgfs::join(rec.parent, rec.name))))
      throw Error("mkdir", t->path(cgfs::join(rec.parent, rec.name)), EEXIST);

  state_.create_claim(rec); // from here on gc can find and undo everything
  try {
    Acquired got = acquire(rec, pool);
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
    // A pool entry was made with its limits: write only what differs, and
    // record what the cgroup really has.
    Limits todo = rec.limits;
    if (got.has) {
      todo = still_needed(rec.limits, *got.has);
      rec.limits = Limits::merge(*got.has, rec.limits);
    }
    for (size_t i = 0; i < trees_.size(); ++i)
      trees_[i]->apply(rec.paths[i], todo);
    if (!req.command.empty() || req.placeholder)
      start_process(req, rec, got.parked);
    else if (got.parked)
      stop_parked(rec);
    rec.phase = "claimed";
    state_.update_claim(rec);
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
  state_.update_claim(*rec);
  return teardown(*rec);
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
    std::optional<ClaimRecord> rec;
    try {
      rec = state_.read_claim(name);
    } catch (const Error &e) {
      report.skipped.push_back(e.what());
      continue;
    }
    if (!rec)
      continue; // released meanwhile
    if (rec->backend != name_) {
      report.skipped.push_back(
          fmt::format("claim '{}': belongs to the {} backend", name, rec->backend));
      continue;
    }
    std::string why;
    if (rec->phase != "claimed") {
      if (rec->actor.alive(cfg_.proc_root))
        continue; // work in progress
      why = fmt::format("{} interrupted (pid {} gone)", rec->phase, rec->actor.pid);
    } else if (auto gone = replaced_or_gone(*rec); !gone.empty()) {
      why = gone;
    } else if (rec->owner && !rec->owner->alive(cfg_.proc_root)) {
      why = fmt::format("owner pid {} is gone", rec->owner->pid);
    } else {
      continue;
    }
    for (auto &note : teardown(*rec))
      report.skipped.push_back(fmt::format("claim '{}': {}", name, note));
    report.actions.push_back(fmt::format("removed claim '{}': {}", name, why));
  }
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
    if (present)
      gc_pool(parent, report);
    else
      report.skipped.push_back(fmt::format("pool '{}': parent cgroup missing", parent));
  }
  return report;
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
  return {{"removed", r.actions}, {"skipped", r.skipped}};
}

} // namespace rundkit
