#include "cgroup/state.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "util/error.h"
#include "util/proc.h"

using namespace rundkit;

class StateTest : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lcgroupctl-state-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  std::string root_;
};

TEST_F(StateTest, AClaimNameIsReservedOnce) {
  StateDir s(root_);
  ClaimRecord r;
  r.name = "a";
  r.backend = "v1";
  r.parent = "p";
  r.actor = ProcessId::self();
  s.create_claim(r);
  EXPECT_THROW(s.create_claim(r), Error);
  r.phase = "claimed";
  r.paths = {"/x/p/a"};
  s.update_claim(r);
  auto back = s.read_claim("a");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->phase, "claimed");
  EXPECT_EQ(back->paths, r.paths);
  EXPECT_EQ(s.claim_names(), std::vector<std::string>{"a"});
  s.remove_claim("a");
  EXPECT_FALSE(s.read_claim("a"));
  EXPECT_TRUE(std::filesystem::is_empty(root_ + "/tmp")) << "staging files left behind";
}

TEST_F(StateTest, ConcurrentClaimersNeverShareAToken) {
  StateDir s(root_);
  PoolRef pool{"v2", "kata/sandboxes"};
  for (int i = 0; i < 50; ++i)
    s.publish_token(pool, PoolEntry{"id" + std::to_string(i), {}, std::nullopt});
  std::mutex mu;
  std::multiset<std::string> got;
  std::vector<std::thread> threads;
  for (int t = 0; t < 80; ++t)
    threads.emplace_back([&, t] {
      if (auto id = s.take_token(pool, "claim" + std::to_string(t))) {
        std::lock_guard l(mu);
        got.insert(id->id);
      }
    });
  for (auto &t : threads)
    t.join();
  EXPECT_EQ(got.size(), 50u);
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()).size(), 50u);
  EXPECT_TRUE(s.tokens(pool).empty());
  EXPECT_EQ(s.taken_ids().size(), 50u);
}

TEST_F(StateTest, CountersAreAppendOnly) {
  StateDir s(root_);
  PoolRef pool{"v1", "p"};
  EXPECT_EQ(s.counter(pool, "hits"), 0u);
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i)
        s.count(pool, "hits");
    });
  for (auto &t : threads)
    t.join();
  EXPECT_EQ(s.counter(pool, "hits"), 800u);
}

TEST_F(StateTest, PoolKeysRoundTripParentPaths) {
  EXPECT_EQ(escape_key("a/b%c"), "a%2Fb%25c");
  EXPECT_EQ(unescape_key(escape_key("a/b%c")), "a/b%c");
  StateDir s(root_);
  s.write_pool({"v2", "a/b"}, PoolConfig{"a/b", 7, {}});
  auto pools = s.pools();
  ASSERT_EQ(pools.size(), 1u);
  EXPECT_EQ(pools[0].parent, "a/b");
  EXPECT_EQ(s.read_pool(pools[0])->target, 7u);
}

namespace {
void overwrite(const std::string &path, const std::string &text) {
  std::ofstream(path, std::ios::trunc) << text;
}
} // namespace

// A damaged record is a failure that names its file (exit 1), never a bare
// JSON parser message nor a usage error (exit 2).
TEST_F(StateTest, CorruptRecordsNameTheirFile) {
  StateDir s(root_);
  PoolRef ref{"v2", "a/b"};
  s.write_pool(ref, PoolConfig{"a/b", 7, {}});
  std::string pool_json = root_ + "/pools/v2/a%2Fb/pool.json";
  for (const std::string &bad :
       {std::string("{\"parent\": \"a/b\", \"tar"), std::string("{\"parent\": \"a/b\"}"),
        std::string(R"({"parent": "a/b", "target": 7, "defaults": {"devices": "bogus"}})")}) {
    overwrite(pool_json, bad);
    try {
      s.read_pool(ref);
      ADD_FAILURE() << "read a corrupt pool record: " << bad;
    } catch (const InputError &e) {
      ADD_FAILURE() << "a corrupt record is not bad input: " << e.what();
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find(pool_json), std::string::npos) << e.what();
    } catch (const std::exception &e) {
      ADD_FAILURE() << "not a rundkit::Error: " << e.what();
    }
  }
  ClaimRecord r;
  r.name = "c";
  r.actor = ProcessId::self();
  s.create_claim(r);
  std::string claim_json = root_ + "/claims/c.json";
  overwrite(claim_json, R"({"name": "c", "limits": {"devices": "bogus"}})");
  try {
    s.read_claim("c");
    ADD_FAILURE() << "read a corrupt claim record";
  } catch (const InputError &e) {
    ADD_FAILURE() << "a corrupt record is not bad input: " << e.what();
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find(claim_json), std::string::npos) << e.what();
  }
}
