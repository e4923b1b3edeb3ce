#include "storage/oci_image.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/cli.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/process.h"
#include "util/sha256.h"
#include "util/temp.h"

namespace rundkit {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr size_t kMaxJsonBlob = 4u << 20; // index, manifest, config

const char *const kManifestTypes[] = {"application/vnd.oci.image.manifest.v1+json",
                                      "application/vnd.docker.distribution.manifest.v2+json"};
const char *const kIndexTypes[] = {"application/vnd.oci.image.index.v1+json",
                                   "application/vnd.docker.distribution.manifest.list.v2+json"};

template <size_t N> bool one_of(const std::string &s, const char *const (&set)[N]) {
  for (const char *x : set)
    if (s == x)
      return true;
  return false;
}

bool is_layer_type(const std::string &t) {
  for (const char *p : {"application/vnd.oci.image.layer.v1.tar",
                        "application/vnd.oci.image.layer.nondistributable.v1.tar",
                        "application/vnd.docker.image.rootfs.diff.tar"})
    if (t == p || t == std::string(p) + "+gzip" || t == std::string(p) + "+zstd" ||
        t == std::string(p) + ".gzip")
      return true;
  return false;
}

// A descriptor's digest as a checked "sha256:HEX"; the HEX is returned.
std::string digest_hex(const std::string &digest, const std::string &what) {
  if (digest.rfind("sha256:", 0) != 0)
    throw InputError(fmt::format("{}: digest '{}' is not sha256 (the only algorithm accepted)",
                                 what, digest));
  std::string hex = digest.substr(7);
  if (hex.size() != 64 || hex.find_first_not_of("0123456789abcdef") != std::string::npos)
    throw InputError(fmt::format("{}: digest '{}' is not 64 lower-case hex digits", what, digest));
  return hex;
}

struct Descriptor {
  std::string media_type, digest;
  int64_t size = -1;
  json annotations, platform;
};

Descriptor descriptor(const json &j, const std::string &what) {
  try {
    Descriptor d;
    d.media_type = j.at("mediaType").get<std::string>();
    d.digest = j.at("digest").get<std::string>();
    d.size = j.at("size").get<int64_t>();
    d.annotations = j.value("annotations", json::object());
    d.platform = j.value("platform", json::object());
    if (d.size < 0)
      throw InputError(fmt::format("{}: negative size", what));
    digest_hex(d.digest, what);
    return d;
  } catch (const json::exception &e) {
    throw InputError(fmt::format("{}: not a descriptor ({})", what, e.what()));
  }
}

// The blob a descriptor names, opened (never through a symlink: a layout
// is data, not a place to be sent elsewhere).
Fd open_blob(const std::string &layout, const Descriptor &d, const std::string &what) {
  std::string path = layout + "/blobs/sha256/" + digest_hex(d.digest, what);
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    throw InputError(fmt::format("{}: blob {}: {}", what, path,
                                 errno == ELOOP ? "a symlink (refused)" : std::strerror(errno)));
  Fd f(fd, path);
  struct stat st;
  check_sys(::fstat(fd, &st), "stat", path);
  if (!S_ISREG(st.st_mode))
    throw InputError(fmt::format("{}: blob {} is not a regular file", what, path));
  if (st.st_size != d.size)
    throw InputError(fmt::format("{}: blob {} is {} bytes, its descriptor says {}", what, path,
                                 st.st_size, d.size));
  return f;
}

// A JSON blob, read whole and checked against its digest.
json read_json_blob(const std::string &layout, const Descriptor &d, const std::string &what) {
  if (static_cast<size_t>(d.size) > kMaxJsonBlob)
    throw InputError(fmt::format("{}: {} bytes, more than a {} can be", what, d.size, what));
  Fd f = open_blob(layout, d, what);
  std::string data(static_cast<size_t>(d.size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::pread(f.get(), data.data() + got, data.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      throw Error("read", f.path(), errno);
    if (n == 0)
      throw InputError(fmt::format("{}: blob {} shrank while read", what, f.path()));
    got += static_cast<size_t>(n);
  }
  Sha256 h;
  h.update(data.data(), data.size());
  std::string hex = h.hex();
  if ("sha256:" + hex != d.digest)
    throw InputError(fmt::format("{}: blob {} has sha256:{}, not the digest that names it", what,
                                 f.path(), hex));
  auto j = json::parse(data, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw InputError(fmt::format("{}: blob {} is not a JSON object", what, f.path()));
  return j;
}

std::vector<std::string> strings_of(const json &j, const char *key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null())
    return {};
  return it->get<std::vector<std::string>>();
}

// --- unpacking one layer (in the chrooted worker) ---------------------------

// Splits a tar member's path into its components with "." and empty ones
// dropped; false if any is "..".  `absolute` says whether it began with '/'.
bool components(const std::string &path, std::vector<std::string> &out, bool &absolute) {
  out.clear();
  absolute = !path.empty() && path[0] == '/';
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    std::string c = path.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    if (c == "..")
      return false;
    if (!c.empty() && c != ".")
      out.push_back(c);
    if (slash == std::string::npos)
      break;
    pos = slash + 1;
  }
  return true;
}

std::string join(const std::vector<std::string> &c, size_t n) {
  std::string s;
  for (size_t i = 0; i < n && i < c.size(); ++i)
    s += (i ? "/" : "") + c[i];
  return s;
}

void mkdirs(const std::string &rel) {
  std::string cur;
  std::vector<std::string> parts;
  bool abs = false;
  components(rel, parts, abs);
  for (const auto &p : parts) {
    cur += (cur.empty() ? "" : "/") + p;
    if (::mkdir(cur.c_str(), 0755) < 0 && errno != EEXIST)
      throw Error("mkdir", cur, errno);
  }
}

struct LayerReader {
  explicit LayerReader(Fd f) : fd(std::move(f)) {}
  Fd fd;
  Sha256 hash;
  std::vector<char> buf = std::vector<char>(1 << 16);
  uint64_t bytes = 0;
};

la_ssize_t read_cb(struct archive *, void *data, const void **out) {
  auto *r = static_cast<LayerReader *>(data);
  ssize_t n;
  do
    n = ::read(r->fd.get(), r->buf.data(), r->buf.size());
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    r->hash.update(r->buf.data(), static_cast<size_t>(n));
    r->bytes += static_cast<uint64_t>(n);
  }
  *out = r->buf.data();
  return n;
}

// The worker's whole job: unpack the layer on `fd` into the current root
// (the staging directory it was chrooted into), hashing every byte; the
// report (one JSON object) goes to `report`.  Exit 0 with {"sha256", "notes"}
// or 1 with {"error"}.
int unpack_layer_here(Fd fd, int report, const std::string &what) {
  json out;
  std::vector<std::string> notes;
  LayerReader r(std::move(fd));
  struct archive *a = archive_read_new();
  struct archive *w = archive_write_disk_new();
  try {
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    if (archive_read_open(a, &r, nullptr, read_cb, nullptr) != ARCHIVE_OK)
      throw InputError(fmt::format("{}: {}", what, archive_error_string(a)));
    // Owner, mode and times as the layer has them; never through a symlink
    // the layer made, never to an absolute or ".." path (chroot on top).
    archive_write_disk_set_options(
        w, ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
               ARCHIVE_EXTRACT_UNLINK | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
               ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
    struct archive_entry *e;
    std::vector<std::string> parts;
    bool abs = false;
    for (;;) {
      int rc = archive_read_next_header(a, &e);
      if (rc == ARCHIVE_EOF)
        break;
      if (rc < ARCHIVE_WARN)
        throw InputError(fmt::format("{}: {}", what, archive_error_string(a)));
      std::string name = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
      if (!components(name, parts, abs))
        throw InputError(fmt::format("{}: entry '{}' has a '..' component (a layer may not "
                                     "reach outside itself): refused",
                                     what, name));
      if (abs)
        notes.push_back(fmt::format("{}: absolute path '{}' unpacked as '{}'", what, name,
                                    join(parts, parts.size())));
      if (parts.empty())
        continue; // the layer's root itself
      std::string rel = join(parts, parts.size());
      std::string base = parts.back();
      std::string dir = join(parts, parts.size() - 1);
      if (base == ".wh..wh..opq") {
        // This directory hides whatever the layers below have in it.
        if (!dir.empty())
          mkdirs(dir);
        std::string target = dir.empty() ? "." : dir;
        check_sys(::setxattr(target.c_str(), "trusted.overlay.opaque", "y", 1, 0), "setxattr",
                  target);
        continue;
      }
      if (base.rfind(".wh.", 0) == 0) {
        // NAME is deleted: overlayfs's whiteout is a 0:0 character device.
        std::string hidden = (dir.empty() ? "" : dir + "/") + base.substr(4);
        if (!dir.empty())
          mkdirs(dir);
        ::unlink(hidden.c_str());
        check_sys(::mknod(hidden.c_str(), S_IFCHR | 0, makedev(0, 0)), "mknod", hidden);
        continue;
      }
      mode_t type = archive_entry_filetype(e);
      if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFSOCK) {
        notes.push_back(fmt::format("{}: {} '{}' skipped (a layer carries no devices)", what,
                                    type == AE_IFSOCK ? "socket" : "device node", rel));
        continue;
      }
      if (const char *hl = archive_entry_hardlink(e)) {
        std::vector<std::string> lp;
        bool labs = false;
        if (!components(hl, lp, labs))
          throw InputError(fmt::format("{}: hard link '{}' -> '{}' has a '..' component: refused",
                                       what, name, hl));
        archive_entry_set_hardlink(e, join(lp, lp.size()).c_str());
      }
      // A path through a symlink the layer made earlier: refused (libarchive
      // would replace the symlink by a directory; the chroot keeps either
      // inside the layer, but a layer that does this is not well formed).
      for (size_t k = 1; k < parts.size(); ++k) {
        std::string prefix = join(parts, k);
        struct stat ps;
        if (::lstat(prefix.c_str(), &ps) == 0 && S_ISLNK(ps.st_mode))
          throw InputError(fmt::format("{}: entry '{}' goes through the symlink '{}' the layer "
                                       "made: refused",
                                       what, name, prefix));
      }
      archive_entry_set_pathname(e, rel.c_str());
      // What the layer's own xattrs would set is not applied (see header).
      archive_entry_xattr_clear(e);
      rc = archive_write_header(w, e);
      if (rc < ARCHIVE_WARN)
        throw InputError(fmt::format("{}: entry '{}': {}", what, name, archive_error_string(w)));
      if (archive_entry_size(e) > 0) {
        const void *buf;
        size_t size;
        la_int64_t off;
        while ((rc = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK)
          if (archive_write_data_block(w, buf, size, off) < ARCHIVE_WARN)
            throw InputError(fmt::format("{}: entry '{}': {}", what, name,
                                         archive_error_string(w)));
        if (rc != ARCHIVE_EOF)
          throw InputError(fmt::format("{}: entry '{}': {}", what, name, archive_error_string(a)));
      }
      if (archive_write_finish_entry(w) < ARCHIVE_WARN)
        throw InputError(fmt::format("{}: entry '{}': {}", what, name, archive_error_string(w)));
    }
    // Whatever follows the archive's end (padding) is part of the blob.
    const void *rest;
    while (read_cb(a, &r, &rest) > 0) {
    }
    if (archive_write_close(w) != ARCHIVE_OK)
      throw InputError(fmt::format("{}: {}", what, archive_error_string(w)));
    out = {{"sha256", r.hash.hex()}, {"notes", notes}};
  } catch (const std::exception &ex) {
    out = {{"error", ex.what()}};
  }
  archive_read_free(a);
  archive_write_free(w);
  std::string s = out.dump();
  write_all_nosigpipe(report, s, "the unpack report");
  return out.contains("error") ? 1 : 0;
}

bool dead_staging(const std::string &name);

// Unpacks the layer `d` into STORE/layers/sha256/HEX (unless it is there),
// in a chrooted worker.  Returns true if it was unpacked now.
bool ensure_layer(const std::string &layout, const std::string &layers, const Descriptor &d,
                  const std::string &what, std::vector<std::string> &notes) {
  std::string hex = digest_hex(d.digest, what);
  std::string final_dir = layers + "/" + hex;
  if (fs::is_directory(final_dir))
    return false;
  Fd blob = open_blob(layout, d, what);
  std::string stage = fmt::format("{}/.{}.{}", layers, hex, ::getpid());
  std::error_code ec;
  // Staging directories of imports of this layer that were killed.
  for (const auto &e : fs::directory_iterator(layers, ec)) {
    std::string n = e.path().filename().string();
    if (n.starts_with("." + hex + ".") && dead_staging(n))
      fs::remove_all(e.path(), ec);
  }
  fs::remove_all(stage, ec);
  check_sys(::mkdir(stage.c_str(), 0755), "mkdir", stage);
  try {
    int p[2];
    check_sys(::pipe2(p, O_CLOEXEC), "pipe", "unpack report");
    Fd rd(p[0], "unpack report"), wr(p[1], "unpack report");
    WorkerOptions wo;
    wo.name = "layer unpack";
    wo.pdeathsig = SIGKILL;
    Child c = fork_worker(
        [&]() -> int {
          rd.reset();
          if (::chdir(stage.c_str()) < 0 || ::chroot(".") < 0) {
            std::string s = json{{"error", fmt::format("chroot {}: {}", stage,
                                                       std::strerror(errno))}}
                                .dump();
            write_all_nosigpipe(wr.get(), s, "the unpack report");
            return 1;
          }
          ::umask(0);
          return unpack_layer_here(std::move(blob), wr.get(), what);
        },
        wo);
    wr.reset();
    std::string report;
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(rd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      report.append(buf, static_cast<size_t>(n));
    }
    ExitStatus st = c.wait();
    auto j = json::parse(report, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw Error(fmt::format("{}: the unpacking worker {} without a report", what,
                              st.describe()));
    if (j.contains("error"))
      throw InputError(j["error"].get<std::string>());
    if ("sha256:" + j["sha256"].get<std::string>() != d.digest)
      throw InputError(fmt::format("{}: blob {} has sha256:{}, not the digest that names it", what,
                                   blob.path(), j["sha256"].get<std::string>()));
    for (const auto &n : j["notes"])
      notes.push_back(n.get<std::string>());
    if (::rename(stage.c_str(), final_dir.c_str()) < 0) {
      int err = errno;
      if (err != EEXIST && err != ENOTEMPTY)
        throw Error("rename", final_dir, err);
      fs::remove_all(stage, ec); // another import made it meanwhile
      return false;
    }
    return true;
  } catch (...) {
    fs::remove_all(stage, ec);
    throw;
  }
}

// The store's lock: imports and gc take turns (flock; dropped if killed).
Fd lock_store(const std::string &store) {
  std::filesystem::create_directories(store);
  std::string path = store + "/.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    throw Error("open", path, errno);
  Fd f(fd, path);
  int rc;
  while ((rc = ::flock(fd, LOCK_EX)) < 0 && errno == EINTR) {
  }
  if (rc < 0)
    throw Error("flock", path, errno);
  return f;
}

// A staging directory ".HEX.PID" whose import is gone.
bool dead_staging(const std::string &name) {
  size_t dot = name.rfind('.');
  if (name.empty() || name[0] != '.' || dot == 0 || dot + 1 >= name.size())
    return false;
  std::string pid = name.substr(dot + 1);
  if (pid.find_first_not_of("0123456789") != std::string::npos)
    return false;
  return ::kill(std::stoi(pid), 0) < 0 && errno == ESRCH;
}

LayerGc gc_layers_locked(const std::string &store, const std::vector<std::string> &in_use) {
  LayerGc r;
  std::set<std::string> named;
  for (const auto &n : list_oci_images(store)) {
    try {
      for (const auto &d : read_oci_image(store, n).layer_digests)
        named.insert(d.substr(7));
    } catch (const InputError &e) {
      // A damaged record or one missing a layer: its other layers stay.
      json j = json::parse(read_file(store + "/images/" + n + ".json"), nullptr, false);
      if (j.is_object() && j.contains("layers") && j["layers"].is_array())
        for (const auto &d : j["layers"])
          if (d.is_string() && d.get<std::string>().size() > 7)
            named.insert(d.get<std::string>().substr(7));
      r.kept.push_back(fmt::format("image {}: {}", n, e.what()));
    }
  }
  std::set<std::string> busy;
  for (const auto &p : in_use)
    busy.insert(fs::path(p).lexically_normal().string());
  std::error_code ec;
  for (const auto &e : fs::directory_iterator(store + "/layers/sha256", ec)) {
    std::string name = e.path().filename().string();
    std::string path = e.path().string();
    if (name[0] == '.') {
      if (dead_staging(name)) {
        fs::remove_all(path, ec);
        r.removed.push_back(path);
      }
      continue;
    }
    if (named.count(name))
      continue;
    if (busy.count(path)) {
      r.kept.push_back(fmt::format("{}: used by a running sandbox", path));
      continue;
    }
    fs::remove_all(path, ec);
    if (ec)
      r.kept.push_back(fmt::format("{}: {}", path, ec.message()));
    else
      r.removed.push_back(path);
  }
  return r;
}

json image_json(const OciImage &i) {
  return {{"name", i.name},          {"manifest", i.manifest_digest}, {"config", i.config_digest},
          {"layers", i.layer_digests}, {"entrypoint", i.entrypoint},  {"cmd", i.cmd},
          {"env", i.env},            {"cwd", i.cwd}};
}

} // namespace

void validate_image_name(const std::string &name) { check_object_name(name, "image", 128, ":"); }

OciImage import_oci_image(const OciImportOptions &o) {
  if (!o.name.empty())
    validate_image_name(o.name);
  std::string layout = o.layout;
  {
    std::string marker = layout + "/oci-layout";
    std::string text;
    try {
      text = read_file(marker);
    } catch (const Error &) {
      throw InputError(fmt::format("'{}' is not an OCI image layout (no readable oci-layout file)",
                                   layout));
    }
    auto j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || j.value("imageLayoutVersion", "") != "1.0.0")
      throw InputError(fmt::format("{}: not imageLayoutVersion 1.0.0", marker));
  }
  json index;
  {
    std::string path = layout + "/index.json";
    std::string text;
    try {
      text = read_file(path);
    } catch (const Error &) {
      throw InputError(fmt::format("{}: missing or unreadable", path));
    }
    index = json::parse(text, nullptr, false);
    if (index.is_discarded() || !index.is_object() || !index.contains("manifests") ||
        !index["manifests"].is_array())
      throw InputError(fmt::format("{}: not an image index (no manifests array)", path));
  }
  // The manifest: by ref name, or the only one.
  std::vector<Descriptor> candidates;
  for (const auto &m : index["manifests"]) {
    Descriptor d = descriptor(m, "index.json");
    std::string refname = d.annotations.value("org.opencontainers.image.ref.name", "");
    if (o.ref.empty() || refname == o.ref)
      candidates.push_back(d);
  }
  if (candidates.empty())
    throw InputError(o.ref.empty()
                         ? fmt::format("{}/index.json lists no manifest", layout)
                         : fmt::format("{}/index.json has no manifest with ref name '{}'", layout,
                                       o.ref));
  if (candidates.size() > 1)
    throw InputError(fmt::format("{}/index.json lists {} manifests: say which with --ref", layout,
                                 candidates.size()));
  Descriptor md = candidates[0];
  std::string refname = md.annotations.value("org.opencontainers.image.ref.name", "");
  json manifest;
  for (int depth = 0;; ++depth) {
    if (one_of(md.media_type, kManifestTypes)) {
      manifest = read_json_blob(layout, md, "manifest " + md.digest);
      break;
    }
    if (!one_of(md.media_type, kIndexTypes) || depth > 0)
      throw InputError(fmt::format("manifest {}: media type '{}' is not an image manifest",
                                   md.digest, md.media_type));
    // A multi-platform index: the entry for our platform.
    json inner = read_json_blob(layout, md, "index " + md.digest);
    std::optional<Descriptor> pick;
    for (const auto &m : inner.value("manifests", json::array())) {
      Descriptor d = descriptor(m, "index " + md.digest);
      std::string plat = d.platform.value("os", "") + "/" + d.platform.value("architecture", "");
      if (plat == o.platform && !pick)
        pick = d;
    }
    if (!pick)
      throw InputError(fmt::format("index {} has no manifest for {}", md.digest, o.platform));
    md = *pick;
  }
  OciImage img;
  img.name = o.name.empty() ? refname : o.name;
  if (img.name.empty())
    throw InputError("the manifest has no ref name (org.opencontainers.image.ref.name): give "
                     "the image a --name");
  validate_image_name(img.name);
  img.manifest_digest = md.digest;
  std::vector<Descriptor> layer_ds;
  Descriptor cd;
  try {
    cd = descriptor(manifest.at("config"), "manifest config");
    for (const auto &l : manifest.at("layers"))
      layer_ds.push_back(descriptor(l, "manifest layer"));
  } catch (const json::exception &e) {
    throw InputError(fmt::format("manifest {}: {}", md.digest, e.what()));
  }
  json config = read_json_blob(layout, cd, "config " + cd.digest);
  img.config_digest = cd.digest;
  try {
    json c = config.value("config", json::object());
    img.entrypoint = strings_of(c, "Entrypoint");
    img.cmd = strings_of(c, "Cmd");
    img.env = strings_of(c, "Env");
    img.cwd = c.value("WorkingDir", std::string());
  } catch (const json::exception &e) {
    throw InputError(fmt::format("config {}: {}", cd.digest, e.what()));
  }
  for (const auto &l : layer_ds)
    if (!is_layer_type(l.media_type))
      throw InputError(fmt::format("layer {}: media type '{}' is not a tar layer", l.digest,
                                   l.media_type));
  // One import or gc of the store at a time (see gc_oci_layers).
  Fd store_lock = lock_store(o.store);
  // The name's owner before any work: the same image again is fine.
  std::string images = o.store + "/images";
  std::string record = images + "/" + img.name + ".json";
  if (fs::exists(record)) {
    OciImage old = read_oci_image(o.store, img.name);
    if (old.manifest_digest != img.manifest_digest)
      throw InputError(fmt::format("image '{}' exists with manifest {}, not {}", img.name,
                                   old.manifest_digest, img.manifest_digest));
  }
  std::string layers = o.store + "/layers/sha256";
  fs::create_directories(layers);
  fs::create_directories(images);
  for (const auto &l : layer_ds) {
    std::string what = "layer " + l.digest;
    if (ensure_layer(layout, layers, l, what, img.notes))
      ++img.layers_unpacked;
    else
      ++img.layers_reused;
    img.layer_digests.push_back(l.digest);
    img.layers.push_back(layers + "/" + digest_hex(l.digest, what));
  }
  write_file_staged(record, image_json(img).dump(2) + "\n", true);
  return img;
}

OciImage read_oci_image(const std::string &store, const std::string &name) {
  validate_image_name(name);
  std::string path = store + "/images/" + name + ".json";
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error &) {
    throw InputError(fmt::format("no image named '{}' in {} (rundctl image import)", name, store));
  }
  try {
    json j = json::parse(text);
    OciImage i;
    i.name = j.at("name").get<std::string>();
    i.manifest_digest = j.at("manifest").get<std::string>();
    i.config_digest = j.at("config").get<std::string>();
    i.layer_digests = j.at("layers").get<std::vector<std::string>>();
    i.entrypoint = j.at("entrypoint").get<std::vector<std::string>>();
    i.cmd = j.at("cmd").get<std::vector<std::string>>();
    i.env = j.at("env").get<std::vector<std::string>>();
    i.cwd = j.at("cwd").get<std::string>();
    for (const auto &d : i.layer_digests) {
      std::string dir = store + "/layers/sha256/" + digest_hex(d, path);
      if (!fs::is_directory(dir))
        throw InputError(fmt::format("image '{}': layer {} is missing from {}", name, d, dir));
      i.layers.push_back(dir);
    }
    return i;
  } catch (const json::exception &e) {
    throw InputError(fmt::format("damaged image record {}: {}", path, e.what()));
  }
}

