#include "storage/layer.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/temp.h"
#include "storage/mount.h"

namespace rundkit {

namespace {

// The xattr gc reads: "<pid>:<start time>" of the process that owns a clone.
constexpr const char *kOwnerXattr = "user.reflinkfs.owner";

// Errors FICLONE returns when the file system (or this pair of files) cannot
// share extents, as opposed to a real I/O or permission failure.
bool cannot_reflink(int err) {
  return err == EOPNOTSUPP || err == ENOTTY || err == EINVAL || err == EXDEV || err == ENOSYS;
}

Error no_reflink_error(const Fd &dir, const std::string &target, int err) {
  return Error(fmt::format(
      "cannot reflink '{}': the file system of '{}' is {}, which does not share extents "
      "(FICLONE: {}); keep templates and layers on XFS made with 'mkfs.xfs -m reflink=1' "
      "(the default since xfsprogs 5.1) or on btrfs, or pass --fallback copy",
      target, dir.path(), filesystem_of(dir), std::strerror(err)));
}

// Refuses a destination directory on another file system than the template
// before anything is created there.  btrfs subvolumes have their own st_dev
// yet reflink between each other, so on btrfs FICLONE itself decides.
void check_same_fs(const Template &tmpl, const Fd &dir, const CloneOptions &opts) {
  if (opts.fallback == Fallback::kCopy)
    return;
  struct stat ts, ds;
  check_sys(::fstat(tmpl.fd().get(), &ts), "stat", tmpl.info().path);
  check_sys(::fstat(dir.get(), &ds), "stat", dir.path());
  if (ts.st_dev == ds.st_dev)
    return;
  std::string tfs = filesystem_of(tmpl.fd()), dfs = filesystem_of(dir);
  if (tfs == "btrfs" && dfs == "btrfs")
    return;
  throw Error(fmt::format("'{}' ({}) is on another file system than template '{}' ({}): "
                          "a reflink clone must stay on the template's file system",
                          dir.path(), dfs, tmpl.info().path, tfs));
}

// Fills `dst` from the template by FICLONE, or by copy if allowed.
CloneMethod fill_layer(const Template &tmpl, const Fd &dir, const Fd &dst,
                       const std::string &target, Fallback fallback) {
  if (::ioctl(dst.get(), FICLONE, tmpl.fd().get()) == 0)
    return CloneMethod::kReflink;
  int err = errno;
  if (!cannot_reflink(err))
    throw Error("clone", target, err);
  if (err == EXDEV && fallback == Fallback::kNone)
    throw Error(fmt::format("cannot reflink '{}' into '{}': they are on different file systems "
                            "(FICLONE: {})",
                            tmpl.info().path, dir.path(), std::strerror(err)));
  if (fallback == Fallback::kNone)
    throw no_reflink_error(dir, target, err);
  copy_sparse(tmpl.fd(), dst, tmpl.info().size);
  return CloneMethod::kCopy;
}

std::string alive_reason(pid_t pid) { return fmt::format("pid {} is alive", pid); }

// Only for a pid > 0: kill(0, sig) addresses our own process group and
// always succeeds, which made a forged `.reflinkfs-tmp.0.*` live forever.
bool pid_alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// The writer's pid in temporary file `name`, if the name carries a pid a
// process can have: > 0 and written exactly as the number (no leading zeros,
// nothing that overflows pid_t into another pid).  0 for a temporary name
// without one; nullopt when `name` is not a temporary name at all.
std::optional<pid_t> temp_writer(const std::string &name) {
  if (!name.starts_with(kTempPrefix))
    return std::nullopt;
  return temp_name_pid(name).value_or(0);
}

// Whether any process holds (dev, ino) open; scanning /proc is the only
// way to know, and gc is rare enough to afford it.  Throws when a process's
// descriptors cannot be read (not root): then nobody can say the file is
// unused.
bool held_open(dev_t dev, ino_t ino) {
  DIR *proc = ::opendir("/proc");
  if (!proc)
    throw Error("opendir", "/proc", errno);
  bool found = false;
  while (struct dirent *p = ::readdir(proc)) {
    if (p->d_name[0] < '0' || p->d_name[0] > '9')
      continue;
    std::string fddir = fmt::format("/proc/{}/fd", p->d_name);
    DIR *fds = ::opendir(fddir.c_str());
    if (!fds && errno != ENOENT && errno != ESRCH) {
      int err = errno;
      ::closedir(proc);
      throw Error("cannot tell whether a process holds it open: opendir", fddir, err);
    }
    if (!fds)
      continue; // exited meanwhile
    while (struct dirent *f = ::readdir(fds)) {
      struct stat st;
      if (f->d_name[0] != '.' &&
          ::stat(fmt::format("{}/{}", fddir, f->d_name).c_str(), &st) == 0 &&
          st.st_dev == dev && st.st_ino == ino) {
        found = true;
        break;
      }
    }
    ::closedir(fds);
    if (found)
      break;
  }
  ::closedir(proc);
  return found;
}

} // namespace

const char *clone_method_name(CloneMethod m) {
  return m == CloneMethod::kReflink ? "reflink" : "copy";
}

CloneMethod clone_layer(const Template &tmpl, const std::string &dest, const CloneOptions &opts) {
  auto [dirname, base] = split_new_file_path(dest, "destination");
  Fd dir = Fd::open(dirname, O_RDONLY | O_DIRECTORY);
  struct stat st;
  if (::fstatat(dir.get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
    throw Error("create", dest, EEXIST);
  check_same_fs(tmpl, dir, opts);

  TempFile tmp(dir, O_WRONLY);
  CloneMethod method = fill_layer(tmpl, dir, tmp.fd(), dest, opts.fallback);
  if (opts.owner) {
    std::string value = fmt::format("{}:{}", opts.owner->pid, opts.owner->start);
    check_sys(::fsetxattr(tmp.fd().get(), kOwnerXattr, value.data(), value.size(), 0),
              "setxattr", tmp.fd().path());
  }
  // No fsync: a writable layer is thrown away, never recovered after power
  // loss, and XFS and btrfs log the clone before the rename that names it.
  tmp.commit(base);
  return method;
}

VolatileLayer open_volatile_layer(const Template &tmpl, const std::string &dirname, bool direct,
                                  Fallback fallback) {
  Fd dir = Fd::open(dirname, O_RDONLY | O_DIRECTORY);
  CloneOptions opts;
  opts.fallback = fallback;
  check_same_fs(tmpl, dir, opts);
  int dflag = direct ? O_DIRECT : 0;
  VolatileLayer layer;
  // O_TMPFILE: the inode never has a name, so there is no instant at which
  // a kill -9 could leave a file behind.
  int fd = ::openat(dir.get(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC | dflag, 0600);
  if (fd >= 0) {
    layer.fd = Fd(fd, dir.path_of("(O_TMPFILE)"));
  } else if (errno == EOPNOTSUPP || errno == EISDIR) {
    TempFile tmp(dir, O_RDWR | dflag);
    tmp.unlink_now();
    layer.fd = std::move(tmp.fd());
  } else {
    throw Error("open O_TMPFILE", dirname, errno);
  }
  if (direct && fallback == Fallback::kCopy) {
    // Copy through a buffered description of the same inode: O_DIRECT would
    // demand aligned buffers from the copy loop for no benefit.
    Fd buffered = Fd::open(fmt::format("/proc/self/fd/{}", layer.fd.get()), O_RDWR);
    layer.method = fill_layer(tmpl, dir, buffered, dirname, fallback);
  } else {
    layer.method = fill_layer(tmpl, dir, layer.fd, dirname, fallback);
  }
  return layer;
}

std::vector<std::string> substitute_layer_fd(std::vector<std::string> argv, int fd) {
  const std::string num = std::to_string(fd);
  const std::string path = "/proc/self/fd/" + num;
  for (auto &arg : argv) {
    for (auto [key, value] : {std::pair<std::string, const std::string &>{"{fd}", num},
                              {"{path}", path}}) {
      for (size_t pos; (pos = arg.find(key)) != std::string::npos;)
        arg.replace(pos, key.size(), value);
    }
  }
  return argv;
}

void exec_with_layer(Fd layer, std::vector<std::string> argv) {
  if (argv.empty())
    throw Error("no command given to run with the layer");
  int fd = layer.release();
  argv = substitute_layer_fd(std::move(argv), fd);
  int flags = ::fcntl(fd, F_GETFD);
  check_sys(::fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC), "fcntl", "layer descriptor");
  check_sys(::setenv("REFLINKFS_FD", std::to_string(fd).c_str(), 1), "setenv", "REFLINKFS_FD");
  std::vector<char *> cargv;
  for (auto &a : argv)
    cargv.push_back(a.data());
  cargv.push_back(nullptr);
  ::execvp(cargv[0], cargv.data());
  int err = errno;
  ::close(fd);
  throw Error("exec", argv[0], err);
}

std::vector<GcEntry> gc_layers(const std::string &dirname, bool dry_run) {
  Fd dir = Fd::open(dirname, O_RDONLY | O_DIRECTORY);
  Fd scan = Fd::openat(dir, ".", O_RDONLY | O_DIRECTORY);
  DIR *d = ::fdopendir(scan.get());
  if (!d)
    throw Error("opendir", dirname, errno);
  scan.release();
  std::vector<std::string> names;
  while (struct dirent *e = ::readdir(d))
    if (e->d_type == DT_REG || e->d_type == DT_UNKNOWN)
      names.emplace_back(e->d_name);
  ::closedir(d);

  // One entry that cannot be judged never stops the others: it is listed,
  // kept, and marked failed so the command exits 1.
  std::vector<GcEntry> out;
  auto failed = [&](GcEntry entry, const std::string &why) {
    entry.failed = true;
    entry.reason += (entry.reason.empty() ? "" : ", but ") + why + ": kept";
    out.push_back(std::move(entry));
  };
  for (const auto &name : names) {
    struct stat st;
    if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) // gone meanwhile is fine
        failed(GcEntry{name, false, {}, false}, Error("stat", dir.path_of(name), errno).what());
      continue;
    }
    if (!S_ISREG(st.st_mode))
      continue;
    GcEntry entry{name, false, {}, false};
    if (auto pid = temp_writer(name)) {
      if (*pid == 0) {
        entry.reason = "temporary file without a valid writer pid";
      } else if (pid_alive(*pid)) {
        entry.reason = fmt::format("temporary file of running {}", alive_reason(*pid));
        out.push_back(entry);
        continue;
      } else {
        entry.reason = fmt::format("temporary file of dead pid {}", *pid);
      }
    } else {
      char value[64];
      ssize_t n = ::lgetxattr(dir.path_of(name).c_str(), kOwnerXattr, value, sizeof(value) - 1);
      if (n < 0 && (errno == ENODATA || errno == ENOTSUP || errno == ENOENT))
        continue; // not ours: templates, sidecars, anything else
      if (n < 0) {
        failed(entry, Error(fmt::format("cannot read {} of", kOwnerXattr), dir.path_of(name),
                            errno)
                          .what());
        continue;
      }
      value[n] = 0;
      pid_t owner = 0;
      unsigned long long start = 0;
      if (std::sscanf(value, "%d:%llu", &owner, &start) != 2)
        continue;
      if (ProcessId{owner, start}.alive()) {
        entry.reason = fmt::format("clone owned by running pid {}", owner);
        out.push_back(entry);
        continue;
      }
      entry.reason = fmt::format("clone of dead owner pid {}", owner);
    }
    bool open_now = false;
    try {
      open_now = held_open(st.st_dev, st.st_ino);
    } catch (const Error &e) {
      failed(entry, e.what());
      continue;
    }
    if (open_now) {
      entry.reason += ", but still open by a process: kept";
    } else if (dry_run) {
      entry.reason += ": would remove";
    } else if (::unlinkat(dir.get(), name.c_str(), 0) != 0) {
      failed(entry, Error("unlink", dir.path_of(name), errno).what());
      continue;
    } else {
      entry.removed = true;
    }
    out.push_back(entry);
  }
  return out;
}

nlohmann::json to_json(const std::vector<GcEntry> &entries) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto &e : entries)
    arr.push_back(
        {{"name", e.name}, {"removed", e.removed}, {"failed", e.failed}, {"reason", e.reason}});
  return arr;
}

