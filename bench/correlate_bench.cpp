// Cost of correlation per sample: a synthetic bundle with 10,000 traces (and
// 1,000 more reusing freed code) and 1,000,000 samples, 70% in JIT code.
// Printed against a baseline from the same run: decoding the samples alone.
//
//   build/bench/correlate_bench [SAMPLES] [TRACES]
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "bundle/bundle.h"
#include "bundle/manifest.h"
#include "bundle/samples.h"
#include "bundle/sections.h"
#include "correlate/profile.h"
#include "support/jitlog_writer.h"

namespace {

using namespace jitprof;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kJitBase = 0x7f0000000000;
constexpr std::uint64_t kTraceSpacing = 1024, kTraceSize = 768;
constexpr std::uint64_t kLibpypy = 0x7e0000000000;
constexpr std::uint32_t kPid = 1000;

struct Workload {
  std::vector<std::uint8_t> jitlog;
  bundle::SectionBuffer<bundle::JitlogArrival> clock;
  bundle::SectionBuffer<bundle::MappingRecord> maps;
  bundle::SectionBuffer<bundle::SymbolRecord> symbols;
  std::vector<std::uint8_t> samples;
};

Workload build(std::size_t sample_count, std::size_t trace_count) {
  Workload work;
  testing::JitlogWriter log;
  log.header();
  // Traces beyond trace_count reuse the code range of an earlier one.
  const std::size_t reused = trace_count / 10;
  for (std::size_t i = 0; i < trace_count + reused; ++i) {
    const std::uint64_t id = i + 1;
    const std::uint64_t slot = i < trace_count ? i : (i * 7) % trace_count;
    const std::uint64_t start = kJitBase + slot * kTraceSpacing, guard = 0x5500000000 + i * 16;
    const std::string file = fmt::format("/bench/module{}.py", i % 50);
    const std::string function = fmt::format("function{}", i % 500);
    work.clock.add({log.size(), std::uint64_t(i) * 1000});
    log.start_trace(id, "loop", 0)
        .trace_opt(id)
        .input_args("p0,i0")
        .init_merge_point()
        .merge_point(testing::pypy_point(file, std::int64_t(i % 300 + 1), function, 12, "FOR_ITER"))
        .resop(testing::opnum::kIntAdd, "i1,i0,1")
        .resop_descr(testing::opnum::kGuardTrue, "?,i1,<Guard>", guard, "p0")
        .merge_point(testing::pypy_point(file, std::int64_t(i % 300 + 2), function, 14, "STORE_FAST"))
        .resop(testing::opnum::kIntAdd, "i2,i1,1")
        .trace_asm(id)
        .input_args("p0,i0")
        .asm_addr(start, start + kTraceSize)
        .resop(testing::opnum::kIntAdd, "i1,i0,1")
        .machine_code(64, testing::Bytes(32, 0x90))
        .resop_descr(testing::opnum::kGuardTrue, "?,i1,<Guard>", guard, "p0")
        .machine_code(96, testing::Bytes(32, 0x90))
        .resop(testing::opnum::kIntAdd, "i2,i1,1")
        .machine_code(128, testing::Bytes(kTraceSize - 128, 0x90));
  }
  work.jitlog = log.bytes();
  work.maps.add({0, kPid, kPid, kJitBase, trace_count * kTraceSpacing, 0, 7, 0, 0, 0, 0, "//anon"});
  work.maps.add({0, kPid, kPid, kLibpypy, 1 << 24, 0, 5, 0, 0, 0, 0, "/usr/lib/libpypy3.9-c.so"});
  for (std::uint64_t i = 0; i < 64; ++i)
    work.symbols.add({kPid, kLibpypy + i * 4096, "/usr/lib/libpypy3.9-c.so", "",
                      i % 2 ? fmt::format("pypy_function_{}", i) : "", 0, {}, ""});

  std::mt19937_64 random(42);
  bundle::SampleEncoder encoder;
  for (std::size_t i = 0; i < sample_count; ++i) {
    bundle::NativeSample sample;
    sample.time_ns = 20'000'000 + i * 1'000'000;
    sample.pid = sample.tid = kPid;
    // A few thousand distinct stacks, as in a real run.
    const std::uint64_t shape = random() % 5000;
    if (shape % 10 < 7)
      sample.user_stack.push_back(kJitBase + (shape % trace_count) * kTraceSpacing + 64 + (shape * 13) % 600);
    for (std::uint64_t depth = 0; depth < 8; ++depth) sample.user_stack.push_back(kLibpypy + ((shape + depth) % 64) * 4096);
    encoder.add(sample);
  }
  work.samples = encoder.take();
  return work;
}

template <class Work>
double seconds(Work&& work) {
  const auto start = Clock::now();
  work();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t sample_count = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  const std::size_t trace_count = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 10'000;
  Workload work = build(sample_count, trace_count);
  const auto path = std::filesystem::temp_directory_path() / "jitprof-correlate-bench.jprof";
  {
    bundle::BundleWriter writer(path);
    bundle::Manifest manifest;
    manifest.perf.emplace();
    manifest.perf->rate_hz = 1000;
    writer.append(bundle::sections::kManifest, bundle::encode(manifest));
    writer.append(bundle::sections::kJitlog, work.jitlog);
    work.clock.flush_into(writer);
    work.maps.flush_into(writer);
    work.symbols.flush_into(writer);
    writer.append(bundle::sections::kSamples, work.samples);
  }
  const bundle::Bundle read = bundle::read_bundle(path);
  std::filesystem::remove(path);

  std::size_t decoded = 0, traces = 0, on_ops = 0;
  const double baseline = seconds([&] { decoded = bundle::decode_samples(read.stream(bundle::sections::kSamples)).rows.size(); });
  const double jitlog = seconds([&] { traces = jitlog::parse_jitlog(read.stream(bundle::sections::kJitlog)).traces.size(); });
  const double total = seconds([&] { on_ops = correlate::correlate(read).stats.jit_on_op; });
  const double per_sample_ns = (total - jitlog) / double(decoded) * 1e9;
  const double beyond_decoding_ns = (total - jitlog - baseline) / double(decoded) * 1e9;
  fmt::print("{} samples, {} traces ({} JIT samples attributed to an op)\n", decoded, traces, on_ops);
  fmt::print("baseline (decode samples): {:.3f} s = {:.0f} ns/sample\n", baseline, baseline / double(decoded) * 1e9);
  fmt::print("jitlog parse:              {:.3f} s\n", jitlog);
  fmt::print("correlate:                 {:.3f} s in all; per sample, without the jitlog parse: {:.0f} ns "
             "({:.1f}x the baseline), of which {:.0f} ns beyond decoding\n",
             total, per_sample_ns, (total - jitlog) / baseline, beyond_decoding_ns);
  return 0;
}
