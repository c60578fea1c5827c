#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "vmprof/profile.h"

namespace {

namespace vmp = jitprof::vmprof;
using vmp::FrameKind;
using Bytes = std::vector<std::uint8_t>;

const std::filesystem::path kFixtures = JITPROF_FIXTURES;
const std::filesystem::path kPrograms = kFixtures.parent_path() / "programs";

// ---------------------------------------------------------------------------
// Test-only encoder: writes records the way vmprof's C writer lays them out.

class ProfileWriter {
 public:
  // `word` is the writer's sizeof(long), `address` its sizeof(void*).
  explicit ProfileWriter(unsigned word = 8, unsigned address = 8) : word_(word), address_(address) {}

  ProfileWriter& static_header(std::uint64_t period_usec, std::uint64_t platform = 0) {
    for (std::uint64_t value : {std::uint64_t{0}, std::uint64_t{3}, std::uint64_t{0}, period_usec, platform})
      put(value, word_);
    return *this;
  }
  // Versions below 4 have no mode byte.
  ProfileWriter& header(std::uint16_t version, std::uint8_t flags, const std::string& interpreter) {
    bytes_.push_back(0x05);
    bytes_.push_back(static_cast<std::uint8_t>(version >> 8));
    bytes_.push_back(static_cast<std::uint8_t>(version & 0xff));
    if (version >= 4) bytes_.push_back(flags);
    bytes_.push_back(static_cast<std::uint8_t>(interpreter.size()));
    text(interpreter);
    return *this;
  }
  ProfileWriter& interp_name(const std::string& name) {  // deprecated 0x04
    bytes_.push_back(0x04);
    bytes_.push_back(static_cast<std::uint8_t>(name.size()));
    text(name);
    return *this;
  }
  ProfileWriter& start_time(std::int64_t seconds, std::int64_t microseconds) { return time(0x06, seconds, microseconds); }
  ProfileWriter& trailer(std::int64_t seconds, std::int64_t microseconds) { return time(0x03, seconds, microseconds); }
  ProfileWriter& bare_trailer() {  // before version 5
    bytes_.push_back(0x03);
    return *this;
  }
  ProfileWriter& meta(const std::string& key, const std::string& value) {
    bytes_.push_back(0x07);
    put(key.size(), word_);
    text(key);
    put(value.size(), word_);
    text(value);
    return *this;
  }
  ProfileWriter& virtual_ip(std::uint64_t uid, const std::string& name) { return named(0x02, uid, name); }
  ProfileWriter& native_symbol(std::uint64_t address, const std::string& name) { return named(0x08, address, name); }
  // A stack record: count, depth, words, then thread id and RSS when given.
  ProfileWriter& stack(const std::vector<std::uint64_t>& words, std::optional<std::uint64_t> thread_id = 0,
                       std::optional<std::uint64_t> rss_kb = std::nullopt, std::uint64_t count = 1) {
    return stack_with_depth(words.size(), words, thread_id, rss_kb, count);
  }
  ProfileWriter& stack_with_depth(std::uint64_t depth, const std::vector<std::uint64_t>& words,
                                  std::optional<std::uint64_t> thread_id = 0,
                                  std::optional<std::uint64_t> rss_kb = std::nullopt, std::uint64_t count = 1) {
    bytes_.push_back(0x01);
    put(count, word_);
    put(depth, word_);
    for (std::uint64_t value : words) put(value, address_);
    if (thread_id) put(*thread_id, address_);
    if (rss_kb) put(*rss_kb, address_);
    return *this;
  }
  ProfileWriter& raw(const Bytes& data) {
    bytes_.insert(bytes_.end(), data.begin(), data.end());
    return *this;
  }
  ProfileWriter& raw_text(const std::string& data) {
    text(data);
    return *this;
  }

  std::uint64_t size() const { return bytes_.size(); }
  const Bytes& bytes() const { return bytes_; }

 private:
  ProfileWriter& time(std::uint8_t marker, std::int64_t seconds, std::int64_t microseconds) {
    bytes_.push_back(marker);
    put(static_cast<std::uint64_t>(seconds), 8);
    put(static_cast<std::uint64_t>(microseconds), 8);
    put(0, 8);  // zone
    return *this;
  }
  ProfileWriter& named(std::uint8_t marker, std::uint64_t id, const std::string& name) {
    bytes_.push_back(marker);
    put(id, address_);
    put(name.size(), word_);
    text(name);
    return *this;
  }
  void put(std::uint64_t value, unsigned width) {
    for (unsigned i = 0; i < width; ++i) bytes_.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
  }
  void text(const std::string& data) { bytes_.insert(bytes_.end(), data.begin(), data.end()); }

