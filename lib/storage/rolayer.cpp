#include "storage/rolayer.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "storage/mount_table.h"
#include "util/error.h"

namespace rundkit {

namespace {

// Opens the directory `path` (O_PATH) without following a symbolic link in
// any component (the last one included): a symlinked target, or one reached
// through a symlinked directory, would put the view somewhere else than named.
Fd open_no_symlinks(const std::string &path, int flags, const char *what) {
  if (path.empty())
    throw InputError(fmt::format("{}: empty path", what));
  struct open_how how {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof(how)));
  if (fd < 0) {
    int err = errno;
    if (err == ELOOP)
      throw InputError(fmt::format("{} '{}' is, or is reached through, a symbolic link: "
                                   "name the real directory",
                                   what, path));
    if (err == ENOTDIR)
      throw InputError(fmt::format("{} '{}' is not a directory", what, path));
    throw Error("open", path, err);
  }
  Fd out(fd, path);
  // O_PATH first: opening a FIFO or device to look at it could block or
  // act; only a directory is opened for reading, through this descriptor.
  struct stat st;
  check_sys(::fstat(out.get(), &st), "stat", path);
  if (!S_ISDIR(st.st_mode))
    throw InputError(fmt::format("{} '{}' is not a directory", what, path));
  return out;
}

// The path of `fd` as the kernel names it: absolute, without symlinks.
std::string canonical_path(const Fd &fd) {
  std::string link = fmt::format("/proc/self/fd/{}", fd.get());
  char buf[4096];
  ssize_t n = ::readlink(link.c_str(), buf, sizeof(buf));
  check_sys(n, "readlink", link);
  if (n == static_cast<ssize_t>(sizeof(buf)))
    throw Error("readlink", link, ENAMETOOLONG);
  return std::string(buf, static_cast<size_t>(n));
}

struct statx statx_of(const Fd &fd) {
  struct statx st;
  check_sys(::statx(fd.get(), "", AT_EMPTY_PATH, STATX_TYPE | STATX_MNT_ID, &st), "stat",
            fd.path());
  return st;
}

bool is_mount_root(const struct statx &st) {
  return (st.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
         (st.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

bool dir_is_empty(const Fd &dir) {
  Fd scan = Fd::openat(dir, ".", O_RDONLY | O_DIRECTORY);
  DIR *d = ::fdopendir(scan.get());
  if (!d)
    throw Error("opendir", dir.path(), errno);
  scan.release();
  bool empty = true;
  while (struct dirent *e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      empty = false;
      break;
    }
  ::closedir(d);
  return empty;
}

// kRoLayerEmptyDir, made if missing; refused unless it is a root-owned
// directory nobody else can write to, and empty.
std::string empty_lower_dir() {
  for (const char *d : {"/run/reflinkfs", kRoLayerEmptyDir})
    if (::mkdir(d, 0755) != 0 && errno != EEXIST)
      throw Error("mkdir", d, errno);
  Fd dir = open_no_symlinks(kRoLayerEmptyDir, O_PATH, "directory");
  struct stat st;
  check_sys(::fstat(dir.get(), &st), "stat", kRoLayerEmptyDir);
  if (st.st_uid != 0 || (st.st_mode & 022) || !dir_is_empty(dir))
    throw Error(fmt::format("'{}' must be an empty directory owned by root and writable by "
                            "nobody else (it is the empty bottom layer of one-layer views)",
                            kRoLayerEmptyDir));
  return kRoLayerEmptyDir;
}

// The messages the kernel queued on a file system context (fsopen(2)).
std::string fs_context_log(int fsfd) {
  std::string out;
  char buf[512];
  for (ssize_t n; (n = ::read(fsfd, buf, sizeof(buf))) > 0;) {
    std::string line(buf, static_cast<size_t>(n));
    if (line.size() > 2 && line[1] == ' ')
      line = line.substr(2); // "e overlayfs: ..." -> "overlayfs: ..."
    out += (out.empty() ? "" : "; ") + line;
  }
  return out;
}

} // namespace

std::string layer_root(const std::string &layer) {
  if (layer.empty())
    throw InputError("layer: empty path");
  struct stat st;
  std::string fs = layer + "/fs";
  if (::stat(fs.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    return fs;
  check_sys(::stat(layer.c_str(), &st), "stat", layer);
  if (!S_ISDIR(st.st_mode))
    throw Error("layer", layer, ENOTDIR);
  return layer;
}

RoLayerMount mount_ro_layers(const std::vector<std::string> &layers, const std::string &target,
                             const RoLayerOptions &opts) {
  if (layers.empty())
    throw InputError("rolayer mount needs at least one layer");
  // Every check before anything is made or mounted.
  std::vector<std::string> roots;
  for (const auto &l : layers) {
    std::string root = layer_root(l);
    // overlayfs splits lowerdir on ':' and mount(2) data on ','; escaping
    // is fragile across kernels, so such paths are refused outright.
    if (root.find_first_of(":,\\") != std::string::npos)
      throw InputError(fmt::format("layer path '{}' contains ':', ',' or '\\', which overlayfs "
                                   "options cannot carry",
                                   root));
    roots.push_back(root);
  }
  // The target is opened once, without symlinks, and everything below acts
  // on that descriptor: the directory checked is the directory mounted on.
  Fd tfd = open_no_symlinks(target, O_PATH, "target");
  if (is_mount_root(statx_of(tfd)))
    throw Error(fmt::format("'{}' is already a mount point", target));
  if (!dir_is_empty(tfd))
    throw InputError(fmt::format("target '{}' is not empty: a view is mounted on an empty "
                                 "directory, so that nothing is hidden under it",
                                 target));
  std::string where = canonical_path(tfd);

  RoLayerMount out;
  out.kind = "overlay";
  for (auto it = roots.rbegin(); it != roots.rend(); ++it)
    out.lowerdir += (out.lowerdir.empty() ? "" : ":") + *it;
  if (roots.size() == 1)
    out.lowerdir += std::string(":") + empty_lower_dir();
  if (out.lowerdir.size() + 9 >= 4096)
    throw InputError(fmt::format("{} layers make a lowerdir option of {} bytes; mount(2) takes "
                                 "one page (4096)",
                                 roots.size(), out.lowerdir.size() + 9));

  // The new mount API: the mount is made detached with every flag already
  // set, then attached to the opened target, so there is no instant at
  // which the view exists with suid or device files honoured.
  int fsfd = ::fsopen("overlay", FSOPEN_CLOEXEC);
  if (fsfd < 0)
    throw Error("fsopen overlay for", where, errno);
  Fd fsctx(fsfd, "overlay");
  auto config = [&](unsigned cmd, const char *key, const char *value) {
    if (::fsconfig(fsfd, cmd, key, value, 0) != 0) {
      int err = errno;
      std::string log = fs_context_log(fsfd);
      throw Error(fmt::format("mount overlay on '{}': {}{}", where, std::strerror(err),
                              log.empty() ? "" : " (" + log + ")"));
    }
  };
  config(FSCONFIG_SET_STRING, "source", kRoLayerSource);
  config(FSCONFIG_SET_STRING, "lowerdir", out.lowerdir.c_str());
  config(FSCONFIG_SET_FLAG, "ro", nullptr);
  config(FSCONFIG_CMD_CREATE, nullptr, nullptr);
  unsigned attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  if (!opts.exec)
    attrs |= MOUNT_ATTR_NOEXEC;
  int mfd = ::fsmount(fsfd, FSMOUNT_CLOEXEC, attrs);
  if (mfd < 0)
    throw Error("fsmount overlay for", where, errno);
  Fd mnt(mfd, where);
  if (::move_mount(mfd, "", tfd.get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0)
    throw Error("mount overlay on", where, errno);
  out.mount = Mount(where);
  // Private: nothing mounted later under the view propagates anywhere, and
  // nothing from elsewhere propagates into it.
  struct mount_attr attr {};
  attr.propagation = MS_PRIVATE;
  if (::mount_setattr(mfd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) != 0)
    throw Error("make private", where, errno);
  return out;
}

void umount_ro_layers(const std::string &target) {
  Fd tfd = open_no_symlinks(target, O_PATH, "target");
  auto st = statx_of(tfd);
  if (!is_mount_root(st))
    throw Error(fmt::format("'{}' is not a mount point", target));
  std::string where = canonical_path(tfd);
  auto entry = find_mount(static_cast<int>(st.stx_mnt_id));
  if (!entry || entry->target != where)
    throw Error(fmt::format("'{}' is not in this mount namespace's mount table", target));
  auto lower = entry->fs_option("lowerdir");
  bool view = entry->fstype == "overlay" && entry->source == kRoLayerSource && lower &&
              !entry->fs_option("upperdir") && entry->has_vfs_option("ro") &&
              entry->has_vfs_option("nosuid") && entry->has_vfs_option("nodev");
  if (!view)
    throw Error(fmt::format("'{}' is a {} mount of '{}' ({}), not a read-only layer view made "
                            "by 'reflinkfs rolayer mount': left mounted",
                            target, entry->fstype, entry->source, entry->vfs_options));
  tfd.reset(); // our own reference would make the view busy
  check_sys(::umount2(where.c_str(), UMOUNT_NOFOLLOW), "umount", where);
}

} // namespace rundkit
