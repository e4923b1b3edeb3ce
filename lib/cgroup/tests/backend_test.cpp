// One suite, every backend this machine has: v1, v2 and (on a rundkit
// kernel with lwcg) kernel-pool.  Real cgroupfs, no mocks; each test works
// under its own parent and removes it.
#include "cgroup/backend.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "testing/cgroup_fixture.h"
#include "util/process.h"

using namespace rundkit;
using namespace rundkit::cgtest;

class BackendTest : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    if (::geteuid() != 0)
      GTEST_SKIP() << "needs root: writes cgroupfs";
    state_ = make_temp_dir("state");
    cfg_.state_dir = state_;
    cfg_.backend = GetParam();
    layout_ = detect_layout(cfg_.layout);
    try {
      backend_ = make_backend(cfg_, layout_);
    } catch (const Error &e) {
      GTEST_SKIP() << GetParam() << " backend not available here: " << e.what();
    }
    parent_ = unique_parent(GetParam().c_str());
    backend_->create_parent(parent_);
  }

  void TearDown() override {
    if (backend_) {
      for (const auto &name : backend_->state().claim_names())
        backend_->release(name);
      backend_->remove_parent(parent_);
      for (const auto &t : backend_->trees())
        EXPECT_FALSE(cgfs::exists(t->path(parent_))) << "left behind";
    }
    if (!state_.empty())
      std::filesystem::remove_all(state_);
  }

  // The limits this backend can enforce under the test parent.
  Limits enforceable_limits() const {
    Limits all = parse_limits("0.5", "128M", "64", "oci-default");
    Limits out;
    auto keep = [&](Limits one, auto set) {
      try {
        backend_->check_enforceable(parent_, one);
        set(out);
      } catch (const Error &) {
      }
    };
    keep(Limits{all.cpus, {}, {}, {}}, [&](Limits &l) { l.cpus = all.cpus; });
    keep(Limits{{}, all.memory_bytes, {}, {}}, [&](Limits &l) { l.memory_bytes = all.memory_bytes; });
    keep(Limits{{}, {}, all.pids, {}}, [&](Limits &l) { l.pids = all.pids; });
    keep(Limits{{}, {}, {}, all.devices}, [&](Limits &l) { l.devices = all.devices; });
    return out;
  }

  // The limits this backend's hierarchies offer, read from the hierarchies
  // themselves rather than from check_enforceable (the code under test):
  // v1 per controller, cgroup2 what its root offers (parent create
  // delegates it down to the test parent).
  std::set<std::string> offered_limits() const {
    std::set<std::string> out;
    for (const auto &t : backend_->trees())
      for (const char *c : {"cpu", "memory", "pids"})
        if (t->hierarchy().controllers.count(c))
          out.insert(c);
    return out;
  }

  ClaimRequest request(const std::string &name, Limits l = {}) const {
    return ClaimRequest{parent_, name, l, {}, std::nullopt, false, std::nullopt};
  }

  // Nothing but the parent (and complete pool entries) may remain.
  void expect_clean_after_gc() {
    backend_->gc({parent_});
    EXPECT_TRUE(backend_->state().claim_names().empty());
    auto tokens = backend_->state().tokens({backend_->name(), parent_});
    for (const auto &t : backend_->trees())
      for (const auto &child : cgfs::children(t->path(parent_))) {
        bool pooled = false;
        for (const auto &id : tokens)
          pooled |= child == "lcg-pool-" + id;
        EXPECT_TRUE(pooled) << "gc left " << t->path(parent_) << "/" << child;
      }
  }

  Config cfg_;
  Layout layout_;
  std::unique_ptr<Backend> backend_;
  std::string state_;
  std::string parent_;
};

TEST_P(BackendTest, EmptyPoolClaimCreatesDirectlyAndCountsAMiss) {
  auto before = backend_->status(parent_).misses;
  auto r = backend_->claim(request("s1"));
  EXPECT_FALSE(r.hit);
  ASSERT_EQ(r.paths.size(), backend_->trees().size());
  for (const auto &p : r.paths)
    EXPECT_TRUE(cgfs::exists(p)) << p;
  // The kernel counts a miss only while a target is set; lcgroupctl counts
  // every claim that found no entry.
  if (GetParam() != "kernel-pool") {
    EXPECT_EQ(backend_->status(parent_).misses, before + 1);
  }
  backend_->release("s1");
  for (const auto &p : r.paths)
    EXPECT_FALSE(cgfs::exists(p)) << p;
}

