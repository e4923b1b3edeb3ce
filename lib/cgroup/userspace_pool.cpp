#include "cgroup/userspace_pool.h"

#include <algorithm>
#include <atomic>
#include <set>

#include <fmt/format.h>

#include "cgroup/names.h"
#include "cgroup/parked.h"
#include "util/error.h"

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

void UserspacePool::fill(const std::string &raw, size_t size, const Limits &given, bool park,
                         const Progress &progress) {
  std::string parent = normalize_parent(raw);
  if (size > kMaxPoolSize)
    throw InputError(fmt::format("invalid size {}: a pool holds at most {} entries", size,
                                 kMaxPoolSize));
  require_parent(parent);
  PoolRef ref = pool_ref(parent);
  // One fill (or drain) of a pool at a time: concurrent fills would each
  // count the same tokens and overshoot the target together.
  auto held = state().lock("pool:" + parent);
  auto before = state().read_pool(ref);
  // A top-up without limit options keeps the pool's defaults; an option
  // replaces its field ("max" clears it).
  Limits defaults = before ? Limits::merge(before->defaults, given) : given;
  check_enforceable(parent, defaults);
  state().write_pool(ref, PoolConfig{parent, size, defaults});
  auto tokens = state().tokens(ref);
  if (tokens.size() > size) {
    trim(parent, tokens.size() - size, progress);
    return;
  }
  size_t need = size - tokens.size();
  for (size_t i = 0; i < need; ++i) {
    // A drain (or a later fill) changed the target: it wins, we stop.
    auto now = state().read_pool(ref);
    if (!now || now->target != size)
      break;
    std::string id = new_entry_id();
    PoolEntry entry{id, defaults, std::nullopt};
    state().begin_entry(ref, id);
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
        state().end_entry(ref, id);
      } catch (const std::exception &) {
        // gc removes it: the maker (us) will be gone by then.
      }
      throw;
    }
    state().publish_token(ref, entry);
    state().end_entry(ref, id);
    if (progress)
      progress(fmt::format("pool {}: {}/{} entries made", parent, i + 1, need));
  }
}

bool UserspacePool::withdraw_and_destroy(const std::string &parent, const std::string &id) {
  PoolRef ref = pool_ref(parent);
  // Recorded as in the making again first: killed between the withdraw
  // and the destroy, gc still knows the entry is ours.
  state().begin_entry(ref, id);
  bool ours = state().withdraw_token(ref, id);
  if (ours)
    destroy(entry_paths(parent, id));
  state().end_entry(ref, id);
  return ours;
}

void UserspacePool::trim(const std::string &parent, size_t extra, const Progress &progress) {
  PoolRef ref = pool_ref(parent);
  size_t done = 0;
  for (const auto &id : state().tokens(ref)) {
    if (done == extra)
      break;
    if (!withdraw_and_destroy(parent, id))
      continue; // a claim took it: one fewer to trim
    if (progress)
      progress(fmt::format("pool {}: {}/{} extra entries removed", parent, ++done, extra));
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
  // Target 0 first, without the lock: a running fill sees it before its
  // next entry and stops, so the drain wins; then wait for it to stop.
  if (auto cfg = state().read_pool(ref)) {
    cfg->target = 0;
    state().write_pool(ref, *cfg);
  }
  auto held = state().lock("pool:" + parent);
  auto ids = state().tokens(ref);
  size_t done = 0;
  for (const auto &id : ids) {
    withdraw_and_destroy(parent, id);
    if (progress)
      progress(fmt::format("pool {}: {}/{} entries removed", parent, ++done, ids.size()));
  }
}

Backend::Acquired UserspacePool::acquire(ClaimRecord &rec, const std::optional<PoolConfig> &) {
  PoolRef ref = pool_ref(rec.parent);
  if (auto entry = state().take_token(ref, rec.name)) {
    rec.hit = true;
    rec.pool_id = entry->id;
    return {claim_entry(rec, entry->id), entry->limits, entry->parked};
  }
  // An empty pool is not an error: create directly (a miss).
  return {create_direct(rec), {}, {}};
}

void UserspacePool::count_outcome(const ClaimRecord &rec) {
  state().count(pool_ref(rec.parent), rec.hit ? "hits" : "misses");
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
    if (!entry_whole(parent, id) && withdraw_and_destroy(parent, id)) {
      report.actions.push_back(fmt::format("removed broken pool entry {} of '{}'", id, parent));
    }
  std::set<std::string> seen;
  for (const auto &t : trees())
    for (const auto &child : cgfs::children(t->path(parent)))
      if (auto id = entry_id(child); !id.empty())
        seen.insert(id);
  auto taken_list = state().taken_ids();
  std::set<std::string> taken(taken_list.begin(), taken_list.end());
  auto making_list = state().entries_in_making(ref);
  std::set<std::string> making(making_list.begin(), making_list.end());
  for (const auto &id : making) {
    auto maker = maker_of(id);
    bool alive = maker && maker->alive(config().proc_root);
    if (alive) {
      report.skipped.push_back(
          fmt::format("pool entry {} of '{}': pid {} is making it", id, parent, maker->pid));
      continue;
    }
    if (!published.count(id) && !taken.count(id)) {
      destroy(entry_paths(parent, id));
      report.actions.push_back(fmt::format("removed half-made pool entry {} of '{}'", id, parent));
    }
    state().end_entry(ref, id);
  }
  for (const auto &id : seen)
    if (!published.count(id) && !taken.count(id) && !making.count(id))
      // Made under another state directory (or before entries were
      // recorded while made): not provably ours, so left alone.
      report.skipped.push_back(fmt::format(
          "pool entry {} of '{}': not made through {} (another state directory's?)", id, parent,
          state().root()));
}

} // namespace rundkit
