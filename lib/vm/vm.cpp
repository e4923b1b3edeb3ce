#include "vm/vm.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace rundkit::vm {

namespace {

struct sockaddr_un unix_addr(const std::string &path, const char *op) {
  struct sockaddr_un addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path))
    throw Error(op, path, ENAMETOOLONG);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

std::string tail_lines(const std::string &text, size_t lines) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r'))
    t.pop_back();
  size_t pos = t.size();
  for (size_t i = 0; i < lines; ++i) {
    if (pos == 0 || (pos = t.rfind('\n', pos - 1)) == std::string::npos)
      return t;
  }
  return t.substr(pos + 1);
}

} // namespace

Fd listen_unix(const std::string &path) {
  auto addr = unix_addr(path, "bind");
  Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), path);
  if (!s)
    throw Error("socket", path, errno);
  if (::bind(s.get(), reinterpret_cast<struct sockaddr *>(&addr), sizeof(addr)) < 0)
    throw Error("bind", path, errno);
  if (::listen(s.get(), 4) < 0)
    throw Error("listen", path, errno);
  return s;
}

Fd connect_unix(const std::string &path) {
  auto addr = unix_addr(path, "connect");
  Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), path);
  if (!s)
    throw Error("socket", path, errno);
  if (::connect(s.get(), reinterpret_cast<struct sockaddr *>(&addr), sizeof(addr)) < 0)
    throw Error("connect", path, errno);
  return s;
}

Vm::Dir::~Dir() {
  if (!path.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
}

Vm Vm::start(VmOptions opts) {
  Dir dir;
  std::string dir_path = opts.dir;
  if (dir_path.empty()) {
    char tmpl[] = "/tmp/rundkit-vm.XXXXXX";
    if (!::mkdtemp(tmpl))
      throw Error("mkdtemp", tmpl, errno);
    dir = Dir(tmpl);
    dir_path = tmpl;
  }
  QemuConfig &c = opts.config;

  std::vector<Fd> listeners; // our copies, closed once QEMU has its own
  std::vector<PassFd> pass;
  std::string qmp_path = dir_path + "/qmp.sock";
  listeners.push_back(listen_unix(qmp_path));
  // Connected before QEMU exists: the backlog holds us until it accepts.
  Fd qmp_sock = connect_unix(qmp_path);
  c.qmp = ListenSocket{qmp_path, listeners.back().get()};
  pass.push_back({listeners.back().get(), listeners.back().get()});
  for (auto &p : c.ports) {
    if (p.socket.fd < 0 && p.socket.path.empty()) {
      p.socket.path = dir_path + "/" + p.name + ".sock";
      listeners.push_back(listen_unix(p.socket.path));
      p.socket.fd = listeners.back().get();
    }
    if (p.socket.fd >= 0)
      pass.push_back({p.socket.fd, p.socket.fd});
  }
  std::vector<Fd> ro_copies;
  for (auto &d : c.disks) {
    if (d.fd < 0)
      continue;
    pass.push_back({d.fd, d.fd});
    if (d.ro_fd < 0 && !d.readonly) {
      // The same open file read-only, even when its name is gone.
      std::string self = "/proc/self/fd/" + std::to_string(d.fd);
      ro_copies.push_back(Fd::open(self, O_RDONLY));
      d.ro_fd = ro_copies.back().get();
    }
    if (d.ro_fd >= 0)
      pass.push_back({d.ro_fd, d.ro_fd});
  }

  for (const auto &p : opts.pass_fds)
    pass.push_back(p);

  std::vector<std::string> argv = qemu_argv(c);
  std::string log = opts.log.empty() ? dir_path + "/qemu.log" : opts.log;
  Fd logfd = Fd::open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

  SpawnOptions so;
  so.argv = argv;
  so.in = opts.in;
  so.out = opts.out ? *opts.out : Stdio::fd(logfd.get());
  so.err = opts.err ? *opts.err : Stdio::fd(logfd.get());
  so.pass_fds = pass;
  so.cgroup = opts.cgroup;
  so.pdeathsig = opts.pdeathsig;
  so.new_session = opts.new_session;
  so.held = static_cast<bool>(opts.place);
  Child child = spawn(so);
  if (opts.place) {
    opts.place(child.pid()); // a throw drops child: killed before exec
    child.start();
  }
  listeners.clear();
  ro_copies.clear();
  logfd.reset();

  std::optional<Qmp> qmp;
  try {
    qmp.emplace(std::move(qmp_sock), qmp_path, opts.qmp_timeout);
  } catch (const Error &e) {
    // QEMU refused its command line or died: say so, with its words.
    auto st = child.wait_for(std::chrono::milliseconds(2000));
    std::string why = st ? "QEMU " + st->describe() : std::string("QEMU did not answer QMP");
    std::string text;
    try {
      text = tail_lines(read_file(log), 10);
    } catch (const Error &) {
    }
    throw Error(fmt::format("{} ({}){}{}", why, e.what(), text.empty() ? "" : ": ", text));
  }
  Vm vm(std::move(dir), std::move(child), std::move(*qmp));
  vm.dir_ = dir_path;
  vm.argv_ = std::move(argv);
  vm.config_ = std::move(c);
  vm.log_ = opts.err ? std::string() : log;
  return vm;
}

Vm::~Vm() = default;

Fd Vm::detach() noexcept {
  dir_owner_.path.clear(); // the directory is the caller's now
  return child_.detach();
}

std::string Vm::port_path(const std::string &name) const { return dir_ + "/" + name + ".sock"; }

std::string Vm::log_tail(size_t lines) const {
  try {
    return tail_lines(read_file(log_), lines);
  } catch (const Error &) {
    return {};
  }
}

ExitStatus Vm::stop(std::chrono::milliseconds grace) {
  if (auto st = child_.try_wait())
    return *st;
  try {
    qmp_.execute("quit", grace);
  } catch (const Error &) {
    // Already going (the connection closed under us), or wedged: the
    // bounded wait below decides.
  }
  if (auto st = child_.wait_for(grace))
    return *st;
  return child_.kill();
}

} // namespace rundkit::vm
