// SHA-256 (OpenSSL's EVP), streaming: template inputs, OCI blobs.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "util/fd.h"

namespace rundkit {

class Sha256 {
public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256 &) = delete;
  Sha256 &operator=(const Sha256 &) = delete;
  void update(const void *data, size_t n);
  // Lower-case hex of the digest; the object is spent afterwards.
  std::string hex();

private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// sha256 (hex) of what `fd` holds from offset 0 (pread: its offset is
// untouched).
std::string fd_sha256(const Fd &fd);

} // namespace rundkit
