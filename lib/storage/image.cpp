#include "storage/image.h"

#include <endian.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <limits>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <fmt/ranges.h>

#include "util/error.h"
#include "util/process.h"
#include "util/temp.h"
#include "storage/layer.h"

namespace rundkit {

namespace {

constexpr int kSidecarVersion = 1;
// ext2/3/4 superblock: 1024 bytes in, magic 0xEF53 at offset 56.
constexpr off_t kExtMagicOffset = 1024 + 56;
constexpr uint16_t kExtMagic = 0xEF53;

int64_t mtime_ns_of(const struct stat &st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}


} // namespace

std::pair<std::string, std::string> split_new_file_path(const std::string &path,
                                                        const std::string &what) {
  if (path.empty())
    throw InputError(fmt::format("{}: empty path", what));
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty() || base == "." || base == "..")
    throw InputError(fmt::format("{} '{}': expected a path ending in a file name", what, path));
  // The sidecar (".json") and the temporary names must fit NAME_MAX too.
  if (base.size() + 5 > NAME_MAX)
    throw InputError(fmt::format("{} '{}': file name longer than {} bytes", what, path,
                                 NAME_MAX - 5));
  return {dir, base};
}

void check_template_request(const std::string &path, uint64_t size, const std::string &fs) {
  if (!template_fs_supported(fs))
    throw InputError(fmt::format("unsupported --fs '{}': templates are ext2, ext3 or ext4 "
                                 "(formatted by e2fsprogs)",
                                 fs));
  if (size < kMinTemplateSize)
    throw InputError(fmt::format("template size {} bytes is too small: at least 16M", size));
  if (size > static_cast<uint64_t>(std::numeric_limits<off_t>::max()))
    throw InputError(fmt::format("template size {} bytes is larger than a file can be", size));
  split_new_file_path(path, "template");
}

void run_image_tool(const std::vector<std::string> &argv) {
  // util/process spawns as posix_spawn does (CLONE_VM|CLONE_VFORK, see
  // spawn()): the benchmark calls this from hundreds of threads at once,
  // and no page table of a large multi-threaded process is copied.
  SpawnOptions o;
  o.argv = argv;
  RunResult r = run(o);
  if (r.status.ok())
    return;
  // The tools say why on stderr; a few only on stdout.
  std::string output = r.stderr_tail.empty() ? r.out : r.stderr_tail;
  if (output.size() > 600)
    output = "..." + output.substr(output.size() - 600);
  while (!output.empty() && output.back() == '\n')
    output.pop_back();
  std::string how = r.status.is_exited() ? fmt::format("exit {}", r.status.code())
                                         : fmt::format("signal {}", r.status.signal());
  if (r.status.code() == 127)
    how += ", not installed?";
  throw ProcessError(shell_join(argv), r.status, r.stderr_tail,
                     fmt::format("'{}' failed ({}): {}", fmt::join(argv, " "), how, output));
}

bool template_fs_supported(const std::string &fs) {
  return fs == "ext4" || fs == "ext3" || fs == "ext2";
}

std::vector<std::string> template_mkfs_command(const std::string &fs) {
  if (!template_fs_supported(fs))
    throw Error(fmt::format("unsupported --fs '{}': templates are ext2, ext3 or ext4 "
                            "(formatted by e2fsprogs)",
                            fs));
  // -F: the target is a regular file, not a device.  -m 0: a writable layer
  // serves one unprivileged workload; reserving 5% for root helps nobody.
  return {"mkfs." + fs, "-F", "-q", "-b", "4096", "-m", "0", "-L", "rundkit-rw",
          "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard"};
}

nlohmann::json TemplateInfo::to_json() const {
  return {{"path", path},         {"fs", fs},        {"size", size},
          {"mkfs", mkfs},         {"ino", ino},      {"mtime_ns", mtime_ns},
          {"allocated", allocated}};
}

std::string template_sidecar_path(const std::string &image) { return image + ".json"; }

