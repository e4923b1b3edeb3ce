#include "vm/qemu.h"

#include <fmt/format.h>

#include "util/error.h"

namespace rundkit::vm {

const char *to_string(Machine m) { return m == Machine::q35 ? "q35" : "microvm"; }
const char *to_string(DiskFormat f) { return f == DiskFormat::qcow2 ? "qcow2" : "raw"; }
const char *to_string(Accel a) { return a == Accel::kvm ? "kvm" : "tcg"; }

Machine parse_machine(const std::string &s) {
  if (s == "q35")
    return Machine::q35;
  if (s == "microvm")
    return Machine::microvm;
  throw InputError(fmt::format("machine '{}': want q35 or microvm", s));
}

Accel parse_accel(const std::string &s) {
  if (s == "tcg")
    return Accel::tcg;
  if (s == "kvm")
    return Accel::kvm;
  throw InputError(fmt::format("accelerator '{}': want tcg or kvm", s));
}

std::vector<std::string> accel_args(Accel a, unsigned tcg_tb_mib) {
  if (a == Accel::kvm)
    return {"-accel", "kvm", "-cpu", "host"};
  std::string tcg = "tcg,thread=multi";
  if (tcg_tb_mib)
    tcg += fmt::format(",tb-size={}", tcg_tb_mib);
  return {"-accel", tcg, "-cpu", "max"};
}

std::string qemu_escape(const std::string &value) {
  std::string out;
  for (char c : value) {
    out += c;
    if (c == ',')
      out += ',';
  }
  return out;
}

namespace {

std::string socket_backend(const ListenSocket &s, const std::string &what) {
  if (s.fd >= 0)
    return fmt::format("fd={},server=on,wait=off", s.fd);
  if (s.path.empty())
    throw InputError(what + ": a socket needs a path or a listening descriptor");
  return fmt::format("path={},server=on,wait=off", qemu_escape(s.path));
}

} // namespace

std::vector<std::string> qemu_argv(const QemuConfig &c) {
  if (c.cpus == 0)
    throw InputError("QEMU config: 0 vCPUs");
  if (c.max_cpus && c.max_cpus < c.cpus)
    throw InputError(fmt::format("QEMU config: max_cpus {} below cpus {}", c.max_cpus, c.cpus));
  if (c.max_memory_mib && c.max_memory_mib < c.memory_mib)
    throw InputError(fmt::format("QEMU config: max memory {} MiB below memory {} MiB",
                                 c.max_memory_mib, c.memory_mib));
  if ((c.memory_slots == 0) != (c.max_memory_mib == 0))
    throw InputError("QEMU config: memory slots and max memory go together");
  const bool pci = c.machine == Machine::q35;
  auto dev = [&](const char *kind) { return fmt::format("{}-{}", kind, pci ? "pci" : "device"); };

  std::vector<std::string> a = {c.binary, "-nodefaults", "-display", "none"};
  std::string machine = pci ? "q35" : "microvm,acpi=off";
  if (c.ram_file)
    machine += ",memory-backend=ram";
  a.insert(a.end(), {"-machine", machine});
  for (auto &s : accel_args(c.accel, c.tcg_tb_mib))
    a.push_back(std::move(s));
  a.push_back("-smp");
  a.push_back(c.max_cpus ? fmt::format("{},maxcpus={}", c.cpus, c.max_cpus)
                         : std::to_string(c.cpus));
  a.push_back("-m");
  a.push_back(c.memory_slots
                  ? fmt::format("{}M,slots={},maxmem={}M", c.memory_mib, c.memory_slots,
                                c.max_memory_mib)
                  : fmt::format("{}M", c.memory_mib));
  if (c.ram_file) {
    if (c.ram_file->path.empty())
      throw InputError("QEMU config: RAM file without a path");
    a.push_back("-object");
    a.push_back(fmt::format("memory-backend-file,id=ram,size={}M,mem-path={},share={}",
                            c.memory_mib, qemu_escape(c.ram_file->path),
                            c.ram_file->share ? "on" : "off"));
  }
  if (!c.kernel.empty())
    a.insert(a.end(), {"-kernel", c.kernel});
  if (!c.initrd.empty())
    a.insert(a.end(), {"-initrd", c.initrd});
  if (!c.append.empty())
    a.insert(a.end(), {"-append", c.append});
  if (c.no_reboot)
    a.push_back("-no-reboot");
  for (const auto &s : c.serials) {
    a.push_back("-serial");
    if (s.kind == Serial::Kind::stdio)
      a.push_back("stdio");
    else if (s.path.empty())
      throw InputError("QEMU config: a serial file without a path");
    else
      a.push_back("file:" + s.path);
  }
  if (!c.consoles.empty() || !c.ports.empty()) {
    a.insert(a.end(), {"-device", dev("virtio-serial")});
    for (const auto &con : c.consoles) {
      a.insert(a.end(), {"-chardev", fmt::format("file,id={},path={}", con.id,
                                                 qemu_escape(con.path))});
      a.insert(a.end(), {"-device", fmt::format("virtconsole,chardev={}", con.id)});
    }
    for (const auto &p : c.ports) {
      a.insert(a.end(),
               {"-chardev", fmt::format("socket,id={},{}", p.id,
                                        socket_backend(p.socket, "virtio-serial port " + p.name))});
      a.insert(a.end(),
               {"-device", fmt::format("virtserialport,chardev={},name={}", p.id, p.name)});
    }
  }
  for (size_t i = 0; i < c.disks.size(); ++i) {
    const Disk &d = c.disks[i];
    std::string file;
    if (d.fd >= 0) {
      int set = d.fdset ? d.fdset : static_cast<int>(i) + 1;
      a.insert(a.end(), {"-add-fd", fmt::format("fd={},set={}", d.fd, set)});
      if (d.ro_fd >= 0)
        a.insert(a.end(), {"-add-fd", fmt::format("fd={},set={}", d.ro_fd, set)});
      file = fmt::format("/dev/fdset/{}", set);
    } else if (!d.path.empty()) {
      file = qemu_escape(d.path);
    } else {
      throw InputError(fmt::format("QEMU config: disk {} has neither a path nor a descriptor", d.id));
    }
    std::string drive =
        fmt::format("file={},format={},if=none,id={}", file, to_string(d.format), d.id);
    if (d.readonly)
      drive += ",readonly=on";
    if (d.direct)
      drive += ",cache.direct=on";
    a.insert(a.end(), {"-drive", drive});
    a.insert(a.end(), {"-device", fmt::format("{},drive={}", dev("virtio-blk"), d.id)});
  }
  for (const auto &s : c.shares) {
    a.insert(a.end(), {"-fsdev", fmt::format("local,id={},path={},security_model=none{}", s.id,
                                             qemu_escape(s.path), s.readonly ? ",readonly=on" : "")});
    a.insert(a.end(),
             {"-device", fmt::format("{},fsdev={},mount_tag={}", dev("virtio-9p"), s.id, s.tag)});
  }
  for (const auto &n : c.nets) {
    a.insert(a.end(), {"-netdev", fmt::format("user,id={}", n.id)});
    std::string d = fmt::format("{},netdev={}", dev("virtio-net"), n.id);
    if (!n.mac.empty())
      d += ",mac=" + n.mac;
    a.insert(a.end(), {"-device", d});
  }
  if (c.vsock_cid)
    a.insert(a.end(), {"-device", fmt::format("{},guest-cid={}", dev("vhost-vsock"), *c.vsock_cid)});
  if (c.qmp) {
    if (c.qmp->fd >= 0) {
      a.insert(a.end(), {"-chardev", "socket,id=qmp," + socket_backend(*c.qmp, "QMP"),
                         "-mon", "chardev=qmp,mode=control"});
    } else {
      a.insert(a.end(), {"-qmp", "unix:" + qemu_escape(c.qmp->path) + ",server=on,wait=off"});
    }
  }
  if (!c.pidfile.empty())
    a.insert(a.end(), {"-pidfile", c.pidfile});
  if (c.paused)
    a.push_back("-S");
  if (c.incoming_defer)
    a.insert(a.end(), {"-incoming", "defer"});
  a.insert(a.end(), c.extra.begin(), c.extra.end());
  return a;
}

} // namespace rundkit::vm
