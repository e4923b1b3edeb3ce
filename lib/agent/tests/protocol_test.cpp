// The agent's framing: what either side does with whole, split, damaged
// and foreign streams.
#include "agent/protocol.h"

#include <gtest/gtest.h>

using namespace rundkit::agent;

TEST(Protocol, RoundTripWhateverTheReadSizes) {
  std::string stream = encode_frame(FrameType::request, R"({"id":1,"op":"ping"})") +
                       encode_frame(FrameType::event, "{}") +
                       encode_frame(FrameType::reply, std::string(100000, 'x'));
  for (size_t chunk : {size_t{1}, size_t{7}, size_t{4096}, stream.size()}) {
    FrameReader r;
    std::vector<Frame> got;
    for (size_t at = 0; at < stream.size(); at += chunk) {
      r.feed(stream.data() + at, std::min(chunk, stream.size() - at));
      while (auto f = r.next())
        got.push_back(*f);
    }
    ASSERT_EQ(got.size(), 3u) << "chunk " << chunk;
    EXPECT_EQ(got[0].type, FrameType::request);
    EXPECT_EQ(got[0].body, R"({"id":1,"op":"ping"})");
    EXPECT_EQ(got[1].type, FrameType::event);
    EXPECT_EQ(got[2].body.size(), 100000u);
    EXPECT_EQ(r.pending(), 0u);
  }
}

TEST(Protocol, HeaderLayoutIsLittleEndian) {
  std::string f = encode_frame(FrameType::reply, "ab");
  ASSERT_EQ(f.size(), kHeaderBytes + 2);
  EXPECT_EQ(f.substr(0, 4), "RDKA");
  EXPECT_EQ(f[4], 1);
  EXPECT_EQ(f[5], 0);
  EXPECT_EQ(f[6], 2);
  EXPECT_EQ(f[8], 2);
  EXPECT_EQ(f.substr(12), "ab");
}

TEST(Protocol, TruncatedFrameWaitsForMore) {
  std::string f = encode_frame(FrameType::request, "{\"op\":\"status\"}");
  FrameReader r;
  r.feed(f.data(), f.size() - 1);
  EXPECT_FALSE(r.next());
  r.feed(f.data() + f.size() - 1, 1);
  EXPECT_TRUE(r.next());
}

void expect_broken(std::string bytes, const std::string &says) {
  FrameReader r;
  r.feed(bytes.data(), bytes.size());
  try {
    r.next();
    FAIL() << "accepted: " << says;
  } catch (const ProtocolError &e) {
    EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
  }
  // Once broken, always broken: no resynchronising on garbage.
  std::string good = encode_frame(FrameType::request, "{}");
  r.feed(good.data(), good.size());
  EXPECT_THROW(r.next(), ProtocolError);
}

TEST(Protocol, ForeignOrDamagedStreamsAreRefused) {
  std::string f = encode_frame(FrameType::request, "{}");
  std::string magic = f;
  magic[0] = 'X';
  expect_broken(magic, "magic");
  std::string version = f;
  version[4] = 2;
  expect_broken(version, "protocol version 2");
  std::string type = f;
  type[6] = 9;
  expect_broken(type, "unknown frame type 9");
  std::string length = f;
  length[11] = 0x7f;
  expect_broken(length, "exceeds");
  expect_broken("GET / HTTP/1.1\r\n\r\n", "magic");
  EXPECT_THROW(encode_frame(FrameType::reply, std::string(kMaxBody + 1, 'x')), ProtocolError);
}
