#include "cgroup/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <sstream>
#include <thread>

#include "util/error.h"
#include "util/fd.h"

namespace rundkit::cgfs {

std::string join(const std::string &dir, const std::string &name) {
  if (name.empty())
    return dir;
  return dir + "/" + name;
}

bool exists(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void make(const std::string &path) { check_sys(::mkdir(path.c_str(), 0755), "mkdir", path); }

std::vector<std::string> make_all(const std::string &path) {
  std::vector<std::string> made;
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = path.find('/', pos + 1);
    std::string part = path.substr(0, pos);
    if (::mkdir(part.c_str(), 0755) == 0)
      made.push_back(part);
    else if (errno != EEXIST)
      throw Error("mkdir", part, errno);
  }
  return made;
}

void rename(const std::string &from, const std::string &to) {
  if (::rename(from.c_str(), to.c_str()) < 0)
    throw Error("rename", from + "' -> '" + to, errno);
}

bool remove(const std::string &path, int timeout_ms) {
  auto cg = Cgroup::open(path);
  return cg && cg->remove(timeout_ms);
}

std::vector<pid_t> procs(const std::string &path) {
  auto cg = Cgroup::open(path);
  if (!cg)
    throw Error("open", path, ENOENT);
  return cg->procs();
}

std::vector<std::string> children(const std::string &path) {
  std::vector<std::string> out;
  DIR *d = ::opendir(path.c_str());
  if (!d)
    throw Error("opendir", path, errno);
  while (auto *e = ::readdir(d)) {
    std::string n = e->d_name;
    if (e->d_type == DT_DIR && n != "." && n != "..")
      out.push_back(n);
  }
  ::closedir(d);
  return out;
}

std::string read(const std::string &path, const std::string &file) {
  std::string s = read_file(join(path, file));
  while (!s.empty() && s.back() == '\n')
    s.pop_back();
  return s;
}

void write(const std::string &path, const std::string &file, const std::string &value) {
  write_file(join(path, file), value);
}

std::vector<std::string> words(const std::string &path, const std::string &file) {
  std::vector<std::string> out;
  std::istringstream in(read(path, file));
  std::string w;
  while (in >> w)
    out.push_back(w);
  return out;
}


void kill_until_empty(const std::string &path, int timeout_ms) {
  if (auto cg = Cgroup::open(path))
    cg->kill_until_empty(timeout_ms);
}

PoolFile read_pool(const std::string &dir) {
  PoolFile f;
  std::istringstream in(read(dir, kPool));
  std::string key;
  uint64_t value;
  while (in >> key >> value) {
    if (key == "target")
      f.target = value;
    else if (key == "available")
      f.available = value;
    else if (key == "hits")
      f.hits = value;
    else if (key == "misses")
      f.misses = value;
  }
  return f;
}

} // namespace rundkit::cgfs

namespace rundkit {

namespace {

// Exponential back-off, bounded by a deadline: killed tasks leave a cgroup
// asynchronously, so its emptiness and its rmdir are waited for.
class Backoff {
public:
  Backoff(int timeout_ms, std::chrono::microseconds first)
      : deadline_(clock::now() + std::chrono::milliseconds(timeout_ms)), pause_(first) {}
  bool expired() const { return clock::now() >= deadline_; }
  void pause() {
    std::this_thread::sleep_for(pause_);
    pause_ = std::min(pause_ * 2, std::chrono::microseconds(20000));
  }

private:
  using clock = std::chrono::steady_clock;
  clock::time_point deadline_;
  std::chrono::microseconds pause_;
};


std::optional<uint64_t> dir_id_at(int dirfd, const char *name, const std::string &path) {
  struct stat st;
  if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH)) < 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return std::nullopt;
    throw Error("stat", path, errno);
  }
  if (!S_ISDIR(st.st_mode))
    return std::nullopt;
  return static_cast<uint64_t>(st.st_ino);
}

std::string dirname_of(const std::string &path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

} // namespace

std::optional<uint64_t> cgroup_id(const std::string &path) {
  return dir_id_at(AT_FDCWD, path.c_str(), path);
}

std::optional<Cgroup> Cgroup::open(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
      return std::nullopt;
    throw Error("open", path, errno);
  }
  Fd dir(fd, path);
  auto id = dir_id_at(dir.get(), "", path);
  if (!id)
    return std::nullopt;
  return Cgroup(std::move(dir), *id);
}

std::optional<Cgroup> Cgroup::open_if_same(const std::string &path, uint64_t id) {
  auto cg = open(path);
  if (!cg || cg->id() != id)
    return std::nullopt;
  return cg;
}

std::vector<pid_t> Cgroup::procs() const {
  std::vector<pid_t> out;
  std::istringstream in(read_file_at(dir_, cgfs::kProcs));
  pid_t pid;
  while (in >> pid)
    out.push_back(pid);
  return out;
}

void Cgroup::write(const std::string &file, const std::string &value) const {
  write_file_at(dir_, file, value);
}

void Cgroup::kill_until_empty(int timeout_ms) const {
  Backoff wait(timeout_ms, std::chrono::microseconds(50));
  for (;;) {
    auto pids = procs();
    if (pids.empty())
      return;
    if (wait.expired())
      throw Error("kill tasks of", path(), EBUSY);
    for (pid_t pid : pids)
      ::kill(pid, SIGKILL);
    wait.pause();
  }
}

bool Cgroup::remove(int timeout_ms) const {
  const std::string &p = path();
  size_t slash = p.rfind('/');
  std::string name = slash == std::string::npos ? p : p.substr(slash + 1);
  Fd parent = Fd::open(dirname_of(p), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  Backoff wait(timeout_ms, std::chrono::microseconds(100));
  for (;;) {
    // Checked right before each attempt: a newcomer that took the name is
    // never removed.  (It could only slip in between the check and the
    // rmdir; then it is empty, has never held a task of ours, and its
    // maker sees ENOENT.)
    if (dir_id_at(parent.get(), name.c_str(), p) != id_)
      return false;
    if (::unlinkat(parent.get(), name.c_str(), AT_REMOVEDIR) == 0)
      return true;
    if (errno == ENOENT)
      return false;
    if (errno != EBUSY || wait.expired())
      throw Error("rmdir", p, errno);
    wait.pause();
  }
}

} // namespace rundkit
