// Stock cgroup2: one hierarchy, no rename(2) (EPERM), so a pooled cgroup
// is handed out under its pool name and the claim record maps NAME to it.
// Processes enter at clone time (CLONE_INTO_CGROUP); devices are policed
// by a BPF_CGROUP_DEVICE program.
#include <fcntl.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <optional>

#include <fmt/format.h>

#include "cgroup/userspace_pool.h"
#include "cgroup/bpf_device.h"
#include "util/error.h"

namespace rundkit {

namespace {

class V2Tree : public Tree {
public:
  using Tree::Tree;

  std::set<std::string> enforceable(const std::string &parent) const override {
    std::set<std::string> out = {"devices"};
    for (const auto &c : cgfs::words(path(parent), cgfs::kSubtreeControl))
      if (c == "cpu" || c == "memory" || c == "pids")
        out.insert(c);
    return out;
  }

  std::string why_not(const std::string &parent, const std::string &what) const override {
    const auto &have = hierarchy().controllers;
    if (!have.count(what))
      return fmt::format("the {} controller is not available on cgroup2 at {} (it offers: {}); "
                         "it is bound to a v1 hierarchy or compiled out",
                         what, hierarchy().mount_point, fmt::join(have, " "));
    return fmt::format("the {} controller is not enabled in '{}' (lcgroupctl parent create "
                       "enables it)",
                       what, cgfs::join(path(parent), cgfs::kSubtreeControl));
  }

  void apply(const std::string &cg, const Limits &l) const override {
    // "max" where the controller is not enabled is already true: no file.
    auto set = [&](const char *file, const std::string &value, bool is_limit) {
      try {
        cgfs::write(cg, file, value);
      } catch (const Error &e) {
        if (is_limit || e.err() != ENOENT)
          throw;
      }
    };
    if (l.cpus)
      set("cpu.max",
          l.limits_cpus() ? fmt::format("{} {}", std::llround(*l.cpus * kCpuPeriodUs), kCpuPeriodUs)
                          : fmt::format("max {}", kCpuPeriodUs),
          l.limits_cpus());
    if (l.memory_bytes)
      set("memory.max", l.limits_memory() ? std::to_string(*l.memory_bytes) : "max",
          l.limits_memory());
    if (l.pids)
      set("pids.max", l.limits_pids() ? std::to_string(*l.pids) : "max", l.limits_pids());
    if (l.devices == DevicePolicy::kOciDefault)
      program().attach(Fd::open(cg, O_RDONLY | O_DIRECTORY));
  }

  void enable_for_children(const std::string &parent) const override {
    // Children of PARENT can have cpu/memory/pids files only if every
    // level from the root down delegates the controller.
    std::string dir = hierarchy().mount_point;
    std::string rest = parent;
    for (;;) {
      auto have = cgfs::words(dir, cgfs::kControllers);
      auto on = cgfs::words(dir, cgfs::kSubtreeControl);
      for (const char *c : {"cpu", "memory", "pids"})
        if (std::count(have.begin(), have.end(), c) && !std::count(on.begin(), on.end(), c))
          cgfs::write(dir, cgfs::kSubtreeControl, std::string("+") + c);
      if (rest.empty())
        break;
      size_t slash = rest.find('/');
      dir = cgfs::join(dir, rest.substr(0, slash));
      rest = slash == std::string::npos ? "" : rest.substr(slash + 1);
    }
  }

  std::optional<Fd> clone_target(const std::string &cg) const override {
    return Fd::open(cg, O_RDONLY | O_DIRECTORY);
  }

  bool children_inherit_device_policy() const override { return true; }
  bool can_clear_device_policy() const override { return false; }

  void kill_all(const Cgroup &cg) const override {
    // cgroup.kill reaches tasks forked while we read cgroup.procs; the loop
    // after it only waits (and covers kernels before 5.14).
    try {
      cg.write(cgfs::kKill, "1");
    } catch (const Error &e) {
      if (e.err() != ENOENT)
        throw;
    }
    cg.kill_until_empty();
  }

private:
  // Loaded once per process, attached to every sandbox: verifying it is
  // the expensive part.
  const DeviceProgram &program() const {
    std::call_once(loaded_, [this] { program_.emplace(DeviceProgram::load(oci_default_rules())); });
    return *program_;
  }
  mutable std::once_flag loaded_;
  mutable std::optional<DeviceProgram> program_;
};

class V2Pool : public UserspacePool {
public:
  using UserspacePool::UserspacePool;

protected:
  void make_entry(const std::string &parent, const std::string &id,
                  const Limits &defaults) override {
    const auto &t = trees().front();
    std::string p = t->path(cgfs::join(parent, kPoolPrefix + id));
    cgfs::make(p);
    t->apply(p, defaults);
  }

  std::vector<std::string> entry_paths(const std::string &parent,
                                       const std::string &id) const override {
    return {trees().front()->path(cgfs::join(parent, kPoolPrefix + id))};
  }

  bool entry_whole(const std::string &parent, const std::string &id) const override {
    return cgfs::exists(entry_paths(parent, id).front());
  }

  std::vector<std::string> claim_entry(const ClaimRecord &rec, const std::string &id) override {
    return entry_paths(rec.parent, id);
  }
};

} // namespace

std::unique_ptr<Tree> make_v2_tree(const Hierarchy &h) { return std::make_unique<V2Tree>(h); }

std::unique_ptr<Backend> make_v2_backend(const Config &cfg, const Layout &layout) {
  const Hierarchy *h = layout.v2();
  if (!h)
    throw Error("the v2 backend needs a cgroup2 mount; none is mounted");
  std::vector<std::unique_ptr<Tree>> trees;
  trees.push_back(make_v2_tree(*h));
  return std::make_unique<V2Pool>("v2", std::move(trees), cfg);
}

} // namespace rundkit
