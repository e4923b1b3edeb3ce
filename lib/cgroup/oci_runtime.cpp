#include "cgroup/oci_runtime.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cgroup/names.h"
#include "util/error.h"
#include "util/proc.h"

namespace rundkit {

namespace {

// runc's and crun's global options that take a value.
bool global_takes_value(const std::string &a) {
  for (const char *o : {"--root", "--log", "--log-format", "--criu", "--rootless", "--cgroup-manager"})
    if (a == o)
      return true;
  return false;
}

// create's and run's options that take a value.
bool create_takes_value(const std::string &a) {
  for (const char *o : {"--bundle", "-b", "--console-socket", "--pid-file", "--preserve-fds"})
    if (a == o)
      return true;
  return false;
}

} // namespace

OciInvocation parse_oci_args(const std::vector<std::string> &args) {
  if (args.empty())
    throw InputError("oci-runtime: no runtime command (containerd passes e.g. 'create --bundle "
                     "DIR ID')");
  OciInvocation inv;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string &a = args[i];
    if (a == "--systemd-cgroup" || a == "--cgroup-manager=systemd")
      inv.systemd_cgroup = true;
    if (a.empty() || a[0] != '-')
      break;
    if (global_takes_value(a)) {
      if (a == "--cgroup-manager" && i + 1 < args.size() && args[i + 1] == "systemd")
        inv.systemd_cgroup = true;
      ++i;
    }
  }
  if (i == args.size())
    return inv;
  inv.command = args[i];
  if (inv.command != "create" && inv.command != "run")
    return inv;
  std::vector<std::string> positional;
  for (++i; i < args.size(); ++i) {
    const std::string &a = args[i];
    if (a == "--bundle" || a == "-b") {
      if (i + 1 < args.size())
        inv.bundle = args[i + 1];
      ++i;
    } else if (a.rfind("--bundle=", 0) == 0) {
      inv.bundle = a.substr(9);
    } else if (create_takes_value(a)) {
      ++i;
    } else if (!a.empty() && a[0] == '-') {
      // a flag of its own (--no-pivot, --detach, --pid-file=F, ...)
    } else {
      positional.push_back(a);
    }
  }
  if (!positional.empty())
    inv.id = positional.back();
  if (inv.bundle.empty()) {
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd))
      inv.bundle = cwd;
  }
  return inv;
}

std::string serve_pooled_cgroup(Backend &backend, const OciInvocation &inv) {
  if (inv.command != "create" && inv.command != "run")
    return "";
  try {
    if (inv.systemd_cgroup)
      return "systemd cgroup manager: left to the runtime";
    auto config = nlohmann::json::parse(read_file(inv.bundle + "/config.json"));
    std::string path = config.value("/linux/cgroupsPath"_json_pointer, std::string());
    if (path.empty() || path[0] != '/' || path.find(':') != std::string::npos)
      return path.empty() ? "" : fmt::format("cgroupsPath '{}' is not /PARENT/NAME: left to the runtime", path);
    size_t slash = path.rfind('/');
    std::string parent = path.substr(1, slash == 0 ? 0 : slash - 1);
    std::string name = path.substr(slash + 1);
    if (parent.empty() || name.empty())
      return "";
    PoolStatus pool = backend.status(parent);
    if (pool.available == 0)
      return pool.target ? fmt::format("pool {} is empty: {} made by the runtime", parent, name)
                         : "";
    ClaimRequest req;
    req.parent = parent;
    req.name = name;
    req.owner = ProcessId::self(); // gone before the hand-over: gc releases it
    ClaimRecord rec = backend.claim(req);
    if (const char *stop = std::getenv("LCGROUPCTL_TEST_STOP_AFTER_CLAIM"); stop && *stop)
      ::raise(SIGSTOP); // tests kill -9 here: a claim whose owner is gone
    // The hand-over: from here on the cgroup is the runtime's.
    backend.state().remove_claim(rec.name);
    return fmt::format("{} {} from the pool of {}", rec.hit ? "claimed" : "made", path, parent);
  } catch (const std::exception &e) {
    return fmt::format("not served from a pool: {}", e.what());
  }
}

void exec_runtime(const std::string &runtime, const std::vector<std::string> &args) {
  std::vector<std::string> argv = {runtime};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char *> p;
  for (auto &a : argv)
    p.push_back(a.data());
  p.push_back(nullptr);
  ::execv(runtime.c_str(), p.data());
  throw Error("exec", runtime, errno);
}

} // namespace rundkit
