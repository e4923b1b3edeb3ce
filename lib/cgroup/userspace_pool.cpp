#include "cgroup/userspace_pool.h"

#include <algorithm>
#include <atomic>
#include <set>

#include <fmt/format.h>

#include "cgroup/names.h"
#include "cgroup/parked.h"

namespace rundkit {

std::string UserspacePool::entry_id(const std::string &child) {
  for (const char *prefix : {kTmpPrefix, kPoolPrefix}) {
    std::string p = prefix;
    if (child.size() > p.size() && child.compare(0, p.size(), p) == 0)
      return child.substr(p.size());
  }
  return "";
}

std::optional<ProcessId> UserspacePool::maker_of(const std::string &id) {
  unsigned long long pid = 0, start = 0, seq = 0;
  if (std::sscanf(id.c_str(), "%llu-%llu-%llu", &pid, &start, &seq) != 3)
    return std::nullopt;
  return ProcessId{static_cast<pid_t>(pid), start};
}

std::string UserspacePool::new_entry_id() {
  static std::atomic<unsigned long> seq{0};
  // Not cached: a forked child must not make entries in its parent's name.
  ProcessId self = ProcessId::self(config().proc_root);
  return fmt::format("{}-{}-{}", self.pid, self.start, seq++);
}

void UserspacePool::fill(const std::string &raw, size_t size, const Limits &defaults, bool park,
                         const Progress &progress) {
  std::string parent = normalize_parent(raw);
  require_parent(parent);
  check_enforceable(parent, defaults);
  PoolRef ref = pool_ref(parent);
  state().write_pool(ref, PoolConfig{parent, size, defaults});
  size_t have = state().tokens(ref).size();
  size_t need = size > have ? size - have : 0;
  for (size_t i = 0; i < need; ++i) {
    std::string id = new_entry_id();
    PoolEntry entry{id, defaults, std::nullopt};
    try {
      make_entry(parent, id, defaults);
      if (park)
        entry.parked = park_process([&](pid_t pid) {
          for (const auto &t : trees())
            t->enter(t->path(cgfs::join(parent, kPoolPrefix + id)), pid);
        });
    } catch (...) {
      try {
        destroy(entry_paths(parent, id));
      } catch (const std::exception &) {
        // gc removes it: the maker (us) will be gone by then.
      }
      throw;
    }
    state().publish_token(ref, entry);
    if (progress && (i + 1 == need || (i + 1) % 25 == 0))
      progress(fmt::format("pool {}: {}/{} entries made", parent, i + 1, need));
  }
}

PoolStatus UserspacePool::status(const std::string &raw) {
  std::string parent = normalize_parent(raw);
  require_parent(parent);
  PoolRef ref = pool_ref(parent);
  PoolStatus s;
  s.backend = name();
  s.parent = parent;
  if (auto cfg = state().read_pool(ref)) {
    s.target = cfg->target;
    s.defaults = cfg->defaults;
  }
  s.available = state().tokens(ref).size();
  s.hits = state().counter(ref, "hits");
  s.misses = state().counter(ref, "misses");
  return s;
}

void UserspacePool::drain(const std::string &raw, const Progress &progress) {
  std::string parent = normalize_parent(raw);
  require_parent(parent);
  PoolRef ref = pool_ref(parent);
  if (auto cfg = state().read_pool(ref)) {
    cfg->target = 0;
    state().write_pool(ref, *cfg);
  }
  auto ids = state().tokens(ref);
  size_t done = 0;
  for (const auto &id : ids) {
    if (state().withdraw_token(ref, id))
      destroy(entry_paths(parent, id));
    if (progress && (++done == ids.size() || done % 25 == 0))
      progress(fmt::format("pool {}: {}/{} entries removed", parent, done, ids.size()));
  }
}

Backend::Acquired UserspacePool::acquire(ClaimRecord &rec, const std::optional<PoolConfig> &) {
  PoolRef ref = pool_ref(rec.parent);
  if (auto entry = state().take_token(ref, rec.name)) {
    rec.hit = true;
    rec.pool_id = entry->id;
    state().count(ref, "hits");
    return {claim_entry(rec, entry->id), entry->limits, entry->parked};
  }
  // An empty pool is not an error: create directly and count the miss.
  state().count(ref, "misses");
  return {create_direct(rec), {}, {}};
}

std::vector<std::string> UserspacePool::claim_paths(const ClaimRecord &rec) const {
  auto out = Backend::claim_paths(rec);
  std::string id = rec.pool_id;
  if (id.empty()) {
    // The take is written before the record learns about it.
    if (auto take = state().read_take(rec.name))
      id = *take;
  }
  if (!id.empty())
    for (auto &p : entry_paths(rec.parent, id))
      if (std::find(out.begin(), out.end(), p) == out.end())
        out.push_back(p);
  return out;
}

void UserspacePool::gc_pool(const std::string &parent, GcReport &report) {
  PoolRef ref = pool_ref(parent);
  // Order matters: tokens, then directories, then takes.  An entry a
  // claimer takes while we look is then in the first or the last list.
  auto tokens = state().tokens(ref);
  std::set<std::string> published(tokens.begin(), tokens.end());
  for (const auto &id : tokens)
    if (!entry_whole(parent, id) && state().withdraw_token(ref, id)) {
      destroy(entry_paths(parent, id));
      report.actions.push_back(fmt::format("removed broken pool entry {} of '{}'", id, parent));
    }
  std::set<std::string> seen;
  for (const auto &t : trees())
    for (const auto &child : cgfs::children(t->path(parent)))
      if (auto id = entry_id(child); !id.empty())
        seen.insert(id);
  auto taken_list = state().taken_ids();
  std::set<std::string> taken(taken_list.begin(), taken_list.end());
  for (const auto &id : seen) {
    if (published.count(id) || taken.count(id))
      continue;
    auto maker = maker_of(id);
    if (maker && maker->alive(config().proc_root)) {
      report.skipped.push_back(
          fmt::format("pool entry {} of '{}': pid {} is making it", id, parent, maker->pid));
      continue;
    }
    destroy(entry_paths(parent, id));
    report.actions.push_back(fmt::format("removed half-made pool entry {} of '{}'", id, parent));
  }
}

} // namespace rundkit
