// One error type for every rundkit tool: the operation, the path it acted
// on and the errno, printed as "mkdir '/sys/fs/cgroup/x': File exists".
#pragma once

#include <string>
#include <system_error>

namespace rundkit {

class Error : public std::runtime_error {
public:
  // A failed system call: `op` on `path` set errno `err`.
  Error(std::string op, std::string path, int err);
  // A problem with no errno (bad input, inconsistent state).
  explicit Error(std::string message);

  int err() const noexcept { return err_; }
  const std::string &op() const noexcept { return op_; }
  const std::string &path() const noexcept { return path_; }

private:
  std::string op_;
  std::string path_;
  int err_ = 0;
};

// Bad input from the command line or a caller: reported with exit code 2
// (kExitUsage) before anything is changed.
class InputError : public Error {
public:
  using Error::Error;
};

// Throws Error(op, path, errno) when `ret` is negative; returns `ret`.
long check_sys(long ret, const char *op, const std::string &path);

// Process exit codes shared by every CLI: what a script can branch on.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1, // the operation failed (message says why)
  kExitUsage = 2,   // bad command line or bad input value
};

} // namespace rundkit
