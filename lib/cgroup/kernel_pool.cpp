// A rundkit kernel with `lwcg`: the pool lives in the kernel.  Writing N to
// PARENT/cgroup.pool keeps N hidden, initialised children; mkdir(2) under
// PARENT takes one without cgroup_mutex.  Pooled children carry no limits
// (limits are per sandbox), so a claim is mkdir + limits + process.  The
// device policy is the exception on cgroup2: a fill with --devices
// attaches the program to PARENT, and every child, pooled or not, runs it
// (BPF_F_ALLOW_MULTI programs of ancestors apply to descendants), so a
// claim attaches nothing: BPF_PROG_ATTACH takes cgroup_mutex.
#include <algorithm>
#include <chrono>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cgroup/backend.h"
#include "cgroup/names.h"
#include "util/error.h"

namespace rundkit {

namespace {

// The kernel refuses anything else with EINVAL.
constexpr size_t kMaxKernelPool = 1024;

class KernelPool : public Backend {
public:
  using Backend::Backend;

  void fill(const std::string &raw, size_t size, const Limits &given, bool park,
            const Progress &progress) override {
    std::string parent = normalize_parent(raw);
    if (park)
      throw InputError("--park: the kernel pool's entries stay hidden until a claim's mkdir, so "
                       "no process can wait inside them");
    if (size > kMaxKernelPool)
      throw InputError(fmt::format("invalid size {}: the kernel pool holds at most {}", size,
                                   kMaxKernelPool));
    require_parent(parent);
    require_pool_file(parent);
    auto held = state().lock("pool:" + parent);
    auto before = state().read_pool(pool_ref(parent));
    // A top-up without limit options keeps the defaults (as userspace pools).
    Limits defaults = before ? Limits::merge(before->defaults, given) : given;
    check_enforceable(parent, defaults);
    if (parent_polices_devices(defaults) &&
        !(before && parent_polices_devices(before->defaults)))
      for (const auto &t : trees())
        t->apply(t->path(parent), Limits{{}, {}, {}, defaults.devices});
    state().write_pool(pool_ref(parent), PoolConfig{parent, size, defaults});
    for (const auto &t : trees())
      cgfs::write(t->path(parent), cgfs::kPool, std::to_string(size));
    wait_filled(parent, size, progress);
  }

  PoolStatus status(const std::string &raw) override {
    std::string parent = normalize_parent(raw);
    require_parent(parent);
    require_pool_file(parent);
    PoolStatus s;
    s.backend = name();
    s.parent = parent;
    if (auto cfg = state().read_pool(pool_ref(parent)))
      s.defaults = cfg->defaults;
    // One entry per hierarchy: a claim needs all of them, so the pool is
    // as full as its emptiest hierarchy.
    bool first = true;
    for (const auto &t : trees()) {
      auto f = cgfs::read_pool(t->path(parent));
      s.target = first ? f.target : std::min(s.target, f.target);
      s.available = first ? f.available : std::min(s.available, f.available);
      s.hits = first ? f.hits : std::min(s.hits, f.hits);
      s.misses = first ? f.misses : std::max(s.misses, f.misses);
      first = false;
    }
    return s;
  }

  void drain(const std::string &raw, const Progress &progress) override {
    std::string parent = normalize_parent(raw);
    require_parent(parent);
    require_pool_file(parent);
    for (const auto &t : trees())
      cgfs::write(t->path(parent), cgfs::kPool, "0");
    if (progress)
      progress(fmt::format("pool {}: target 0, the kernel destroys the pooled children", parent));
  }

  nlohmann::json describe() const override {
    auto j = Backend::describe();
    j["kernel_pool_max"] = kMaxKernelPool;
    return j;
  }

protected:
  Acquired acquire(ClaimRecord &rec, const std::optional<PoolConfig> &pool) override {
    Acquired got{create_direct(rec), {}, {}};
    if (pool && parent_polices_devices(pool->defaults))
      got.has = Limits{{}, {}, {}, pool->defaults.devices};
    return got;
  }

private:
  // Whether a fill with `defaults` puts the device policy on the parent:
  // on cgroup2 only (a v1 child copies its parent's devices list once, at
  // creation, so children pooled before the fill would miss it).
  bool parent_polices_devices(const Limits &defaults) const {
    return defaults.devices == DevicePolicy::kOciDefault &&
           std::all_of(trees().begin(), trees().end(),
                       [](const auto &t) { return t->children_inherit_device_policy(); });
  }

  void require_pool_file(const std::string &parent) const {
    for (const auto &t : trees()) {
      std::string f = cgfs::join(t->path(parent), cgfs::kPool);
      if (::access(f.c_str(), F_OK) < 0)
        throw Error(fmt::format("'{}' has no {}: it was made before the hierarchy was mounted "
                                "with lwcg; recreate it (lcgroupctl parent create)",
                                t->path(parent), cgfs::kPool));
    }
  }

  void wait_filled(const std::string &parent, size_t size, const Progress &progress) const {
    using clock = std::chrono::steady_clock;
    auto start = clock::now();
    auto last_report = start;
    for (;;) {
      size_t have = status_min(parent);
      if (have >= size)
        break;
      // A drain (or another fill) set another target: it wins, stop waiting.
      bool changed = std::any_of(trees().begin(), trees().end(), [&](const auto &t) {
        return cgfs::read_pool(t->path(parent)).target != size;
      });
      if (changed)
        return;
      auto now = clock::now();
      if (now - start > std::chrono::seconds(120))
        throw Error(fmt::format("kernel pool of '{}' holds {} of {} after 120 s", parent, have,
                                size));
      if (progress && now - last_report > std::chrono::seconds(1)) {
        progress(fmt::format("pool {}: {}/{} available", parent, have, size));
        last_report = now;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (progress)
      progress(fmt::format("pool {}: {}/{} available", parent, size, size));
  }

  size_t status_min(const std::string &parent) const {
    size_t m = SIZE_MAX;
    for (const auto &t : trees())
      m = std::min(m, cgfs::read_pool(t->path(parent)).available);
    return m;
  }
};

} // namespace

std::unique_ptr<Backend> make_kernel_pool_backend(const Config &cfg, const Layout &layout) {
  if (!layout.kernel_lwcg)
    throw Error(fmt::format("the kernel-pool backend needs a rundkit kernel: no 'lwcg' line in {}",
                            cfg.layout.features));
  std::vector<std::unique_ptr<Tree>> trees;
  if (layout.limits_on_v1()) {
    for (const auto *h : layout.v1())
      if (h->lwcg())
        trees.push_back(make_v1_tree(*h));
  } else if (const auto *h = layout.v2(); h && h->lwcg()) {
    trees.push_back(make_v2_tree(*h));
  }
  if (trees.empty())
    throw Error(fmt::format("the kernel-pool backend needs a hierarchy mounted with -o lwcg; "
                            "none is (mount -o remount,lwcg {} for cgroup2)",
                            layout.v2() ? layout.v2()->mount_point : "/sys/fs/cgroup"));
  return std::make_unique<KernelPool>("kernel-pool", std::move(trees), cfg);
}

} // namespace rundkit