  unsigned word_;
  unsigned address_;
  Bytes bytes_;
};

constexpr std::uint8_t kRpython = 0x08;
constexpr std::uint8_t kMemory = 0x01;
constexpr std::uint64_t kInterp = 1, kJitted = 3, kAsm = 6, kNative = 7;

// What PyPy 7.3.11 writes at enable().
ProfileWriter pypy_profile(std::uint8_t flags = kRpython, std::uint64_t period = 500) {
  ProfileWriter out;
  out.static_header(period).header(6, flags, "pypy").start_time(1700000000, 250000).meta("os", "linux").meta("bits", "64");
  return out;
}

vmp::Profile parse(const ProfileWriter& writer) { return vmp::parse_profile(writer.bytes()); }

std::vector<std::pair<FrameKind, std::uint64_t>> frames_of(const vmp::Profile& profile, const vmp::Sample& sample) {
  std::vector<std::pair<FrameKind, std::uint64_t>> out;
  for (const auto& frame : profile.stack(sample)) out.emplace_back(frame.kind, frame.value);
  return out;
}

std::string describe(const vmp::Profile& profile) {
  std::ostringstream out;
  if (profile.error) out << "error at " << profile.error->offset << ": " << profile.error->message << "\n";
  for (const auto& warning : profile.warnings) out << "warning at " << warning.offset << ": " << warning.message << "\n";
  return out.str();
}

void expect_clean(const vmp::Profile& profile) {
  EXPECT_FALSE(profile.error) << describe(profile);
  EXPECT_TRUE(profile.warnings.empty()) << describe(profile);
}

// ---------------------------------------------------------------------------
// Hand-built streams

TEST(VmprofRecords, ReadsEveryRecordTypeOfAPyPyProfile) {
  auto out = pypy_profile();
  out.virtual_ip(8, "py:f:10:/tmp/a.py").virtual_ip(12, "py:<module>:1:/tmp/a.py");
  const auto first_sample = out.size();
  out.stack({kInterp, 8, kInterp, 12});
  out.native_symbol(0x4001, "n:malloc:0:/lib/libc.so.6");
  const auto second_sample = out.size();
  out.stack({kNative, 0x4001, kAsm, 0x7f0000001000, kJitted, 8, kInterp, 8, kInterp, 12}, 0, std::nullopt, 1);
  out.trailer(1700000002, 750000);

  const auto profile = parse(out);
  expect_clean(profile);
  EXPECT_EQ(profile.header.word_size, 8u);
  EXPECT_EQ(profile.header.address_size, 8u);
  EXPECT_FALSE(profile.header.win64);
  EXPECT_EQ(profile.header.period_usec, 500u);
  EXPECT_EQ(profile.header.version, 6);
  EXPECT_EQ(profile.header.flags, kRpython);
  EXPECT_TRUE(profile.header.is_rpython());
  EXPECT_FALSE(profile.header.profiles_memory());
  EXPECT_EQ(profile.header.interpreter, "pypy");
  ASSERT_TRUE(profile.start_time);
  EXPECT_EQ(profile.start_time->seconds, 1700000000);
  EXPECT_EQ(profile.start_time->microseconds, 250000);
  ASSERT_TRUE(profile.end_time);
  EXPECT_EQ(profile.end_time->seconds, 1700000002);
  EXPECT_EQ(profile.end_time->microseconds, 750000);
  EXPECT_TRUE(profile.has_trailer);
  EXPECT_EQ(profile.bytes_read, out.size());
  using Meta = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(profile.meta, (Meta{{"os", "linux"}, {"bits", "64"}}));

  ASSERT_EQ(profile.samples.size(), 2u);
  const auto& first = profile.samples[0];
  EXPECT_EQ(first.file_offset, first_sample);
  EXPECT_EQ(first.count, 1u);
  EXPECT_EQ(first.thread_id, 0u);
  EXPECT_FALSE(first.rss_kb);
  using Frames = std::vector<std::pair<FrameKind, std::uint64_t>>;
  EXPECT_EQ(frames_of(profile, first), (Frames{{FrameKind::Interpreted, 8}, {FrameKind::Interpreted, 12}}));
  const auto& second = profile.samples[1];
  EXPECT_EQ(second.file_offset, second_sample);
  EXPECT_EQ(frames_of(profile, second),
            (Frames{{FrameKind::Native, 0x4001},
                    {FrameKind::Assembler, 0x7f0000001000},
                    {FrameKind::Jitted, 8},
                    {FrameKind::Interpreted, 8},
                    {FrameKind::Interpreted, 12}}));

  ASSERT_EQ(profile.code_names.size(), 2u);
  const auto* f = profile.code_name(8);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->raw, "py:f:10:/tmp/a.py");
  EXPECT_EQ(f->kind, "py");
  EXPECT_EQ(f->function, "f");
  EXPECT_EQ(f->line, 10);
  EXPECT_EQ(f->file, "/tmp/a.py");
  EXPECT_EQ(profile.code_name(12)->function, "<module>");
  EXPECT_EQ(profile.code_name(16), nullptr);

  ASSERT_EQ(profile.native_symbols.count(0x4001), 1u);
  EXPECT_EQ(profile.native_symbols.at(0x4001).function, "malloc");
  EXPECT_EQ(profile.native_symbols.at(0x4001).kind, "n");
  const auto* malloc = profile.code_name(0x4001);
  ASSERT_NE(malloc, nullptr) << "code_name falls back to native symbols";
  EXPECT_EQ(malloc->file, "/lib/libc.so.6");
}

TEST(VmprofRecords, MemoryFlagAddsAnRssWordToEveryStack) {
  auto out = pypy_profile(kRpython | kMemory | 0x04);
  out.stack({kInterp, 8}, 0, 51234);
  out.stack({kInterp, 8, kInterp, 12}, 0, 60001);
  out.trailer(1700000001, 0);
  const auto profile = parse(out);
  expect_clean(profile);
  EXPECT_TRUE(profile.header.profiles_memory());
  EXPECT_TRUE(profile.header.profiles_native());
  ASSERT_EQ(profile.samples.size(), 2u);
  EXPECT_EQ(profile.samples[0].rss_kb, 51234u);
  EXPECT_EQ(profile.samples[1].rss_kb, 60001u);
  EXPECT_EQ(profile.samples[1].depth, 2u);
  EXPECT_EQ(profile.stack(profile.samples[1])[1].value, 12u);
}

TEST(VmprofRecords, ThirtyTwoBitProfileUsesFourByteWords) {
  ProfileWriter out(4, 4);
  out.static_header(1000).header(6, kRpython, "pypy").start_time(1, 2).meta("bits", "32");
  out.virtual_ip(0x10, "py:h:3:/x.py");
  const auto sample_offset = out.size();
  out.stack({kInterp, 0x10, kNative, 0xfffffff1}, 0x1234, std::nullopt, 1);
  out.trailer(3, 4);
  const auto profile = parse(out);
  expect_clean(profile);
  EXPECT_EQ(profile.header.word_size, 4u);
  EXPECT_EQ(profile.header.address_size, 4u);
  EXPECT_FALSE(profile.header.win64);
  EXPECT_EQ(profile.header.period_usec, 1000u);
  EXPECT_EQ(profile.meta.at(0).second, "32");
  ASSERT_EQ(profile.samples.size(), 1u);
  EXPECT_EQ(profile.samples[0].file_offset, sample_offset);
  EXPECT_EQ(profile.samples[0].thread_id, 0x1234u);
  using Frames = std::vector<std::pair<FrameKind, std::uint64_t>>;
  EXPECT_EQ(frames_of(profile, profile.samples[0]),
            (Frames{{FrameKind::Interpreted, 0x10}, {FrameKind::Native, 0xfffffff1}}));
  EXPECT_EQ(profile.code_name(0x10)->function, "h");
  EXPECT_TRUE(profile.has_trailer);
}

TEST(VmprofRecords, Win64ProfileHasFourByteLongsAndEightByteAddresses) {
  ProfileWriter out(4, 8);
  out.static_header(990, 1).header(6, 0, "cpython").start_time(1, 2).meta("os", "win64");
  out.virtual_ip(0x00007ff612345670, "py:main:1:C:\\app\\main.py");
  out.stack({0x00007ff612345670, 0x00007ff6aaaa0001}, 0x000001d2c0ffee00);
  out.trailer(3, 4);
  const auto profile = parse(out);
  expect_clean(profile);
  EXPECT_TRUE(profile.header.win64);
  EXPECT_EQ(profile.header.word_size, 4u);
  EXPECT_EQ(profile.header.address_size, 8u);
  EXPECT_EQ(profile.header.period_usec, 990u);
  ASSERT_EQ(profile.samples.size(), 1u);
  EXPECT_EQ(profile.samples[0].thread_id, 0x000001d2c0ffee00u);
  using Frames = std::vector<std::pair<FrameKind, std::uint64_t>>;
  EXPECT_EQ(frames_of(profile, profile.samples[0]),
            (Frames{{FrameKind::Interpreted, 0x00007ff612345670}, {FrameKind::Native, 0x00007ff6aaaa0001}}));
  const auto* main = profile.code_name(0x00007ff612345670);
  ASSERT_NE(main, nullptr);
  EXPECT_EQ(main->function, "main");
  EXPECT_EQ(main->file, "C:\\app\\main.py") << "the file part keeps its colon";
}

