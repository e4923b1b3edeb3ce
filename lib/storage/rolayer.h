// The read-only overlayfs view of image layers shared with guests.
#pragma once

#include <string>
#include <vector>

#include "storage/mount.h"

namespace rundkit {

// A layer argument resolved to the directory whose contents form the layer:
// a containerd overlay snapshot directory (`.../snapshots/N`) means its
// `fs` subdirectory, anything else the directory itself.
std::string layer_root(const std::string &layer);

struct RoLayerMount {
  Mount mount;
  std::string kind;     // "overlay" or "bind" (a single layer)
  std::string lowerdir; // overlay's lowerdir=, topmost first
};

// Mounts `layers` (bottom first, the order an image manifest lists them)
// read-only at `target`: an overlayfs with lower layers only, or a read-only
// bind mount when there is one layer (overlayfs needs two lowers without an
// upper).  Throws rundkit::Error; nothing is mounted on failure.
RoLayerMount mount_ro_layers(const std::vector<std::string> &layers,
                             const std::string &target);

// Unmounts what mount_ro_layers mounted; refuses a path that is not a mount.
void umount_ro_layers(const std::string &target);

} // namespace rundkit
