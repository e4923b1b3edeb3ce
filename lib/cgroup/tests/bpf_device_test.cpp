#include "cgroup/bpf_device.h"

#include <fcntl.h>

#include <gtest/gtest.h>

#include "cgroup/held_child.h"
#include "testing/cgroup_fixture.h"
#include "cgroup/fs.h"
#include "cgroup/layout.h"
#include "util/proc.h"

using namespace rundkit;

TEST(BpfDevice, OciDefaultInV1Form) {
  std::vector<std::string> rules;
  for (const auto &r : oci_default_rules())
    rules.push_back(v1_rule(r));
  EXPECT_EQ(rules.front(), "c *:* m");
  EXPECT_NE(std::find(rules.begin(), rules.end(), "c 1:3 rwm"), rules.end());
  EXPECT_NE(std::find(rules.begin(), rules.end(), "c 136:* rwm"), rules.end());
  EXPECT_EQ(std::find(rules.begin(), rules.end(), "c 1:11 rwm"), rules.end());
}

TEST(BpfDevice, EveryRuleEndsInAllowAndTheProgramInDeny) {
  auto p = device_filter(oci_default_rules());
  size_t exits = 0;
  for (const auto &i : p)
    exits += i.code == (BPF_JMP | BPF_EXIT);
  EXPECT_EQ(exits, oci_default_rules().size() + 1);
  EXPECT_EQ(p.back().code, BPF_JMP | BPF_EXIT);
  EXPECT_EQ(p[p.size() - 2].imm, 0) << "falls through to deny";
  for (size_t at = 0; at < p.size(); ++at) {
    if (BPF_CLASS(p[at].code) == BPF_JMP && BPF_OP(p[at].code) == BPF_JNE) {
      EXPECT_LT(at + 1 + p[at].off, p.size()) << "jump out of the program at " << at;
    }
  }
}

// The program on a real cgroup2: null opens, kmsg (c 1:11) does not.
TEST(BpfDevice, ProcessInsideSeesTheAllowlist) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root (BPF and cgroupfs)";
  Layout l = detect_layout();
  if (!l.v2())
    GTEST_SKIP() << "no cgroup2 mount on this machine";
  DeviceProgram prog = DeviceProgram::load(oci_default_rules());
  std::string cg = cgfs::join(l.v2()->mount_point, cgtest::unique_parent("bpf"));
  cgfs::make(cg);
  Fd dir = Fd::open(cg, O_RDONLY | O_DIRECTORY);
  prog.attach(dir);
  HeldChild c = spawn_held({"/bin/sh", "-c", ": </dev/null || exit 1; "
                                            "(: </dev/kmsg) 2>/dev/null && exit 3; exit 0"},
                           &dir);
  c.start();
  int st = cgtest::wait_status(c.detach());
  cgfs::remove(cg);
  EXPECT_EQ(st, 0) << (st == 1 ? "/dev/null was denied" : "/dev/kmsg was allowed");
}
