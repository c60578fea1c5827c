// The bundle container: frames round-trip, streams concatenate, and a file
// cut short or corrupted reads up to the damage with its offset named.
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "bundle/bundle.h"

namespace fs = std::filesystem;
using namespace jitprof;
using bundle::SectionType;

namespace {

constexpr SectionType kNotes = SectionType::from("NOTE");

std::vector<std::uint8_t> file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::vector<std::uint8_t> pattern(std::size_t size, std::uint32_t seed) {
  std::mt19937 random(seed);
  std::vector<std::uint8_t> bytes(size);
  // Half compressible text, half noise: exercises both frame encodings.
  for (std::size_t i = 0; i < size; ++i)
    bytes[i] = i < size / 2 ? static_cast<std::uint8_t>('a' + i % 7) : static_cast<std::uint8_t>(random());
  return bytes;
}

class BundleFile : public ::testing::Test {
 protected:
  fs::path path_ = fs::temp_directory_path() / ("bundle-test-" + std::to_string(::getpid()) + ".jprof");
  void TearDown() override { fs::remove(path_); }

  // Writes: manifest v1, jitlog part 1, a noise frame, jitlog part 2, manifest v2.
  std::vector<std::uint8_t> write_sample(const std::vector<std::uint8_t>& part1,
                                         const std::vector<std::uint8_t>& part2) {
    bundle::BundleWriter writer(path_);
    writer.append(bundle::sections::kManifest, std::string(R"({"state":"recording"})"));
    writer.append(bundle::sections::kJitlog, part1);
    writer.append(kNotes, pattern(3000, 7));
    writer.append(bundle::sections::kJitlog, part2);
    writer.append(bundle::sections::kManifest, std::string(R"({"state":"complete"})"));
    writer.sync();
    EXPECT_EQ(writer.bytes_written(), fs::file_size(path_));
    return file_bytes(path_);
  }
};

std::string text(const std::vector<std::uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }

TEST_F(BundleFile, StreamsConcatenateAndDocumentsUseTheirLatestFrame) {
  const auto part1 = pattern(100000, 1), part2 = pattern(5, 2);
  write_sample(part1, part2);
  const bundle::Bundle read = bundle::read_bundle(path_);
  ASSERT_FALSE(read.error) << read.error->message;
  EXPECT_TRUE(read.warnings.empty());
  EXPECT_EQ(read.version, bundle::kFormatVersion);
  ASSERT_EQ(read.frames.size(), 5u);
  auto jitlog = read.stream(bundle::sections::kJitlog);
  std::vector<std::uint8_t> expected = part1;
  expected.insert(expected.end(), part2.begin(), part2.end());
  EXPECT_EQ(jitlog, expected);
  EXPECT_EQ(text(read.latest(bundle::sections::kManifest)->data), R"({"state":"complete"})");
  EXPECT_EQ(read.stream(kNotes), pattern(3000, 7));
  EXPECT_FALSE(read.has(bundle::sections::kVmprof));
  EXPECT_EQ(kNotes.name(), "NOTE");
}

TEST_F(BundleFile, CompressibleDataIsStoredCompressed) {
  bundle::BundleWriter writer(path_);
  writer.append(bundle::sections::kJitlog, std::vector<std::uint8_t>(1 << 20, 'x'));
  EXPECT_LT(fs::file_size(path_), 20000u);
  const auto read = bundle::read_bundle(path_);
  EXPECT_EQ(read.stream(bundle::sections::kJitlog), std::vector<std::uint8_t>(1 << 20, 'x'));
}

TEST_F(BundleFile, TheJitlogIsOneStreamSoWhatRepeatsAcrossItsFramesIsStoredOnce) {
  // PyPy repeats itself across pipe reads; noise does not compress on its own.
  const auto noise = pattern(8192, 9);
  const std::vector<std::uint8_t> repeated(noise.begin() + 4096, noise.end());
  bundle::BundleWriter writer(path_);
  for (int i = 0; i < 100; ++i) writer.append(bundle::sections::kJitlog, repeated);
  const std::uint64_t jitlog_bytes = writer.bytes_written();
  for (int i = 0; i < 100; ++i) writer.append(kNotes, repeated);
  const std::uint64_t notes_bytes = writer.bytes_written() - jitlog_bytes;
  EXPECT_LT(jitlog_bytes, 4096u + 100 * 64);
  EXPECT_GE(notes_bytes, 100u * 4096);

  const bundle::Bundle read = bundle::read_bundle(path_);
  ASSERT_FALSE(read.error) << read.error->message;
  ASSERT_EQ(read.frames.size(), 200u);
  for (const bundle::Frame& frame : read.frames) EXPECT_EQ(frame.data, repeated);
}

TEST_F(BundleFile, AJitlogFrameWithoutTheFramesBeforeItIsAnErrorAtItsOffset) {
  const auto noise = pattern(8192, 10);
  const std::vector<std::uint8_t> repeated(noise.begin() + 4096, noise.end());
  bundle::BundleWriter writer(path_);
  writer.append(bundle::sections::kJitlog, repeated);
  const std::uint64_t second = writer.bytes_written();
  writer.append(bundle::sections::kJitlog, repeated);
  auto whole = file_bytes(path_);
  // The file header, then the second frame alone: it refers to bytes of the first.
  std::vector<std::uint8_t> cut(whole.begin(), whole.begin() + 10);
  cut.insert(cut.end(), whole.begin() + static_cast<std::ptrdiff_t>(second), whole.end());
  const bundle::Bundle read = bundle::parse_bundle(cut);
  ASSERT_TRUE(read.error);
  EXPECT_EQ(read.error->offset, 10u);
  EXPECT_NE(read.error->message.find("JLOG frame does not inflate"), std::string::npos) << read.error->message;
}

void put_le(std::vector<std::uint8_t>& out, std::uint64_t value, std::size_t width) {
  for (std::size_t i = 0; i < width; ++i) out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

// A frame as format 1 wrote it: zlib-compressed.
void append_zlib_frame(std::vector<std::uint8_t>& file, SectionType type, const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> stored(compressBound(static_cast<uLong>(data.size())));
  uLongf stored_size = static_cast<uLongf>(stored.size());
  ASSERT_EQ(compress2(stored.data(), &stored_size, data.data(), static_cast<uLong>(data.size()), 6), Z_OK);
  stored.resize(stored_size);
  put_le(file, type.code, 4);
  put_le(file, 1, 4);  // zlib
  put_le(file, data.size(), 8);
  put_le(file, stored.size(), 8);
  put_le(file, crc32(0, stored.data(), static_cast<uInt>(stored.size())), 4);
  file.insert(file.end(), stored.begin(), stored.end());
}

TEST(Bundle, AFormatOneBundleOfZlibFramesStillReads) {
  std::vector<std::uint8_t> file{0x89, 'J', 'P', 'R', 'O', 'F', '\r', '\n'};
  put_le(file, 1, 2);
  const auto part1 = pattern(50000, 5), part2 = pattern(700, 6);
  append_zlib_frame(file, bundle::sections::kJitlog, part1);
  append_zlib_frame(file, bundle::sections::kJitlog, part2);
  const auto read = bundle::parse_bundle(file);
  ASSERT_FALSE(read.error) << read.error->message;
  EXPECT_EQ(read.version, 1);
  auto expected = part1;
  expected.insert(expected.end(), part2.begin(), part2.end());
  EXPECT_EQ(read.stream(bundle::sections::kJitlog), expected);
}

TEST(Bundle, AFutureFormatIsRefusedByName) {
  std::vector<std::uint8_t> file{0x89, 'J', 'P', 'R', 'O', 'F', '\r', '\n'};
  put_le(file, bundle::kFormatVersion + 1, 2);
  const auto read = bundle::parse_bundle(file);
  ASSERT_TRUE(read.error);
  EXPECT_NE(read.error->message.find("format version 3 is not supported"), std::string::npos) << read.error->message;
}

TEST_F(BundleFile, ACompressedFrameCutByACrashIsLeftOutAndTheFramesBeforeItRead) {
  {
    bundle::BundleWriter writer(path_);
    writer.append(bundle::sections::kJitlog, std::vector<std::uint8_t>(100000, 'x'));
    writer.append(bundle::sections::kJitlog, pattern(100000, 8));
  }
  const auto whole = file_bytes(path_);
  const std::uint64_t second = bundle::parse_bundle(whole).frames.at(1).file_offset;
  // Stored compressed, then cut in the middle of the second frame's compressed bytes.
  ASSERT_LT(whole.size() - second, 100000u);
  const auto cut = bundle::parse_bundle(std::span(whole).first(second + (whole.size() - second) / 2));
  ASSERT_FALSE(cut.error);
  ASSERT_EQ(cut.warnings.size(), 1u);
  EXPECT_EQ(cut.warnings[0].offset, second);
  EXPECT_EQ(cut.stream(bundle::sections::kJitlog), std::vector<std::uint8_t>(100000, 'x'));
}

TEST_F(BundleFile, ADecompressionBombStopsAtTheInflatedLimit) {
  {
    bundle::BundleWriter writer(path_);
    for (int i = 0; i < 3; ++i) writer.append(bundle::sections::kJitlog, std::vector<std::uint8_t>(1 << 20, 'x'));
  }
  const auto limited = bundle::read_bundle(path_, (2 << 20) + 100);
  ASSERT_TRUE(limited.error);
  EXPECT_NE(limited.error->message.find("inflate past the limit of 2097252 bytes"), std::string::npos)
      << limited.error->message;
  EXPECT_EQ(limited.frames.size(), 2u);  // the frames within the limit were read
  EXPECT_FALSE(bundle::read_bundle(path_, 3 << 20).error);
}

TEST_F(BundleFile, AFrameCrossingAReadBoundaryCountsOnceTowardsTheLimit) {
  // Noise is stored as is: three 600 kB frames, the second across the reader's 1 MiB chunk boundary.
  std::uint64_t total = 0;
  {
    bundle::BundleWriter writer(path_);
    for (std::uint32_t seed = 0; seed < 3; ++seed) {
      std::vector<std::uint8_t> noise(600000);
      std::mt19937 random(seed);
      for (auto& byte : noise) byte = static_cast<std::uint8_t>(random());
      writer.append(bundle::sections::kJitlog, noise);
      total += noise.size();
    }
  }
  const auto exact = bundle::read_bundle(path_, total);
  ASSERT_FALSE(exact.error) << exact.error->message;
  EXPECT_EQ(exact.frames.size(), 3u);
  std::vector<std::uint64_t> seen;
  const auto counted = bundle::read_bundle(path_, total, [&](std::uint64_t bytes) { seen.push_back(bytes); });
  EXPECT_FALSE(counted.error);
  EXPECT_EQ(seen, (std::vector<std::uint64_t>{600000, 600000, 600000}));
  EXPECT_TRUE(bundle::read_bundle(path_, total - 1).error);
}

TEST_F(BundleFile, EveryCutReadsTheCompleteFramesBeforeIt) {
  const auto whole = write_sample(pattern(2000, 3), pattern(900, 4));
  const auto full = bundle::parse_bundle(whole);
  ASSERT_EQ(full.frames.size(), 5u);
  for (std::size_t cut = 10; cut < whole.size(); ++cut) {
    const auto prefix = bundle::parse_bundle(std::span(whole).first(cut));
    ASSERT_FALSE(prefix.error) << "cut at " << cut;
    std::size_t complete = 0;
    while (complete < full.frames.size() && full.frames[complete].file_offset < cut &&
           (complete + 1 == full.frames.size() ? whole.size() : full.frames[complete + 1].file_offset) <= cut)
      ++complete;
    ASSERT_EQ(prefix.frames.size(), complete) << "cut at " << cut;
    const bool on_boundary = complete < full.frames.size() && full.frames[complete].file_offset == cut;
    if (on_boundary) {
      EXPECT_TRUE(prefix.warnings.empty()) << "cut at " << cut;
    } else {
      ASSERT_EQ(prefix.warnings.size(), 1u) << "cut at " << cut;
      EXPECT_EQ(prefix.warnings[0].offset, full.frames[complete].file_offset);
    }
  }
}

TEST_F(BundleFile, CorruptFrameIsAnErrorAtItsOffset) {
  auto whole = write_sample(pattern(2000, 3), pattern(900, 4));
  const auto full = bundle::parse_bundle(whole);
  const std::uint64_t third = full.frames[2].file_offset;
  whole[third + 40] ^= 0x55;  // inside the stored bytes of the third frame
  const auto damaged = bundle::parse_bundle(whole);
  ASSERT_TRUE(damaged.error);
  EXPECT_EQ(damaged.error->offset, third);
  EXPECT_NE(damaged.error->message.find("CRC"), std::string::npos);
  EXPECT_EQ(damaged.frames.size(), 2u);
}

TEST_F(BundleFile, AbsurdFrameLengthIsRefusedWithoutAllocating) {
  auto whole = write_sample(pattern(10, 3), pattern(10, 4));
  const std::uint64_t first = bundle::parse_bundle(whole).frames[0].file_offset;
  for (int i = 0; i < 8; ++i) whole[first + 8 + i] = 0xff;  // data length
  const auto damaged = bundle::parse_bundle(whole);
  ASSERT_TRUE(damaged.error);
  EXPECT_EQ(damaged.error->offset, first + 8);
  EXPECT_TRUE(damaged.frames.empty());
}

TEST(Bundle, OtherFilesAreNotBundles) {
  const std::string jitlog_like = "\x1e\x04\x00\x00";
  const auto read = bundle::parse_bundle(std::span(reinterpret_cast<const std::uint8_t*>(jitlog_like.data()), 4));
  ASSERT_TRUE(read.error);
  EXPECT_EQ(read.error->offset, 0u);
  const auto empty = bundle::parse_bundle({});
  ASSERT_TRUE(empty.error);
  EXPECT_NE(empty.error->message.find("empty"), std::string::npos);
}

TEST(Bundle, UnwritablePathIsAClearError) {
  try {
    bundle::BundleWriter writer("/nonexistent-dir/x.jprof");
    FAIL() << "expected an error";
  } catch (const binio::InputError& error) {
    EXPECT_NE(std::string(error.what()).find("/nonexistent-dir/x.jprof"), std::string::npos);
  }
}

}  // namespace