TEST_P(BackendTest, FilledPoolHandsOutEntriesWithTheClaimsLimits) {
  backend_->fill(parent_, 3, {}, false, {});
  EXPECT_EQ(backend_->status(parent_).available, 3u);
  Limits l = enforceable_limits();
  // What the backend says it enforces must be what its hierarchies offer;
  // otherwise a check_enforceable that refused everything would leave
  // nothing below to assert.
  std::set<std::string> offered = offered_limits();
  EXPECT_EQ(l.cpus.has_value(), offered.count("cpu") > 0);
  EXPECT_EQ(l.memory_bytes.has_value(), offered.count("memory") > 0);
  EXPECT_EQ(l.pids.has_value(), offered.count("pids") > 0);
  auto r = backend_->claim(request("s1", l));
  EXPECT_TRUE(r.hit || GetParam() == "kernel-pool");
  EXPECT_EQ(backend_->status(parent_).hits, 1u);
  std::set<std::string> checked;
  ASSERT_EQ(r.paths.size(), backend_->trees().size());
  for (size_t i = 0; i < r.paths.size(); ++i) {
    const auto &t = *backend_->trees()[i];
    const auto &p = r.paths[i];
    bool v1 = t.version() == 1;
    const auto &c = t.hierarchy().controllers;
    if (l.cpus && c.count("cpu")) {
      EXPECT_EQ(cgfs::read(p, v1 ? "cpu.cfs_quota_us" : "cpu.max"), v1 ? "50000" : "50000 100000");
      checked.insert("cpu");
    }
    if (l.memory_bytes && c.count("memory")) {
      EXPECT_EQ(cgfs::read(p, v1 ? "memory.limit_in_bytes" : "memory.max"), "134217728");
      checked.insert("memory");
    }
    if (l.pids && c.count("pids")) {
      EXPECT_EQ(cgfs::read(p, "pids.max"), "64");
      checked.insert("pids");
    }
    if (v1 && c.count("devices")) {
      EXPECT_EQ(cgfs::read(p, "devices.list").find("a *:* rwm"), std::string::npos);
    }
  }
  EXPECT_EQ(checked, offered) << "every limit a hierarchy offers is read back from it";
  // Where no hierarchy offers a limit (cgroup2 beside v1 controllers), the
  // same limits must be refused, not silently dropped.
  for (const char *what : {"cpu", "memory", "pids"}) {
    if (offered.count(what))
      continue;
    Limits one;
    if (std::string(what) == "cpu")
      one.cpus = 0.5;
    else if (std::string(what) == "memory")
      one.memory_bytes = 128ULL << 20;
    else
      one.pids = 64;
    EXPECT_THROW(backend_->check_enforceable(parent_, one), Error) << what;
  }
}

TEST_P(BackendTest, CommandStartsInsideEveryHierarchy) {
  auto req = request("s1", enforceable_limits());
  req.command = {"/bin/sleep", "1000"};
  auto r = backend_->claim(req);
  ASSERT_GT(r.pid, 0);
  for (const auto &p : r.paths) {
    auto procs = cgfs::procs(p);
    EXPECT_EQ(procs, std::vector<pid_t>{r.pid}) << p;
  }
  backend_->release("s1");
  EXPECT_EQ(wait_status(r.pid), 128 + SIGKILL);
}

TEST_P(BackendTest, DevicePolicyIsEnforcedInside) {
  Limits l;
  l.devices = DevicePolicy::kOciDefault;
  try {
    backend_->check_enforceable(parent_, l);
  } catch (const Error &e) {
    GTEST_SKIP() << e.what();
  }
  auto req = request("s1", l);
  req.command = {"/bin/sh", "-c", ": </dev/null || exit 1; (: </dev/kmsg) 2>/dev/null && exit 3; exit 0"};
  auto r = backend_->claim(req);
  int st = wait_status(r.pid);
  EXPECT_EQ(st, 0) << (st == 1 ? "/dev/null was denied" : "/dev/kmsg was allowed");
}

