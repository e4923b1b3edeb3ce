#include "cgroup/state.h"

#include <dirent.h>
#include <sys/file.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <functional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/fd.h"

namespace rundkit {

namespace {

// One mkdir(2) when the directory exists, which is every time but the
// first: claims call this on their start-up path.
void mkdir_p(const std::string &path) {
  if (::mkdir(path.c_str(), 0700) == 0 || errno == EEXIST)
    return;
  size_t slash = path.rfind('/');
  if (errno != ENOENT || slash == 0 || slash == std::string::npos)
    throw Error("mkdir", path, errno);
  mkdir_p(path.substr(0, slash));
  if (::mkdir(path.c_str(), 0700) < 0 && errno != EEXIST)
    throw Error("mkdir", path, errno);
}

std::vector<std::string> list_dir(const std::string &path) {
  std::vector<std::string> out;
  DIR *d = ::opendir(path.c_str());
  if (!d) {
    if (errno == ENOENT)
      return out;
    throw Error("opendir", path, errno);
  }
  while (auto *e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..")
      out.push_back(n);
  }
  ::closedir(d);
  return out;
}

bool ends_with(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// NAME for every DIR/NAME.json.
std::vector<std::string> json_record_names(const std::string &dir) {
  std::vector<std::string> out;
  for (const auto &f : list_dir(dir))
    if (ends_with(f, ".json"))
      out.push_back(f.substr(0, f.size() - 5));
  return out;
}

std::optional<std::string> read_if_exists(const std::string &path) {
  try {
    return read_file(path);
  } catch (const Error &e) {
    if (e.err() == ENOENT)
      return std::nullopt;
    throw;
  }
}

// A take holds the token's content: the entry id is in it, or is it (old
// bare-id tokens).
std::string take_id(const std::string &text) {
  if (text.empty() || text[0] != '{')
    return text;
  try {
    return nlohmann::json::parse(text).at("id");
  } catch (const nlohmann::json::exception &) {
    return "";
  }
}

} // namespace

nlohmann::json to_json(const ClaimRecord &r) {
  nlohmann::json j = {{"name", r.name},       {"backend", r.backend}, {"parent", r.parent},
                      {"phase", r.phase},     {"actor", to_json(r.actor)},
                      {"paths", r.paths},     {"ids", r.ids},
                      {"pool_id", r.pool_id}, {"hit", r.hit},
                      {"pid", r.pid},         {"limits", to_json(r.limits)}};
  j["owner"] = r.owner ? to_json(*r.owner) : nlohmann::json(nullptr);
  return j;
}

ClaimRecord claim_from_json(const nlohmann::json &j) {
  ClaimRecord r;
  r.name = j.at("name");
  r.backend = j.at("backend");
  r.parent = j.at("parent");
  r.phase = j.at("phase");
  r.actor = process_id_from_json(j.at("actor"));
  if (!j.at("owner").is_null())
    r.owner = process_id_from_json(j.at("owner"));
  r.paths = j.at("paths").get<std::vector<std::string>>();
  if (j.contains("ids"))
    r.ids = j.at("ids").get<std::vector<uint64_t>>();
  r.pool_id = j.at("pool_id");
  r.hit = j.at("hit");
  r.pid = j.at("pid");
  r.limits = limits_from_json(j.at("limits"));
  return r;
}

nlohmann::json to_json(const PoolEntry &e) {
  nlohmann::json j = {{"id", e.id}, {"limits", to_json(e.limits)}};
  j["parked"] = e.parked ? to_json(*e.parked) : nlohmann::json(nullptr);
  return j;
}

PoolEntry pool_entry_from_text(const std::string &id, const std::string &text) {
  PoolEntry e{id, {}, std::nullopt};
  if (text.empty() || text[0] != '{')
    return e;
  try {
    auto j = nlohmann::json::parse(text);
    e.limits = limits_from_json(j.at("limits"));
    if (!j.at("parked").is_null())
      e.parked = process_id_from_json(j.at("parked"));
  } catch (const nlohmann::json::exception &ex) {
    throw Error(fmt::format("corrupt pool token '{}': {}", id, ex.what()));
  }
  return e;
}

std::string escape_key(const std::string &parent) {
  std::string out;
  for (char c : parent) {
    if (c == '/' || c == '%')
      out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    else
      out += c;
  }
  return out;
}

std::string unescape_key(const std::string &key) {
  std::string out;
  for (size_t i = 0; i < key.size(); ++i) {
    if (key[i] == '%' && i + 2 < key.size()) {
      out += static_cast<char>(std::stoi(key.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += key[i];
    }
  }
  return out;
}

StateDir::StateDir(std::string root) : root_(std::move(root)) {
  // Relative: it would depend on the working directory; empty: the
  // records would land in /claims and /pools.
  if (root_.empty() || root_[0] != '/')
    throw InputError(fmt::format("invalid state directory '{}': an absolute path is needed", root_));
  while (root_.size() > 1 && root_.back() == '/')
    root_.pop_back();
}

StateDir::Lock StateDir::lock(const std::string &what) const {
  // A fixed set of lock files, picked by hash: their number stays bounded
  // however many names come and go, and two names rarely share one.
  mkdir_p(root_ + "/locks");
  std::string path =
      fmt::format("{}/locks/{:02x}", root_, std::hash<std::string>{}(what) % kLockStripes);
  Fd fd = Fd::open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  int rc;
  while ((rc = ::flock(fd.get(), LOCK_EX)) < 0 && errno == EINTR) {
  }
  if (rc == 0)
    return Lock(std::move(fd), "");
  if (errno != ENOSYS)
    throw Error("flock", path, errno);
  // No file locking in this kernel: a directory that names its holder,
  // made aside and renamed into place (rename(2) of a directory onto a
  // non-empty one fails), so the lock is never seen without its holder.
  std::string dir = path + ".held";
  ProcessId self = ProcessId::self();
  std::string me = fmt::format("{}-{}", self.pid, self.start);
  std::string mine = fmt::format("{}.new.{}.{}", path, me, ::gettid());
  if (::mkdir(mine.c_str(), 0700) < 0 && errno != EEXIST)
    throw Error("mkdir", mine, errno);
  Fd::open(mine + "/" + me, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  for (unsigned spin = 0;; ++spin) {
    if (::rename(mine.c_str(), dir.c_str()) == 0)
      return Lock(Fd(), dir);
    if (errno != EEXIST && errno != ENOTEMPTY)
      throw Error("rename", dir, errno);
    auto holders = list_dir(dir);
    unsigned long long pid = 0, start = 0;
    bool gone = holders.size() == 1 &&
                std::sscanf(holders[0].c_str(), "%llu-%llu", &pid, &start) == 2 &&
                !ProcessId{static_cast<pid_t>(pid), start}.alive();
    if (gone) {
      // Only one taker wins this rename; the others retry.
      std::string stale = fmt::format("{}.stale.{}.{}", path, me, ::gettid());
      if (::rename(dir.c_str(), stale.c_str()) == 0) {
        ::unlink((stale + "/" + holders[0]).c_str());
        ::rmdir(stale.c_str());
      }
      continue;
    }
    ::usleep(std::min(1000u + spin * 200u, 20000u));
  }
}

StateDir::Lock::~Lock() {
  if (dir_.empty())
    return; // closing fd_ drops the flock
  for (const auto &f : list_dir(dir_))
    ::unlink((dir_ + "/" + f).c_str());
  ::rmdir(dir_.c_str());
}

std::vector<std::string> StateDir::gc_staging(const std::string &proc_root) {
  std::vector<std::string> removed;
  for (const auto &f : list_dir(root_ + "/tmp")) {
    unsigned long long pid = 0, start = 0;
    if (std::sscanf(f.c_str(), "%llu-%llu.", &pid, &start) != 2)
      continue; // not ours: leave it
    ProcessId writer{static_cast<pid_t>(pid), start};
    if (writer.alive(proc_root))
      continue;
    std::string p = root_ + "/tmp/" + f;
    if (::unlink(p.c_str()) == 0)
      removed.push_back(p);
  }
  // The lock directories of the no-flock fallback (lock()): one made aside
  // (NN.new.PID-START.TID) or taken from a dead holder (NN.stale.*) by a
  // process killed before it renamed or removed it.
  for (const auto &f : list_dir(root_ + "/locks")) {
    unsigned long long pid = 0, start = 0;
    unsigned stripe = 0;
    char kind[8] = {};
    if (std::sscanf(f.c_str(), "%x.%5[a-z].%llu-%llu.", &stripe, kind, &pid, &start) != 4 ||
        (std::string(kind) != "new" && std::string(kind) != "stale"))
      continue;
    if (ProcessId{static_cast<pid_t>(pid), start}.alive(proc_root))
      continue;
    std::string p = root_ + "/locks/" + f;
    for (const auto &inside : list_dir(p))
      ::unlink((p + "/" + inside).c_str());
    if (::rmdir(p.c_str()) == 0)
      removed.push_back(p);
  }
  return removed;
}

void StateDir::ensure_dirs(const PoolRef *pool) const {
  mkdir_p(root_ + "/tmp");
  mkdir_p(root_ + "/claims");
  if (pool)
    mkdir_p(pool_dir(*pool) + "/tokens");
}

std::string StateDir::claim_path(const std::string &name, const char *ext) const {
  return fmt::format("{}/claims/{}.{}", root_, name, ext);
}

std::string StateDir::pool_dir(const PoolRef &pool) const {
  return fmt::format("{}/pools/{}/{}", root_, pool.backend, escape_key(pool.parent));
}

// A temp file staged for one link(2)/rename(2) into place; removed on
// destruction unless committed, so no failing command leaves one behind.
// Its name carries the writer's pid and start time: gc removes the files of
// writers killed between writing and linking (StateDir::gc_staging).
class StateDir::Staged {
public:
  Staged(const StateDir &dir, const std::string &data) {
    static std::atomic<unsigned long> seq{0};
    dir.ensure_dirs(nullptr);
    ProcessId self = ProcessId::self();
    path_ = fmt::format("{}/tmp/{}-{}.{}.{}", dir.root(), self.pid, self.start, ::gettid(), seq++);
    Fd fd = Fd::open(path_, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    try {
      ssize_t n = ::write(fd.get(), data.data(), data.size());
      check_sys(n, "write", path_);
      if (static_cast<size_t>(n) != data.size())
        throw Error("write", path_, EIO);
    } catch (...) {
      ::unlink(path_.c_str());
      throw;
    }
  }
  ~Staged() { ::unlink(path_.c_str()); } // harmless after a rename: ENOENT
  Staged(const Staged &) = delete;
  Staged &operator=(const Staged &) = delete;
  const std::string &path() const { return path_; }
  // rename(2) into place.
  void replace(const std::string &dst) {
    check_sys(::rename(path_.c_str(), dst.c_str()), "rename", dst);
  }

private:
  std::string path_;
};

void StateDir::create_claim(const ClaimRecord &r) {
  Staged tmp(*this, to_json(r).dump());
  std::string dst = claim_path(r.name, "json");
  // link(2), unlike rename(2), refuses to replace: the reservation.
  int rc = ::link(tmp.path().c_str(), dst.c_str());
  int err = errno;
  if (rc < 0) {
    if (err == EEXIST)
      throw Error(fmt::format("claim '{}' already exists (see {})", r.name, dst));
    throw Error("link", dst, err);
  }
}

void StateDir::update_claim(const ClaimRecord &r) {
  Staged(*this, to_json(r).dump()).replace(claim_path(r.name, "json"));
}

std::optional<ClaimRecord> StateDir::read_claim(const std::string &name) const {
  auto text = read_if_exists(claim_path(name, "json"));
  if (!text)
    return std::nullopt;
  try {
    return claim_from_json(nlohmann::json::parse(*text));
  } catch (const nlohmann::json::exception &e) {
    throw Error(fmt::format("corrupt claim record '{}': {}", claim_path(name, "json"), e.what()));
  } catch (const InputError &e) {
    // A value our own parsers refuse: the file is damaged, the caller's
    // input is not at fault (exit 1, not 2).
    throw Error(fmt::format("corrupt claim record '{}': {}", claim_path(name, "json"), e.what()));
  }
}

void StateDir::remove_claim(const std::string &name) {
  // The take goes first: a record without a take is still a whole claim,
  // a take without a record would look like a leak to gc.
  for (const char *ext : {"take", "json"}) {
    std::string p = claim_path(name, ext);
    if (::unlink(p.c_str()) < 0 && errno != ENOENT)
      throw Error("unlink", p, errno);
  }
}

std::vector<std::string> StateDir::claim_names() const {
  return json_record_names(root_ + "/claims");
}

void StateDir::write_run(const std::string &id, const nlohmann::json &record) {
  mkdir_p(root_ + "/runs");
  Staged(*this, record.dump()).replace(fmt::format("{}/runs/{}.json", root_, id));
}

std::optional<nlohmann::json> StateDir::read_run(const std::string &id) const {
  std::string path = fmt::format("{}/runs/{}.json", root_, id);
  auto text = read_if_exists(path);
  if (!text)
    return std::nullopt;
  try {
    return nlohmann::json::parse(*text);
  } catch (const nlohmann::json::exception &e) {
    throw Error(fmt::format("corrupt run record '{}': {}", path, e.what()));
  }
}

void StateDir::remove_run(const std::string &id) {
  std::string path = fmt::format("{}/runs/{}.json", root_, id);
  if (::unlink(path.c_str()) < 0 && errno != ENOENT)
    throw Error("unlink", path, errno);
}

std::vector<std::string> StateDir::run_ids() const {
  return json_record_names(root_ + "/runs");
}

std::optional<PoolEntry> StateDir::take_token(const PoolRef &pool, const std::string &name) {
  std::string dir = pool_dir(pool) + "/tokens";
  auto toks = list_dir(dir);
  if (toks.empty())
    return std::nullopt;
  ensure_dirs(nullptr);
  // Start at a random token so that concurrent claimers spread out instead
  // of all racing for the first directory entry.
  size_t start = (static_cast<size_t>(::gettid()) * 2654435761u) % toks.size();
  std::string dst = claim_path(name, "take");
  for (size_t i = 0; i < toks.size(); ++i) {
    const std::string &id = toks[(start + i) % toks.size()];
    std::string src = dir + "/" + id;
    if (::rename(src.c_str(), dst.c_str()) == 0)
      return pool_entry_from_text(id, read_file(dst));
    if (errno != ENOENT)
      throw Error("rename", src, errno);
  }
  return std::nullopt;
}

std::optional<std::string> StateDir::read_take(const std::string &name) const {
  auto text = read_if_exists(claim_path(name, "take"));
  if (!text)
    return std::nullopt;
  return take_id(*text);
}

std::vector<std::string> StateDir::taken_ids() const {
  std::vector<std::string> out;
  for (const auto &f : list_dir(root_ + "/claims"))
    if (ends_with(f, ".take"))
      if (auto text = read_if_exists(root_ + "/claims/" + f))
        out.push_back(take_id(*text));
  return out;
}

void StateDir::begin_entry(const PoolRef &pool, const std::string &id) {
  ensure_dirs(&pool);
  mkdir_p(pool_dir(pool) + "/making");
  Fd::open(pool_dir(pool) + "/making/" + id, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
}

void StateDir::end_entry(const PoolRef &pool, const std::string &id) {
  std::string p = pool_dir(pool) + "/making/" + id;
  if (::unlink(p.c_str()) < 0 && errno != ENOENT)
    throw Error("unlink", p, errno);
}

std::vector<std::string> StateDir::entries_in_making(const PoolRef &pool) const {
  return list_dir(pool_dir(pool) + "/making");
}

void StateDir::publish_token(const PoolRef &pool, const PoolEntry &entry) {
  ensure_dirs(&pool);
  Staged(*this, to_json(entry).dump()).replace(pool_dir(pool) + "/tokens/" + entry.id);
}

std::vector<std::string> StateDir::tokens(const PoolRef &pool) const {
  return list_dir(pool_dir(pool) + "/tokens");
}

bool StateDir::withdraw_token(const PoolRef &pool, const std::string &id) {
  ensure_dirs(nullptr);
  std::string src = pool_dir(pool) + "/tokens/" + id;
  ProcessId self = ProcessId::self();
  std::string tmp = fmt::format("{}/tmp/{}-{}.withdrawn.{}", root_, self.pid, self.start, id);
  if (::rename(src.c_str(), tmp.c_str()) < 0) {
    if (errno == ENOENT)
      return false;
    throw Error("rename", src, errno);
  }
  ::unlink(tmp.c_str());
  return true;
}

std::optional<PoolConfig> StateDir::read_pool(const PoolRef &pool) const {
  auto text = read_if_exists(pool_dir(pool) + "/pool.json");
  if (!text)
    return std::nullopt;
  std::string path = pool_dir(pool) + "/pool.json";
  try {
    auto j = nlohmann::json::parse(*text);
    return PoolConfig{j.at("parent"), j.at("target"), limits_from_json(j.at("defaults"))};
  } catch (const nlohmann::json::exception &e) {
    throw Error(fmt::format("corrupt pool record '{}': {}", path, e.what()));
  } catch (const InputError &e) {
    throw Error(fmt::format("corrupt pool record '{}': {}", path, e.what()));
  }
}

void StateDir::write_pool(const PoolRef &pool, const PoolConfig &cfg) {
  ensure_dirs(&pool);
  nlohmann::json j = {
      {"parent", cfg.parent}, {"target", cfg.target}, {"defaults", to_json(cfg.defaults)}};
  Staged(*this, j.dump()).replace(pool_dir(pool) + "/pool.json");
}

void StateDir::remove_pool(const PoolRef &pool) {
  std::string dir = pool_dir(pool);
  for (const auto &f : {"pool.json", "hits", "misses"}) {
    // (making/ is empty once no fill runs; a non-empty one stays: ENOTEMPTY)
    std::string p = dir + "/" + f;
    if (::unlink(p.c_str()) < 0 && errno != ENOENT)
      throw Error("unlink", p, errno);
  }
  for (const auto &d : {dir + "/tokens", dir + "/making", dir})
    if (::rmdir(d.c_str()) < 0 && errno != ENOENT && errno != ENOTEMPTY)
      throw Error("rmdir", d, errno);
}

std::vector<PoolRef> StateDir::pools() const {
  std::vector<PoolRef> out;
  for (const auto &backend : list_dir(root_ + "/pools"))
    for (const auto &key : list_dir(root_ + "/pools/" + backend))
      out.push_back(PoolRef{backend, unescape_key(key)});
  return out;
}

void StateDir::count(const PoolRef &pool, const char *counter) {
  ensure_dirs(&pool);
  // O_APPEND of one byte is atomic: no lock, no lost update, and the
  // count is the file size.
  std::string p = pool_dir(pool) + "/" + counter;
  Fd fd = Fd::open(p, O_WRONLY | O_APPEND | O_CREAT, 0600);
  check_sys(::write(fd.get(), "+", 1), "write", p);
}

uint64_t StateDir::counter(const PoolRef &pool, const char *counter) const {
  struct stat st;
  std::string p = pool_dir(pool) + "/" + counter;
  if (::stat(p.c_str(), &st) < 0) {
    if (errno == ENOENT)
      return 0;
    throw Error("stat", p, errno);
  }
  return static_cast<uint64_t>(st.st_size);
}

} // namespace rundkit
