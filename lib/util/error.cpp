#include "util/error.h"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace rundkit {

Error::Error(std::string op, std::string path, int err)
    : std::runtime_error(fmt::format("{} '{}': {}", op, path, std::strerror(err))),
      op_(std::move(op)), path_(std::move(path)), err_(err) {}

Error::Error(std::string message) : std::runtime_error(std::move(message)) {}

long check_sys(long ret, const char *op, const std::string &path) {
  if (ret < 0)
    throw Error(op, path, errno);
  return ret;
}

} // namespace rundkit
