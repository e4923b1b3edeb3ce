// Files born under a recognisable temporary name and renamed into place:
// a process killed at any instruction leaves either nothing under the final
// name or the whole file, and its leftovers carry its pid so a gc pass can
// tell a dead writer's file from a live one's.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "util/fd.h"

namespace rundkit {

// Temporary names: ".reflinkfs-tmp.<pid>.<6 random chars>".
inline constexpr const char *kTempPrefix = ".reflinkfs-tmp.";
std::string make_temp_name();
// PID_MAX_LIMIT on 64-bit kernels: no pid is larger.
inline constexpr unsigned long long kPidMaxLimit = 4194304;
// The pid encoded in a temporary name, if `name` is one (and the number is
// one a pid can be).
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
  // rename(2): replaces `final_name` if it exists, atomically.
  void replace(const std::string &final_name);
  // Removes the name now, keeping the descriptor (the volatile case).
  void unlink_now();

private:
  const Fd &dir_;
  std::string name_;
  Fd fd_;
  bool linked_ = true;
};

// The staged write every record goes through: `data` written to a temporary
// file beside `path`, then renamed over it, so a reader (or a process killed
// at any instruction) sees the old record or the new one, never part of one.
// With `replace` false, an existing `path` is an Error (EEXIST) and is kept.
// No fsync: records live on tmpfs.
void write_file_staged(const std::string &path, const std::string &data, bool replace = true);

} // namespace rundkit
