#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "binio/binio.h"

namespace {

using jitprof::binio::ByteCursor;
using jitprof::binio::InputError;
using jitprof::binio::NeedMoreData;
using jitprof::binio::ParseError;
using jitprof::binio::ReadOptions;
using jitprof::binio::RecordBuffer;
using Bytes = std::vector<std::uint8_t>;

TEST(ByteCursor, DecodesLittleEndianIntegersAndTracksAbsoluteOffsets) {
  const Bytes data = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
  ByteCursor in(data, 1000);
  EXPECT_EQ(in.offset(), 1000u);
  EXPECT_EQ(in.u8(), 0x01);
  EXPECT_EQ(in.u16le(), 0x0302);
  EXPECT_EQ(in.u32le(), 0x07060504u);
  EXPECT_EQ(in.u64le(), 0x0f0e0d0c0b0a0908u);
  EXPECT_EQ(in.position(), 15u);
  EXPECT_EQ(in.offset(), 1015u);
  EXPECT_TRUE(in.at_end());
}

TEST(ByteCursor, DecodesBigEndianU16) {
  const Bytes data = {0x00, 0x06, 0x12, 0x34};
  ByteCursor in(data, 0);
  EXPECT_EQ(in.u16be(), 6);
  EXPECT_EQ(in.u16be(), 0x1234);
}

TEST(ByteCursor, DecodesSignedIntegersOfEveryWidth) {
  const Bytes data = {0xff, 0x00, 0x80, 0xfe, 0xff, 0xff, 0xff, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
  ByteCursor in(data, 0);
  EXPECT_EQ(in.int_le(1), -1);
  EXPECT_EQ(in.int_le(2), -32768);
  EXPECT_EQ(in.int_le(4), -2);
  EXPECT_EQ(in.i64le(), -3);
  ByteCursor positive(std::span<const std::uint8_t>(data).subspan(8), 0);
  EXPECT_EQ(positive.int_le(8), std::int64_t{0x7fffffffffffffff});
  EXPECT_EQ(ByteCursor(Bytes{0x7f}, 0).int_le(1), 127);
}

TEST(ByteCursor, UintOfGivenWidth) {
  const Bytes data = {0x78, 0x56, 0x34, 0x12, 0xaa};
  ByteCursor in(data, 0);
  EXPECT_EQ(in.uint_le(4), 0x12345678u);
  EXPECT_EQ(in.uint_le(1), 0xaau);
}

TEST(ByteCursor, ShortInputThrowsNeedMoreDataCountedFromTheRecordStart) {
  const Bytes data = {1, 2, 3};
  ByteCursor in(data, 50);
  try {
    in.u32le();
    FAIL() << "expected NeedMoreData";
  } catch (const NeedMoreData& more) {
    EXPECT_EQ(more.record_bytes_needed, 4u);
  }
  EXPECT_EQ(in.position(), 0u) << "a failed read must not move the cursor";
  in.u8();
  try {
    in.bytes(10);
    FAIL() << "expected NeedMoreData";
  } catch (const NeedMoreData& more) {
    EXPECT_EQ(more.record_bytes_needed, 11u);
  }
  EXPECT_THROW(in.u64le(), NeedMoreData);
  EXPECT_THROW(in.string(3), NeedMoreData);
  EXPECT_EQ(in.string(2), std::string("\x02\x03"));
  EXPECT_THROW(in.u8(), NeedMoreData);
}

TEST(ByteCursor, HugeLengthSaturatesInsteadOfOverflowing) {
  const Bytes data = {1, 2};
  ByteCursor in(data, 0);
  in.u8();
  try {
    in.bytes(SIZE_MAX);
    FAIL() << "expected NeedMoreData";
  } catch (const NeedMoreData& more) {
    EXPECT_EQ(more.record_bytes_needed, SIZE_MAX);
  }
}

TEST(ByteCursor, FailReportsTheAbsoluteOffset) {
  const Bytes data = {1, 2, 3, 4};
  ByteCursor in(data, 100);
  in.u16le();
  try {
    in.fail("bad field");
    FAIL() << "expected ParseError";
  } catch (const ParseError& error) {
    EXPECT_EQ(error.offset(), 102u);
    EXPECT_EQ(error.detail(), "bad field");
    EXPECT_NE(std::string(error.what()).find("at byte offset 102"), std::string::npos) << error.what();
  }
  try {
    in.fail_at(100, "record start");
    FAIL() << "expected ParseError";
  } catch (const ParseError& error) {
    EXPECT_EQ(error.offset(), 100u);
  }
}

// A toy record format for RecordBuffer: u8 length, then that many bytes.
struct ToyRecord {
  std::uint64_t offset;
  std::string payload;
};

auto toy_parser(std::vector<ToyRecord>& out, int& attempts) {
  return [&out, &attempts](ByteCursor& in) {
    ++attempts;
    const std::uint64_t offset = in.offset();
    const std::uint8_t length = in.u8();
    if (length == 0xff) in.fail_at(offset, "bad length");
    out.push_back({offset, in.string(length)});
  };
}

TEST(RecordBuffer, RetriesARecordSplitOverSeveralAppends) {
  std::vector<ToyRecord> records;
  int attempts = 0;
  RecordBuffer buffer;
  const Bytes first = {3, 'a', 'b', 'c', 5, 'h'};
  const Bytes second = {'e', 'l'};
  const Bytes third = {'l', 'o', 1};
  const Bytes fourth = {'z'};

  buffer.append(first);
  buffer.drain(toy_parser(records, attempts));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(buffer.consumed_offset(), 4u);
  EXPECT_EQ(buffer.pending_size(), 2u);

  const int attempts_before = attempts;
  buffer.append(second);  // still 2 bytes short of "hello": no retry is due
  buffer.drain(toy_parser(records, attempts));
  EXPECT_EQ(attempts, attempts_before) << "a record is retried only once enough bytes can be there";
  EXPECT_EQ(records.size(), 1u);

  buffer.append(third);
  buffer.drain(toy_parser(records, attempts));
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].offset, 4u);
  EXPECT_EQ(records[1].payload, "hello");