TEST_P(BackendTest, ReleasedCgroupNeverReturnsToThePool) {
  backend_->fill(parent_, 1, {}, false, {});
  auto r1 = backend_->claim(request("s1"));
  backend_->release("s1");
  auto r2 = backend_->claim(request("s1"));
  EXPECT_FALSE(r2.hit && r2.pool_id == r1.pool_id && !r1.pool_id.empty());
  // The kernel refills asynchronously: 0 or 1 there, never the used one.
  EXPECT_LE(backend_->status(parent_).available, GetParam() == "kernel-pool" ? 1u : 0u);
}

TEST_P(BackendTest, BadInputChangesNothing) {
  auto snapshot = [&] {
    std::vector<std::string> all;
    for (const auto &t : backend_->trees())
      for (const auto &c : cgfs::children(t->path(parent_)))
        all.push_back(c);
    auto claims = backend_->state().claim_names();
    all.insert(all.end(), claims.begin(), claims.end());
    return all;
  };
  auto before = snapshot();
  EXPECT_THROW(backend_->claim(request("a/b")), InputError);
  EXPECT_THROW(backend_->claim(request("a\nb")), InputError);
  EXPECT_THROW(backend_->claim(request("lcg-pool-1")), InputError);
  auto missing = request("s1");
  missing.parent = parent_ + "/missing";
  try {
    backend_->claim(missing);
    ADD_FAILURE() << "claim under a missing parent succeeded";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
  EXPECT_THROW(backend_->release("nope"), Error);
  EXPECT_EQ(snapshot(), before);
}

TEST_P(BackendTest, UnenforceableLimitIsRefusedBeforeAnythingChanges) {
  Limits all = parse_limits("0.5", "128M", "64", std::nullopt);
  try {
    backend_->check_enforceable(parent_, all);
    GTEST_SKIP() << "every limit is enforceable here";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("cannot enforce"), std::string::npos);
  }
  EXPECT_THROW(backend_->claim(request("s1", all)), Error);
  EXPECT_TRUE(backend_->state().claim_names().empty());
  for (const auto &t : backend_->trees())
    EXPECT_FALSE(cgfs::exists(t->path(parent_ + "/s1")));
}

TEST_P(BackendTest, DuplicateNameIsRefused) {
  backend_->claim(request("s1"));
  EXPECT_THROW(backend_->claim(request("s1")), Error);
  EXPECT_EQ(backend_->state().claim_names().size(), 1u);
}

TEST_P(BackendTest, ConcurrentClaimersGetDistinctCgroups) {
  backend_->fill(parent_, 8, {}, false, {});
  std::mutex mu;
  std::set<std::string> paths;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i)
    threads.emplace_back([&, i] {
      try {
        auto r = backend_->claim(request("c" + std::to_string(i)));
        std::lock_guard l(mu);
        paths.insert(r.paths.front());
      } catch (const std::exception &e) {
        std::lock_guard l(mu);
        errors.push_back(e.what());
      }
    });
  for (auto &t : threads)
    t.join();
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(paths.size(), 16u);
  auto s = backend_->status(parent_);
  if (GetParam() != "kernel-pool") {
    EXPECT_EQ(s.hits + s.misses, 16u);
  }
}

TEST_P(BackendTest, GcRemovesClaimsWhoseCgroupOrOwnerIsGone) {
  auto r = backend_->claim(request("gone"));
  for (const auto &p : r.paths)
    cgfs::remove(p);
  pid_t owner = ::fork();
  if (owner == 0)
    ::_exit(0);
  auto req = request("orphan");
  req.owner = ProcessId::of(owner);
  ASSERT_TRUE(req.owner);
  backend_->claim(req);
  wait_status(owner);
  backend_->claim(request("kept"));
  auto report = backend_->gc({});
  EXPECT_EQ(report.actions.size(), 2u);
  EXPECT_EQ(backend_->state().claim_names(), std::vector<std::string>{"kept"});
}

