// Writable layers as reflink (FICLONE) clones of a template image: the clone
// shares every extent with the template until the guest writes, so making
// one costs a metadata update, not a copy.  Also the crash-safety rules:
// every file is born under a recognisable temporary name
// (.reflinkfs-tmp.PID.XXXXXX) and renamed into place, and `gc_layers`
// removes what a dead process left behind.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "util/fd.h"
#include "storage/image.h"
#include "util/proc.h"

namespace rundkit {

// What to do when the file system cannot reflink.
enum class Fallback { kNone, kCopy };

enum class CloneMethod { kReflink, kCopy };
const char *clone_method_name(CloneMethod m);

struct CloneOptions {
  Fallback fallback = Fallback::kNone;
  // Recorded on the clone (xattr user.reflinkfs.owner) so gc can tell a
  // crash leftover from a clone in use; pid + start time survive pid reuse.
  std::optional<ProcessId> owner;
};

// Clones `tmpl` to the new file `dest` (which must not exist), in a
// directory on the template's file system.  Throws rundkit::Error and leaves
// nothing behind on any failure.
CloneMethod clone_layer(const Template &tmpl, const std::string &dest,
                        const CloneOptions &opts = {});

// A writable layer that has no name: cloned into an O_TMPFILE inode in `dir`
// (or a temporary name unlinked at once where O_TMPFILE is unsupported), so
// it disappears when the last descriptor closes, whoever is killed how.
// With `direct` the descriptor is O_DIRECT: the guest's page cache is then
// the only cache of the layer's data.
struct VolatileLayer {
  Fd fd;
  CloneMethod method = CloneMethod::kReflink;
};
VolatileLayer open_volatile_layer(const Template &tmpl, const std::string &dir,
                                  bool direct, Fallback fallback = Fallback::kNone);

// Replaces "{fd}" with the descriptor number and "{path}" with
// "/proc/self/fd/N" in every argument, sets REFLINKFS_FD=N, lets the
// descriptor survive exec and execs argv[0] (PATH search).  Returns only by
// throwing.
[[noreturn]] void exec_with_layer(Fd layer, std::vector<std::string> argv);
std::vector<std::string> substitute_layer_fd(std::vector<std::string> argv, int fd);

// One entry of a gc pass.
struct GcEntry {
  std::string name;
  bool removed = false;
  std::string reason;
  bool failed = false; // could not be judged or removed (e.g. not root): kept
};
// Removes from `dir` temporary files whose creating pid is dead (or that
// carry no valid pid) and clones whose recorded owner is dead, unless any
// process still holds them open.  An entry that cannot be judged (another
// user's /proc/PID/fd unreadable, xattr unreadable) or removed is kept and
// listed with `failed` set; the others are still processed.
std::vector<GcEntry> gc_layers(const std::string &dir, bool dry_run);
nlohmann::json to_json(const std::vector<GcEntry> &entries);

// Copies `src` to `dst` (already sized or empty), data extents only: what
// `--fallback copy` does on a file system that cannot share extents.
void copy_sparse(const Fd &src, const Fd &dst, uint64_t size);

} // namespace rundkit
