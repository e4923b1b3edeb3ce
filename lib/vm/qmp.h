// A QMP client over a UNIX stream socket: greeting and qmp_capabilities,
// commands with a timeout each (replies matched by id), asynchronous events
// queued and waited for by name, and descriptor passing (SCM_RIGHTS with
// getfd / add-fd).  Nothing here sleeps: every wait is a poll with a bound.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "util/error.h"
#include "util/fd.h"

namespace rundkit::vm {

// A command QEMU refused: its QMP error class ("GenericError",
// "CommandNotFound", "DeviceNotFound", ...) and description.
class QmpError : public Error {
public:
  QmpError(std::string command, std::string socket, std::string cls, std::string desc);
  const std::string &command() const noexcept { return command_; }
  const std::string &error_class() const noexcept { return class_; }
  const std::string &desc() const noexcept { return desc_; }

private:
  std::string command_, class_, desc_;
};

inline constexpr std::chrono::milliseconds kQmpTimeout{30000};

class Qmp {
public:
  // Takes a connected socket, reads the greeting and negotiates
  // capabilities, all within `timeout`.  `name` (the socket path) is for
  // messages.
  Qmp(Fd socket, std::string name, std::chrono::milliseconds timeout = kQmpTimeout);
  // Connects to the socket at `path` (it must be listening already).
  static Qmp connect(const std::string &path, std::chrono::milliseconds timeout = kQmpTimeout);
  Qmp(Qmp &&) noexcept;
  Qmp &operator=(Qmp &&) noexcept;
  ~Qmp();

  // The greeting's "QMP" object (version, capabilities).
  const nlohmann::json &greeting() const noexcept;
  const std::string &name() const noexcept;

  // Runs a command and returns its "return" value.  Throws QmpError for an
  // error reply, Error(..., ETIMEDOUT) when no reply came within `timeout`,
  // Error(..., ECONNRESET) when QEMU closed the connection.
  nlohmann::json execute(const std::string &command, const nlohmann::json &arguments,
                         std::chrono::milliseconds timeout = kQmpTimeout);
  // A command without arguments.
  nlohmann::json execute(const std::string &command,
                         std::chrono::milliseconds timeout = kQmpTimeout);
  // execute() with `fd` attached to the command's message (SCM_RIGHTS).
  nlohmann::json execute_with_fd(const std::string &command, const nlohmann::json &arguments,
                                 int fd, std::chrono::milliseconds timeout = kQmpTimeout);
  // getfd: QEMU keeps a copy of `fd` under `fdname` (for netdev, chardev...).
  void send_fd(const std::string &fdname, int fd,
               std::chrono::milliseconds timeout = kQmpTimeout);
  // add-fd: `fd` joins fdset `fdset` (new if nothing); returns the fdset id
  // (open it in QEMU as /dev/fdset/ID).
  int add_fd(int fd, std::optional<int> fdset = std::nullopt,
             std::chrono::milliseconds timeout = kQmpTimeout);

  // The next event named `name` ("STOP", "SHUTDOWN", ...), from the queue
  // or the wire; nothing if none came within `timeout`.  Other events stay
  // queued, in order.
  std::optional<nlohmann::json> wait_event(const std::string &name,
                                           std::chrono::milliseconds timeout);
  // Events received and not yet taken.
  std::deque<nlohmann::json> &events() noexcept;

  const Fd &socket() const noexcept;

private:
  struct State;
  std::unique_ptr<State> s_;
};

} // namespace rundkit::vm