  buffer.append(fourth);
  buffer.drain(toy_parser(records, attempts));
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].offset, 0u);
  EXPECT_EQ(records[0].payload, "abc");
  EXPECT_EQ(records[2].offset, 10u);
  EXPECT_EQ(records[2].payload, "z");
  EXPECT_EQ(buffer.consumed_offset(), 12u);
  EXPECT_EQ(buffer.pending_size(), 0u);
}

TEST(RecordBuffer, KeepsAbsoluteOffsetsAcrossManySmallAppends) {
  // 200 records of growing size, appended one byte at a time, so the buffer
  // compacts many times.
  Bytes stream;
  std::vector<std::uint64_t> expected_offsets;
  for (int i = 0; i < 200; ++i) {
    expected_offsets.push_back(stream.size());
    const auto length = static_cast<std::uint8_t>(i % 17);
    stream.push_back(length);
    for (int j = 0; j < length; ++j) stream.push_back(static_cast<std::uint8_t>('a' + j));
  }
  stream.push_back(0xff);  // a bad record at the end
  std::vector<ToyRecord> records;
  int attempts = 0;
  RecordBuffer buffer;
  std::uint64_t error_offset = 0;
  for (std::uint8_t byte : stream) {
    buffer.append(std::span(&byte, 1));
    try {
      buffer.drain(toy_parser(records, attempts));
    } catch (const ParseError& error) {
      error_offset = error.offset();
    }
  }
  ASSERT_EQ(records.size(), 200u);
  for (std::size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].offset, expected_offsets[i]) << "record " << i;
    EXPECT_EQ(records[i].payload.size(), i % 17);
  }
  EXPECT_EQ(error_offset, stream.size() - 1);
}

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "binio_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path write_plain(const std::string& name, const Bytes& data) {
    const auto path = dir_ / name;
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    return path;
  }

  std::filesystem::path write_gzip(const std::string& name, const std::vector<Bytes>& members) {
    const auto path = dir_ / name;
    for (std::size_t i = 0; i < members.size(); ++i) {
      gzFile file = gzopen(path.c_str(), i == 0 ? "wb9" : "ab9");
      EXPECT_NE(file, nullptr);
      const Bytes& data = members[i];
      if (!data.empty()) {
        EXPECT_EQ(gzwrite(file, data.data(), static_cast<unsigned>(data.size())), int(data.size()));
      }
      EXPECT_EQ(gzclose(file), Z_OK);
    }
    return path;
  }

  static Bytes read_all(const std::filesystem::path& path, const ReadOptions& options, std::size_t* chunks = nullptr) {
    Bytes delivered;
    std::size_t count = 0;
    const std::uint64_t total = jitprof::binio::read_file_chunks(
        path,
        [&](std::span<const std::uint8_t> chunk) {
          ++count;
          delivered.insert(delivered.end(), chunk.begin(), chunk.end());
        },
        options);
    EXPECT_EQ(total, delivered.size());
    if (chunks) *chunks = count;
    return delivered;
  }

  static Bytes random_bytes(std::size_t size, unsigned seed) {
    std::mt19937 rng(seed);
    Bytes data(size);
    // Compressible but not trivial: small alphabet.
    for (auto& byte : data) byte = static_cast<std::uint8_t>(rng() % 16);
    return data;
  }

  std::filesystem::path dir_;
};