// A claim's cgroups removed by someone else and the name made again by
// hand, with a task inside: release, gc and a gc finishing an interrupted
// release must all drop the record and leave the newcomer and its task
// alone (they act on the cgroup ids the record kept, not on the name).
TEST_P(BackendTest, ReleaseAndGcLeaveAloneACgroupThatTookTheName) {
  enum class Ender { release, gc, gc_after_killed_release };
  for (Ender how : {Ender::release, Ender::gc, Ender::gc_after_killed_release}) {
    SCOPED_TRACE(static_cast<int>(how));
    auto r = backend_->claim(request("taken-over"));
    for (size_t i = 0; i < r.paths.size(); ++i) {
      ASSERT_TRUE(cgfs::remove(r.paths[i]));
      cgfs::make(r.paths[i]);
      backend_->trees()[i]->prepare(r.paths[i]); // v1 cpuset: cpus and mems
    }
    SpawnOptions sleeper;
    sleeper.argv = {"sleep", "1000"};
    Child newcomer = spawn(sleeper);
    for (size_t i = 0; i < r.paths.size(); ++i)
      backend_->trees()[i]->enter(r.paths[i], newcomer.pid());
    if (how == Ender::release) {
      auto kept = backend_->release("taken-over");
      EXPECT_EQ(kept.size(), r.paths.size());
    } else {
      if (how == Ender::gc_after_killed_release) {
        SpawnOptions quick;
        quick.argv = {"true"};
        Child gone = spawn(quick);
        auto actor = ProcessId::of(gone.pid());
        ASSERT_TRUE(actor);
        gone.wait();
        r.phase = "releasing";
        r.actor = *actor;
        backend_->state().update_claim(r);
      }
      auto report = backend_->gc({parent_});
      EXPECT_EQ(report.actions.size(), 1u);
    }
    EXPECT_FALSE(backend_->state().read_claim("taken-over"));
    EXPECT_FALSE(newcomer.try_wait()) << "the newcomer's task was killed";
    for (const auto &p : r.paths)
      EXPECT_TRUE(cgfs::exists(p)) << p << " was removed";
    newcomer.kill();
    for (const auto &p : r.paths)
      cgfs::remove(p);
  }
}

// kill -9 at a random point of fill, claim and release, many times: gc
// must leave nothing but whole pool entries, and no claim is half-made.
// Odd rounds park processes (userspace pools), so a claim is killed while
// it hands its command to a parked process too.
TEST_P(BackendTest, KillNineAnywhereLeavesOnlyWhatGcCleans) {
  std::mt19937 rng(42);
  for (int round = 0; round < 12; ++round) {
    bool park = round % 2 == 1 && GetParam() != "kernel-pool";
    pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL); // never outlive the test
      try {
        for (int i = 0;; ++i) {
          backend_->fill(parent_, 3, {}, park, {});
          std::string name = "k" + std::to_string(i);
          auto req = request(name, enforceable_limits());
          req.command = {"/bin/sleep", "1000"};
          // A finished claim is legitimate until its owner goes away.
          req.owner = ProcessId::self();
          backend_->claim(req);
          backend_->release(name);
        }
      } catch (...) {
        ::_exit(1);
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 40000));
    ::kill(pid, SIGKILL);
    wait_status(pid);
    expect_clean_after_gc();
    // Every remaining claim is gone and every pooled entry is whole.
    auto s = backend_->status(parent_);
    EXPECT_LE(s.available, GetParam() == "kernel-pool" ? 1024u : 3u);
  }
  // The pool still works after all that.
  auto r = backend_->claim(request("after"));
  EXPECT_FALSE(r.paths.empty());
}

// --- parked processes (userspace pools) ---------------------------------

// Whether `pid` is still a running (not zombie) process.
bool running(pid_t pid) {
  try {
    std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    return stat.substr(stat.rfind(')') + 2, 1) != "Z";
  } catch (const Error &) {
    return false;
  }
}

// Running lcg-parked processes started at or after `since` (clock ticks).
std::vector<pid_t> parked_since(unsigned long long since) {
  std::vector<pid_t> out;
  for (const auto &e : std::filesystem::directory_iterator("/proc")) {
    std::string n = e.path().filename();
    if (n.find_first_not_of("0123456789") != std::string::npos)
      continue;
    try {
      pid_t pid = std::stoi(n);
      auto id = ProcessId::of(pid);
      if (id && id->start >= since && running(pid) &&
          read_file(e.path().string() + "/comm") == "lcg-parked\n")
        out.push_back(pid);
    } catch (const Error &) {
    }
  }
  return out;
}

