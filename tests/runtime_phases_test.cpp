// PyPy's log sections: read from the log as it arrives, stored (PYLG), dated
// on the samples' clock and looked up at a sample's time.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "bundle/pypy_log.h"
#include "correlate/runtime_phases.h"
#include "pypy/debug_log.h"

namespace {

using jitprof::bundle::PypyLogName;

std::vector<std::uint8_t> bytes(const std::string& text) { return {text.begin(), text.end()}; }

struct Closed {
  std::string name;
  std::uint64_t start, end;
  friend bool operator==(const Closed&, const Closed&) = default;
};

// Feeds `log` to `reader` `chunk` bytes at a time.
void feed_in_chunks(jitprof::pypy::DebugLogReader& reader, const std::string& log, std::size_t chunk,
                    const jitprof::pypy::DebugLogReader::OnClosed& closed) {
  const auto all = bytes(log);
  for (std::size_t at = 0; at < all.size(); at += chunk)
    reader.feed(std::span(all).subspan(at, std::min(chunk, all.size() - at)), closed);
}

std::vector<Closed> read_in_chunks(const std::string& log, std::size_t chunk) {
  jitprof::pypy::DebugLogReader reader;
  std::vector<Closed> closed;
  feed_in_chunks(reader, log, chunk,
                 [&](const auto& section) { closed.push_back({std::string(section.name), section.start, section.end}); });
  return closed;
}

const std::string kLog =
    "[10] {jit-tracing\n"
    "[12] {jit-optimize\n"
    "[13] {gc-minor\n"
    "minor collect, total memory used: 0\n"
    "[14] gc-minor}\n"
    "[15] jit-optimize}\n"
    "[16] {jit-backend\n"
    "[17] {jit-backend-dump\n" +
    std::string(5000, 'A') + "\n"  // a dump line: long, skipped
    "[18] jit-backend-dump}\n"
    "[19] jit-backend}\n"
    "[1a] jit-tracing}\n"
    "[20] gc-collect-step}\n";  // opened before the log started: ignored

TEST(DebugLogReader, SectionsCloseInnermostFirstWhateverTheChunksAndSkipEverythingElse) {
  const std::vector<Closed> expected = {{"gc-minor", 0x13, 0x14},         {"jit-optimize", 0x12, 0x15},
                                        {"jit-backend-dump", 0x17, 0x18}, {"jit-backend", 0x16, 0x19},
                                        {"jit-tracing", 0x10, 0x1a}};
  for (std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{4096}, kLog.size()})
    EXPECT_EQ(read_in_chunks(kLog, chunk), expected) << "chunks of " << chunk;
}

TEST(DebugLogReader, ASectionLeftOpenIsCounted) {
  jitprof::pypy::DebugLogReader reader;
  std::size_t closed = 0;
  reader.feed(bytes("[1] {gc-collect-step\n[2] {gc-minor\n[3] gc-minor}\n"), [&](const auto&) { ++closed; });
  EXPECT_EQ(closed, 1u);
  EXPECT_EQ(reader.open_sections(), 1u);
}