TEST_F(TempDir, ReadsAPlainFileInChunks) {
  const Bytes data = random_bytes(300'000, 1);
  const auto path = write_plain("plain.bin", data);
  std::size_t chunks = 0;
  EXPECT_EQ(read_all(path, ReadOptions{4096}, &chunks), data);
  EXPECT_EQ(chunks, (data.size() + 4095) / 4096);
}

TEST_F(TempDir, ReadsAnEmptyFile) {
  const auto path = write_plain("empty.bin", {});
  EXPECT_TRUE(read_all(path, ReadOptions{}).empty());
}

TEST_F(TempDir, InflatesAGzipFileToTheOriginalBytes) {
  const Bytes data = random_bytes(500'000, 2);
  const auto path = write_gzip("data.gz", {data});
  EXPECT_LT(std::filesystem::file_size(path), data.size()) << "the test data should be compressed";
  EXPECT_EQ(read_all(path, ReadOptions{}), data);
  EXPECT_EQ(read_all(path, ReadOptions{1000}), data);
}

TEST_F(TempDir, RecognisesGzipEvenWithOneByteChunks) {
  const Bytes data = random_bytes(5'000, 3);
  const auto path = write_gzip("small.gz", {data});
  EXPECT_EQ(read_all(path, ReadOptions{1}), data);
  EXPECT_EQ(read_all(path, ReadOptions{0}), data);
}

TEST_F(TempDir, ConcatenatedGzipMembersReadAsOneStream) {
  const Bytes first = random_bytes(10'000, 4);
  const Bytes second = random_bytes(7'000, 5);
  const auto path = write_gzip("two.gz", {first, second});
  Bytes expected = first;
  expected.insert(expected.end(), second.begin(), second.end());
  EXPECT_EQ(read_all(path, ReadOptions{333}), expected);
}

TEST_F(TempDir, RefusesGzipThatInflatesPastTheLimit) {
  const Bytes zeros(4 << 20, 0);
  const auto path = write_gzip("bomb.gz", {zeros});
  ASSERT_LT(std::filesystem::file_size(path), 100'000u);
  ReadOptions options;
  options.max_decompressed_bytes = 1 << 20;
  std::uint64_t delivered = 0;
  try {
    jitprof::binio::read_file_chunks(path, [&](std::span<const std::uint8_t> chunk) { delivered += chunk.size(); },
                                     options);
    FAIL() << "expected InputError";
  } catch (const InputError& error) {
    EXPECT_NE(std::string(error.what()).find("limit"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find(path.string()), std::string::npos) << error.what();
  }
  EXPECT_LE(delivered, options.max_decompressed_bytes);
  // Exactly at the limit is fine.
  options.max_decompressed_bytes = zeros.size();
  EXPECT_EQ(read_all(path, options), zeros);
}

TEST_F(TempDir, ReportsATruncatedGzipFile) {
  const Bytes data = random_bytes(100'000, 6);
  const auto path = write_gzip("full.gz", {data});
  Bytes compressed(std::filesystem::file_size(path));
  std::ifstream(path, std::ios::binary).read(reinterpret_cast<char*>(compressed.data()),
                                             static_cast<std::streamsize>(compressed.size()));
  compressed.resize(compressed.size() / 2);
  const auto cut = write_plain("cut.gz", compressed);
  EXPECT_THROW(read_all(cut, ReadOptions{}), InputError);
}

TEST_F(TempDir, MissingFileIsAnInputErrorNamingThePath) {
  const auto path = dir_ / "no-such-file.prof";
  try {
    jitprof::binio::read_file_chunks(path, [](std::span<const std::uint8_t>) {});
    FAIL() << "expected InputError";
  } catch (const InputError& error) {
    EXPECT_NE(std::string(error.what()).find(path.string()), std::string::npos) << error.what();
  }
}

}  // namespace
