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

// The mount source every view carries (mountinfo's source field): how
// `umount_ro_layers` tells a view made here from any other overlay.
inline constexpr const char *kRoLayerSource = "reflinkfs";
// The empty, root-owned directory put below a single layer: overlayfs needs
// two lower layers without an upper, and a view is always an overlay so
// that it is recognisable.
inline constexpr const char *kRoLayerEmptyDir = "/run/reflinkfs/empty";

struct RoLayerOptions {
  // Allow executing programs through the view (MOUNT_ATTR_NOEXEC off).
  // nosuid and nodev are never lifted: the view must grant nothing on the
  // host.
  bool exec = false;
};

struct RoLayerMount {
  Mount mount;          // at the target's canonical path
  std::string kind;     // "overlay"
  std::string lowerdir; // overlay's lowerdir=, topmost first
};

// Mounts `layers` (bottom first, the order an image manifest lists them) at
// `target` as a read-only, nosuid, nodev (and unless `opts.exec`, noexec)
// overlayfs with lower layers only, with private propagation.  `target`
// must be an existing empty directory reached without any symbolic link,
// with nothing mounted on it.  Throws rundkit::Error (InputError for bad
// arguments) before mounting anything.
RoLayerMount mount_ro_layers(const std::vector<std::string> &layers, const std::string &target,
                             const RoLayerOptions &opts = {});

// Unmounts the view at exactly `target` (reached without symbolic links);
// refuses, leaving it mounted, anything that is not a mount point or is
// not a view made by mount_ro_layers.
void umount_ro_layers(const std::string &target);

} // namespace rundkit
