#include "cgroup/fs.h"

#include <dirent.h>
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
  using clock = std::chrono::steady_clock;
  auto deadline = clock::now() + std::chrono::milliseconds(timeout_ms);
  auto pause = std::chrono::microseconds(100);
  for (;;) {
    if (::rmdir(path.c_str()) == 0)
      return true;
    if (errno == ENOENT)
      return false;
    if (errno != EBUSY || clock::now() >= deadline)
      throw Error("rmdir", path, errno);
    // Killed tasks leave the cgroup asynchronously; back off, bounded.
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(20000));
  }
}

std::vector<pid_t> procs(const std::string &path) {
  std::vector<pid_t> out;
  std::istringstream in(read_file(join(path, kProcs)));
  pid_t pid;
  while (in >> pid)
    out.push_back(pid);
  return out;
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

} // namespace rundkit::cgfs

#include <signal.h>

namespace rundkit::cgfs {

void kill_until_empty(const std::string &path, int timeout_ms) {
  using clock = std::chrono::steady_clock;
  auto deadline = clock::now() + std::chrono::milliseconds(timeout_ms);
  auto pause = std::chrono::microseconds(50);
  for (;;) {
    auto pids = procs(path);
    if (pids.empty())
      return;
    if (clock::now() >= deadline)
      throw Error("kill tasks of", path, EBUSY);
    for (pid_t pid : pids)
      ::kill(pid, SIGKILL);
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(20000));
  }
}

} // namespace rundkit::cgfs
