// The QMP client against a real QEMU (-machine none, paused) and, for what
// QEMU cannot be made to do (stay silent), a fake server on a socketpair.
#include "vm/qmp.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "util/process.h"
#include "vm/vm.h"

using namespace rundkit;
using namespace rundkit::vm;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

// qemu-system-x86_64 -machine none -nodefaults -display none -S, its QMP
// on a socket bound before it starts.
struct BareQemu {
  std::string dir;
  Child child;
  std::optional<Qmp> qmp;

  BareQemu() {
    char tmpl[] = "/tmp/rundkit-qmp-test.XXXXXX";
    dir = ::mkdtemp(tmpl);
    std::string path = dir + "/qmp.sock";
    Fd listener = listen_unix(path);
    Fd client = connect_unix(path);
    SpawnOptions o;
    o.argv = {"qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-S",
              "-chardev", fmt_fd(listener.get()), "-mon", "chardev=qmp,mode=control"};
    o.pass_fds = {{listener.get(), listener.get()}};
    o.in = Stdio::null();
    child = spawn(o);
    listener.reset();
    qmp.emplace(std::move(client), path, 30s);
  }
  ~BareQemu() {
    qmp.reset();
    child = Child();
    ::unlink((dir + "/qmp.sock").c_str());
    ::rmdir(dir.c_str());
  }
  static std::string fmt_fd(int fd) {
    return "socket,id=qmp,fd=" + std::to_string(fd) + ",server=on,wait=off";
  }
};

} // namespace

TEST(Qmp, GreetingAndQueryStatus) {
  BareQemu q;
  EXPECT_GE(q.qmp->greeting()["version"]["qemu"]["major"].get<int>(), 7);
  json st = q.qmp->execute("query-status");
  EXPECT_EQ(st["status"], "prelaunch");
  EXPECT_EQ(st["running"], false);
}

TEST(Qmp, ErrorsCarryClassAndDesc) {
  BareQemu q;
  try {
    q.qmp->execute("rundkit-no-such-command");
    FAIL() << "an unknown command succeeded";
  } catch (const QmpError &e) {
    EXPECT_EQ(e.error_class(), "CommandNotFound");
    EXPECT_EQ(e.desc(), "The command rundkit-no-such-command has not been found");
    EXPECT_EQ(e.command(), "rundkit-no-such-command");
    EXPECT_NE(std::string(e.what()).find("CommandNotFound"), std::string::npos);
  }
  try {
    q.qmp->execute("device_del", {{"id", "rundkit-nothing"}});
    FAIL() << "device_del of nothing succeeded";
  } catch (const QmpError &e) {
    EXPECT_EQ(e.error_class(), "DeviceNotFound") << e.what();
  }
  // The connection is still usable after an error.
  EXPECT_EQ(q.qmp->execute("query-status")["status"], "prelaunch");
}

TEST(Qmp, EventsByName) {
  BareQemu q;
  q.qmp->execute("cont");
  auto resume = q.qmp->wait_event("RESUME", 10s);
  ASSERT_TRUE(resume);
  EXPECT_TRUE(resume->contains("timestamp"));
  q.qmp->execute("stop");
  ASSERT_TRUE(q.qmp->wait_event("STOP", 10s));
  EXPECT_EQ(q.qmp->execute("query-status")["status"], "paused");
  // Nothing else is coming: a bounded wait that returns empty.
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(q.qmp->wait_event("RESUME", 300ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 300ms);
}

TEST(Qmp, OtherEventsStayQueued) {
  BareQemu q;
  q.qmp->execute("cont");
  q.qmp->execute("stop");
  // STOP is taken first; RESUME, which came before it, stays queued.
  ASSERT_TRUE(q.qmp->wait_event("STOP", 10s));
  ASSERT_TRUE(q.qmp->wait_event("RESUME", 0ms));
}

TEST(Qmp, FdPassing) {
  BareQemu q;
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  Fd rd(p[0]), wr(p[1]);
  int set = q.qmp->add_fd(wr.get(), 7);
  EXPECT_EQ(set, 7);
  json sets = q.qmp->execute("query-fdsets");
  ASSERT_EQ(sets.size(), 1u) << sets.dump();
  EXPECT_EQ(sets[0]["fdset-id"], 7);
  EXPECT_EQ(sets[0]["fds"].size(), 1u);
  q.qmp->send_fd("rundkit-fd", rd.get());
  q.qmp->execute("closefd", {{"fdname", "rundkit-fd"}});
  try {
    q.qmp->execute("closefd", {{"fdname", "rundkit-fd"}});
    FAIL() << "closefd of a name already closed succeeded";
  } catch (const QmpError &e) {
    EXPECT_EQ(e.error_class(), "GenericError");
  }
}

TEST(Qmp, ClosedConnection) {
  BareQemu q;
  q.child.kill();
  try {
    q.qmp->execute("query-status", 10s);
    FAIL() << "a command to a dead QEMU returned";
  } catch (const QmpError &) {
    FAIL() << "QmpError for a dead QEMU";
  } catch (const Error &e) {
    EXPECT_TRUE(e.err() == ECONNRESET || e.err() == EPIPE) << e.what();
  }
}

TEST(Qmp, CommandTimeout) {
  // A server that greets, accepts capabilities, then never answers.
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Fd mine(sv[0]), server(sv[1]);
  std::thread fake([&] {
    std::string hello = R"({"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}})"
                        "\r\n";
    (void)!::write(server.get(), hello.data(), hello.size());
    char buf[4096];
    ssize_t n = ::read(server.get(), buf, sizeof(buf)); // qmp_capabilities, id 1
    if (n > 0) {
      std::string r = "{\"return\": {}, \"id\": 1}\r\n";
      (void)!::write(server.get(), r.data(), r.size());
    }
  });
  Qmp qmp(std::move(mine), "fake", 10s);
  fake.join();
  auto t0 = std::chrono::steady_clock::now();
  try {
    qmp.execute("query-status", 300ms);
    FAIL() << "a command without a reply returned";
  } catch (const Error &e) {
    EXPECT_EQ(e.err(), ETIMEDOUT) << e.what();
    EXPECT_STREQ(e.what(), "QMP query-status (no reply) 'fake': Connection timed out");
  }
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 5s);
  // A late reply to it is skipped, the next command gets its own.
  std::string late = "{\"return\": {\"late\": true}, \"id\": 2}\r\n"
                     "{\"event\": \"STOP\"}\r\n{\"return\": {\"ok\": 1}, \"id\": 3}\r\n";
  ASSERT_EQ(::write(server.get(), late.data(), late.size()), static_cast<ssize_t>(late.size()));
  EXPECT_EQ(qmp.execute("query-status", 5s), json({{"ok", 1}}));
  EXPECT_TRUE(qmp.wait_event("STOP", 0ms));
}
