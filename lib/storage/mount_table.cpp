#include "storage/mount_table.h"

#include <libmount.h>
#include <stdio.h>

#include <cerrno>
#include <memory>

#include "util/error.h"

namespace rundkit {

namespace {

std::string str(const char *s) { return s ? s : ""; }

struct TableDeleter {
  void operator()(libmnt_table *t) const { mnt_unref_table(t); }
};
struct IterDeleter {
  void operator()(libmnt_iter *i) const { mnt_free_iter(i); }
};
using Table = std::unique_ptr<libmnt_table, TableDeleter>;

Table new_table(const std::string &origin) {
  Table t(mnt_new_table());
  if (!t)
    throw Error("parse mount table", origin, ENOMEM);
  return t;
}

std::vector<MountEntry> entries_of(libmnt_table *tb, const std::string &origin) {
  std::unique_ptr<libmnt_iter, IterDeleter> it(mnt_new_iter(MNT_ITER_FORWARD));
  if (!it)
    throw Error("parse mount table", origin, ENOMEM);
  std::vector<MountEntry> out;
  libmnt_fs *fs = nullptr;
  while (mnt_table_next_fs(tb, it.get(), &fs) == 0) {
    MountEntry e;
    e.id = mnt_fs_get_id(fs);
    e.parent_id = mnt_fs_get_parent_id(fs);
    e.source = str(mnt_fs_get_source(fs));
    e.target = str(mnt_fs_get_target(fs));
    e.fstype = str(mnt_fs_get_fstype(fs));
    e.root = str(mnt_fs_get_root(fs));
    e.vfs_options = str(mnt_fs_get_vfs_options(fs));
    e.fs_options = str(mnt_fs_get_fs_options(fs));
    e.optional = str(mnt_fs_get_optional_fields(fs));
    out.push_back(std::move(e));
  }
  return out;
}

} // namespace

bool MountEntry::has_vfs_option(const std::string &name) const {
  char *value = nullptr;
  size_t size = 0;
  return mnt_optstr_get_option(vfs_options.c_str(), name.c_str(), &value, &size) == 0;
}

std::optional<std::string> MountEntry::fs_option(const std::string &name) const {
  char *value = nullptr;
  size_t size = 0;
  if (mnt_optstr_get_option(fs_options.c_str(), name.c_str(), &value, &size) != 0)
    return std::nullopt;
  return value ? std::string(value, size) : std::string();
}

std::vector<MountEntry> parse_mount_table(const std::string &text, const std::string &origin) {
  Table tb = new_table(origin);
  if (text.empty())
    return {};
  FILE *f = ::fmemopen(const_cast<char *>(text.data()), text.size(), "r");
  if (!f)
    throw Error("parse mount table", origin, errno);
  int rc = mnt_table_parse_stream(tb.get(), f, origin.c_str());
  ::fclose(f);
  if (rc < 0)
    throw Error("parse mount table", origin, -rc);
  return entries_of(tb.get(), origin);
}

std::vector<MountEntry> read_mount_table(const std::string &path) {
  Table tb = new_table(path);
  int rc = mnt_table_parse_file(tb.get(), path.c_str());
  if (rc < 0)
    throw Error("parse mount table", path, -rc);
  return entries_of(tb.get(), path);
}

std::optional<MountEntry> find_mount(int id) {
  for (auto &e : read_mount_table())
    if (e.id == id)
      return std::move(e);
  return std::nullopt;
}

} // namespace rundkit
