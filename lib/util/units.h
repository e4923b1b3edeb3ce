// Quantities typed by people: sizes with binary units.
#pragma once

#include <cstdint>
#include <chrono>
#include <string>

namespace rundkit {

// "134217728", "128M", "1G", "512K" (binary multiples, K/M/G/T, optional
// trailing "i" or "B"); must be > 0.
uint64_t parse_size(const std::string &text);
// A decimal count in [min, max]: digits only (no sign, no "0x", no blank),
// so "-1" is refused instead of wrapping to 2^64 - 1.  `what` names the
// option in the message ("--size").
uint64_t parse_count(const std::string &text, const char *what, uint64_t min, uint64_t max);

// A duration on the command line: "500ms", "10s" or plain seconds, 0 to
// one day.  InputError naming `what` otherwise.
std::chrono::milliseconds parse_ms(const std::string &text, const char *what);

} // namespace rundkit
