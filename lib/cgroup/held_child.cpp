#include "cgroup/held_child.h"

#include <fcntl.h>

namespace rundkit {

HeldChild::~HeldChild() {
  if (started_)
    child_.detach(); // running on as the caller's child
}

pid_t HeldChild::detach() noexcept {
  pid_t pid = child_.pid();
  started_ = true;
  child_.detach();
  return pid;
}

void HeldChild::start() {
  child_.start();
  started_ = true;
}

HeldChild spawn_held(const std::vector<std::string> &argv, const Fd *cgroup2_dir,
                     const std::optional<std::string> &output) {
  SpawnOptions o;
  o.held = true;
  o.cgroup = cgroup2_dir;
  if (argv.empty()) {
    o.idle = true;
    o.argv = {"(placeholder)"};
  } else {
    o.argv = argv;
  }
  Fd out;
  if (output) {
    out = Fd::open(*output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    o.in = Stdio::null();
    o.out = o.err = Stdio::fd(out.get());
  }
  return HeldChild(spawn(o));
}

} // namespace rundkit
