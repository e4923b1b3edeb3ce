// Stock cgroup v1, one hierarchy per controller (how Kata sees most
// hosts): a sandbox is one directory per hierarchy, and the pool is claimed
// by same-parent rename(2), which v1 allows.
#include <algorithm>

#include <fmt/format.h>

#include "cgroup/userspace_pool.h"
#include "cgroup/bpf_device.h"
#include "util/error.h"

namespace rundkit {

namespace {

class V1Tree : public Tree {
public:
  using Tree::Tree;

  std::set<std::string> enforceable(const std::string &) const override {
    std::set<std::string> out;
    for (const char *c : {"cpu", "memory", "pids", "devices"})
      if (hierarchy().controllers.count(c))
        out.insert(c);
    return out;
  }

  std::string why_not(const std::string &, const std::string &) const override { return ""; }

  void prepare(const std::string &cg) const override {
    // A new cpuset cgroup starts with empty cpus and mems, and no task may
    // enter until both are set: copy the parent's.
    if (!hierarchy().controllers.count("cpuset"))
      return;
    std::string parent = cg.substr(0, cg.rfind('/'));
    for (const char *f : {"cpuset.cpus", "cpuset.mems"})
      cgfs::write(cg, f, cgfs::read(parent, f));
  }

  void apply(const std::string &cg, const Limits &l) const override {
    const auto &c = hierarchy().controllers;
    // The period stays at the kernel's default, 100 ms (kCpuPeriodUs).
    if (l.cpus && c.count("cpu"))
      cgfs::write(cg, "cpu.cfs_quota_us",
                  l.limits_cpus() ? std::to_string(std::llround(*l.cpus * kCpuPeriodUs)) : "-1");
    if (l.memory_bytes && c.count("memory"))
      cgfs::write(cg, "memory.limit_in_bytes",
                  l.limits_memory() ? std::to_string(*l.memory_bytes) : "-1");
    if (l.pids && c.count("pids"))
      cgfs::write(cg, "pids.max", l.limits_pids() ? std::to_string(*l.pids) : "max");
    if (l.devices == DevicePolicy::kInherit && c.count("devices"))
      cgfs::write(cg, "devices.allow", "a"); // undoes a pooled entry's policy
    if (l.devices == DevicePolicy::kOciDefault && c.count("devices")) {
      cgfs::write(cg, "devices.deny", "a");
      for (const auto &r : oci_default_rules())
        cgfs::write(cg, "devices.allow", v1_rule(r));
    }
  }

  bool children_inherit_device_policy() const override { return false; }

  void kill_all(const Cgroup &cg) const override { cg.kill_until_empty(); }
};

class V1Pool : public UserspacePool {
public:
  using UserspacePool::UserspacePool;

protected:
  void make_entry(const std::string &parent, const std::string &id,
                  const Limits &defaults) override {
    for (const auto &t : trees()) {
      std::string tmp = t->path(cgfs::join(parent, kTmpPrefix + id));
      cgfs::make(tmp);
      t->prepare(tmp);
      t->apply(tmp, defaults);
    }
    // Only complete entries carry the pool name.
    for (const auto &t : trees())
      cgfs::rename(t->path(cgfs::join(parent, kTmpPrefix + id)),
                   t->path(cgfs::join(parent, kPoolPrefix + id)));
  }

  std::vector<std::string> entry_paths(const std::string &parent,
                                       const std::string &id) const override {
    std::vector<std::string> out;
    for (const auto &t : trees())
      for (const char *prefix : {kTmpPrefix, kPoolPrefix})
        out.push_back(t->path(cgfs::join(parent, prefix + id)));
    return out;
  }

  bool entry_whole(const std::string &parent, const std::string &id) const override {
    return std::all_of(trees().begin(), trees().end(), [&](const auto &t) {
      return cgfs::exists(t->path(cgfs::join(parent, kPoolPrefix + id)));
    });
  }

  std::vector<std::string> claim_entry(const ClaimRecord &rec, const std::string &id) override {
    std::vector<std::string> out;
    for (const auto &t : trees()) {
      std::string to = t->path(cgfs::join(rec.parent, rec.name));
      cgfs::rename(t->path(cgfs::join(rec.parent, kPoolPrefix + id)), to);
      out.push_back(to);
    }
    return out;
  }
};

} // namespace

std::unique_ptr<Tree> make_v1_tree(const Hierarchy &h) { return std::make_unique<V1Tree>(h); }

std::unique_ptr<Backend> make_v1_backend(const Config &cfg, const Layout &layout) {
  std::vector<std::unique_ptr<Tree>> trees;
  for (const auto *h : layout.v1())
    trees.push_back(make_v1_tree(*h));
  if (trees.empty())
    throw Error("the v1 backend needs cgroup v1 hierarchies; none is mounted");
  return std::make_unique<V1Pool>("v1", std::move(trees), cfg);
}

} // namespace rundkit
