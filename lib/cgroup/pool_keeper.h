// lcgroupctl pool keep: a long-running keeper of one parent's pool.
//
// At start it runs gc on the parent (what crashed claims and fills left),
// fills the pool to its size, then checks it every `interval` and fills
// it again whenever claims took entries.  One keeper per parent and state
// directory: its record, STATE/keepers/PARENT.json (pid + start time, the
// size it keeps, how many refills and entries it made), says who keeps
// it; a second keeper is refused while the first is alive, and a record
// whose process is gone (kill -9) is taken over.  SIGTERM or SIGINT ends
// it cleanly: the pool stays as it is (its entries are valid for any
// claimer), the record is removed, exit 0.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "cgroup/backend.h"
#include "util/proc.h"

namespace rundkit {

struct KeepOptions {
  std::string parent;
  size_t size = 0;
  Limits defaults;
  bool park = false;
  std::chrono::milliseconds interval{200};
  // One line per thing done (gc, refills, errors), for the service's log.
  std::function<void(const std::string &)> log;
};

struct KeeperRecord {
  ProcessId process;
  std::string parent;
  std::string since; // UTC, ISO 8601
  size_t size = 0;
  uint64_t refills = 0;
  uint64_t entries_made = 0;
  std::string last_error;
};

nlohmann::json to_json(const KeeperRecord &k);

// The live keeper of PARENT in this state directory, if any (a record of
// a process that is gone is no keeper).
std::optional<KeeperRecord> read_keeper(const StateDir &state, const std::string &parent);

// Keeps the pool until `stop_fd` (a signalfd for SIGTERM and SIGINT) is
// readable; returns the exit code: 0 after a stop, 1 if the pool could not
// be filled for 10 checks in a row (the error is logged and recorded).
// InputError before anything changes if another keeper is alive.
int keep_pool(Backend &backend, const KeepOptions &o, int stop_fd);

} // namespace rundkit
