// The guest's initramfs: the static agent as /init, and the directories it
// mounts on; for a kernel with its drivers as modules, those modules.
// Nothing else: the sandbox's userspace comes from its layers.
#pragma once

#include <string>

namespace rundkit::agent {

// Writes the archive to `out_path` by a staged rename (a reader never sees
// half of one).  Error naming the agent binary if it cannot be read.
//
// `module_dir`, if not empty, holds modules.load (one .ko file name per
// line, dependencies first) and those files: they go to /modules/, where
// the agent loads them at boot.  InputError if the list is missing, empty,
// or names a file that is not there or not a plain name.
void write_agent_initramfs(const std::string &agent_binary, const std::string &out_path,
                           const std::string &module_dir = "");

} // namespace rundkit::agent
