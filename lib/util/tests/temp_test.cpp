#include "util/temp.h"

#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "util/error.h"
#include "util/fd.h"

using namespace rundkit;

TEST(TempNames, CarryThePid) {
  std::string n = make_temp_name();
  EXPECT_EQ(n.rfind(std::string(".reflinkfs-tmp.") + std::to_string(::getpid()) + ".", 0), 0u);
  EXPECT_EQ(temp_name_pid(n), ::getpid());
  EXPECT_EQ(temp_name_pid(".reflinkfs-tmp.42.abcdef"), 42);
  EXPECT_FALSE(temp_name_pid("layer.img"));
  EXPECT_FALSE(temp_name_pid(".reflinkfs-tmp.x42.abcdef"));
  EXPECT_FALSE(temp_name_pid(".reflinkfs-tmp..abcdef"));
  // Numbers no pid can be: never thrown, never wrapped into a live pid
  // (2^32 + 1 used to come back as pid 1, which is always alive).
  EXPECT_FALSE(temp_name_pid(".reflinkfs-tmp.4294967297.abcdef"));
  EXPECT_FALSE(temp_name_pid(".reflinkfs-tmp.99999999999999999999999.abcdef"));
  EXPECT_FALSE(temp_name_pid(".reflinkfs-tmp.4194305.abcdef"));
  EXPECT_FALSE(temp_name_pid(".reflinkfs-tmp.0.abcdef"));
  EXPECT_FALSE(temp_name_pid(".reflinkfs-tmp.0042.abcdef"));
  EXPECT_EQ(temp_name_pid(".reflinkfs-tmp.4194304.abcdef"), 4194304);
}

TEST(WriteFileStaged, ReplacesWholeOrRefuses) {
  char tmpl[] = "/tmp/rundkit-staged.XXXXXX";
  ASSERT_TRUE(::mkdtemp(tmpl));
  std::string dir = tmpl, path = dir + "/rec.json";
  write_file_staged(path, "one", false);
  EXPECT_EQ(read_file(path), "one");
  write_file_staged(path, "two");
  EXPECT_EQ(read_file(path), "two");
  try {
    write_file_staged(path, "three", false);
    FAIL() << "replaced an existing file";
  } catch (const Error &e) {
    EXPECT_EQ(e.err(), EEXIST);
  }
  EXPECT_EQ(read_file(path), "two");
  EXPECT_THROW(write_file_staged(dir + "/missing/rec.json", "x"), Error);
  // Nothing staged is left behind.
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator(dir); it != decltype(it)(); ++it)
    ++n;
  EXPECT_EQ(n, 1u);
  std::filesystem::remove_all(dir);
}
