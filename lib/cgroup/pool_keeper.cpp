#include "cgroup/pool_keeper.h"

#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cgroup/names.h"
#include "util/error.h"
#include "util/temp.h"

namespace rundkit {

namespace {

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string record_path(const StateDir &state, const std::string &parent) {
  return state.root() + "/keepers/" + escape_key(parent) + ".json";
}

void write_record(const StateDir &state, const KeeperRecord &k) {
  write_file_staged(record_path(state, k.parent), to_json(k).dump() + "\n", true);
}

std::optional<KeeperRecord> read_record(const StateDir &state, const std::string &parent) {
  std::string text;
  try {
    text = read_file(record_path(state, parent));
  } catch (const Error &) {
    return std::nullopt;
  }
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded())
    return std::nullopt;
  try {
    KeeperRecord k;
    k.process = process_id_from_json(j.at("process"));
    k.parent = j.at("parent").get<std::string>();
    k.since = j.at("since").get<std::string>();
    k.size = j.at("size").get<size_t>();
    k.refills = j.at("refills").get<uint64_t>();
    k.entries_made = j.at("entries_made").get<uint64_t>();
    k.last_error = j.value("last_error", std::string());
    return k;
  } catch (const std::exception &) {
    return std::nullopt; // damaged: no keeper
  }
}

} // namespace

nlohmann::json to_json(const KeeperRecord &k) {
  return {{"process", to_json(k.process)}, {"parent", k.parent},       {"since", k.since},
          {"size", k.size},                {"refills", k.refills},    {"entries_made", k.entries_made},
          {"last_error", k.last_error}};
}

std::optional<KeeperRecord> read_keeper(const StateDir &state, const std::string &parent) {
  auto k = read_record(state, parent);
  if (!k || !k->process.alive())
    return std::nullopt;
  return k;
}

int keep_pool(Backend &backend, const KeepOptions &o, int stop_fd) {
  auto log = [&](const std::string &s) {
    if (o.log)
      o.log(s);
  };
  StateDir &state = backend.state();
  const std::string parent = normalize_parent(o.parent);
  backend.require_parent(parent);
  KeeperRecord me;
  me.process = ProcessId::self();
  me.parent = parent;
  me.since = now_utc();
  me.size = o.size;
  {
    // Check and take under one lock: two keepers starting together get
    // one winner.
    auto lock = state.lock("keeper:" + parent);
    if (auto other = read_keeper(state, parent))
      throw InputError(fmt::format("pool {} is kept already, by pid {} since {} (size {})",
                                   parent, other->process.pid, other->since, other->size));
    std::filesystem::create_directories(state.root() + "/keepers");
    write_record(state, me);
  }
  auto forget = [&] {
    // Only our own record: a keeper that took over after us keeps its own.
    auto lock = state.lock("keeper:" + parent);
    if (auto k = read_record(state, parent); k && k->process == me.process)
      ::unlink(record_path(state, parent).c_str());
  };
  try {
    GcReport gc = backend.gc({parent});
    for (const auto &a : gc.actions)
      log("gc: " + a);
    for (const auto &f : gc.failed)
      log("gc failed: " + f);
    log(fmt::format("keeping {} entries under {}", o.size, parent));
    int failures = 0;
    for (bool first = true;; first = false) {
      try {
        PoolStatus s = backend.status(parent);
        if (s.available < o.size || s.target != o.size || first) {
          size_t before = s.available;
          backend.fill(parent, o.size, o.defaults, o.park, {});
          size_t after = backend.status(parent).available;
          if (!first)
            ++me.refills;
          me.entries_made += after > before ? after - before : 0;
          if (after != before)
            log(fmt::format("{}: {} -> {} entries", first ? "filled" : "refilled", before, after));
        }
        failures = 0;
        if (!me.last_error.empty())
          me.last_error.clear();
      } catch (const Error &e) {
        me.last_error = e.what();
        log(fmt::format("fill failed: {}", e.what()));
        if (++failures == 10) {
          write_record(state, me);
          forget();
          return 1;
        }
      }
      write_record(state, me);
      struct pollfd p = {stop_fd, POLLIN, 0};
      int n = ::poll(&p, 1, static_cast<int>(o.interval.count()));
      if (n < 0 && errno != EINTR)
        throw Error("poll", "the keeper's signal descriptor", errno);
      if (n > 0) {
        struct signalfd_siginfo si;
        if (::read(stop_fd, &si, sizeof si) == static_cast<ssize_t>(sizeof si))
          log(fmt::format("signal {}: stopping; the pool stays as it is", si.ssi_signo));
        break;
      }
    }
  } catch (...) {
    forget();
    throw;
  }
  forget();
  return 0;
}

} // namespace rundkit