TEST(VmprofRecords, CPythonProfileHasOneWordPerFrame) {
  ProfileWriter out;
  out.static_header(990).header(6, 0x04, "cpython").start_time(1, 2);
  const std::uint64_t code = 0x7f00deadbe00, native = 0x55550000abc1;
  out.stack({native, code, static_cast<std::uint64_t>(-42), 0}, 0x7f0011112222);
  out.virtual_ip(code, "py:work:7:/srv/app.py");
  const auto profile = parse(out);
  expect_clean(profile);
  EXPECT_FALSE(profile.header.is_rpython());
  ASSERT_EQ(profile.samples.size(), 1u);
  EXPECT_EQ(profile.samples[0].thread_id, 0x7f0011112222u) << "CPython records its thread state";
  using Frames = std::vector<std::pair<FrameKind, std::uint64_t>>;
  EXPECT_EQ(frames_of(profile, profile.samples[0]),
            (Frames{{FrameKind::Native, native},
                    {FrameKind::Interpreted, code},
                    {FrameKind::Line, 42},
                    {FrameKind::Line, 0}}));
  EXPECT_FALSE(profile.has_trailer);
}

TEST(VmprofRecords, CPythonLineModeStacksAreLineAndCodePairs) {
  ProfileWriter out;
  out.static_header(990).header(6, 0x02 | 0x04, "cpython");
  const std::uint64_t code = 0x7f00deadbe00, outer = 0x7f00deadbf00, native = 0x55550000abc1;
  // vmprof-python's writer: (line, uid) per Python frame, (0, address|1) per native frame.
  out.stack({0, native, 17, code, 3, outer}, 0x99);
  const auto profile = parse(out);
  expect_clean(profile);
  ASSERT_EQ(profile.samples.size(), 1u);
  using Frames = std::vector<std::pair<FrameKind, std::uint64_t>>;
  EXPECT_EQ(frames_of(profile, profile.samples[0]),
            (Frames{{FrameKind::Line, 0},
                    {FrameKind::Native, native},
                    {FrameKind::Line, 17},
                    {FrameKind::Interpreted, code},
                    {FrameKind::Line, 3},
                    {FrameKind::Interpreted, outer}}));
}

TEST(VmprofRecords, OldVersionsDeriveTheModeFromVersionAndName) {
  // Version 3 had no mode byte; it meant memory profiling, and "pypy" meant pairs.
  ProfileWriter v3;
  v3.static_header(1000).header(3, 0, "pypy");
  v3.stack({kInterp, 8}, 0, 777);
  v3.bare_trailer();
  const auto profile = parse(v3);
  expect_clean(profile);
  EXPECT_EQ(profile.header.version, 3);
  EXPECT_TRUE(profile.header.is_rpython());
  EXPECT_TRUE(profile.header.profiles_memory());
  ASSERT_EQ(profile.samples.size(), 1u);
  EXPECT_EQ(profile.samples[0].rss_kb, 777u);
  EXPECT_TRUE(profile.has_trailer);
  EXPECT_FALSE(profile.end_time) << "trailers before version 5 carry no time";

  // The 2015 format: no header record (version 0), no thread ids.
  ProfileWriter v0;
  v0.static_header(1000).interp_name("cpython");
  v0.stack({0x1000, 0x2001}, std::nullopt);
  v0.stack({0x1000}, std::nullopt);
  const auto old = parse(v0);
  expect_clean(old);
  EXPECT_EQ(old.header.version, 0);
  EXPECT_EQ(old.header.interpreter, "cpython");
  ASSERT_EQ(old.samples.size(), 2u);
  EXPECT_EQ(old.samples[0].depth, 2u);
  EXPECT_EQ(old.samples[1].depth, 1u);
  EXPECT_EQ(old.stack(old.samples[1])[0].value, 0x1000u);
}

TEST(VmprofRecords, NamesMayComeAfterTheSamplesThatUseThem) {
  auto out = pypy_profile();
  out.stack({kInterp, 100, kInterp, 104});
  out.stack({kInterp, 100});
  out.virtual_ip(100, "py:late:5:/x.py").virtual_ip(104, "py:<module>:1:/x.py");
  out.trailer(1700000001, 0);
  const auto profile = parse(out);
  expect_clean(profile);
  ASSERT_EQ(profile.samples.size(), 2u);
  for (const auto& sample : profile.samples) {
    const auto* leaf = profile.code_name(profile.stack(sample)[0].value);
    ASSERT_NE(leaf, nullptr);
    EXPECT_EQ(leaf->function, "late");
  }
}

TEST(VmprofRecords, ALaterNameForTheSameUidWins) {
  auto out = pypy_profile();
  out.virtual_ip(8, "py:first:1:/x.py");
  out.stack({kInterp, 8});
  out.virtual_ip(8, "py:second:2:/x.py");
  const auto profile = parse(out);
  expect_clean(profile);
  EXPECT_EQ(profile.code_name(8)->function, "second");
  EXPECT_EQ(profile.code_names.size(), 1u);
}

TEST(VmprofRecords, ContinuesWithASecondProfileAfterATrailer) {
  auto out = pypy_profile(kRpython, 500);
  out.stack({kInterp, 8}).stack({kInterp, 12});
  out.trailer(1700000001, 100);
  // vmprof enabled again on the same file, now with memory profiling.
  out.static_header(1000).header(6, kRpython | kMemory, "pypy").start_time(1700000005, 0);
  out.meta("os", "linux").meta("bits", "64");
  const auto third = out.size();
  out.stack({kInterp, 16}, 0, 4242);
  out.trailer(1700000009, 900);
  const auto profile = parse(out);
  expect_clean(profile);
  ASSERT_EQ(profile.samples.size(), 3u);
  EXPECT_FALSE(profile.samples[1].rss_kb);
  EXPECT_EQ(profile.samples[2].rss_kb, 4242u);
  EXPECT_EQ(profile.samples[2].file_offset, third);
  EXPECT_EQ(profile.header.period_usec, 1000u) << "the header of the last profile";
  EXPECT_EQ(profile.start_time->seconds, 1700000000) << "the start of the first profile";
  EXPECT_EQ(profile.end_time->seconds, 1700000009) << "the end of the last profile";
  EXPECT_EQ(profile.meta.size(), 4u);
  EXPECT_TRUE(profile.has_trailer);

  // The second profile may have been cut off before its trailer.
  auto unfinished = pypy_profile();
  unfinished.stack({kInterp, 8}).trailer(1700000001, 100);
  unfinished.static_header(500).header(6, kRpython, "pypy").stack({kInterp, 8});
  const auto cut = parse(unfinished);
  expect_clean(cut);
  EXPECT_EQ(cut.samples.size(), 2u);
  EXPECT_FALSE(cut.has_trailer);
}

