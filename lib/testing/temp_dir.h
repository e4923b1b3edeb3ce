// A directory of the test's own (mkdtemp under `prefix`), removed with
// everything in it when the test is done.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "util/error.h"

namespace rundkit {

class TempDir {
public:
  explicit TempDir(const std::string &prefix = "/tmp/rundkit-test") {
    std::string t = prefix + ".XXXXXX";
    if (!::mkdtemp(t.data()))
      throw Error("mkdtemp", t, errno);
    path_ = t;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
  const std::string &path() const { return path_; }
  // Writes `data` to path()/name, making the directories on the way.
  void put(const std::string &name, const std::string &data) const {
    std::filesystem::path p = path_ + "/" + name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << data;
  }

private:
  std::string path_;
};

} // namespace rundkit
