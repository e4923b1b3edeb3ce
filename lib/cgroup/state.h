// lcgroupctl's state directory (default /run/lcgroupctl): what no cgroup
// filesystem can record for us.  Every change is one atomic step on one
// filesystem (write a temp file, then link(2) or rename(2) it into place),
// so a process killed at any instruction leaves either the old or the new
// entry, never half of one, and concurrent claimers never see a torn file.
//
//   claims/NAME.json   the claim record: parent, phase, cgroup paths, owner
//   claims/NAME.take   the pool entry id this claim took (lives until release)
//   pools/BACKEND/KEY/pool.json    parent, target size, default limits
//   pools/BACKEND/KEY/tokens/ID    one per fully configured pool entry: the
//                                  limits it was made with and its parked
//                                  process, if any (JSON)
//   pools/BACKEND/KEY/making/ID    an entry being made (before its mkdir)
//   pools/BACKEND/KEY/hits|misses  append-only counters: size = count
//   runs/ID.json       a long-running command's record (lcgroupctl bench:
//                      its actor and what it made), so gc can undo the
//                      work of one killed with SIGKILL
//   tmp/PID-START.*                staging for the atomic steps (gc removes
//                                  those whose writer is gone)
//   locks/NN                       flock(2) stripes: release, gc and fill
//                                  of one name or pool run one at a time
//
// No fsync: /run is tmpfs and so are the cgroups the records describe; a
// reboot loses both together.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "cgroup/limits.h"
#include "util/fd.h"
#include "util/proc.h"

namespace rundkit {

struct ClaimRecord {
  std::string name;
  std::string backend;
  std::string parent;
  // "claiming" -> "claimed" -> "releasing"; in the first and last the
  // actor is the lcgroupctl process doing the work, and gc finishes (tears
  // down) the claim once that process is gone.
  std::string phase = "claiming";
  ProcessId actor;
  std::optional<ProcessId> owner; // gc releases the claim when it is gone
  std::vector<std::string> paths; // cgroup directories, one per hierarchy
  // The id of each of `paths` (cgroup/fs.h Cgroup), recorded as soon as
  // they exist: release and gc act only on the cgroups with these ids,
  // never on another that took the name since.  Empty in records written
  // before ids were kept, and while a claim has not made its cgroups yet.
  std::vector<uint64_t> ids;
  std::string pool_id;            // userspace pool entry, when a hit
  bool hit = false;
  pid_t pid = 0; // process started inside, if any
  Limits limits;
};

nlohmann::json to_json(const ClaimRecord &r);
ClaimRecord claim_from_json(const nlohmann::json &j);

struct PoolConfig {
  std::string parent;
  size_t target = 0;
  Limits defaults;
};

// One pool entry as its token describes it.
struct PoolEntry {
  std::string id;
  Limits limits;                   // what the entry was made with
  std::optional<ProcessId> parked; // waiting inside for the claim's command
};

nlohmann::json to_json(const PoolEntry &e);
// `id` is the token's name; `text` its content (a bare id before tokens
// carried JSON).
PoolEntry pool_entry_from_text(const std::string &id, const std::string &text);

struct PoolRef {
  std::string backend;
  std::string parent;
};

class StateDir {
public:
  // Throws InputError unless `root` is an absolute path.
  explicit StateDir(std::string root);
  const std::string &root() const { return root_; }

  // An exclusive lock for `what` (a claim name, a pool), held until the
  // returned object is destroyed: flock(2), which the kernel drops if we
  // are killed; on a kernel without file locking (CONFIG_FILE_LOCKING=n,
  // as the project's test kernels) a lock directory naming its holder by
  // pid + start time, taken over once that holder is gone.
  class Lock {
  public:
    Lock(Fd fd, std::string dir) : fd_(std::move(fd)), dir_(std::move(dir)) {}
    Lock(Lock &&) = default;
    Lock &operator=(Lock &&) = delete;
    ~Lock();

  private:
    Fd fd_;
    std::string dir_; // the lock directory, when flock is missing
  };
  Lock lock(const std::string &what) const;
  // Removes staged temp files whose writer is gone; returns their paths.
  std::vector<std::string> gc_staging(const std::string &proc_root = "/proc");

  // Reserves NAME: fails with Error(EEXIST) naming the claim if it exists.
  void create_claim(const ClaimRecord &r);
  void update_claim(const ClaimRecord &r);
  std::optional<ClaimRecord> read_claim(const std::string &name) const;
  void remove_claim(const std::string &name);
  std::vector<std::string> claim_names() const;

  // runs/ID.json (see above); written whole each time, read back as it was.
  void write_run(const std::string &id, const nlohmann::json &record);
  std::optional<nlohmann::json> read_run(const std::string &id) const;
  void remove_run(const std::string &id);
  std::vector<std::string> run_ids() const;

  // Atomically moves one published token of the pool to claims/NAME.take
  // and returns its entry; nothing if the pool is empty.  Many claimers
  // may race: rename(2) hands each token to exactly one.
  std::optional<PoolEntry> take_token(const PoolRef &pool, const std::string &name);
  // The id of the entry claim NAME took, if any.
  std::optional<std::string> read_take(const std::string &name) const;
  // Every pool entry id currently held by a claim.
  std::vector<std::string> taken_ids() const;

  // An entry being made is recorded before its first mkdir and forgotten
  // once published or destroyed: gc removes only entries this state
  // directory made (a pool of another state directory under the same
  // parent is not ours to judge).
  void begin_entry(const PoolRef &pool, const std::string &id);
  void end_entry(const PoolRef &pool, const std::string &id);
  std::vector<std::string> entries_in_making(const PoolRef &pool) const;

  void publish_token(const PoolRef &pool, const PoolEntry &entry);
  std::vector<std::string> tokens(const PoolRef &pool) const;
  // Withdraws one token (drain, gc); false if someone took it first.
  bool withdraw_token(const PoolRef &pool, const std::string &id);

  std::optional<PoolConfig> read_pool(const PoolRef &pool) const;
  void write_pool(const PoolRef &pool, const PoolConfig &cfg);
  void remove_pool(const PoolRef &pool);
  std::vector<PoolRef> pools() const;

  void count(const PoolRef &pool, const char *counter);
  uint64_t counter(const PoolRef &pool, const char *counter) const;

private:
  std::string claim_path(const std::string &name, const char *ext) const;
  std::string pool_dir(const PoolRef &pool) const;
  class Staged;
  static constexpr size_t kLockStripes = 64;
  void ensure_dirs(const PoolRef *pool) const;

  std::string root_;
};

// The file-name form of a parent path ("a/b" -> "a%2Fb").
std::string escape_key(const std::string &parent);
std::string unescape_key(const std::string &key);

} // namespace rundkit
