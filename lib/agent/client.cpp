#include "agent/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "vm/vm.h"

namespace rundkit::agent {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

ExitStatus status_from_json(const nlohmann::json &j) {
  if (j.contains("signal") && j["signal"].get<int>() > 0)
    return ExitStatus::signalled(j["signal"].get<int>());
  return ExitStatus::exited(j.value("code", 0));
}

} // namespace

Client Client::connect(const std::string &socket_path, milliseconds timeout) {
  return adopt(vm::connect_unix(socket_path), timeout);
}

Client Client::adopt(Fd connected, milliseconds timeout) {
  Client c(std::move(connected));
  c.ping(timeout);
  return c;
}

void Client::ping(milliseconds timeout) {
  // A new connection's first bytes can be lost while the guest still sees
  // the previous connection close (the reason QEMU's guest agent has
  // guest-sync): the ping, which changes nothing, is sent again each
  // second with the same id until its answer comes or the time is up.
  nlohmann::json r = call({{"op", "ping"}}, timeout, milliseconds(1000));
  version_ = r.value("agent", std::string());
}

void Client::note_event(const std::string &body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.value("event", std::string()) == "exited")
    exited_ = status_from_json(j);
}

std::optional<Frame> Client::read_frame(Clock::time_point deadline) {
  for (;;) {
    if (auto f = reader_.next())
      return f;
    auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
      return std::nullopt;
    struct pollfd p = {fd_.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno != EINTR)
      throw Error("poll", fd_.path(), errno);
    if (rc <= 0)
      continue;
    char buf[65536];
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      throw Error("read from the guest agent", fd_.path(), errno);
    if (n == 0)
      throw Error("read from the guest agent (connection closed: the guest is gone)",
                  fd_.path(), ECONNRESET);
    reader_.feed(buf, static_cast<size_t>(n));
  }
}

nlohmann::json Client::call(nlohmann::json req, milliseconds timeout,
                            std::optional<milliseconds> resend_every) {
  auto deadline = Clock::now() + timeout;
  uint64_t id = next_id_++;
  std::string op = req.at("op").get<std::string>();
  req["id"] = id;
  std::string frame = encode_frame(FrameType::request, req.dump());
  auto send = [&] {
    if (!write_all_nosigpipe(fd_.get(), frame, fd_.path()))
      throw Error("write to the guest agent (connection closed)", fd_.path(), EPIPE);
    return resend_every ? std::min(deadline, Clock::now() + *resend_every) : deadline;
  };
  auto round = send();
  for (;;) {
    std::optional<Frame> f;
    try {
      f = read_frame(round);
    } catch (const ProtocolError &e) {
      throw Error(fmt::format("guest agent stream: {}", e.what()));
    }
    if (!f && round < deadline) {
      ++resent_;
      round = send();
      continue;
    }
    if (!f)
      throw Error(fmt::format("guest agent: no answer to '{}' within {} ms{}", op,
                              timeout.count(),
                              resend_every ? fmt::format(" ({} sent)", resent_ + 1) : ""),
                  fd_.path(), ETIMEDOUT);
    if (f->type == FrameType::event) {
      note_event(f->body);
      continue;
    }
    auto j = nlohmann::json::parse(f->body, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw Error(fmt::format("guest agent: a reply to '{}' that is not JSON", op));
    if (j.value("id", uint64_t{0}) != id)
      continue; // the answer to a request an earlier client gave up on
    if (!j.value("ok", false)) {
      auto e = j.value("error", nlohmann::json::object());
      throw GuestError(e.value("op", op), e.value("path", std::string()), e.value("errno", 0),
                       e.value("message", std::string()));
    }
    return j;
  }
}

Running Client::start(const StartRequest &req, milliseconds timeout) {
  nlohmann::json entropy = nlohmann::json::array();
  for (unsigned char c : req.entropy)
    entropy.push_back(c);
  nlohmann::json j = {{"op", "start"},
                      {"hostname", req.hostname},
                      {"entropy", entropy},
                      {"realtime_ns", req.realtime_ns},
                      {"disk", req.disk},
                      {"share_tag", req.share_tag},
                      {"argv", req.argv},
                      {"env", req.env},
                      {"cwd", req.cwd},
                      {"limits",
                       {{"cpus", req.limits.cpus},
                        {"memory_bytes", req.limits.memory_bytes},
                        {"pids", req.limits.pids}}}};
  auto r = call(j, timeout);
  Running run;
  run.pid = r.value("pid", 0);
  auto t = r.value("times", nlohmann::json::object());
  run.times = {t.value("received_ns", int64_t{0}), t.value("mounted_ns", int64_t{0}),
               t.value("cgroup_ns", int64_t{0}), t.value("exec_ns", int64_t{0})};
  return run;
}

ExecResult Client::exec(const ExecRequest &req) {
  nlohmann::json j = {{"op", "exec"},
                      {"argv", req.argv},
                      {"env", req.env},
                      {"cwd", req.cwd},
                      {"timeout_ms", req.timeout_ms}};
  auto r = call(j, milliseconds(req.timeout_ms) + milliseconds(10000));
  ExecResult e;
  e.status = status_from_json(r.value("status", nlohmann::json::object()));
  e.timed_out = r.value("timed_out", false);
  e.out = r.value("stdout", std::string());
  e.err = r.value("stderr", std::string());
  return e;
}

Status Client::status(milliseconds timeout) {
  auto r = call({{"op", "status"}}, timeout);
  Status s;
  s.phase = r.value("phase", std::string());
  s.pid = r.value("pid", 0);
  s.uptime_ns = r.value("uptime_ns", int64_t{0});
  if (r.contains("exit"))
    s.exit = status_from_json(r["exit"]);
  return s;
}

std::optional<ExitStatus> Client::wait_exited(milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!exited_) {
    std::optional<Frame> f = read_frame(deadline);
    if (!f)
      break;
    if (f->type == FrameType::event)
      note_event(f->body);
  }
  return exited_;
}

void Client::shutdown(milliseconds timeout) { call({{"op", "shutdown"}}, timeout); }

} // namespace rundkit::agent
