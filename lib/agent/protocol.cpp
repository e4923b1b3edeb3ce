#include "agent/protocol.h"

#include <cstring>

namespace rundkit::agent {

namespace {

void put16(std::string &s, uint16_t v) {
  s.push_back(static_cast<char>(v & 0xff));
  s.push_back(static_cast<char>(v >> 8));
}

void put32(std::string &s, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t get(const std::string &s, size_t at, int bytes) {
  uint32_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(s[at + static_cast<size_t>(i)]))
         << (8 * i);
  return v;
}

} // namespace

std::string encode_frame(FrameType type, const std::string &body) {
  if (body.size() > kMaxBody)
    throw ProtocolError("frame body of " + std::to_string(body.size()) + " bytes exceeds " +
                        std::to_string(kMaxBody));
  std::string s(kMagic, sizeof kMagic);
  put16(s, kProtocolVersion);
  put16(s, static_cast<uint16_t>(type));
  put32(s, static_cast<uint32_t>(body.size()));
  return s + body;
}

std::optional<Frame> FrameReader::next() {
  if (!broken_.empty())
    throw ProtocolError(broken_);
  if (buf_.size() < kHeaderBytes)
    return std::nullopt;
  auto fail = [&](std::string why) -> ProtocolError {
    broken_ = std::move(why);
    return ProtocolError(broken_);
  };
  if (std::memcmp(buf_.data(), kMagic, sizeof kMagic) != 0)
    throw fail("bad frame magic (not a rundkit agent stream)");
  uint32_t version = get(buf_, 4, 2), type = get(buf_, 6, 2), len = get(buf_, 8, 4);
  if (version != kProtocolVersion)
    throw fail("protocol version " + std::to_string(version) + ", this side speaks " +
               std::to_string(kProtocolVersion));
  if (type < 1 || type > 3)
    throw fail("unknown frame type " + std::to_string(type));
  if (len > kMaxBody)
    throw fail("frame length " + std::to_string(len) + " exceeds " + std::to_string(kMaxBody));
  if (buf_.size() < kHeaderBytes + len)
    return std::nullopt;
  Frame f{static_cast<FrameType>(type), buf_.substr(kHeaderBytes, len)};
  buf_.erase(0, kHeaderBytes + len);
  return f;
}

} // namespace rundkit::agent