void copy_sparse(const Fd &src, const Fd &dst, uint64_t size) {
  check_sys(::ftruncate(dst.get(), static_cast<off_t>(size)), "truncate", dst.path());
  off_t pos = 0;
  const off_t end = static_cast<off_t>(size);
  std::vector<char> buf(1 << 20);
  while (pos < end) {
    off_t data = ::lseek(src.get(), pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO)
      break; // only a hole remains
    check_sys(data, "seek", src.path());
    off_t hole = check_sys(::lseek(src.get(), data, SEEK_HOLE), "seek", src.path());
    off_t in = data, out = data;
    while (in < hole) {
      ssize_t n = ::copy_file_range(src.get(), &in, dst.get(), &out,
                                    static_cast<size_t>(hole - in), 0);
      if (n < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == EINVAL)) {
        // Across file system types the kernel refuses; copy by hand.
        n = ::pread(src.get(), buf.data(), std::min<size_t>(buf.size(), hole - in), in);
        check_sys(n, "read", src.path());
        if (n > 0 && ::pwrite(dst.get(), buf.data(), n, out) != n)
          throw Error("write", dst.path(), errno ? errno : EIO);
        in += n;
        out += n;
      }
      check_sys(n, "copy", dst.path());
      if (n == 0)
        throw Error("copy", dst.path(), EIO);
    }
    pos = hole;
  }
}

} // namespace rundkit
