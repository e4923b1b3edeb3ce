#include "vm/qmp.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace rundkit::vm {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

QmpError::QmpError(std::string command, std::string socket, std::string cls, std::string desc)
    : Error(fmt::format("QMP {} on '{}': {}: {}", command, socket, cls, desc)),
      command_(std::move(command)), class_(std::move(cls)), desc_(std::move(desc)) {}

struct Qmp::State {
  Fd sock;
  std::string name;
  std::string buf;
  json greeting;
  std::deque<json> events;
  uint64_t next_id = 1;

  void send(const json &msg, int fd, const std::string &what);
  std::optional<json> read_message(Clock::time_point deadline, const std::string &what);
  json reply_to(uint64_t id, const std::string &command, Clock::time_point deadline);
  json run(const std::string &command, const json &arguments, int fd,
           std::chrono::milliseconds timeout);
};

void Qmp::State::send(const json &msg, int fd, const std::string &what) {
  std::string text = msg.dump() + "\n";
  size_t off = 0;
  bool fd_sent = fd < 0;
  while (off < text.size()) {
    struct iovec iov = {text.data() + off, text.size() - off};
    struct msghdr mh;
    std::memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    if (!fd_sent) {
      std::memset(control, 0, sizeof(control));
      mh.msg_control = control;
      mh.msg_controllen = sizeof(control);
      struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    }
    ssize_t n = ::sendmsg(sock.get(), &mh, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      throw Error("QMP send " + what, name, errno);
    fd_sent = true;
    off += static_cast<size_t>(n);
  }
}

std::optional<json> Qmp::State::read_message(Clock::time_point deadline, const std::string &what) {
  for (;;) {
    size_t nl = buf.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos)
        continue;
      try {
        return json::parse(line);
      } catch (const json::exception &e) {
        throw Error(fmt::format("QMP {} on '{}': unparsable message '{}': {}", what, name, line,
                                e.what()));
      }
    }
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0)
      return std::nullopt;
    struct pollfd p = {sock.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc < 0 && errno == EINTR)
      continue;
    if (rc < 0)
      throw Error("QMP poll " + what, name, errno);
    if (rc == 0)
      continue; // the deadline check above ends it
    char chunk[65536];
    ssize_t n = ::recv(sock.get(), chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      throw Error("QMP read " + what, name, errno);
    if (n == 0)
      throw Error("QMP read " + what, name, ECONNRESET);
    buf.append(chunk, static_cast<size_t>(n));
  }
}

json Qmp::State::reply_to(uint64_t id, const std::string &command, Clock::time_point deadline) {
  for (;;) {
    auto msg = read_message(deadline, command);
    if (!msg)
      throw Error("QMP " + command + " (no reply)", name, ETIMEDOUT);
    if (msg->contains("event")) {
      events.push_back(std::move(*msg));
      continue;
    }
    // A late reply to a command that timed out earlier carries its old id.
    auto it = msg->find("id");
    if (it == msg->end() || !it->is_number_unsigned() || it->get<uint64_t>() != id)
      continue;
    if (auto err = msg->find("error"); err != msg->end())
      throw QmpError(command, name, err->value("class", std::string("?")),
                     err->value("desc", std::string("?")));
    return msg->value("return", json::object());
  }
}

json Qmp::State::run(const std::string &command, const json &arguments, int fd,
                     std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  uint64_t id = next_id++;
  json req = {{"execute", command}, {"id", id}};
  if (!arguments.is_null() && !(arguments.is_object() && arguments.empty()))
    req["arguments"] = arguments;
  send(req, fd, command);
  return reply_to(id, command, deadline);
}

Qmp::Qmp(Fd socket, std::string name, std::chrono::milliseconds timeout)
    : s_(std::make_unique<State>()) {
  s_->sock = std::move(socket);
  s_->name = std::move(name);
  auto deadline = Clock::now() + timeout;
  auto hello = s_->read_message(deadline, "greeting");
  if (!hello)
    throw Error("QMP greeting", s_->name, ETIMEDOUT);
  if (!hello->contains("QMP"))
    throw Error(fmt::format("QMP greeting on '{}': not QMP: {}", s_->name, hello->dump()));
  s_->greeting = (*hello)["QMP"];
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  s_->run("qmp_capabilities", json::object(), -1, std::max(left, std::chrono::milliseconds(1)));
}

Qmp Qmp::connect(const std::string &path, std::chrono::milliseconds timeout) {
  struct sockaddr_un addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path))
    throw Error("connect", path, ENAMETOOLONG);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), path);
  if (!s)
    throw Error("socket", path, errno);
  if (::connect(s.get(), reinterpret_cast<struct sockaddr *>(&addr), sizeof(addr)) < 0)
    throw Error("connect", path, errno);
  return Qmp(std::move(s), path, timeout);
}

Qmp::Qmp(Qmp &&) noexcept = default;
Qmp &Qmp::operator=(Qmp &&) noexcept = default;
Qmp::~Qmp() = default;

const json &Qmp::greeting() const noexcept { return s_->greeting; }
const std::string &Qmp::name() const noexcept { return s_->name; }
std::deque<json> &Qmp::events() noexcept { return s_->events; }
const Fd &Qmp::socket() const noexcept { return s_->sock; }

json Qmp::execute(const std::string &command, const json &arguments,
                  std::chrono::milliseconds timeout) {
  return s_->run(command, arguments, -1, timeout);
}

json Qmp::execute(const std::string &command, std::chrono::milliseconds timeout) {
  return s_->run(command, json::object(), -1, timeout);
}

json Qmp::execute_with_fd(const std::string &command, const json &arguments, int fd,
                          std::chrono::milliseconds timeout) {
  if (fd < 0)
    throw Error("QMP " + command, s_->name, EBADF);
  return s_->run(command, arguments, fd, timeout);
}

void Qmp::send_fd(const std::string &fdname, int fd, std::chrono::milliseconds timeout) {
  execute_with_fd("getfd", {{"fdname", fdname}}, fd, timeout);
}

int Qmp::add_fd(int fd, std::optional<int> fdset, std::chrono::milliseconds timeout) {
  json args = json::object();
  if (fdset)
    args["fdset-id"] = *fdset;
  json r = execute_with_fd("add-fd", args, fd, timeout);
  return r.at("fdset-id").get<int>();
}

std::optional<json> Qmp::wait_event(const std::string &name, std::chrono::milliseconds timeout) {
  for (auto it = s_->events.begin(); it != s_->events.end(); ++it) {
    if ((*it)["event"] == name) {
      json e = std::move(*it);
      s_->events.erase(it);
      return e;
    }
  }
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto msg = s_->read_message(deadline, "waiting for " + name);
    if (!msg)
      return std::nullopt;
    if (!msg->contains("event"))
      continue; // a late reply to a timed-out command
    if ((*msg)["event"] == name)
      return msg;
    s_->events.push_back(std::move(*msg));
  }
}

} // namespace rundkit::vm
