#include "cgroup/tree.h"

#include <string>

namespace rundkit {

void Tree::enter(const std::string &cg, pid_t pid) const {
  cgfs::write(cg, cgfs::kProcs, std::to_string(pid));
}

} // namespace rundkit
