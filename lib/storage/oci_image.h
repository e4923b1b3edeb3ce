// OCI images (image-spec v1 image layouts, as `skopeo copy ... oci:DIR`,
// `buildah push ... oci:DIR` or umoci write them) imported into a
// content-addressed store whose layer directories are rundctl's read-only
// layers:
//
//   STORE/layers/sha256/HEX/   one layer, unpacked once (HEX: the digest of
//                              the layer's blob as the manifest names it)
//   STORE/images/NAME.json     an imported image: manifest and config
//                              digests, its layers bottom first, and the
//                              config's command, environment and cwd
//
// Every blob read (index, manifest, config, layers) is checked against the
// digest and size that name it.  A layer is unpacked by libarchive in a
// worker process chrooted into the layer's staging directory (an entry can
// reach nothing outside it, whatever its path or the symlinks before it),
// hashed as it is read, and renamed into place only if its digest matched.
// OCI whiteouts become overlayfs's: `.wh.NAME` a 0:0 character device,
// `.wh..wh..opq` the directory's trusted.overlay.opaque="y".  What a layer
// may not carry is refused or neutralised, and said so in `notes`:
//   - a path with a ".." component (or a hard link to one): refused, nothing
//     of the layer is kept;
//   - an absolute path: made relative to the layer;
//   - device nodes, sockets: skipped (FIFOs, files, links, directories are
//     kept with their owner, mode and times; extended attributes are not
//     applied: a layer cannot set trusted.overlay.* or file capabilities).
#pragma once

#include <string>
#include <vector>

namespace rundkit {

struct OciImportOptions {
  std::string layout; // the image layout directory (has oci-layout, index.json)
  std::string store;
  // The image's name in the store; empty: the manifest's ref name
  // (org.opencontainers.image.ref.name).
  std::string name;
  // Which manifest of the index: the one with this ref name; empty: the
  // only one there is.
  std::string ref;
  std::string platform = "linux/amd64"; // for a multi-platform index
};

struct OciImage {
  std::string name;
  std::string manifest_digest; // "sha256:..."
  std::string config_digest;
  std::vector<std::string> layer_digests; // bottom first
  std::vector<std::string> layers;        // their directories in the store
  std::vector<std::string> entrypoint, cmd, env;
  std::string cwd;
  // Import only: what unpacking refused or changed, and how many layers
  // were unpacked now or found unpacked already.
  std::vector<std::string> notes;
  size_t layers_unpacked = 0, layers_reused = 0;
};

// InputError for a bad layout (no oci-layout or another version, a missing
// or damaged blob, a digest or size mismatch, an unknown media type, a
// layer that leaves itself, an ambiguous or missing ref, a name taken by
// another image): nothing is added to the store then, except layers of the
// image that were complete and correct (they are content-addressed).
OciImage import_oci_image(const OciImportOptions &o);
// InputError if there is no such image.
OciImage read_oci_image(const std::string &store, const std::string &name);
std::vector<std::string> list_oci_images(const std::string &store);

// What a removal or gc did: directories removed, and what it kept and why.
struct LayerGc {
  std::vector<std::string> removed;
  std::vector<std::string> kept;
};

// Removes image NAME, then the layers no other image names (gc_oci_layers).
// InputError, nothing changed, if there is no such image or a layer of it is
// in `in_use` (the layer directories of sandboxes that run: stop them first).
LayerGc remove_oci_image(const std::string &store, const std::string &name,
                         const std::vector<std::string> &in_use);
// Removes every layer directory no image record names and `in_use` does not
// list, and the staging directories of imports that were killed.  Imports
// and gc of one store take turns (a lock file in the store), so a layer an
// import is about to name is never removed under it.
LayerGc gc_oci_layers(const std::string &store, const std::vector<std::string> &in_use);

void validate_image_name(const std::string &name);

} // namespace rundkit
