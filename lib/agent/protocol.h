// The guest agent's wire protocol: frames over a byte stream (the guest's
// virtio-serial port /dev/virtio-ports/rundkit.agent; on the host the UNIX
// socket QEMU's chardev listens on).
//
//   offset  size  field
//   0       4     magic "RDKA"
//   4       2     version (kProtocolVersion), little-endian
//   6       2     type: 1 request, 2 reply, 3 event
//   8       4     body length in bytes (<= kMaxBody), little-endian
//   12      n     body: one JSON object
//
// A request carries {"id": N, "op": "...", ...}; its reply echoes the id
// with {"ok": true, ...} or {"ok": false, "error": {"op", "path", "errno",
// "message"}}.  Events ({"event": "exited", ...}) carry no id.  A peer that
// reads another version, a bad magic or an oversized length stops reading
// the stream (there is no way to find the next frame) and says why.  See
// Documentation/rundctl.md for every message.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace rundkit::agent {

inline constexpr char kMagic[4] = {'R', 'D', 'K', 'A'};
inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr size_t kHeaderBytes = 12;
inline constexpr uint32_t kMaxBody = 4u << 20; // exec output is capped below this

enum class FrameType : uint16_t { request = 1, reply = 2, event = 3 };

struct Frame {
  FrameType type = FrameType::request;
  std::string body; // JSON text
};

// A stream that cannot be read on: wrong magic, version, type or length.
class ProtocolError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// Header and body, ready to write.  ProtocolError if the body is too long.
std::string encode_frame(FrameType type, const std::string &body);

// Splits a byte stream into frames, whatever the read sizes.
class FrameReader {
public:
  void feed(const char *data, size_t n) { buf_.append(data, n); }
  // The next whole frame, nothing if more bytes are needed; ProtocolError
  // (and every later call too) once the stream is broken.
  std::optional<Frame> next();
  // Bytes received and not yet returned as frames.
  size_t pending() const { return buf_.size(); }

private:
  std::string buf_;
  std::string broken_;
};

} // namespace rundkit::agent