std::vector<std::string> list_oci_images(const std::string &store) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto &e : fs::directory_iterator(store + "/images", ec)) {
    std::string n = e.path().filename().string();
    if (n.size() > 5 && n.ends_with(".json") && n[0] != '.')
      names.push_back(n.substr(0, n.size() - 5));
  }
  std::sort(names.begin(), names.end());
  return names;
}

LayerGc gc_oci_layers(const std::string &store, const std::vector<std::string> &in_use) {
  Fd lock = lock_store(store);
  return gc_layers_locked(store, in_use);
}

LayerGc remove_oci_image(const std::string &store, const std::string &name,
                         const std::vector<std::string> &in_use) {
  Fd lock = lock_store(store);
  OciImage img = read_oci_image(store, name);
  std::set<std::string> busy;
  for (const auto &p : in_use)
    busy.insert(fs::path(p).lexically_normal().string());
  for (const auto &l : img.layers)
    if (busy.count(fs::path(l).lexically_normal().string()))
      throw InputError(fmt::format("image '{}' is in use: layer {} is a running sandbox's "
                                   "(stop it first)",
                                   name, l));
  std::string record = store + "/images/" + name + ".json";
  if (::unlink(record.c_str()) < 0)
    throw Error("unlink", record, errno);
  LayerGc r = gc_layers_locked(store, in_use);
  r.removed.insert(r.removed.begin(), record);
  return r;
}

} // namespace rundkit
