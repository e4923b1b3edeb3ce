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

#include <nlohmann/json.hpp>

#include "rundkit/fd.h"
#include "rundkit/image.h"
#include "rundkit/proc.h"

namespace rundkit {

// What to do when the file system cannot reflink.
enum class Fallback { kNone, kCopy };

enum class CloneMethod { kReflink, kCopy };
const char *clone_method_name(CloneMethod m);

// Temporary names: ".reflinkfs-tmp.<pid>.<6 random chars>".
inline constexpr const char *kTempPrefix = ".reflinkfs-tmp.";
std::string make_temp_name();
// The pid encoded in a temporary name, if `name` is one.
std::optional<pid_t> temp_name_pid(const std::string &name);

// A file created under a temporary name in `dir`, unlinked by the destructor
// unless commit() renamed it into place.
class TempFile {
public:
  // Creates it with O_CREAT|O_EXCL|`flags`, mode 0600.
  TempFile(const Fd &dir, int flags);
  TempFile(const TempFile &) = delete;
  TempFile &operator=(const TempFile &) = delete;
  ~TempFile();

  Fd &fd() noexcept { return fd_; }
  const std::string &name() const noexcept { return name_; }
  // renameat2(RENAME_NOREPLACE): never replaces an existing `final_name`.
  void commit(const std::string &final_name);
  // Removes the name now, keeping the descriptor (the volatile case).
  void unlink_now();

private:
  const Fd &dir_;
  std::string name_;
  Fd fd_;
  bool linked_ = true;
};

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
};
// Removes from `dir` temporary files whose creating pid is dead and clones
// whose recorded owner is dead, unless any process still holds them open.
std::vector<GcEntry> gc_layers(const std::string &dir, bool dry_run);
nlohmann::json to_json(const std::vector<GcEntry> &entries);

// Copies `src` to `dst` (already sized or empty), data extents only: what
// `--fallback copy` does on a file system that cannot share extents.
void copy_sparse(const Fd &src, const Fd &dst, uint64_t size);

} // namespace rundkit
