// A running QEMU: spawned through util/process (optionally into a cgroup
// from its first instruction), with its QMP connection and a private socket
// directory under /tmp (UNIX socket paths are limited to 108 bytes, so never
// under a deep build tree).  QMP and virtio-serial port sockets are bound
// and listening before QEMU starts and handed to it as descriptors: no
// connect race, no polling for a socket file to appear.
//
// Dropping a Vm kills QEMU (SIGKILL through its pidfd), reaps it and
// removes the socket directory.
#pragma once

#include <csignal>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "util/fd.h"
#include "util/process.h"
#include "vm/qemu.h"
#include "vm/qmp.h"

namespace rundkit::vm {

struct VmOptions {
  // config.qmp is set by Vm.  Descriptors the config names (disks' fds,
  // ports' listening fds) are passed into QEMU at the same numbers; a port
  // with neither path nor fd gets a socket DIR/NAME.sock (port_path()).
  QemuConfig config;
  const Fd *cgroup = nullptr; // a cgroup2 directory: QEMU starts inside
  // Called with QEMU's pid while it is held before exec (util/process
  // `held`): where it must also be placed in v1 hierarchies, which cannot
  // clone into a cgroup, so that its first instruction already runs there.
  // A throw kills it before it ran anything.
  std::function<void(pid_t)> place;
  // The directory for QEMU's sockets and log: an existing one the caller
  // owns (a sandbox's, which outlives this process; kept when the Vm is
  // dropped), or empty for a private one under /tmp removed with the Vm.
  std::string dir;
  // Further descriptors QEMU gets at the numbers given (the caller keeps
  // owning them), e.g. the state file of `migrate-incoming uri=fd:N`.
  std::vector<PassFd> pass_fds;
  // QEMU's stdout and stderr; empty: DIR/qemu.log.  Ignored for a stream
  // that `out`/`err` set otherwise.
  std::string log;
  Stdio in = Stdio::null();
  std::optional<Stdio> out; // e.g. Stdio::pipe() for -serial stdio
  std::optional<Stdio> err; // e.g. Stdio::inherit()
  int pdeathsig = SIGKILL;  // QEMU dies with the thread that started it; 0: it does not
  bool new_session = true;
  std::chrono::milliseconds qmp_timeout = kQmpTimeout;
};

class Vm {
public:
  // Spawns QEMU and completes the QMP handshake.  When QEMU exits first, the
  // error says how and quotes the end of its log.
  static Vm start(VmOptions opts);
  Vm(Vm &&) noexcept = default;
  Vm &operator=(Vm &&) noexcept = delete;
  ~Vm();

  Qmp &qmp() noexcept { return qmp_; }
  Child &process() noexcept { return child_; }
  const Fd &pidfd() const noexcept { return child_.pidfd(); }
  pid_t pid() const noexcept { return child_.pid(); }
  const std::vector<std::string> &argv() const noexcept { return argv_; }
  // The config QEMU was started from (qmp and Vm-made port sockets filled in).
  const QemuConfig &config() const noexcept { return config_; }
  const std::string &dir() const noexcept { return dir_; }
  const std::string &log_path() const noexcept { return log_; }
  // The socket of the virtio-serial port named `name` (Vm-made ones only).
  std::string port_path(const std::string &name) const;
  // The last `lines` lines of QEMU's log (empty if it logs elsewhere).
  std::string log_tail(size_t lines = 20) const;

  // Waits for QEMU to exit; nothing after `timeout`.
  std::optional<ExitStatus> wait_for(std::chrono::milliseconds timeout) {
    return child_.wait_for(timeout);
  }
  // Lets QEMU run on without this object (it must have been started with
  // pdeathsig 0): returns its pidfd; the socket directory stays.
  Fd detach() noexcept;
  // QMP quit, then SIGKILL if QEMU has not exited within `grace`.
  ExitStatus stop(std::chrono::milliseconds grace = std::chrono::milliseconds(10000));

private:
  struct Dir {
    std::string path;
    Dir() = default;
    explicit Dir(std::string p) : path(std::move(p)) {}
    Dir(Dir &&o) noexcept : path(std::exchange(o.path, {})) {}
    Dir &operator=(Dir &&o) noexcept {
      std::swap(path, o.path);
      return *this;
    }
    ~Dir();
  };
  Vm(Dir dir, Child child, Qmp qmp)
      : dir_owner_(std::move(dir)), child_(std::move(child)), qmp_(std::move(qmp)) {}
  Dir dir_owner_;
  Child child_;
  Qmp qmp_;
  std::vector<std::string> argv_;
  QemuConfig config_;
  std::string dir_;
  std::string log_;
};

// A UNIX stream socket bound at `path` and listening (backlog 4), CLOEXEC.
Fd listen_unix(const std::string &path);
// A stream socket connected to `path`.
Fd connect_unix(const std::string &path);

} // namespace rundkit::vm