TEST(PypyLogSection, RoundTripsThroughABundleAndACutRecordKeepsWhatCameBefore) {
  const jitprof::bundle::PypyLogSection minor{PypyLogName::GcMinor, 81192403684557, 81192403784557};
  const jitprof::bundle::TimestampPair pair{81192403000000, 5'000'000'000};
  const auto path = std::filesystem::temp_directory_path() / ("jitprof-pylg-" + std::to_string(::getpid()));
  {
    jitprof::bundle::BundleWriter writer(path);
    jitprof::bundle::PypyLogBuffer buffer;
    buffer.add(pair);
    buffer.add(minor);
    buffer.flush_into(writer);
    buffer.add(jitprof::bundle::PypyLogSection{PypyLogName::JitBackend, 7, 9});
    buffer.flush_into(writer);
    EXPECT_TRUE(buffer.empty());
  }
  const auto read = jitprof::bundle::read_bundle(path);
  std::filesystem::remove(path);
  jitprof::bundle::PypyLog log = jitprof::bundle::read_pypy_log(read);
  ASSERT_FALSE(log.error);
  ASSERT_EQ(log.clock.size(), 1u);
  EXPECT_EQ(log.clock[0], pair);
  ASSERT_EQ(log.sections.size(), 2u);
  EXPECT_EQ(log.sections[0], minor);
  EXPECT_EQ(log.sections[1].name, PypyLogName::JitBackend);

  std::vector<std::uint8_t> stream = read.stream(jitprof::bundle::sections::kPypyLog);
  stream.pop_back();
  log = jitprof::bundle::decode_pypy_log(stream);
  ASSERT_TRUE(log.error);
  EXPECT_EQ(log.sections.size(), 1u);  // the minor collection before the cut record
  stream[0] = 9;
  EXPECT_TRUE(jitprof::bundle::decode_pypy_log(stream).error);
  EXPECT_STREQ(jitprof::bundle::pypy_log_name(PypyLogName::GcCollectStep), "gc-collect-step");
  EXPECT_EQ(jitprof::bundle::pypy_log_name_of("jit-optimize"), PypyLogName::JitOptimize);
  EXPECT_FALSE(jitprof::bundle::pypy_log_name_of("jit-backend-dump"));
}

// What pypy3 7.3.11 wrote here for tests/programs/hotloop.py (PYPYLOG=jit-backend-addr:FILE).
const std::string kBackendAddr =
    "[b6095672aa7b] {jit-backend-addr\n"
    "Loop 1 (f;/work/main/tests/programs/hotloop.py:10-12~#12 FOR_ITER) has address 0x7f570f9afa5b to "
    "0x7f570f9afc20 (bootstrap 0x7f570f9af9d0)\n"
    "       gc table: 0x7f570f9af950\n"
    "       function: 0x7f570f9af9d0\n"
    "         resops: 0x7f570f9afa5b\n"
    "       failures: 0x7f570f9afc20\n"
    "            end: 0x7f570f9afdd7\n"
    "[b60956751c04] jit-backend-addr}\n"
    "[b60956ad05b5] {jit-backend-addr\n"
    "bridge out of Guard 0x7f570fb8ce60 has address 0x7f570f9afee0 to 0x7f570f9affb0\n"
    "       gc table: 0x7f570f9afe90\n"
    "    jump target: 0x7f570f9afee0\n"
    "         resops: 0x7f570f9afeee\n"
    "       failures: 0x7f570f9affb0\n"
    "            end: 0x7f570f9b00cf\n"
    "[b60956ad2d78] jit-backend-addr}\n";

TEST(DebugLogReader, KeepsTheTextOfTheSectionsAskedForAndTellsWhereLoopsAndBridgesAre) {
  for (std::size_t chunk : {std::size_t{1}, std::size_t{13}, kBackendAddr.size()}) {
    jitprof::pypy::DebugLogReader reader({"jit-backend-addr"});
    std::vector<jitprof::pypy::BackendAddress> found;
    feed_in_chunks(reader, kBackendAddr, chunk, [&](const auto& section) {
      if (auto code = jitprof::pypy::parse_backend_address(section.text)) found.push_back(*code);
    });
    ASSERT_EQ(found.size(), 2u) << "chunks of " << chunk;
    EXPECT_FALSE(found[0].bridge);
    EXPECT_EQ(found[0].number, 1u);
    EXPECT_EQ(found[0].name, "f;/work/main/tests/programs/hotloop.py:10-12~#12 FOR_ITER");
    EXPECT_EQ(found[0].start, 0x7f570f9af950u);  // the gc table, before the code
    EXPECT_EQ(found[0].end, 0x7f570f9afdd7u);
    EXPECT_TRUE(found[1].bridge);
    EXPECT_EQ(found[1].number, 0x7f570fb8ce60u);
    EXPECT_EQ(found[1].start, 0x7f570f9afe90u);
    EXPECT_EQ(found[1].end, 0x7f570f9b00cfu);
  }
  // Without asking, the text is not kept.
  jitprof::pypy::DebugLogReader plain;
  plain.feed(bytes(kBackendAddr), [](const auto& section) { EXPECT_TRUE(section.text.empty()); });
  EXPECT_FALSE(jitprof::pypy::parse_backend_address("Loop x (f) has address 0x1 to 0x2\n   end: 0x3\n"));
  EXPECT_FALSE(jitprof::pypy::parse_backend_address("bridge out of Guard 0x10 has address 0x20 to 0x30\n"));
}

TEST(PypyLogJitCode, RoundTripsAndACutRecordIsAnError) {
  const jitprof::bundle::PypyLogJitCode loop{jitprof::bundle::PypyLogJitCode::Kind::Loop, 1, 0x7f570f9af950,
                                             0x7f570f9afdd7, 0xb60956751c04, "f;/t/hotloop.py:10-12~#12 FOR_ITER"};
  const jitprof::bundle::PypyLogJitCode bridge{jitprof::bundle::PypyLogJitCode::Kind::Bridge, 0x7f570fb8ce60,
                                               0x7f570f9afe90, 0x7f570f9b00cf, 0xb60956ad2d78, ""};
  const auto path = std::filesystem::temp_directory_path() / ("jitprof-pylg-code-" + std::to_string(::getpid()));
  {
    jitprof::bundle::BundleWriter writer(path);
    jitprof::bundle::PypyLogBuffer buffer;
    buffer.add(loop);
    buffer.add(bridge);
    buffer.flush_into(writer);
  }
  const auto read = jitprof::bundle::read_bundle(path);
  std::filesystem::remove(path);
  const jitprof::bundle::PypyLog log = jitprof::bundle::read_pypy_log(read);
  ASSERT_FALSE(log.error);
  ASSERT_EQ(log.jit_code.size(), 2u);
  EXPECT_EQ(log.jit_code[0], loop);
  EXPECT_EQ(log.jit_code[1], bridge);
  std::vector<std::uint8_t> stream = read.stream(jitprof::bundle::sections::kPypyLog);
  stream.resize(stream.size() - 3);
  const auto cut = jitprof::bundle::decode_pypy_log(stream);
  ASSERT_TRUE(cut.error);
  EXPECT_EQ(cut.jit_code.size(), 1u);
}

TEST(RuntimePhases, DatedByTheClockPairsAndFoundInnermostAtASampleTime) {
  // 2.5 ticks per nanosecond, CLOCK_MONOTONIC 1 s when the counter read 1,000,000.
  const auto tsc = [](std::uint64_t ns) { return 1'000'000 + (ns - 1'000'000'000) * 5 / 2; };
  jitprof::bundle::PypyLog log;
  log.clock = {{tsc(1'000'000'000), 1'000'000'000}, {tsc(1'500'000'000), 1'500'000'000}, {tsc(2'000'000'000), 2'000'000'000}};
  const auto ns = [](std::uint64_t s_ms) { return 1'000'000'000 + s_ms * 1'000'000; };
  // A tracing section (100-300 ms) holding an optimizer run (120-150) and a
  // minor collection (200-210); a major step later (400-450).
  log.sections = {{PypyLogName::JitOptimize, tsc(ns(120)), tsc(ns(150))},
                  {PypyLogName::GcMinor, tsc(ns(200)), tsc(ns(210))},
                  {PypyLogName::JitTracing, tsc(ns(100)), tsc(ns(300))},
                  {PypyLogName::GcCollectStep, tsc(ns(400)), tsc(ns(450))}};
  const auto phases = jitprof::correlate::date_runtime_phases(log);
  ASSERT_EQ(phases.size(), 4u);
  EXPECT_EQ(phases[0].name, PypyLogName::JitTracing);
  EXPECT_EQ(phases[0].depth, 0u);
  EXPECT_EQ(phases[1].depth, 1u);
  EXPECT_NEAR(double(phases[0].start_ns), double(ns(100)), 2.0);
  EXPECT_NEAR(double(phases[3].end_ns), double(ns(450)), 2.0);

  const jitprof::correlate::RuntimePhaseLookup lookup(phases);
  const auto at = [&](std::uint64_t ms) {
    const auto* phase = lookup.innermost_at(ns(ms));
    return phase ? std::string(jitprof::bundle::pypy_log_name(phase->name)) : std::string("none");
  };
  EXPECT_EQ(at(50), "none");
  EXPECT_EQ(at(110), "jit-tracing");
  EXPECT_EQ(at(130), "jit-optimize");
  EXPECT_EQ(at(160), "jit-tracing");  // after the optimizer, still tracing
  EXPECT_EQ(at(205), "gc-minor");
  EXPECT_EQ(at(250), "jit-tracing");
  EXPECT_EQ(at(350), "none");
  EXPECT_EQ(at(420), "gc-collect-step");
  EXPECT_EQ(at(500), "none");

  log.clock.resize(1);  // one pair cannot date anything
  EXPECT_TRUE(jitprof::correlate::date_runtime_phases(log).empty());
}

}  // namespace
