#include "util/sha256.h"

#include <unistd.h>

#include <cerrno>
#include <vector>

#include <fmt/format.h>
#include <openssl/evp.h>

#include "util/error.h"

namespace rundkit {

struct Sha256::Ctx {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  ~Ctx() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  if (!ctx_->md || EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr) != 1)
    throw Error("sha256: OpenSSL could not set up a digest");
}

Sha256::~Sha256() = default;

void Sha256::update(const void *data, size_t n) { EVP_DigestUpdate(ctx_->md, data, n); }

std::string Sha256::hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx_->md, md, &len);
  std::string out;
  for (unsigned i = 0; i < len; ++i)
    out += fmt::format("{:02x}", md[i]);
  return out;
}

std::string fd_sha256(const Fd &fd) {
  Sha256 h;
  std::vector<char> buf(1 << 20);
  off_t off = 0;
  for (;;) {
    ssize_t n = ::pread(fd.get(), buf.data(), buf.size(), off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      throw Error("read", fd.path(), errno);
    if (n == 0)
      break;
    h.update(buf.data(), static_cast<size_t>(n));
    off += n;
  }
  return h.hex();
}

} // namespace rundkit
