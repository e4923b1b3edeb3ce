// The userspace pool shared by the stock v1 and v2 backends: entries are
// made ahead of time under lcgroupctl's reserved names and published by a
// token in the state directory only once fully configured; a claim takes a
// token (rename(2): one winner) and then the entry.
//
//   PARENT/lcg-tmp-ID    v1 entry being made (renamed when complete)
//   PARENT/lcg-pool-ID   complete entry; v2 entries are born with this
//                        name (cgroup2 cannot rename) and count as pooled
//                        only once their token exists
//
// ID is MAKERPID-MAKERSTART-SEQ: gc leaves alone what a live fill is making.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cgroup/backend.h"

namespace rundkit {

class UserspacePool : public Backend {
public:
  using Backend::Backend;

  void fill(const std::string &parent, size_t size, const Limits &defaults, bool park,
            const Progress &progress) override;
  PoolStatus status(const std::string &parent) override;
  void drain(const std::string &parent, const Progress &progress) override;

  static constexpr const char *kTmpPrefix = "lcg-tmp-";
  static constexpr const char *kPoolPrefix = "lcg-pool-";
  // The entry id of a child named lcg-tmp-ID / lcg-pool-ID, else "".
  static std::string entry_id(const std::string &child);
  static std::optional<ProcessId> maker_of(const std::string &id);

protected:
  Acquired acquire(ClaimRecord &rec, const std::optional<PoolConfig> &pool) override;
  std::vector<std::string> claim_paths(const ClaimRecord &rec) const override;
  void gc_pool(const std::string &parent, GcReport &report) override;
  void count_outcome(const ClaimRecord &rec) override;

  // Makes entry `id` complete with `defaults`, ready for its token.
  virtual void make_entry(const std::string &parent, const std::string &id,
                          const Limits &defaults) = 0;
  // Every directory entry `id` may have, whatever state it is in.
  virtual std::vector<std::string> entry_paths(const std::string &parent,
                                               const std::string &id) const = 0;
  virtual bool entry_whole(const std::string &parent, const std::string &id) const = 0;
  // Turns a taken entry into the claim's cgroups (one per tree).
  virtual std::vector<std::string> claim_entry(const ClaimRecord &rec, const std::string &id) = 0;

private:
  std::string new_entry_id();
  // Withdraws and destroys `extra` published entries (a fill below what
  // the pool holds).
  void trim(const std::string &parent, size_t extra, const Progress &progress);
  // Withdraws entry `id`'s token and destroys it; false if a claim took it.
  bool withdraw_and_destroy(const std::string &parent, const std::string &id);
};

} // namespace rundkit