TEST(VmprofRecords, GarbageAfterTheTrailerIsIgnoredWithAWarning) {
  auto out = pypy_profile();
  out.stack({kInterp, 8});
  out.trailer(1700000001, 0);
  const auto trailer_end = out.size();
  out.raw_text("garbage after it");
  const auto profile = parse(out);
  EXPECT_FALSE(profile.error) << describe(profile);
  ASSERT_EQ(profile.warnings.size(), 1u) << describe(profile);
  EXPECT_EQ(profile.warnings[0].offset, trailer_end);
  EXPECT_NE(profile.warnings[0].message.find("ignored 16 bytes"), std::string::npos) << profile.warnings[0].message;
  EXPECT_NE(profile.warnings[0].message.find(std::to_string(trailer_end)), std::string::npos);
  EXPECT_EQ(profile.samples.size(), 1u);
  EXPECT_TRUE(profile.has_trailer);
  EXPECT_EQ(profile.bytes_read, out.size());

  // Fed byte by byte, the count still covers every ignored byte.
  vmp::ProfileReader reader;
  for (std::uint8_t byte : out.bytes()) EXPECT_TRUE(reader.feed(std::span(&byte, 1)));
  const auto fed = reader.finish();
  ASSERT_EQ(fed.warnings.size(), 1u) << describe(fed);
  EXPECT_EQ(fed.warnings[0].offset, trailer_end);
  EXPECT_EQ(fed.warnings[0].message, profile.warnings[0].message);

  // Bytes that start like a static header but are not one.
  auto almost = pypy_profile();
  almost.trailer(1, 0);
  const auto almost_end = almost.size();
  almost.raw({0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 9});
  const auto rejected = parse(almost);
  ASSERT_EQ(rejected.warnings.size(), 1u) << describe(rejected);
  EXPECT_EQ(rejected.warnings[0].offset, almost_end);
  EXPECT_NE(rejected.warnings[0].message.find("ignored 17 bytes"), std::string::npos);
}

TEST(VmprofRecords, UnknownMarkerStopsReadingAndKeepsWhatCameBefore) {
  auto out = pypy_profile();
  out.virtual_ip(8, "py:f:1:/x.py");
  out.stack({kInterp, 8}).stack({kInterp, 8, kInterp, 8});
  const auto bad = out.size();
  out.raw({0x42});
  out.stack({kInterp, 8});
  out.trailer(1700000001, 0);
  vmp::ProfileReader reader;
  EXPECT_FALSE(reader.feed(out.bytes()));
  EXPECT_FALSE(reader.feed(Bytes{1, 2, 3})) << "a stopped reader stays stopped";
  const auto profile = reader.finish();
  ASSERT_TRUE(profile.error);
  EXPECT_EQ(profile.error->offset, bad);
  EXPECT_EQ(profile.error->message, "unknown marker 0x42");
  EXPECT_EQ(profile.samples.size(), 2u);
  EXPECT_EQ(profile.code_name(8)->function, "f");
  EXPECT_FALSE(profile.has_trailer);
  EXPECT_TRUE(profile.warnings.empty()) << "the rest is not reported as truncated";
}

TEST(VmprofRecords, OddDepthInAnRPythonProfileIsAnError) {
  auto out = pypy_profile();
  out.stack({kInterp, 8});
  const auto bad = out.size();
  out.stack({kInterp, 8, kInterp});
  const auto profile = parse(out);
  ASSERT_TRUE(profile.error);
  EXPECT_EQ(profile.error->offset, bad + 1 + 8) << "the offset of the depth field";
  EXPECT_NE(profile.error->message.find("odd stack depth 3"), std::string::npos) << profile.error->message;
  EXPECT_EQ(profile.samples.size(), 1u);
}

TEST(VmprofRecords, AbsurdDepthIsAnErrorWithoutWaitingForTheData) {
  for (std::uint64_t depth : {std::uint64_t{1} << 40, (std::uint64_t{1} << 20) + 2, static_cast<std::uint64_t>(-2)}) {
    auto out = pypy_profile();
    const auto bad = out.size();
    out.stack_with_depth(depth, {kInterp, 8});
    vmp::ProfileReader reader;
    EXPECT_FALSE(reader.feed(out.bytes())) << "depth " << depth;
    const auto profile = reader.finish();
    ASSERT_TRUE(profile.error) << depth;
    EXPECT_EQ(profile.error->offset, bad + 1 + 8);
    EXPECT_NE(profile.error->message.find("out of range"), std::string::npos) << profile.error->message;
    EXPECT_TRUE(profile.samples.empty());
  }
  // The largest allowed depth is merely incomplete here.
  auto out = pypy_profile();
  const auto record = out.size();
  out.stack_with_depth(std::uint64_t{1} << 20, {kInterp, 8});
  const auto profile = parse(out);
  EXPECT_FALSE(profile.error) << describe(profile);
  ASSERT_EQ(profile.warnings.size(), 1u);
  EXPECT_EQ(profile.warnings[0].offset, record);
}

TEST(VmprofRecords, UnknownKindIsAnErrorAtItsWord) {
  for (std::uint64_t kind : {0, 8, 100}) {
    auto out = pypy_profile();
    out.stack({kInterp, 8});
    const auto bad = out.size();
    out.stack({kInterp, 8, kind, 123, kInterp, 12});
    const auto profile = parse(out);
    ASSERT_TRUE(profile.error) << kind;
    EXPECT_EQ(profile.error->offset, bad + 1 + 8 + 8 + 2 * 8) << "the offset of the kind word";
    EXPECT_EQ(profile.error->message, "unknown stack entry kind " + std::to_string(kind));
    ASSERT_EQ(profile.samples.size(), 1u);
    EXPECT_EQ(profile.frames.size(), 1u) << "frames of the bad record are dropped";
  }
}

TEST(VmprofRecords, NegativeCountAndAbsurdNameLengthsAreErrors) {
  auto negative = pypy_profile();
  const auto record = negative.size();
  negative.stack({kInterp, 8}, 0, std::nullopt, static_cast<std::uint64_t>(-1));
  const auto count_error = parse(negative);
  ASSERT_TRUE(count_error.error);
  EXPECT_EQ(count_error.error->offset, record + 1);

  auto name = pypy_profile();
  const auto name_record = name.size();
  name.raw({0x02, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40});  // length 1 << 62
  const auto name_error = parse(name);
  ASSERT_TRUE(name_error.error);
  EXPECT_EQ(name_error.error->offset, name_record + 1 + 8);
  EXPECT_NE(name_error.error->message.find("out of range"), std::string::npos);

  auto meta = pypy_profile();
  const auto meta_record = meta.size();
  meta.raw({0x07, 2, 0, 0, 0, 0, 0, 0, 0, 'o', 's', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff});  // length -1
  const auto meta_error = parse(meta);
  ASSERT_TRUE(meta_error.error);
  EXPECT_EQ(meta_error.error->offset, meta_record + 1 + 8 + 2);
}

