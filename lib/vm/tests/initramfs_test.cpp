// The cpio writer, read back by GNU cpio (the real thing).
#include "vm/initramfs.h"

#include <gtest/gtest.h>

#include "util/error.h"
#include "util/process.h"

using namespace rundkit;
using namespace rundkit::vm;

TEST(Cpio, ReadBackByCpio) {
  Cpio c;
  c.add_dir("bin");
  c.add_dir("dev");
  c.add_char_device("dev/console", 5, 1);
  c.add_file("init", "#!/bin/sh\necho hi\n", 0755);
  c.add_symlink("bin/sh", "busybox");
  char tmpl[] = "/tmp/rundkit-cpio-test.XXXXXX";
  int fd = ::mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ::close(fd);
  c.write_to(tmpl);
  std::string listing;
  try {
    listing = run_capture({"sh", "-c", "cpio -itv --quiet < \"$0\"", tmpl});
  } catch (const ProcessError &e) {
    if (e.status() && e.status()->code() == 127)
      GTEST_SKIP() << "no cpio (apt-get install cpio)";
    throw;
  }
  std::string names = run_capture({"sh", "-c", "cpio -it --quiet < \"$0\"", tmpl});
  EXPECT_EQ(names, "bin\ndev\ndev/console\ninit\nbin/sh\n");
  EXPECT_NE(listing.find("crw-------"), std::string::npos) << listing;
  EXPECT_NE(listing.find("5,   1"), std::string::npos) << listing;
  EXPECT_NE(listing.find("-rwxr-xr-x"), std::string::npos) << listing;
  EXPECT_NE(listing.find("bin/sh -> busybox"), std::string::npos) << listing;
  std::string init = run_capture({"sh", "-c", "cpio -i --quiet --to-stdout init < \"$0\"", tmpl});
  EXPECT_EQ(init, "#!/bin/sh\necho hi\n");
  ::unlink(tmpl);
}
