// The host side of the guest agent (lib/agent/protocol.h): one connection
// to the agent's port socket, requests answered in order, every wait
// bounded by a deadline.
//
//   Client c = Client::connect(vm.port_path(kPortName), 60s); // agent answers ping
//   Running r = c.start(req);           // the sandbox's command runs
//   ExecResult e = c.exec({.argv = {"cat", "/etc/hostname"}});
//   c.shutdown();                        // the guest powers off
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "agent/protocol.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/process.h"

namespace rundkit::agent {

// The virtio-serial port's name (/dev/virtio-ports/rundkit.agent).
inline constexpr const char *kPortName = "rundkit.agent";

struct Limits {
  double cpus = 0;           // cpu.max quota in CPUs; 0: none
  uint64_t memory_bytes = 0; // memory.max; 0: none
  uint64_t pids = 0;         // pids.max; 0: none
};

struct StartRequest {
  std::string hostname;
  std::string entropy;     // raw bytes credited to the guest's RNG (>= 32)
  int64_t realtime_ns = 0; // the wall clock to set (CLOCK_REALTIME)
  std::string disk = "/dev/vda";           // the writable layer (ext4)
  std::string share_tag = "rundkit.rootfs"; // the read-only layers (9p)
  std::vector<std::string> argv, env;
  std::string cwd = "/";
  Limits limits;
};

// The agent's timestamps, guest CLOCK_BOOTTIME in ns.
struct GuestTimes {
  int64_t received_ns = 0; // start request read
  int64_t mounted_ns = 0;  // overlay root mounted
  int64_t cgroup_ns = 0;   // guest cgroup made with the limits
  int64_t exec_ns = 0;     // the command exec'd
};

struct Running {
  int pid = 0; // in the agent's pid namespace
  GuestTimes times;
};

struct ExecRequest {
  std::vector<std::string> argv, env;
  std::string cwd = "/";
  int timeout_ms = 10000;
};

struct ExecResult {
  ExitStatus status = ExitStatus::exited(0);
  bool timed_out = false;
  std::string out, err;
};

struct Status {
  std::string phase; // idle, running, exited
  int pid = 0;
  std::optional<ExitStatus> exit;
  int64_t uptime_ns = 0;
};

// An error the agent reported: its operation, path and errno.
class GuestError : public Error {
public:
  GuestError(const std::string &op, const std::string &path, int err, const std::string &message)
      : Error("guest: " + op, path, err), message_(message) {}
  const std::string &guest_message() const { return message_; }

private:
  std::string message_;
};

class Client {
public:
  // Connects to the agent's socket and waits (at most `timeout`) until the
  // agent answers a ping: on a cold boot that is when the guest has booted.
  static Client connect(const std::string &socket_path, std::chrono::milliseconds timeout);
  // The same on a socket already connected (before a template's state
  // loads, so the guest never sees its host side go away).
  static Client adopt(Fd connected, std::chrono::milliseconds timeout);
  Client(Client &&) noexcept = default;
  Client &operator=(Client &&) noexcept = default;

  Running start(const StartRequest &req, std::chrono::milliseconds timeout = kDefault);
  ExecResult exec(const ExecRequest &req);
  Status status(std::chrono::milliseconds timeout = kDefault);
  // The command's exit, if the agent reports it within `timeout`.
  std::optional<ExitStatus> wait_exited(std::chrono::milliseconds timeout);
  // The agent acknowledges, then the guest reboots: with QEMU's -no-reboot
  // that ends QEMU.  Nothing is synced: the writable layer is volatile.
  void shutdown(std::chrono::milliseconds timeout = kDefault);
  const std::string &agent_version() const { return version_; }
  // Requests sent again before they were answered (see ping()).
  unsigned pings_resent() const { return resent_; }

  static constexpr std::chrono::milliseconds kDefault{30000};

private:
  explicit Client(Fd fd) : fd_(std::move(fd)) {}
  void ping(std::chrono::milliseconds timeout);
  // Sends one request (`req` gets its id) and returns the reply; throws
  // GuestError on an error reply, Error on a timeout or a closed stream.
  // With `resend_every`, an idempotent request is sent again (same id)
  // each time that long passes without its reply.
  nlohmann::json call(nlohmann::json req, std::chrono::milliseconds timeout,
                      std::optional<std::chrono::milliseconds> resend_every = std::nullopt);
  std::optional<Frame> read_frame(std::chrono::steady_clock::time_point deadline);
  void note_event(const std::string &body);

  Fd fd_;
  FrameReader reader_;
  uint64_t next_id_ = 1;
  std::string version_;
  std::optional<ExitStatus> exited_;
  unsigned resent_ = 0;
};

} // namespace rundkit::agent
