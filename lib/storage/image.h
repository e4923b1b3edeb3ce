// Pre-formatted disk images used as templates for writable layers: made once
// by e2fsprogs with every first-use initialisation done up front, described
// by a JSON sidecar (PATH.json) that records the parameters and an identity
// of the image file, so a replaced or truncated image is caught before it is
// cloned into thousands of sandboxes.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "util/fd.h"

namespace rundkit {

// Runs an external image tool (mkfs.*, qemu-img) to completion with stdin on
// /dev/null.  Throws ProcessError (a rundkit::Error) quoting the command,
// its exit status and the tail of what it printed, so "mkfs.xfs failed" says
// why; Error("exec", argv[0], errno) if it cannot be executed.
void run_image_tool(const std::vector<std::string> &argv);

// File systems `template create` knows how to make (e2fsprogs family).
bool template_fs_supported(const std::string &fs);

// The mkfs command line a template of `fs` is made with, minus the image path.
// lazy_itable_init=0 and lazy_journal_init=0 make mke2fs zero the inode
// tables and journal now, so no guest ever runs ext4lazyinit or pays for it
// on first write; nodiscard because discarding a fresh sparse file is a no-op
// that still costs a syscall per block group.
std::vector<std::string> template_mkfs_command(const std::string &fs);

// What the sidecar records.  `ino` and `mtime_ns` are a checksum-free
// identity: reading 1 GiB to hash it would cost more than every clone made
// from it, while a rewrite or replacement of the image changes at least one.
struct TemplateInfo {
  std::string path;
  std::string fs;
  uint64_t size = 0;
  std::vector<std::string> mkfs;
  uint64_t ino = 0;
  int64_t mtime_ns = 0;
  uint64_t allocated = 0; // bytes actually allocated now (st_blocks), not recorded

  nlohmann::json to_json() const;
};

std::string template_sidecar_path(const std::string &image);

// A path naming a file to create, split into its directory and file name.
// Throws InputError (naming `what`) for an empty path, one ending in '/',
// '.' or '..', or a file name too long for the sidecar.
std::pair<std::string, std::string> split_new_file_path(const std::string &path,
                                                        const std::string &what);

// The smallest template: mke2fs needs room for its journal.
inline constexpr uint64_t kMinTemplateSize = 16ULL << 20;
// Every check create_template makes on its arguments, before it touches
// anything: throws InputError (exit 2) for a bad fs, size or path.
void check_template_request(const std::string &path, uint64_t size, const std::string &fs);

// Creates a sparse image of `size` bytes at `path`, formats it and writes
// PATH.json.  Both are written under temporary names in the same directory
// and renamed into place (the image without replacing anything), so a crash
// leaves only `.reflinkfs-tmp.*` files that `gc` removes.
TemplateInfo create_template(const std::string &path, uint64_t size,
                             const std::string &fs);

// An opened, verified template.  The checks run against the opened
// descriptor, so the file verified is the file cloned.
class Template {
public:
  static Template open(const std::string &path);

  const TemplateInfo &info() const noexcept { return info_; }
  const Fd &fd() const noexcept { return fd_; }

private:
  Template(Fd fd, TemplateInfo info) : fd_(std::move(fd)), info_(std::move(info)) {}
  Fd fd_;
  TemplateInfo info_;
};

} // namespace rundkit
