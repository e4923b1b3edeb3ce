// Quantities typed by people: sizes with binary units.
#pragma once

#include <cstdint>
#include <string>

namespace rundkit {

// "134217728", "128M", "1G", "512K" (binary multiples, K/M/G/T, optional
// trailing "i" or "B"); must be > 0.
uint64_t parse_size(const std::string &text);

} // namespace rundkit
