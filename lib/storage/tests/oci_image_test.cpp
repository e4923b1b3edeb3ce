// OCI image import against real images: one built with Debian's umoci
// (whiteouts as an image tool writes them), hostile layers built here with
// libarchive's writer, damaged layouts.  The merged result is checked
// through the read-only overlay rundctl mounts.
#include "storage/oci_image.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "storage/rolayer.h"
#include "testing/temp_dir.h"
#include "util/error.h"
#include "util/process.h"
#include "util/sha256.h"

using namespace rundkit;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

void put(const std::string &path, const std::string &data) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << data;
}

std::string get(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string sha256_of(const std::string &data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.hex();
}

// One tar member for a hand-built layer.
struct Member {
  Member(std::string p, mode_t t = AE_IFREG, std::string d = "", std::string l = "", dev_t r = 0)
      : path(std::move(p)), type(t), data(std::move(d)), link(std::move(l)), rdev(r) {}
  std::string path;
  mode_t type;
  std::string data; // a file's content or a symlink's target
  std::string link; // a hard link's target
  dev_t rdev;
};

std::string make_tar(const std::vector<Member> &members) {
  struct archive *a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  std::vector<char> buf(1 << 20);
  size_t used = 0;
  archive_write_open_memory(a, buf.data(), buf.size(), &used);
  for (const auto &m : members) {
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, m.path.c_str());
    if (!m.link.empty()) {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_hardlink(e, m.link.c_str());
    } else {
      archive_entry_set_filetype(e, m.type);
    }
    archive_entry_set_perm(e, m.type == AE_IFDIR ? 0755 : 0644);
    if (m.type == AE_IFLNK)
      archive_entry_set_symlink(e, m.data.c_str());
    if (m.type == AE_IFCHR || m.type == AE_IFBLK)
      archive_entry_set_rdev(e, m.rdev);
    if (m.type == AE_IFREG && m.link.empty())
      archive_entry_set_size(e, static_cast<la_int64_t>(m.data.size()));
    archive_write_header(a, e);
    if (m.type == AE_IFREG && m.link.empty())
      archive_write_data(a, m.data.data(), m.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
  return std::string(buf.data(), used);
}

// An image layout written blob by blob, as an image tool would.
struct Layout {
  std::string dir;
  std::vector<json> layers;
  explicit Layout(std::string d) : dir(std::move(d)) {
    put(dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  }
  json blob(const std::string &data, const std::string &type) {
    std::string hex = sha256_of(data);
    put(dir + "/blobs/sha256/" + hex, data);
    return {{"mediaType", type}, {"digest", "sha256:" + hex}, {"size", data.size()}};
  }
  void add_layer(const std::vector<Member> &m) {
    layers.push_back(blob(make_tar(m), "application/vnd.oci.image.layer.v1.tar"));
  }
  // The manifest of the layers so far, listed in index.json under `ref`.
  json finish(const std::string &ref, const std::vector<std::string> &cmd = {"/bin/true"}) {
    json config = {{"architecture", "amd64"},
                   {"os", "linux"},
                   {"config", {{"Cmd", cmd}, {"Env", {"PATH=/bin"}}, {"WorkingDir", "/"}}},
                   {"rootfs", {{"type", "layers"}, {"diff_ids", json::array()}}}};
    json m = {{"schemaVersion", 2},
              {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
              {"config", blob(config.dump(), "application/vnd.oci.image.config.v1+json")},
              {"layers", layers}};
    json d = blob(m.dump(), "application/vnd.oci.image.manifest.v1+json");
    d["annotations"] = {{"org.opencontainers.image.ref.name", ref}};
    json index = {{"schemaVersion", 2}, {"manifests", json::array()}};
    if (fs::exists(dir + "/index.json"))
      index = json::parse(get(dir + "/index.json"));
    index["manifests"].push_back(d);
    put(dir + "/index.json", index.dump());
    return d;
  }
};

bool is_whiteout(const std::string &path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

std::string refused(const OciImportOptions &o) {
  try {
    import_oci_image(o);
  } catch (const InputError &e) {
    return e.what();
  }
  return "(accepted)";
}

#define NEED_ROOT()                                                                                \
  do {                                                                                             \
    if (::geteuid() != 0)                                                                          \
      GTEST_SKIP() << "needs root (layers keep their owners; overlay mounts)";                     \
  } while (0)

} // namespace

// An image built by umoci: two layers, the second deleting a file and
// replacing a directory; imported, its merged view is what the image tool
// left in its last bundle.  A second import reuses the layers.
TEST(OciImage, UmociImageImportsWithItsWhiteouts) {
  NEED_ROOT();
  if (::system("command -v umoci >/dev/null") != 0)
    GTEST_SKIP() << "no umoci (apt-get install umoci)";
  TempDir t("/var/tmp/rundkit-oci-test");
  std::string L = t.path() + "/layout", B = t.path() + "/bundle", S = t.path() + "/store";
  auto umoci = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "umoci");
    run_capture(args);
  };
  umoci({"init", "--layout", L});
  umoci({"new", "--image", L + ":v1"});
  umoci({"unpack", "--image", L + ":v1", B});
  put(B + "/rootfs/etc/keep", "kept\n");
  put(B + "/rootfs/etc/gone", "deleted later\n");
  put(B + "/rootfs/d/a", "a\n");
  put(B + "/rootfs/d/b", "b\n");
  fs::create_symlink("/etc/keep", B + "/rootfs/etc/link");
  umoci({"repack", "--image", L + ":v1", B});
  fs::remove_all(B);
  umoci({"unpack", "--image", L + ":v1", B});
  fs::remove(B + "/rootfs/etc/gone");
  fs::remove_all(B + "/rootfs/d");
  put(B + "/rootfs/d/c", "c\n");
  umoci({"repack", "--image", L + ":v1", B});
  umoci({"config", "--image", L + ":v1", "--config.cmd", "/bin/echo", "--config.cmd", "hi",
         "--config.env", "GREETING=hello", "--config.workingdir", "/d"});

  OciImage img = import_oci_image({L, S, "", "v1"});
  EXPECT_EQ(img.name, "v1");
  ASSERT_EQ(img.layers.size(), 2u);
  EXPECT_EQ(img.layers_unpacked, 2u);
  EXPECT_EQ(img.cmd, (std::vector<std::string>{"/bin/echo", "hi"}));
  EXPECT_NE(std::find(img.env.begin(), img.env.end(), "GREETING=hello"), img.env.end());
  EXPECT_EQ(img.cwd, "/d");
  EXPECT_TRUE(is_whiteout(img.layers[1] + "/etc/gone")) << "no whiteout for the deleted file";
  EXPECT_TRUE(img.notes.empty()) << img.notes.front();

  std::string view = t.path() + "/view";
  fs::create_directories(view);
  {
    RoLayerMount m = mount_ro_layers(img.layers, view);
    EXPECT_EQ(get(view + "/etc/keep"), "kept\n");
    EXPECT_FALSE(fs::exists(view + "/etc/gone"));
    EXPECT_EQ(fs::read_symlink(view + "/etc/link"), "/etc/keep");
    EXPECT_EQ(get(view + "/d/c"), "c\n");
    EXPECT_FALSE(fs::exists(view + "/d/a")) << "the replaced directory shows the old files";
    EXPECT_FALSE(fs::exists(view + "/d/b"));
    m.mount.release();
    umount_ro_layers(view);
  }

  OciImage again = import_oci_image({L, S, "", "v1"});
  EXPECT_EQ(again.layers_unpacked, 0u);
  EXPECT_EQ(again.layers_reused, 2u);
  EXPECT_EQ(again.layers, img.layers);
  EXPECT_EQ(read_oci_image(S, "v1").layer_digests, img.layer_digests);
  EXPECT_EQ(list_oci_images(S), std::vector<std::string>{"v1"});
}

// What a layer may not carry: refused whole (".."), or neutralised and
// said so (absolute paths, devices); nothing reaches outside the layer.
TEST(OciImage, HostileLayersAreRefusedOrNeutralised) {
  NEED_ROOT();
  TempDir t("/var/tmp/rundkit-oci-test");
  std::string S = t.path() + "/store";
  std::string outside = t.path() + "/outside";
  fs::create_directories(outside);

  Layout ok(t.path() + "/neutralised");
  ok.add_layer({{"etc", AE_IFDIR},
                {"/etc/abs", AE_IFREG, "absolute\n"},
                {"dev/sda", AE_IFBLK, "", "", makedev(8, 0)},
                {"dev/mem", AE_IFCHR, "", "", makedev(1, 1)},
                {"dir/.wh..wh..opq", AE_IFREG},
                {"etc/.wh.hidden", AE_IFREG},
                {"etc/hard", AE_IFREG, "", "/etc/abs"}});
  ok.finish("ok");
  OciImage img = import_oci_image({ok.dir, S, "", "ok"});
  ASSERT_EQ(img.layers.size(), 1u);
  const std::string &l = img.layers[0];
  EXPECT_EQ(get(l + "/etc/abs"), "absolute\n");
  EXPECT_EQ(get(l + "/etc/hard"), "absolute\n");
  EXPECT_FALSE(fs::exists(l + "/dev/sda"));
  EXPECT_FALSE(fs::exists(l + "/dev/mem"));
  EXPECT_TRUE(is_whiteout(l + "/etc/hidden"));
  char v[4] = {};
  EXPECT_EQ(::getxattr((l + "/dir").c_str(), "trusted.overlay.opaque", v, sizeof v), 1);
  EXPECT_EQ(v[0], 'y');
  std::string notes;
  for (const auto &n : img.notes)
    notes += n + "\n";
  EXPECT_NE(notes.find("absolute path '/etc/abs' unpacked as 'etc/abs'"), std::string::npos)
      << notes;
  EXPECT_NE(notes.find("device node 'dev/sda' skipped"), std::string::npos) << notes;
  EXPECT_NE(notes.find("device node 'dev/mem' skipped"), std::string::npos) << notes;

  auto hostile = [&](const std::string &ref, const std::vector<Member> &members,
                     const std::string &says) {
    Layout bad(t.path() + "/" + ref);
    bad.add_layer(members);
    json d = bad.finish(ref);
    std::string why = refused({bad.dir, S, "", ref});
    EXPECT_NE(why.find(says), std::string::npos) << ref << ": " << why;
    EXPECT_FALSE(fs::exists(S + "/images/" + ref + ".json")) << ref;
    for (const auto &e : fs::directory_iterator(S + "/layers/sha256"))
      EXPECT_NE(e.path().filename().string()[0], '.') << ref << " left " << e.path();
    EXPECT_TRUE(fs::is_empty(outside)) << ref << " wrote outside its layer";
  };
  std::string rel = fs::relative(outside, S + "/layers/sha256").string();
  hostile("dotdot", {{"a/../../" + rel + "/x", AE_IFREG, "x"}}, "has a '..' component");
  hostile("hardlink", {{"h", AE_IFREG, "", "../../" + rel + "/x"}}, "has a '..' component");
  // A symlink to outside, then a file through it: written nowhere.
  hostile("symlink", {{"link", AE_IFLNK, outside}, {"link/pwned", AE_IFREG, "x"}},
          "goes through the symlink 'link'");
}

TEST(OciImage, DamagedLayoutsAreRefusedAndAddNothing) {
  NEED_ROOT();
  TempDir t("/var/tmp/rundkit-oci-test");
  std::string S = t.path() + "/store";
  Layout l(t.path() + "/l");
  l.add_layer({{"f", AE_IFREG, "one\n"}});
  json d1 = l.finish("one");
  l.layers.clear();
  l.add_layer({{"g", AE_IFREG, "two\n"}});
  json d2 = l.finish("two");
  std::string layer_blob =
      l.dir + "/blobs/sha256/" + l.layers[0]["digest"].get<std::string>().substr(7);

  EXPECT_NE(refused({t.path(), S, "", ""}).find("not an OCI image layout"), std::string::npos);
  EXPECT_NE(refused({l.dir, S, "", ""}).find("lists 2 manifests: say which with --ref"),
            std::string::npos);
  EXPECT_NE(refused({l.dir, S, "", "three"}).find("no manifest with ref name 'three'"),
            std::string::npos);
  EXPECT_NE(refused({l.dir, S, "../x", "one"}).find("invalid image name"), std::string::npos);

  // A layer blob changed in place (same size): its digest no longer holds.
  std::string orig = get(layer_blob);
  std::string changed = orig;
  changed[600] ^= 1; // inside the file's data block
  put(layer_blob, changed);
  EXPECT_NE(refused({l.dir, S, "", "two"}).find("not the digest that names it"),
            std::string::npos);
  // Truncated: its size no longer holds.
  put(layer_blob, orig.substr(0, 512));
  EXPECT_NE(refused({l.dir, S, "", "two"}).find("its descriptor says"), std::string::npos);
  fs::remove(layer_blob);
  EXPECT_NE(refused({l.dir, S, "", "two"}).find("No such file or directory"), std::string::npos);
  put(layer_blob, orig);
  // A blob that is a symlink to the right content elsewhere: refused.
  std::string elsewhere = t.path() + "/elsewhere";
  put(elsewhere, orig);
  fs::remove(layer_blob);
  fs::create_symlink(elsewhere, layer_blob);
  EXPECT_NE(refused({l.dir, S, "", "two"}).find("a symlink (refused)"), std::string::npos);
  fs::remove(layer_blob);
  put(layer_blob, orig);
  std::error_code ec;
  EXPECT_TRUE(!fs::exists(S + "/images") || fs::is_empty(S + "/images"));
  EXPECT_TRUE(!fs::exists(S + "/layers/sha256") || fs::is_empty(S + "/layers/sha256"));

  // Whole again: both import; a name taken by the other image is refused.
  EXPECT_EQ(import_oci_image({l.dir, S, "", "two"}).layers.size(), 1u);
  EXPECT_NE(refused({l.dir, S, "two", "one"}).find("exists with manifest"), std::string::npos);
  EXPECT_EQ(import_oci_image({l.dir, S, "", "one"}).name, "one");
  EXPECT_EQ(refused({l.dir, S, "", "one"}), "(accepted)") << "the same image again is fine";
}

// Removing an image takes its layers no other image names; a layer a
// running sandbox uses keeps the image; gc takes dead imports' staging.
TEST(OciImage, RemoveAndGcKeepWhatIsNamedOrInUse) {
  NEED_ROOT();
  TempDir t("/var/tmp/rundkit-oci-test");
  std::string S = t.path() + "/store";
  Layout l(t.path() + "/l");
  l.add_layer({{"shared", AE_IFREG, "A\n"}});
  l.add_layer({{"only-one", AE_IFREG, "B\n"}});
  l.finish("one");
  json shared = l.layers[0];
  l.layers = {shared};
  l.add_layer({{"only-two", AE_IFREG, "C\n"}});
  l.finish("two");
  OciImage one = import_oci_image({l.dir, S, "", "one"});
  OciImage two = import_oci_image({l.dir, S, "", "two"});
  ASSERT_EQ(one.layers[0], two.layers[0]);
  EXPECT_EQ(two.layers_reused, 1u);

  LayerGc r = remove_oci_image(S, "one", {});
  EXPECT_FALSE(fs::exists(one.layers[1])) << "its own layer stayed";
  EXPECT_TRUE(fs::exists(one.layers[0])) << "the layer image two still names went";
  EXPECT_EQ(list_oci_images(S), std::vector<std::string>{"two"});

  std::string why;
  try {
    remove_oci_image(S, "two", {two.layers[1]});
  } catch (const InputError &e) {
    why = e.what();
  }
  EXPECT_NE(why.find("is in use"), std::string::npos) << why;
  EXPECT_EQ(list_oci_images(S), std::vector<std::string>{"two"}) << "a refused removal changed it";
  EXPECT_TRUE(fs::exists(two.layers[1]));

  // A killed import's staging directory (its pid gone) and a stray layer.
  std::string dead = S + "/layers/sha256/." + std::string(64, 'a') + ".999999999";
  std::string stray = S + "/layers/sha256/" + std::string(64, 'b');
  fs::create_directories(dead);
  fs::create_directories(stray);
  LayerGc g = gc_oci_layers(S, {});
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_FALSE(fs::exists(stray));
  EXPECT_TRUE(fs::exists(two.layers[0]) && fs::exists(two.layers[1])) << "gc took a named layer";

  remove_oci_image(S, "two", {});
  EXPECT_TRUE(fs::is_empty(S + "/layers/sha256"));
  EXPECT_TRUE(list_oci_images(S).empty());
  why.clear();
  try {
    remove_oci_image(S, "two", {});
  } catch (const InputError &e) {
    why = e.what();
  }
  EXPECT_NE(why.find("no image named 'two'"), std::string::npos) << why;
}