bool eventually(const std::function<bool()> &cond) {
  for (int i = 0; i < 500; ++i) {
    if (cond())
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST_P(BackendTest, ParkedEntryExecsTheCommandWhereItWaits) {
  if (GetParam() == "kernel-pool")
    GTEST_SKIP() << "the kernel pool cannot park (KernelPool.RefusesToPark)";
  Limits l = enforceable_limits();
  backend_->fill(parent_, 1, l, true, {});
  std::string out = state_ + "/out";
  ::setenv("LCGROUPCTL_TEST_VALUE", "handed-over", 1);
  auto req = request("s1", l);
  req.command = {"sh", "-c", "echo \"$LCGROUPCTL_TEST_VALUE\"; exec sleep 1000"};
  req.output = out;
  auto r = backend_->claim(req);
  ::unsetenv("LCGROUPCTL_TEST_VALUE");
  EXPECT_TRUE(r.hit);
  ASSERT_GT(r.pid, 0);
  // The command is the parked process itself: already in every hierarchy,
  // never migrated, not our child.
  for (const auto &p : r.paths)
    EXPECT_EQ(cgfs::procs(p), std::vector<pid_t>{r.pid}) << p;
  EXPECT_EQ(::waitpid(r.pid, nullptr, WNOHANG), -1);
  EXPECT_TRUE(eventually([&] {
    try {
      return read_file(out) == "handed-over\n";
    } catch (const Error &) {
      return false;
    }
  })) << "the environment and the output file did not reach the command";
  EXPECT_TRUE(eventually([&] { return read_file("/proc/" + std::to_string(r.pid) + "/comm") == "sleep\n"; }));
  backend_->release("s1");
  EXPECT_TRUE(eventually([&] { return !running(r.pid); }));
}

TEST_P(BackendTest, ParkedExecFailureIsReportedAndLeavesNothing) {
  if (GetParam() == "kernel-pool")
    GTEST_SKIP() << "the kernel pool cannot park";
  backend_->fill(parent_, 1, {}, true, {});
  // A command that does not exist is refused before the pool is touched.
  auto req = request("s1");
  req.command = {"/nonexistent/vmm"};
  try {
    backend_->claim(req);
    ADD_FAILURE() << "claim with a missing binary succeeded";
  } catch (const Error &e) {
    EXPECT_EQ(e.err(), ENOENT) << e.what();
    EXPECT_NE(std::string(e.what()).find("/nonexistent/vmm"), std::string::npos) << e.what();
  }
  EXPECT_EQ(backend_->status(parent_).available, 1u) << "a refused claim used the pool";
  // One whose exec fails only in the parked process (its interpreter is
  // missing): the entry is spent, the failure reported, nothing left.
  char script[] = "/tmp/rundkit-badinterp.XXXXXX";
  int fd = ::mkstemp(script);
  ASSERT_GE(fd, 0);
  std::string text = "#!/nonexistent/vmm-interpreter\n";
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::fchmod(fd, 0755);
  ::close(fd);
  req.command = {script};
  try {
    backend_->claim(req);
    ADD_FAILURE() << "exec with a missing interpreter succeeded";
  } catch (const Error &e) {
    EXPECT_EQ(e.err(), ENOENT) << e.what();
    EXPECT_NE(std::string(e.what()).find(script), std::string::npos) << e.what();
  }
  ::unlink(script);
  EXPECT_TRUE(backend_->state().claim_names().empty());
  for (const auto &t : backend_->trees())
    EXPECT_TRUE(cgfs::children(t->path(parent_)).empty()) << t->path(parent_);
}

TEST_P(BackendTest, ParkedProcessLeavesAClaimWithoutCommand) {
  if (GetParam() == "kernel-pool")
    GTEST_SKIP() << "the kernel pool cannot park";
  backend_->fill(parent_, 1, {}, true, {});
  auto r = backend_->claim(request("s1"));
  EXPECT_TRUE(r.hit);
  EXPECT_EQ(r.pid, 0);
  for (const auto &p : r.paths)
    EXPECT_TRUE(cgfs::procs(p).empty()) << p;
}

TEST_P(BackendTest, DeadParkedProcessFallsBackToANewOne) {
  if (GetParam() == "kernel-pool")
    GTEST_SKIP() << "the kernel pool cannot park";
  backend_->fill(parent_, 1, {}, true, {});
  pid_t parked = 0;
  for (const auto &t : backend_->trees())
    for (const auto &child : cgfs::children(t->path(parent_)))
      for (pid_t pid : cgfs::procs(cgfs::join(t->path(parent_), child)))
        parked = pid;
  ASSERT_GT(parked, 0);
  ::kill(parked, SIGKILL);
  ASSERT_TRUE(eventually([&] { return !running(parked); }));
  auto req = request("s1");
  req.command = {"/bin/sleep", "1000"};
  auto r = backend_->claim(req);
  EXPECT_TRUE(r.hit);
  EXPECT_NE(r.pid, parked);
  for (const auto &p : r.paths)
    EXPECT_EQ(cgfs::procs(p), std::vector<pid_t>{r.pid}) << p;
  backend_->release("s1");
  EXPECT_EQ(wait_status(r.pid), 128 + SIGKILL);
}

// A fill killed while it parks a process leaves no parked process outside
// a pool entry (it reads EOF and exits), and gc removes the half-made entry.
TEST_P(BackendTest, KillNineDuringParkingLeavesNoStrayProcess) {
  if (GetParam() == "kernel-pool")
    GTEST_SKIP() << "the kernel pool cannot park";
  std::mt19937 rng(7);
  unsigned long long since = ProcessId::self().start;
  for (int round = 0; round < 8; ++round) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      try {
        backend_->fill(parent_, 50, {}, true, {});
      } catch (...) {
      }
      ::_exit(0);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30000));
    ::kill(pid, SIGKILL);
    wait_status(pid);
    expect_clean_after_gc();
    backend_->drain(parent_, {});
    // Whatever is parked now sat in an entry gc kept; after the drain no
    // parked process of this test may remain, inside our cgroups or out.
    EXPECT_TRUE(eventually([&] { return parked_since(since).empty(); }))
        << "stray parked process " << parked_since(since).front();
    for (const auto &t : backend_->trees())
      EXPECT_TRUE(cgfs::children(t->path(parent_)).empty()) << t->path(parent_);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendTest,
                         ::testing::Values("v1", "v2", "kernel-pool"),
                         [](const auto &info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// The refusal comes before the kernel pool touches anything, so a fixture
// layout (a cgroup2 mount with lwcg and the feature line, both files in a
// temporary directory) shows it on every machine, rundkit kernel or not.
TEST(KernelPool, RefusesToPark) {
  std::string dir = make_temp_dir("kpool");
  std::string cg = dir + "/cgroup2";
  ASSERT_EQ(::mkdir(cg.c_str(), 0755), 0);
  auto put = [](const std::string &path, const std::string &text) {
    Fd f = Fd::open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    write_file(path, text);
  };
  put(cg + "/cgroup.controllers", "cpu memory pids\n");
  put(dir + "/mountinfo", "20 1 0:20 / " + cg + " rw - cgroup2 cgroup2 rw,nsdelegate,lwcg\n");
  put(dir + "/features", "nsdelegate\nlwcg\n");
  Config cfg;
  cfg.layout = LayoutSources{dir + "/mountinfo", dir + "/features"};
  cfg.state_dir = dir + "/state";
  cfg.backend = "kernel-pool";
  auto backend = make_backend(cfg, detect_layout(cfg.layout));
  ASSERT_EQ(backend->name(), "kernel-pool");
  try {
    backend->fill("sandboxes", 1, {}, true, {});
    ADD_FAILURE() << "the kernel pool accepted --park";
  } catch (const InputError &e) {
    EXPECT_NE(std::string(e.what()).find("--park"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(cgfs::exists(cfg.state_dir)) << "refused after writing state";
  EXPECT_FALSE(cgfs::exists(cg + "/sandboxes"));
  std::filesystem::remove_all(dir);
}