TEST(VmprofRecords, RejectsFutureVersionsAndNonProfiles) {
  ProfileWriter future;
  future.static_header(500).header(7, kRpython, "pypy");
  const auto profile = parse(future);
  ASSERT_TRUE(profile.error);
  EXPECT_EQ(profile.error->offset, 41u) << "the version field after the 40-byte static header and the marker";
  EXPECT_NE(profile.error->message.find("version 7"), std::string::npos);

  const std::string text = "this is a text file, not a profile at all";
  const auto not_profile = vmp::parse_profile(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
  ASSERT_TRUE(not_profile.error);
  EXPECT_EQ(not_profile.error->offset, 0u);

  const auto empty = vmp::parse_profile({});
  ASSERT_TRUE(empty.error);
  EXPECT_EQ(empty.error->offset, 0u);

  ProfileWriter header_only;
  header_only.static_header(500);
  const Bytes short_input(header_only.bytes().begin(), header_only.bytes().begin() + 30);
  const auto too_short = vmp::parse_profile(short_input);
  ASSERT_TRUE(too_short.error) << "a file shorter than the static header is not a profile";
  EXPECT_NE(too_short.error->message.find("30 bytes"), std::string::npos) << too_short.error->message;

  const auto bare = parse(header_only);
  EXPECT_FALSE(bare.error) << "exactly a static header is an empty profile";
  EXPECT_TRUE(bare.samples.empty());
  EXPECT_EQ(bare.header.period_usec, 500u);
}

TEST(VmprofRecords, TruncatedRecordIsAWarningAndEarlierDataIsKept) {
  auto out = pypy_profile();
  out.stack({kInterp, 8});
  const auto cut_record = out.size();
  out.stack({kInterp, 8, kInterp, 12});
  const Bytes prefix(out.bytes().begin(), out.bytes().end() - 5);
  const auto profile = vmp::parse_profile(prefix);
  EXPECT_FALSE(profile.error);
  ASSERT_EQ(profile.warnings.size(), 1u);
  EXPECT_EQ(profile.warnings[0].offset, cut_record);
  EXPECT_EQ(profile.warnings[0].message, "truncated: incomplete stack trace record at byte offset " +
                                             std::to_string(cut_record) + " (" +
                                             std::to_string(prefix.size() - cut_record) + " bytes)");
  EXPECT_EQ(profile.samples.size(), 1u);
  EXPECT_FALSE(profile.has_trailer);
}

TEST(VmprofRecords, ReaderIsMovableAndShowsProgress) {
  auto out = pypy_profile();
  out.stack({kInterp, 8});
  vmp::ProfileReader reader;
  EXPECT_TRUE(reader.feed(out.bytes()));
  EXPECT_EQ(reader.current().samples.size(), 1u);
  vmp::ProfileReader moved = std::move(reader);
  EXPECT_EQ(moved.current().samples.size(), 1u);
  const auto profile = moved.finish();
  EXPECT_EQ(profile.samples.size(), 1u);
  EXPECT_TRUE(moved.current().samples.empty()) << "finish starts afresh";
}

TEST(VmprofRecords, ParsesAMillionSamplesQuickly) {
  constexpr std::size_t kSamples = 1'000'000;
  auto out = pypy_profile(kRpython | kMemory);
  for (std::size_t i = 0; i < kSamples; ++i) out.stack({kAsm, 0x7f0000001000 + i % 4, kJitted, 8, kInterp, 12}, 0, i);
  out.trailer(1700000100, 0);
  const auto start = std::chrono::steady_clock::now();
  const auto profile = parse(out);
  const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  RecordProperty("seconds", std::to_string(elapsed));
  expect_clean(profile);
  ASSERT_EQ(profile.samples.size(), kSamples);
  EXPECT_EQ(profile.frames.size(), 3 * kSamples);
  EXPECT_EQ(profile.samples.back().rss_kb, kSamples - 1);
  EXPECT_EQ(profile.stack(profile.samples[kSamples - 2])[0].value, 0x7f0000001000u + (kSamples - 2) % 4);
}

TEST(VmprofCodeNames, SplitsAtTheFirstThreeColons) {
  auto name = vmp::parse_code_name("py:f:10:/work/a.py");
  EXPECT_EQ(name.kind, "py");
  EXPECT_EQ(name.function, "f");
  EXPECT_EQ(name.line, 10);
  EXPECT_EQ(name.file, "/work/a.py");
  EXPECT_EQ(name.raw, "py:f:10:/work/a.py");

  name = vmp::parse_code_name("py:<module>:1:<builtin>/app_main.py");
  EXPECT_EQ(name.function, "<module>");
  EXPECT_EQ(name.file, "<builtin>/app_main.py");

  name = vmp::parse_code_name("py:f\xc3\xbcnf:4:scratch/a;b/t10.py");
  EXPECT_EQ(name.function, "f\xc3\xbcnf");
  EXPECT_EQ(name.file, "scratch/a;b/t10.py");

  name = vmp::parse_code_name("n:<native symbol 0x7f00>:0:-");
  EXPECT_EQ(name.kind, "n");
  EXPECT_EQ(name.function, "<native symbol 0x7f00>");
  EXPECT_EQ(name.line, 0);
  EXPECT_EQ(name.file, "-");

  name = vmp::parse_code_name("py:main:3:C:\\x:y.py");
  EXPECT_EQ(name.function, "main");
  EXPECT_EQ(name.line, 3);
  EXPECT_EQ(name.file, "C:\\x:y.py");

  name = vmp::parse_code_name("py:f:12:");
  EXPECT_EQ(name.kind, "py");
  EXPECT_EQ(name.file, "");
}

TEST(VmprofCodeNames, KeepsUnstructuredNamesRaw) {
  for (const std::string raw : {"", "plain", "py:f:10", "py:f:ten:/a.py", "py:f::/a.py", ":f:1:/a.py", "py:f:1x:/a.py"}) {
    const auto name = vmp::parse_code_name(raw);
    EXPECT_EQ(name.raw, raw);
    EXPECT_EQ(name.kind, "") << raw;
    EXPECT_EQ(name.function, "") << raw;
    EXPECT_EQ(name.line, 0) << raw;
  }
}

TEST(VmprofCodeNames, FrameKindNames) {
  EXPECT_STREQ(vmp::frame_kind_name(FrameKind::Interpreted), "interpreted");
  EXPECT_STREQ(vmp::frame_kind_name(FrameKind::Jitted), "jitted");
  EXPECT_STREQ(vmp::frame_kind_name(FrameKind::Assembler), "assembler");
  EXPECT_STREQ(vmp::frame_kind_name(FrameKind::Native), "native");
  EXPECT_STREQ(vmp::frame_kind_name(FrameKind::Line), "line");
  EXPECT_STREQ(vmp::frame_kind_name(FrameKind::Gc), "gc");
}

// ---------------------------------------------------------------------------
// Real PyPy 7.3.11 fixtures (scripts/make-fixtures)

Bytes fixture_bytes(const std::string& name) {
  Bytes data;
  jitprof::binio::read_file_chunks(kFixtures / name, [&](std::span<const std::uint8_t> chunk) {
    data.insert(data.end(), chunk.begin(), chunk.end());
  });
  return data;
}

// The line of `def name(` in a test program: the first line vmprof names.
int def_line(const std::string& program, const std::string& function) {
  std::ifstream in(kPrograms / program);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number)
    if (line.rfind("def " + function + "(", 0) == 0) return number;
  ADD_FAILURE() << "no def " << function << " in " << program;
  return -1;
}

