#include "util/temp.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "util/error.h"

namespace rundkit {

std::string make_temp_name() {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string name = fmt::format("{}{}.", kTempPrefix, ::getpid());
  for (int i = 0; i < 6; ++i)
    name += kChars[rng() % (sizeof(kChars) - 1)];
  return name;
}

std::optional<pid_t> temp_name_pid(const std::string &name) {
  if (!name.starts_with(kTempPrefix))
    return std::nullopt;
  std::string rest = name.substr(std::strlen(kTempPrefix));
  auto dot = rest.find('.');
  if (dot == 0 || dot == std::string::npos ||
      rest.find_first_not_of("0123456789") != dot)
    return std::nullopt;
  // No pid is above the kernel's PID_MAX_LIMIT (2^22): digits beyond that
  // (or beyond any integer) are not a pid, rather than a wrapped one.
  // Leading zeros are not how make_temp_name() writes a pid either.
  if (rest[0] == '0')
    return std::nullopt;
  unsigned long long pid = 0;
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + dot, pid);
  if (ec != std::errc() || end != rest.data() + dot || pid == 0 || pid > kPidMaxLimit)
    return std::nullopt;
  return static_cast<pid_t>(pid);
}

TempFile::TempFile(const Fd &dir, int flags) : dir_(dir) {
  // O_EXCL with a random suffix: retry the rare collision, not forever.
  for (int attempt = 0;; ++attempt) {
    name_ = make_temp_name();
    int fd = ::openat(dir.get(), name_.c_str(), flags | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      fd_ = Fd(fd, dir.path_of(name_));
      return;
    }
    if (errno != EEXIST || attempt == 8)
      throw Error("create", dir.path_of(name_), errno);
  }
}

TempFile::~TempFile() {
  if (linked_)
    ::unlinkat(dir_.get(), name_.c_str(), 0);
}

void TempFile::commit(const std::string &final_name) {
  check_sys(::renameat2(dir_.get(), name_.c_str(), dir_.get(), final_name.c_str(),
                        RENAME_NOREPLACE),
            "rename", dir_.path_of(final_name));
  linked_ = false;
}

void TempFile::replace(const std::string &final_name) {
  check_sys(::renameat(dir_.get(), name_.c_str(), dir_.get(), final_name.c_str()), "rename",
            dir_.path_of(final_name));
  linked_ = false;
}

void TempFile::unlink_now() {
  check_sys(::unlinkat(dir_.get(), name_.c_str(), 0), "unlink", dir_.path_of(name_));
  linked_ = false;
}

void write_file_staged(const std::string &path, const std::string &data, bool replace) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  Fd d = Fd::open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  TempFile t(d, O_WRONLY);
  for (size_t done = 0; done < data.size();) {
    ssize_t n = ::write(t.fd().get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    check_sys(n, "write", t.fd().path());
    done += static_cast<size_t>(n);
  }
  if (replace)
    t.replace(name);
  else
    t.commit(name);
}

} // namespace rundkit
