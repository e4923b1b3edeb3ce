#include "util/units.h"

#include <cerrno>
#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>

#include "util/error.h"

namespace rundkit {

uint64_t parse_size(const std::string &text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
    ++digits;
  std::string suffix = text.substr(digits);
  auto bad = [&](const char *why) {
    return InputError(fmt::format("invalid size '{}': {}", text, why));
  };
  if (digits == 0)
    throw bad("expected a byte count such as 134217728 or 128M");
  if (!suffix.empty() && (suffix.back() == 'B' || suffix.back() == 'b'))
    suffix.pop_back();
  if (suffix.size() == 2 && suffix[1] == 'i')
    suffix.pop_back();
  unsigned shift = 0;
  if (suffix.size() == 1) {
    switch (suffix[0]) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    default: throw bad("unknown unit (use K, M, G or T)");
    }
  } else if (!suffix.empty()) {
    throw bad("unknown unit (use K, M, G or T)");
  }
  errno = 0;
  unsigned long long n = std::strtoull(text.substr(0, digits).c_str(), nullptr, 10);
  if (errno == ERANGE || (shift && n > (~0ULL >> shift)))
    throw bad("too large");
  if (n == 0)
    throw bad("must be greater than 0");
  return static_cast<uint64_t>(n) << shift;
}

uint64_t parse_count(const std::string &text, const char *what, uint64_t min, uint64_t max) {
  auto bad = [&](const std::string &why) {
    return InputError(fmt::format("invalid {} '{}': {}", what, text, why));
  };
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
    throw bad(fmt::format("expected a decimal count from {} to {}", min, max));
  errno = 0;
  unsigned long long n = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE || n > max)
    throw bad(fmt::format("at most {}", max));
  if (n < min)
    throw bad(fmt::format("at least {}", min));
  return n;
}

std::chrono::milliseconds parse_ms(const std::string &text, const char *what) {
  try {
    size_t used = 0;
    double v = std::stod(text, &used);
    std::string unit = text.substr(used);
    double msv = unit == "ms" ? v : (unit == "s" || unit.empty()) ? v * 1000 : -1;
    if (msv < 0 || msv > 86400e3 || !(v >= 0))
      throw std::invalid_argument(text);
    return std::chrono::milliseconds(static_cast<long>(msv));
  } catch (const std::exception &) {
    throw InputError(fmt::format("invalid {} '{}': a duration like 500ms or 10s", what, text));
  }
}

} // namespace rundkit
