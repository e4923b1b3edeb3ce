#include "bench/reflink_bench.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <latch>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "bench/report.h"
#include "storage/image.h"
#include "storage/layer.h"
#include "storage/mount.h"
#include "testing/scratch_fs.h"
#include "util/error.h"
#include "util/process.h"
#include "util/units.h"

namespace rundkit {

namespace {

using Clock = std::chrono::steady_clock;

const std::vector<std::string> kModes = {"reflink", "volatile", "qcow2", "mkfs", "copy"};

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Every byte of the image through user space, holes included, as `dd`
// would: copy_file_range would itself reflink on XFS and measure nothing.
void full_copy(const Fd &src, const std::string &dst_path, uint64_t size) {
  Fd dst = Fd::open(dst_path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  std::vector<char> buf(1 << 20);
  for (uint64_t off = 0; off < size;) {
    ssize_t n = ::pread(src.get(), buf.data(), buf.size(), static_cast<off_t>(off));
    check_sys(n, "read", src.path());
    if (n == 0)
      throw Error("read", src.path(), EIO);
    if (::pwrite(dst.get(), buf.data(), static_cast<size_t>(n), static_cast<off_t>(off)) != n)
      throw Error("write", dst_path, errno ? errno : EIO);
    off += static_cast<uint64_t>(n);
  }
}

// One operation: make a ready writable layer named `dest` (volatile: none).
void make_layer(const std::string &mode, const Template &tmpl, const std::string &dir,
                const std::string &dest) {
  if (mode == "reflink") {
    clone_layer(tmpl, dest);
  } else if (mode == "volatile") {
    // Ready means the O_DIRECT descriptor a VMM would be given exists;
    // closing it (untimed, in the caller's scope) frees the inode.
    auto layer = open_volatile_layer(tmpl, dir, true);
  } else if (mode == "qcow2") {
    run_image_tool({"qemu-img", "create", "-q", "-f", "qcow2", "-b", tmpl.info().path, "-F",
                    "raw", dest});
  } else if (mode == "mkfs") {
    {
      Fd f = Fd::open(dest, O_WRONLY | O_CREAT | O_EXCL, 0600);
      check_sys(::ftruncate(f.get(), static_cast<off_t>(tmpl.info().size)), "truncate", dest);
    }
    auto argv = template_mkfs_command(tmpl.info().fs);
    argv.push_back(dest);
    run_image_tool(argv);
  } else if (mode == "copy") {
    full_copy(tmpl.fd(), dest, tmpl.info().size);
  }
}

struct Cell {
  std::vector<double> samples;
  double wall_s = 0;
  int rounds = 0;
};

Cell run_cell(const std::string &mode, const Template &tmpl, const std::string &dir, int conc,
              int min_samples) {
  Cell cell;
  cell.rounds = std::max(1, (min_samples + conc - 1) / conc);
  for (int round = 0; round < cell.rounds; ++round) {
    std::vector<double> lat(static_cast<size_t>(conc));
    std::vector<std::string> errors(static_cast<size_t>(conc));
    std::vector<std::string> names;
    for (int i = 0; i < conc; ++i)
      names.push_back(fmt::format("{}/bench-{}-{}-{}-{}", dir, mode, conc, round, i));
    // All threads exist and wait before the burst, so thread creation is
    // not inside any sample.  Each sample runs from the common release
    // instant, like c requests arriving at once: time spent waiting for a
    // CPU or a lock before the operation starts counts, as it would for a
    // sandbox start.
    std::latch ready(conc + 1), go(1);
    std::vector<std::thread> threads;
    Clock::time_point t0;
    for (int i = 0; i < conc; ++i)
      threads.emplace_back([&, i] {
        ready.count_down();
        go.wait();
        try {
          make_layer(mode, tmpl, dir, names[static_cast<size_t>(i)]);
        } catch (const std::exception &e) {
          errors[static_cast<size_t>(i)] = e.what();
        }
        lat[static_cast<size_t>(i)] = ms_since(t0);
      });
    ready.arrive_and_wait();
    t0 = Clock::now();
    go.count_down();
    for (auto &t : threads)
      t.join();
    cell.wall_s += ms_since(t0) / 1000;
    for (const auto &n : names)
      ::unlink(n.c_str());
    for (const auto &e : errors)
      if (!e.empty())
        throw Error(fmt::format("bench {} at concurrency {}: {}", mode, conc, e));
    cell.samples.insert(cell.samples.end(), lat.begin(), lat.end());
  }
  return cell;
}

const LatencySummary *find_row(const std::vector<LatencySummary> &rows, const std::string &mode,
                               int conc) {
  for (const auto &r : rows)
    if (r.mode == mode && r.concurrency == conc)
      return &r;
  return nullptr;
}

nlohmann::json setup_json(const ReflinkBenchSetup &s) {
  nlohmann::json j = {{"fs", s.fs},
                      {"template", s.template_info.to_json()},
                      {"template_create_ms", s.template_create_ms}};
  if (!s.started.empty())
    j["started"] = s.started;
  if (s.samples_min)
    j["samples_min"] = s.samples_min;
  if (!s.copy.empty())
    j["copy"] = s.copy;
  return j;
}

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// The scratch XFS and template both benchmarks run on.
struct BenchFs {
  std::unique_ptr<ScratchFs> scratch;
  std::string dir;
  std::string template_path;
  ReflinkBenchSetup setup;

  explicit BenchFs(const ReflinkBenchOptions &opts) {
    if (opts.dir.empty()) {
      std::cerr << "making a loop-mounted scratch XFS (reflink=1)...\n";
      scratch = std::make_unique<ScratchFs>("xfs", parse_size(opts.scratch_size_text));
      dir = scratch->mountpoint();
      setup.fs = fmt::format("scratch {} on a loop device (direct I/O) over a sparse {} "
                                "file: {}",
                                "xfs", opts.scratch_size_text, scratch_mkfs_description("xfs"));
    } else {
      dir = opts.dir;
      setup.fs = fmt::format("operator's directory {} ({})", dir, filesystem_of(dir));
    }
    template_path = dir + "/template.img";
    std::cerr << fmt::format("formatting the {}-byte template...\n", opts.template_size);
    auto t0 = Clock::now();
    auto info = create_template(template_path, opts.template_size, "ext4");
    setup.template_info = info;
    setup.template_create_ms = ms_since(t0);
  }
  ~BenchFs() {
    ::unlink(template_path.c_str());
    ::unlink(template_sidecar_path(template_path).c_str());
  }
};

long meminfo_kib(const std::string &meminfo, const std::string &key) {
  auto pos = meminfo.find("\n" + key + ":");
  if (pos == std::string::npos)
    return -1;
  return std::stol(meminfo.substr(pos + key.size() + 2));
}

nlohmann::json host_cache() {
  std::string m = "\n" + read_file("/proc/meminfo");
  long active = meminfo_kib(m, "Active(file)"), inactive = meminfo_kib(m, "Inactive(file)");
  return {{"Cached_kib", meminfo_kib(m, "Cached")},
          {"file_pages_kib", active + inactive},
          {"Dirty_kib", meminfo_kib(m, "Dirty")}};
}

// Pages of the file behind `fd` in the page cache, by mincore on a mapping.
uint64_t resident_bytes(const Fd &fd, uint64_t size) {
  void *map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (map == MAP_FAILED)
    throw Error("mmap", fd.path(), errno);
  long page = ::sysconf(_SC_PAGESIZE);
  std::vector<unsigned char> vec((size + page - 1) / page);
  int rc = ::mincore(map, size, vec.data());
  int err = errno;
  ::munmap(map, size);
  if (rc != 0)
    throw Error("mincore", fd.path(), err);
  uint64_t n = static_cast<uint64_t>(std::count_if(vec.begin(), vec.end(),
                                                   [](unsigned char c) { return c & 1; }));
  return n * static_cast<uint64_t>(page);
}

} // namespace

std::string capture_with_fd(const std::vector<std::string> &argv, int keep_fd) {
  SpawnOptions o;
  o.argv = argv;
  o.pass_fds = {{keep_fd, keep_fd}};
  return run_capture(std::move(o));
}

const std::vector<std::string> &reflink_bench_modes() { return kModes; }

void check_reflink_bench_options(const ReflinkBenchOptions &opts) {
  for (const auto &m : opts.modes)
    if (std::find(kModes.begin(), kModes.end(), m) == kModes.end())
      throw InputError(fmt::format("unknown mode '{}': expected {}", m, fmt::join(kModes, ", ")));
  if (opts.modes.empty())
    throw InputError("no bench mode given");
  for (int c : opts.concurrency)
    if (c < 1 || c > 10000)
      throw InputError(fmt::format("invalid concurrency level {}: expected 1..10000", c));
  if (opts.concurrency.empty())
    throw InputError("empty --concurrency list");
  if (opts.samples < 1 || opts.copy_samples < 1)
    throw InputError("--samples and --copy-samples must be at least 1");
  if (!opts.png.empty() && opts.csv.empty())
    throw InputError("--png needs --csv (the plot is drawn from it)");
  if (opts.dir.empty())
    parse_size(opts.scratch_size_text);
}

nlohmann::json BenchResult::to_json() const {
  nlohmann::json ratio_list = nlohmann::json::array();
  for (const auto &r : ratios)
    ratio_list.push_back({{"concurrency", r.concurrency},
                          {"mode", r.mode},
                          {"p50_ratio", r.p50_ratio},
                          {"p99_ratio", r.p99_ratio}});
  return {{"setup", setup_json(setup)}, {"results", rundkit::to_json(rows)}, {"ratios", ratio_list}};
}

std::string BenchResult::format() const {
  std::string out = format_table(rows);
  out += "\nslower than reflink clone (same run, same concurrency): p50 ratio / p99 ratio\n";
  for (const auto &r : ratios)
    out += fmt::format("  c={:<4} {:<8} {:>10.1f}x / {:>10.1f}x\n", r.concurrency, r.mode,
                       r.p50_ratio, r.p99_ratio);
  return out;
}

BenchResult run_reflink_bench(const ReflinkBenchOptions &opts) {
  check_reflink_bench_options(opts);
  BenchFs fs(opts);
  Template tmpl = Template::open(fs.template_path);
  BenchResult result;
  result.setup = fs.setup;
  result.setup.started = now_utc();
  result.setup.samples_min = opts.samples;
  result.setup.copy = fmt::format("full buffered copy of every byte, only at concurrency <= "
                                     "{}, at least {} samples per level",
                                     opts.copy_max_concurrency, opts.copy_samples);
  for (int conc : opts.concurrency) {
    // Methods interleave at each level, so all of them see the same
    // machine state (page cache, log, other load) within the run.
    for (const auto &mode : opts.modes) {
      bool is_copy = mode == "copy";
      if (is_copy && conc > opts.copy_max_concurrency)
        continue;
      std::cerr << fmt::format("  {:<8} c={:<4} ...", mode, conc) << std::flush;
      Cell cell = run_cell(mode, tmpl, fs.dir, conc, is_copy ? opts.copy_samples : opts.samples);
      result.rows.push_back(summarize(mode, conc, cell.samples, cell.wall_s));
      const auto &r = result.rows.back();
      std::cerr << fmt::format(" p50 {:.3f} ms, p99 {:.3f} ms ({} rounds)\n", r.p50_ms,
                               r.p99_ms, cell.rounds);
    }
  }
  for (int conc : opts.concurrency) {
    const auto *base = find_row(result.rows, "reflink", conc);
    if (!base)
      continue;
    for (const auto &mode : opts.modes) {
      const auto *r = find_row(result.rows, mode, conc);
      if (!r || mode == "reflink")
        continue;
      result.ratios.push_back(
          RatioToReflink{conc, mode, r->p50_ms / base->p50_ms, r->p99_ms / base->p99_ms});
    }
  }
  if (!opts.csv.empty())
    write_csv(opts.csv, result.rows);
  if (!opts.png.empty()) {
    plot_latency(opts.csv, opts.png,
                 fmt::format("ready writable layer, {} MiB ext4 template on XFS (reflink=1)",
                             opts.template_size >> 20));
  }
  return result;
}

nlohmann::json run_page_cache_bench(const ReflinkBenchOptions &opts) {
  check_reflink_bench_options(opts);
  BenchFs fs(opts);
  Template tmpl = Template::open(fs.template_path);
  const uint64_t work = std::min<uint64_t>(256ULL << 20, tmpl.info().size / 2);
  nlohmann::json out = {{"setup", setup_json(fs.setup)}, {"runs", nlohmann::json::array()}};
  out["setup"]["workload"] = fmt::format(
      "fio psync bs=4k: randwrite then randread over the first {} MiB of the layer", work >> 20);
  for (bool direct : {false, true}) {
    auto layer = open_volatile_layer(tmpl, fs.dir, direct);
    int fd = layer.fd.get();
    // Start from nothing of this template cached, so the figures are ours.
    ::posix_fadvise(tmpl.fd().get(), 0, 0, POSIX_FADV_DONTNEED);
    std::cerr << fmt::format("fio on a volatile layer{}...\n", direct ? " (--direct)" : "");
    nlohmann::json before = host_cache();
    std::vector<std::string> argv = {
        "fio", "--output-format=json", fmt::format("--filename=/proc/self/fd/{}", fd),
        // The VMM's own flag follows the descriptor: QEMU cache.direct=on
        // with a --direct layer, the host page cache otherwise.
        fmt::format("--direct={}", direct ? 1 : 0), "--ioengine=psync", "--bs=4k",
        fmt::format("--size={}", work), "--randrepeat=0", "--name=randwrite",
        "--rw=randwrite", "--name=randread", "--stonewall", "--rw=randread"};
    nlohmann::json fio;
    try {
      fio = nlohmann::json::parse(capture_with_fd(argv, fd));
    } catch (const nlohmann::json::exception &e) {
      throw Error(fmt::format("fio --output-format=json printed no JSON report: {}", e.what()));
    }
    nlohmann::json after = host_cache();
    nlohmann::json run = {{"direct", direct},
                          {"before", before},
                          {"after", after},
                          {"layer_resident_bytes", resident_bytes(layer.fd, tmpl.info().size)},
                          {"template_resident_bytes", resident_bytes(tmpl.fd(), tmpl.info().size)},
                          {"fio_command", argv}};
    for (const auto &job : fio.at("jobs")) {
      std::string name = job.at("jobname");
      const auto &side = name == "randwrite" ? job.at("write") : job.at("read");
      run["iops_" + name] = side.at("iops").get<double>();
    }
    out["runs"].push_back(run);
  }
  return out;
}

std::string format_page_cache(const nlohmann::json &r) {
  std::string out = fmt::format("{}\n\n", r["setup"]["workload"].get<std::string>());
  out += fmt::format("{:<10} {:>14} {:>14} {:>16} {:>16} {:>14} {:>10} {:>10}\n", "layer",
                     "Cached before", "Cached after", "file pages bef.", "file pages after",
                     "layer cached", "w IOPS", "r IOPS");
  for (const auto &run : r["runs"]) {
    auto mib = [](long kib) { return fmt::format("{} MiB", kib / 1024); };
    out += fmt::format(
        "{:<10} {:>14} {:>14} {:>16} {:>16} {:>14} {:>10.0f} {:>10.0f}\n",
        run["direct"].get<bool>() ? "--direct" : "buffered",
        mib(run["before"]["Cached_kib"].get<long>()), mib(run["after"]["Cached_kib"].get<long>()),
        mib(run["before"]["file_pages_kib"].get<long>()),
        mib(run["after"]["file_pages_kib"].get<long>()),
        fmt::format("{} MiB", run["layer_resident_bytes"].get<uint64_t>() >> 20),
        run["iops_randwrite"].get<double>(), run["iops_randread"].get<double>());
  }
  return out;
}

} // namespace rundkit