TemplateInfo create_template(const std::string &path, uint64_t size, const std::string &fs) {
  check_template_request(path, size, fs); // every check on the input, before any work
  auto mkfs = template_mkfs_command(fs);
  auto [dirname, base] = split_new_file_path(path, "template");
  Fd dir = Fd::open(dirname, O_RDONLY | O_DIRECTORY);
  // Checked first so that an existing image or sidecar is refused before
  // anything is written; the renames below re-check without a race.
  struct stat st;
  for (const auto &name : {base, base + ".json"})
    if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
      throw Error("create", dir.path_of(name), EEXIST);

  TempFile image(dir, O_RDWR);
  check_sys(::ftruncate(image.fd().get(), static_cast<off_t>(size)), "truncate",
            dir.path_of(image.name()));
  auto argv = mkfs;
  argv.push_back(dir.path_of(image.name()));
  run_image_tool(argv);
  // Readable by all: templates are shared, and a clone gets its own mode.
  check_sys(::fchmod(image.fd().get(), 0644), "chmod", dir.path_of(image.name()));
  check_sys(::fsync(image.fd().get()), "fsync", dir.path_of(image.name()));
  check_sys(::fstat(image.fd().get(), &st), "stat", dir.path_of(image.name()));

  TemplateInfo info;
  info.path = path;
  info.fs = fs;
  info.size = size;
  info.mkfs = mkfs;
  info.ino = st.st_ino;
  info.mtime_ns = mtime_ns_of(st);
  info.allocated = static_cast<uint64_t>(st.st_blocks) * 512;

  nlohmann::json sidecar = {{"version", kSidecarVersion}, {"fs", fs},
                            {"size", size},               {"mkfs", mkfs},
                            {"identity", {{"ino", info.ino}, {"mtime_ns", info.mtime_ns}}}};
  TempFile side(dir, O_WRONLY);
  std::string text = sidecar.dump(2) + "\n";
  if (::write(side.fd().get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    throw Error("write", dir.path_of(side.name()), errno ? errno : EIO);
  check_sys(::fchmod(side.fd().get(), 0644), "chmod", dir.path_of(side.name()));
  check_sys(::fsync(side.fd().get()), "fsync", dir.path_of(side.name()));
  // Image first: a crash between the renames leaves an image without a
  // sidecar, which `template show` refuses, never a sidecar describing a
  // missing or different image.
  image.commit(base);
  side.commit(base + ".json");
  check_sys(::fsync(dir.get()), "fsync", dir.path());
  return info;
}

Template Template::open(const std::string &path) {
  Fd fd = Fd::open(path, O_RDONLY);
  std::string sidecar_path = template_sidecar_path(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(sidecar_path));
  } catch (const Error &e) {
    if (e.err() == ENOENT)
      throw Error(fmt::format("template '{}' has no sidecar '{}': not made by "
                              "'reflinkfs template create' (or its creation was interrupted)",
                              path, sidecar_path));
    throw;
  } catch (const nlohmann::json::exception &e) {
    throw Error(fmt::format("template sidecar '{}' is not valid JSON: {}", sidecar_path, e.what()));
  }
  TemplateInfo info;
  info.path = path;
  try {
    if (j.at("version").get<int>() != kSidecarVersion)
      throw Error(fmt::format("template sidecar '{}' has version {}, expected {}", sidecar_path,
                              j.at("version").dump(), kSidecarVersion));
    info.fs = j.at("fs").get<std::string>();
    info.size = j.at("size").get<uint64_t>();
    info.mkfs = j.at("mkfs").get<std::vector<std::string>>();
    info.ino = j.at("identity").at("ino").get<uint64_t>();
    info.mtime_ns = j.at("identity").at("mtime_ns").get<int64_t>();
  } catch (const nlohmann::json::exception &e) {
    throw Error(fmt::format("template sidecar '{}' is malformed: {}", sidecar_path, e.what()));
  }

  struct stat st;
  check_sys(::fstat(fd.get(), &st), "stat", path);
  auto mismatch = [&](const std::string &what) {
    return Error(fmt::format("template '{}' is not the image '{}' describes: {}; "
                             "re-create it with 'reflinkfs template create'",
                             path, sidecar_path, what));
  };
  if (!S_ISREG(st.st_mode))
    throw mismatch("not a regular file");
  if (static_cast<uint64_t>(st.st_size) != info.size)
    throw mismatch(fmt::format("size is {} bytes, recorded {}", st.st_size, info.size));
  if (st.st_ino != info.ino || mtime_ns_of(st) != info.mtime_ns)
    throw mismatch("inode or modification time differ from the recorded ones "
                   "(replaced or written to since it was made)");
  if (template_fs_supported(info.fs)) {
    uint16_t magic = 0;
    if (::pread(fd.get(), &magic, sizeof(magic), kExtMagicOffset) != sizeof(magic) ||
        le16toh(magic) != kExtMagic)
      throw mismatch(fmt::format("no {} superblock", info.fs));
  }
  info.allocated = static_cast<uint64_t>(st.st_blocks) * 512;
  return Template(std::move(fd), std::move(info));
}

} // namespace rundkit