// JIT blocks from PyPy's own PYPYLOG jit-backend-addr: gc table address -> description.
std::map<std::uint64_t, std::string> pypylog_blocks(const std::string& name) {
  std::ifstream in(kFixtures / name);
  std::map<std::uint64_t, std::string> blocks;
  std::string line, block;
  const std::string gc_table = "gc table: 0x";
  while (std::getline(in, line)) {
    if (line.rfind("Loop ", 0) == 0 || line.rfind("bridge out of", 0) == 0) block = line;
    const auto at = line.find(gc_table);
    if (at != std::string::npos && line.find_first_not_of(' ') == at)
      blocks[std::stoull(line.substr(at + gc_table.size()), nullptr, 16)] = block;
  }
  return blocks;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// uid of `function` defined in `program`, found through the code names.
std::uint64_t uid_of(const vmp::Profile& profile, const std::string& program, const std::string& function) {
  std::vector<std::uint64_t> uids;
  for (const auto& [uid, name] : profile.code_names)
    if (name.kind == "py" && name.function == function && ends_with(name.file, "tests/programs/" + program))
      uids.push_back(uid);
  EXPECT_EQ(uids.size(), 1u) << function << " in " << program;
  return uids.empty() ? 0 : uids[0];
}

// The innermost Python-level frame (interpreted or JIT-compiled) of a sample.
const vmp::Frame* innermost_python_frame(const vmp::Profile& profile, const vmp::Sample& sample) {
  for (const auto& frame : profile.stack(sample))
    if (frame.kind == FrameKind::Interpreted || frame.kind == FrameKind::Jitted) return &frame;
  return nullptr;
}

void expect_pypy_header(const vmp::Profile& profile, std::uint8_t flags) {
  expect_clean(profile);
  EXPECT_EQ(profile.header.word_size, 8u);
  EXPECT_EQ(profile.header.address_size, 8u);
  EXPECT_FALSE(profile.header.win64);
  EXPECT_EQ(profile.header.period_usec, 500u) << "make-fixtures runs with --period 0.0005";
  EXPECT_EQ(profile.header.version, 6);
  EXPECT_EQ(profile.header.flags, flags);
  EXPECT_EQ(profile.header.interpreter, "pypy");
  using Meta = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(profile.meta, (Meta{{"os", "linux"}, {"bits", "64"}}));
  EXPECT_TRUE(profile.has_trailer);
  ASSERT_TRUE(profile.start_time);
  ASSERT_TRUE(profile.end_time);
  EXPECT_GT(profile.start_time->seconds, 1600000000) << "a real wall-clock time";
  const auto start_us = profile.start_time->seconds * 1'000'000 + profile.start_time->microseconds;
  const auto end_us = profile.end_time->seconds * 1'000'000 + profile.end_time->microseconds;
  EXPECT_GT(end_us, start_us);
  EXPECT_FALSE(profile.samples.empty());
  for (const auto& sample : profile.samples) {
    EXPECT_EQ(sample.thread_id, 0u) << "PyPy records no thread";
    EXPECT_EQ(sample.count, 1u);
    EXPECT_GT(sample.depth, 0u) << "PyPy drops empty samples";
  }
}

// Every (6, X) of vmprof is the start of a JIT block, which PYPYLOG prints as "gc table: X".
std::size_t expect_assembler_frames_are_jit_blocks(const vmp::Profile& profile, const std::string& pypylog) {
  const auto blocks = pypylog_blocks(pypylog);
  EXPECT_FALSE(blocks.empty());
  std::size_t assembler_frames = 0;
  for (const auto& sample : profile.samples) {
    const auto stack = profile.stack(sample);
    for (std::size_t i = 0; i < stack.size(); ++i) {
      if (stack[i].kind != FrameKind::Assembler) continue;
      ++assembler_frames;
      EXPECT_EQ(blocks.count(stack[i].value), 1u) << std::hex << "0x" << stack[i].value << " is no JIT block";
      // The block header is followed by the code objects running in it.
      EXPECT_LT(i + 1, stack.size());
      if (i + 1 < stack.size()) {
        EXPECT_EQ(stack[i + 1].kind, FrameKind::Jitted);
      }
    }
  }
  return assembler_frames;
}

TEST(VmprofFixtures, HotLoop) {
  const auto profile = vmp::read_profile(kFixtures / "hotloop.prof.gz");
  expect_pypy_header(profile, 0x08);
  for (const auto& sample : profile.samples) EXPECT_FALSE(sample.rss_kb);

  const auto f = uid_of(profile, "hotloop.py", "f");
  const auto g = uid_of(profile, "hotloop.py", "g");
  const auto main = uid_of(profile, "hotloop.py", "main");
  EXPECT_EQ(profile.code_name(f)->line, def_line("hotloop.py", "f"));
  EXPECT_EQ(profile.code_name(g)->line, def_line("hotloop.py", "g"));
  EXPECT_EQ(profile.code_name(main)->line, def_line("hotloop.py", "main"));
  EXPECT_EQ(f % 4, 0u) << "PyPy code uids are multiples of 4";

  // f runs the hot loop: most samples are inside it (g is inlined or tiny).
  std::size_t in_f = 0;
  for (const auto& sample : profile.samples) {
    const auto* leaf = innermost_python_frame(profile, sample);
    ASSERT_NE(leaf, nullptr);
    if (leaf->value == f) ++in_f;
    // Every sample is under main(), which calls f.
    const auto stack = profile.stack(sample);
    EXPECT_TRUE(std::any_of(stack.begin(), stack.end(), [&](const vmp::Frame& frame) { return frame.value == main; }));
  }
  EXPECT_GT(in_f * 2, profile.samples.size()) << in_f << " of " << profile.samples.size();

  // Without native unwinding the JIT frame's return address is often stale and
  // may hit no block, so this file may have no (6, X) pairs; any it has are real.
  expect_assembler_frames_are_jit_blocks(profile, "hotloop.pypylog");
}

TEST(VmprofFixtures, HotLoopWithNativeAndMemory) {
  const auto profile = vmp::read_profile(kFixtures / "hotloop_native_mem.prof.gz");
  expect_pypy_header(profile, 0x0d);
  EXPECT_TRUE(profile.header.profiles_memory());
  EXPECT_TRUE(profile.header.profiles_native());
  for (const auto& sample : profile.samples) {
    ASSERT_TRUE(sample.rss_kb);
    EXPECT_GT(*sample.rss_kb, 10000u) << "PyPy's resident set is tens of MB";
  }
  // Native frames are function starts tagged with bit 0. (The NATIVE flag does
  // not promise any: without libunwind.so PyPy silently records none.)
  for (const auto& frame : profile.frames)
    if (frame.kind == FrameKind::Native) {
      EXPECT_EQ(frame.value & 1, 1u) << std::hex << frame.value;
    }

  EXPECT_GT(expect_assembler_frames_are_jit_blocks(profile, "hotloop_native_mem.pypylog"), 0u);

  // When the signal lands in the block of f's loop, the code running there is f.
  const auto f = uid_of(profile, "hotloop.py", "f");
  std::uint64_t f_loop = 0;
  for (const auto& [address, block] : pypylog_blocks("hotloop_native_mem.pypylog"))
    if (block.find("(f;") != std::string::npos && block.find("hotloop.py") != std::string::npos) f_loop = address;
  ASSERT_NE(f_loop, 0u) << "PYPYLOG names f's loop";
  std::size_t in_f_loop = 0;
  for (const auto& sample : profile.samples) {
    const auto stack = profile.stack(sample);
    for (std::size_t i = 0; i + 1 < stack.size(); ++i) {
      if (stack[i].kind != FrameKind::Assembler || stack[i].value != f_loop) continue;
      ++in_f_loop;
      EXPECT_EQ(stack[i + 1].value, f);
    }
  }
  EXPECT_GT(in_f_loop, 0u);

  std::size_t in_f = 0;
  for (const auto& sample : profile.samples) {
    const auto* leaf = innermost_python_frame(profile, sample);
    if (leaf && leaf->value == f) ++in_f;
  }
  EXPECT_GT(in_f * 2, profile.samples.size());
}

TEST(VmprofFixtures, Recursion) {
  const auto profile = vmp::read_profile(kFixtures / "recursion.prof.gz");
  expect_pypy_header(profile, 0x08);
  const auto fib = uid_of(profile, "recursion.py", "fib");
  EXPECT_EQ(profile.code_name(fib)->line, def_line("recursion.py", "fib"));
  EXPECT_EQ(profile.code_name(uid_of(profile, "recursion.py", "my_func_sum"))->line,
            def_line("recursion.py", "my_func_sum"));
  std::size_t with_fib = 0;
  for (const auto& sample : profile.samples) {
    const auto stack = profile.stack(sample);
    if (std::any_of(stack.begin(), stack.end(), [&](const vmp::Frame& frame) { return frame.value == fib; }))
      ++with_fib;
  }
  EXPECT_GT(with_fib, 0u);
  expect_assembler_frames_are_jit_blocks(profile, "recursion.pypylog");
}

TEST(VmprofFixtures, MissingFileIsAnInputError) {
  EXPECT_THROW(vmp::read_profile(kFixtures / "no-such.prof"), jitprof::binio::InputError);
}

// ---------------------------------------------------------------------------
// Robustness on real bytes

// Record start offsets of a 64-bit little-endian PyPy profile, walked
// independently of the reader from the layout in the format notes.
std::vector<std::uint64_t> record_boundaries(const Bytes& data) {
  auto word = [&](std::size_t at) {
    std::uint64_t value = 0;
    for (int i = 0; i < 8; ++i) value |= std::uint64_t{data.at(at + i)} << (8 * i);
    return value;
  };
  std::vector<std::uint64_t> starts = {0, 40};
  std::size_t at = 40;
  bool memory = false;
  while (at < data.size()) {
    switch (data[at]) {
      case 0x05: memory = data.at(at + 3) & 1; at += 5 + data.at(at + 4); break;
      case 0x03: case 0x06: at += 25; break;
      case 0x07: at += 9 + word(at + 1); at += 8 + word(at); break;
      case 0x02: case 0x08: at += 17 + word(at + 9); break;
      case 0x01: at += 17 + 8 * word(at + 9) + 8 + (memory ? 8 : 0); break;
      default: ADD_FAILURE() << "unexpected marker at " << at; return starts;
    }
    starts.push_back(at);
  }
  EXPECT_EQ(at, data.size());
  return starts;
}

bool same_sample(const vmp::Profile& a, const vmp::Sample& x, const vmp::Profile& b, const vmp::Sample& y) {
  if (x.file_offset != y.file_offset || x.depth != y.depth || x.count != y.count || x.thread_id != y.thread_id ||
      x.rss_kb != y.rss_kb)
    return false;
  const auto sx = a.stack(x), sy = b.stack(y);
  return std::equal(sx.begin(), sx.end(), sy.begin(),
                    [](const vmp::Frame& l, const vmp::Frame& r) { return l.kind == r.kind && l.value == r.value; });
}

void expect_same_profile(const vmp::Profile& a, const vmp::Profile& b) {
  EXPECT_EQ(a.header.word_size, b.header.word_size);
  EXPECT_EQ(a.header.address_size, b.header.address_size);
  EXPECT_EQ(a.header.period_usec, b.header.period_usec);
  EXPECT_EQ(a.header.version, b.header.version);
  EXPECT_EQ(a.header.flags, b.header.flags);
  EXPECT_EQ(a.header.interpreter, b.header.interpreter);
  EXPECT_EQ(a.start_time.has_value(), b.start_time.has_value());
  if (a.start_time && b.start_time) {
    EXPECT_EQ(a.start_time->microseconds, b.start_time->microseconds);
  }
  EXPECT_EQ(a.end_time.has_value(), b.end_time.has_value());
  EXPECT_EQ(a.meta, b.meta);
  EXPECT_EQ(a.has_trailer, b.has_trailer);
  EXPECT_EQ(a.bytes_read, b.bytes_read);
  ASSERT_EQ(a.samples.size(), b.samples.size());
  for (std::size_t i = 0; i < a.samples.size(); ++i)
    EXPECT_TRUE(same_sample(a, a.samples[i], b, b.samples[i])) << "sample " << i;
  ASSERT_EQ(a.code_names.size(), b.code_names.size());
  for (const auto& [uid, name] : a.code_names) {
    const auto* other = b.code_name(uid);
    ASSERT_NE(other, nullptr);
    EXPECT_EQ(other->raw, name.raw);
  }
  EXPECT_EQ(a.native_symbols.size(), b.native_symbols.size());
  EXPECT_EQ(describe(a), describe(b));
}

vmp::Profile parse_in_chunks(const Bytes& data, std::size_t chunk) {
  vmp::ProfileReader reader;
  for (std::size_t at = 0; at < data.size(); at += chunk)
    reader.feed(std::span(data).subspan(at, std::min(chunk, data.size() - at)));
  return reader.finish();
}

TEST(VmprofRobustness, EveryPrefixOfARealProfileKeepsTheCompleteRecords) {
  const Bytes data = fixture_bytes("hotloop_native_mem.prof.gz");
  const auto full = vmp::parse_profile(data);
  expect_clean(full);
  const auto boundaries = record_boundaries(data);
  const std::set<std::uint64_t> boundary_set(boundaries.begin(), boundaries.end());
  ASSERT_GT(full.samples.size(), 0u);

  std::vector<std::size_t> cuts;
  for (std::size_t cut = 0; cut < 2048; ++cut) cuts.push_back(cut);
  // Every byte of the first three stack records too, then a stride over the rest.
  const std::size_t samples_start = full.samples.front().file_offset;
  ASSERT_GE(full.samples.size(), 4u);
  for (std::size_t cut = samples_start - 64; cut <= full.samples[3].file_offset; ++cut) cuts.push_back(cut);
  for (std::size_t cut = 2048; cut < data.size(); cut += 211) cuts.push_back(cut);

  for (const std::size_t cut : cuts) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    const auto prefix = vmp::parse_profile(std::span(data).first(cut));
    EXPECT_EQ(prefix.bytes_read, cut);
    EXPECT_FALSE(prefix.has_trailer);
    if (cut < 40) {
      ASSERT_TRUE(prefix.error) << "shorter than the static header";
      EXPECT_EQ(prefix.error->offset, 0u);
      continue;
    }
    EXPECT_FALSE(prefix.error) << describe(prefix);
    const std::uint64_t last_boundary = *std::prev(boundary_set.upper_bound(cut));
    if (boundary_set.count(cut)) {
      EXPECT_TRUE(prefix.warnings.empty()) << describe(prefix);
    } else {
      ASSERT_EQ(prefix.warnings.size(), 1u) << describe(prefix);
      EXPECT_EQ(prefix.warnings[0].offset, last_boundary);
      EXPECT_EQ(prefix.warnings[0].message.rfind("truncated: incomplete ", 0), 0u) << prefix.warnings[0].message;
      EXPECT_NE(prefix.warnings[0].message.find("(" + std::to_string(cut - last_boundary) + " bytes)"),
                std::string::npos)
          << prefix.warnings[0].message;
    }
    // Exactly the samples whose records end before the cut, as in the full parse.
    const auto complete = static_cast<std::size_t>(
        std::count_if(full.samples.begin(), full.samples.end(),
                      [&](const vmp::Sample& sample) { return sample.file_offset < last_boundary; }));
    ASSERT_EQ(prefix.samples.size(), complete);
    for (std::size_t i = 0; i < complete; ++i)
      ASSERT_TRUE(same_sample(prefix, prefix.samples[i], full, full.samples[i])) << "sample " << i;
    for (const auto& [uid, name] : prefix.code_names) EXPECT_EQ(full.code_name(uid)->raw, name.raw);
  }
}

