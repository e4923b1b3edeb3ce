// The guest's initramfs: the static agent as /init, and the directories it
// mounts on.  Nothing else: the sandbox's userspace comes from its layers.
#pragma once

#include <string>

namespace rundkit::agent {

// Writes the archive to `out_path` by a staged rename (a reader never sees
// half of one).  Error naming the agent binary if it cannot be read.
void write_agent_initramfs(const std::string &agent_binary, const std::string &out_path);

} // namespace rundkit::agent
