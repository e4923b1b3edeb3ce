#include "cgroup/bpf_device.h"

#include <bpf/bpf.h>

#include <cerrno>

#include <fmt/format.h>

#include "util/error.h"

namespace rundkit {

namespace {

static_assert(sizeof(bpf_insn) == 8, "bpf_insn is one 64-bit instruction");
static_assert(offsetof(bpf_cgroup_dev_ctx, access_type) == 0 &&
                  offsetof(bpf_cgroup_dev_ctx, major) == 4 &&
                  offsetof(bpf_cgroup_dev_ctx, minor) == 8,
              "the program reads bpf_cgroup_dev_ctx at these offsets");

constexpr uint8_t R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, R5 = 5;

bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}
bpf_insn load_u32(uint8_t dst, uint8_t src, int16_t off) {
  return insn(BPF_LDX | BPF_W | BPF_MEM, dst, src, off, 0);
}
bpf_insn mov_reg(uint8_t dst, uint8_t src) { return insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0); }
bpf_insn mov_imm(uint8_t dst, int32_t imm) { return insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm); }
bpf_insn alu32_imm(uint8_t op, uint8_t dst, int32_t imm) { return insn(BPF_ALU | op | BPF_K, dst, 0, 0, imm); }
bpf_insn jne_imm(uint8_t dst, int32_t imm, int16_t off) {
  return insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm);
}
bpf_insn exit_insn() { return insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0); }

int32_t access_bits(const std::string &access) {
  int32_t bits = 0;
  for (char c : access)
    bits |= c == 'r' ? BPF_DEVCG_ACC_READ : c == 'w' ? BPF_DEVCG_ACC_WRITE
          : c == 'm' ? BPF_DEVCG_ACC_MKNOD : 0;
  return bits;
}

} // namespace

const std::vector<DeviceRule> &oci_default_rules() {
  static const std::vector<DeviceRule> rules = {
      {'c', -1, -1, "m"},    {'b', -1, -1, "m"},                          // mknod anything
      {'c', 1, 3, "rwm"},    {'c', 1, 5, "rwm"},  {'c', 1, 7, "rwm"},     // null zero full
      {'c', 1, 8, "rwm"},    {'c', 1, 9, "rwm"},                          // random urandom
      {'c', 5, 0, "rwm"},    {'c', 5, 1, "rwm"},  {'c', 5, 2, "rwm"},     // tty console ptmx
      {'c', 136, -1, "rwm"},                                              // /dev/pts/*
  };
  return rules;
}

std::string v1_rule(const DeviceRule &r) {
  auto num = [](int64_t v) { return v < 0 ? std::string("*") : std::to_string(v); };
  return fmt::format("{} {}:{} {}", r.type, num(r.major), num(r.minor), r.access);
}

std::vector<bpf_insn> device_filter(const std::vector<DeviceRule> &rules) {
  std::vector<bpf_insn> p = {
      load_u32(R2, R1, offsetof(bpf_cgroup_dev_ctx, access_type)),
      mov_reg(R3, R2),
      alu32_imm(BPF_AND, R2, 0xffff), // r2 = device type
      alu32_imm(BPF_RSH, R3, 16),     // r3 = requested access
      load_u32(R4, R1, offsetof(bpf_cgroup_dev_ctx, major)),
      load_u32(R5, R1, offsetof(bpf_cgroup_dev_ctx, minor)),
  };
  for (const auto &r : rules) {
    // Each block jumps to its own end on a mismatch; the offsets are known
    // only once the block is complete, so collect its tests first.
    std::vector<bpf_insn> block;
    std::vector<size_t> to_next;
    if (r.type != 'a') {
      to_next.push_back(block.size());
      block.push_back(jne_imm(R2, r.type == 'c' ? BPF_DEVCG_DEV_CHAR : BPF_DEVCG_DEV_BLOCK, 0));
    }
    int32_t allowed = access_bits(r.access);
    if (allowed != (BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD)) {
      block.push_back(mov_reg(R1, R3));
      block.push_back(alu32_imm(BPF_AND, R1, ~allowed));
      to_next.push_back(block.size());
      block.push_back(jne_imm(R1, 0, 0));
    }
    if (r.major >= 0) {
      to_next.push_back(block.size());
      block.push_back(jne_imm(R4, static_cast<int32_t>(r.major), 0));
    }
    if (r.minor >= 0) {
      to_next.push_back(block.size());
      block.push_back(jne_imm(R5, static_cast<int32_t>(r.minor), 0));
    }
    block.push_back(mov_imm(R0, 1));
    block.push_back(exit_insn());
    for (size_t at : to_next)
      block[at].off = static_cast<int16_t>(block.size() - at - 1);
    p.insert(p.end(), block.begin(), block.end());
  }
  p.push_back(mov_imm(R0, 0));
  p.push_back(exit_insn());
  return p;
}

DeviceProgram DeviceProgram::load(const std::vector<DeviceRule> &rules) {
  auto insns = device_filter(rules);
  std::string log(64 * 1024, '\0');
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .log_level = 0, .log_size = 0, .log_buf = nullptr);
  int fd = bpf_prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, "lcg_devices", "GPL", insns.data(),
                         insns.size(), &opts);
  if (fd < 0) {
    int err = errno;
    // Load again with the verifier log only to explain the failure.
    LIBBPF_OPTS(bpf_prog_load_opts, dbg, .log_level = 1,
                .log_size = static_cast<__u32>(log.size()), .log_buf = log.data());
    bpf_prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, "lcg_devices", "GPL", insns.data(), insns.size(),
                  &dbg);
    log.resize(log.find('\0'));
    throw Error(fmt::format("bpf_prog_load 'BPF_PROG_TYPE_CGROUP_DEVICE': {}{}{}",
                            std::strerror(err), log.empty() ? "" : "\nverifier log:\n", log));
  }
  return DeviceProgram(Fd(fd, "bpf:lcg_devices"));
}

void DeviceProgram::attach(const Fd &cgroup_dir) const {
  if (bpf_prog_attach(fd_.get(), cgroup_dir.get(), BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI) < 0)
    throw Error("bpf_prog_attach BPF_CGROUP_DEVICE", cgroup_dir.path(), errno);
}

} // namespace rundkit