TEST(VmprofRobustness, FeedingInChunksGivesTheSameProfile) {
  for (const std::string name : {"hotloop_native_mem.prof.gz", "recursion.prof.gz"}) {
    SCOPED_TRACE(name);
    const Bytes data = fixture_bytes(name);
    const auto whole = vmp::parse_profile(data);
    expect_clean(whole);
    for (const std::size_t chunk : {1, 7, 4096}) {
      SCOPED_TRACE("chunk " + std::to_string(chunk));
      expect_same_profile(parse_in_chunks(data, chunk), whole);
    }
    expect_same_profile(vmp::read_profile(kFixtures / name), whole);
  }
  // Also with a truncated end and with trailing garbage.
  Bytes data = fixture_bytes("hotloop.prof.gz");
  const Bytes garbage = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
  Bytes with_garbage = data;
  with_garbage.insert(with_garbage.end(), garbage.begin(), garbage.end());
  data.resize(data.size() - 30);
  for (const Bytes& variant : {data, with_garbage}) {
    const auto whole = vmp::parse_profile(variant);
    EXPECT_EQ(whole.warnings.size(), 1u);
    for (const std::size_t chunk : {1, 7, 4096}) expect_same_profile(parse_in_chunks(variant, chunk), whole);
  }
}

TEST(VmprofRobustness, MutatedRealProfilesNeverCrashAndReportOffsetsInsideTheInput) {
  // A small real profile: header, start time, meta, a few samples, trailer.
  const Bytes data = fixture_bytes("hotloop_native_mem.prof.gz");
  const auto full = vmp::parse_profile(data);
  const auto boundaries = record_boundaries(data);
  const std::size_t preamble_end = boundaries[5];  // static header, header, time, meta, meta
  ASSERT_EQ(data[preamble_end], 0x02);
  Bytes seed(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(preamble_end));
  const auto first_sample = full.samples.front().file_offset;
  const auto after = *std::upper_bound(boundaries.begin(), boundaries.end(), full.samples[2].file_offset);
  seed.insert(seed.end(), data.begin() + static_cast<std::ptrdiff_t>(first_sample),
              data.begin() + static_cast<std::ptrdiff_t>(after));
  seed.insert(seed.end(), data.end() - 25, data.end());
  const auto clean = vmp::parse_profile(seed);
  expect_clean(clean);
  ASSERT_EQ(clean.samples.size(), 3u);

  std::mt19937 rng(20240611);
  std::size_t with_error = 0, with_warning = 0;
  for (int round = 0; round < 3000; ++round) {
    Bytes mutated = seed;
    const int mutations = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < mutations && !mutated.empty(); ++m) {
      const std::size_t at = rng() % mutated.size();
      switch (rng() % 5) {
        case 0: mutated[at] = static_cast<std::uint8_t>(rng()); break;
        case 1: mutated[at] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
        case 2: mutated.insert(mutated.begin() + static_cast<std::ptrdiff_t>(at), static_cast<std::uint8_t>(rng())); break;
        case 3: mutated.erase(mutated.begin() + static_cast<std::ptrdiff_t>(at)); break;
        case 4: mutated.resize(at); break;
      }
    }
    SCOPED_TRACE("round " + std::to_string(round));
    const auto profile = vmp::parse_profile(mutated);
    EXPECT_EQ(profile.bytes_read, mutated.size());
    if (profile.error) {
      ++with_error;
      EXPECT_LE(profile.error->offset, mutated.size());
      EXPECT_FALSE(profile.error->message.empty());
    }
    if (!profile.warnings.empty()) ++with_warning;
    for (const auto& warning : profile.warnings) EXPECT_LE(warning.offset, mutated.size());
    for (const auto& sample : profile.samples) {
      EXPECT_LT(sample.file_offset, mutated.size());
      EXPECT_LE(sample.first_frame + sample.depth, profile.frames.size());
    }
    if (round % 10 == 0) expect_same_profile(parse_in_chunks(mutated, 5), profile);
  }
  // The mutations really exercised the error paths.
  EXPECT_GT(with_error, 100u);
  EXPECT_GT(with_warning, 100u);
}

}  // namespace
