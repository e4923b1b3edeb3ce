// The agent's initramfs, read back by GNU cpio: the agent as /init, and a
// distro kernel's modules with their load order; bad module lists are
// refused before anything is written.
#include "agent/initramfs.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "util/error.h"
#include "testing/temp_dir.h"
#include "util/process.h"

using namespace rundkit;
namespace fs = std::filesystem;

namespace {

std::string list(const std::string &archive) {
  return run_capture({"sh", "-c", "cpio -it --quiet < \"$0\"", archive});
}

} // namespace

TEST(AgentInitramfs, CarriesTheModulesInTheirLoadOrder) {
  if (::system("command -v cpio >/dev/null") != 0)
    GTEST_SKIP() << "no cpio (apt-get install cpio)";
  TempDir d("/tmp/rundkit-agent-initramfs");
  d.put("agent", "AGENT");
  d.put("mods/modules.load", "virtio.ko\nvirtio_blk.ko\n\n9p.ko\n");
  for (const char *m : {"virtio.ko", "virtio_blk.ko", "9p.ko", "unlisted.ko"})
    d.put(std::string("mods/") + m, m);
  std::string out = d.path() + "/initrd";
  agent::write_agent_initramfs(d.path() + "/agent", out, d.path() + "/mods");
  std::string names = list(out);
  EXPECT_NE(names.find("init\n"), std::string::npos) << names;
  EXPECT_NE(names.find("modules/virtio_blk.ko\n"), std::string::npos) << names;
  EXPECT_EQ(names.find("unlisted.ko"), std::string::npos) << "only listed modules go in: " << names;
  std::string load = run_capture(
      {"sh", "-c", "cpio -i --quiet --to-stdout modules/modules.load < \"$0\"", out});
  EXPECT_EQ(load, "virtio.ko\nvirtio_blk.ko\n9p.ko\n");

  // Without a module directory: no /modules at all.
  agent::write_agent_initramfs(d.path() + "/agent", out);
  EXPECT_EQ(list(out).find("modules"), std::string::npos);
}

TEST(AgentInitramfs, BadModuleListsAreRefusedAndWriteNothing) {
  TempDir d("/tmp/rundkit-agent-initramfs");
  d.put("agent", "AGENT");
  std::string out = d.path() + "/initrd";
  auto refused = [&](const std::string &dir, const std::string &says) {
    try {
      agent::write_agent_initramfs(d.path() + "/agent", out, dir);
      ADD_FAILURE() << dir << ": accepted";
    } catch (const InputError &e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(out)) << dir;
  };
  refused(d.path() + "/none", "modules.load");
  d.put("empty/modules.load", "\n");
  refused(d.path() + "/empty", "lists no modules");
  d.put("escape/modules.load", "../agent\n");
  refused(d.path() + "/escape", "not the file name of a .ko module");
  d.put("notko/modules.load", "virtio.ko.xz\n");
  refused(d.path() + "/notko", "not the file name of a .ko module");
  d.put("missing/modules.load", "gone.ko\n");
  refused(d.path() + "/missing", "gone.ko");
}
