// Bounded little-endian decoding of binary logs that arrive in chunks.
//
// Both PyPy formats (jitlog, vmprof) are streams of marker bytes with
// unframed payloads, so a reader can only tell that a record is complete by
// decoding it. ByteCursor decodes with bounds checks and reports absolute
// file offsets; RecordBuffer retries a record once more input arrived.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace jitprof::binio {

// A problem found while reading: where, and what.
struct Diagnostic {
  std::uint64_t offset;
  std::string message;
};

// Malformed input. `offset` is the absolute byte offset of the bad field.
class ParseError : public std::runtime_error {
 public:
  ParseError(std::uint64_t offset, const std::string& message);
  std::uint64_t offset() const { return offset_; }
  const std::string& detail() const { return detail_; }

 private:
  std::uint64_t offset_;
  std::string detail_;
};

// The record being decoded runs past the bytes available so far.
struct NeedMoreData {
  std::size_t record_bytes_needed;  // lower bound, counted from the record start
};

class ByteCursor {
 public:
  ByteCursor(std::span<const std::uint8_t> data, std::uint64_t base_offset);

  std::uint8_t u8();
  std::uint16_t u16le();
  std::uint16_t u16be();
  std::uint32_t u32le();
  std::uint64_t u64le();
  std::int64_t i64le() { return static_cast<std::int64_t>(u64le()); }
  // An unsigned little-endian integer of `width` bytes (1, 2, 4 or 8).
  std::uint64_t uint_le(std::size_t width);
  std::int64_t int_le(std::size_t width);
  std::span<const std::uint8_t> bytes(std::size_t count);
  std::string string(std::size_t count);

  std::size_t position() const { return pos_; }
  std::uint64_t offset() const { return base_offset_ + pos_; }
  bool at_end() const { return pos_ == data_.size(); }

  [[noreturn]] void fail(const std::string& message) const;
  [[noreturn]] void fail_at(std::uint64_t offset, const std::string& message) const;

 private:
  void require(std::size_t count);

  std::span<const std::uint8_t> data_;
  std::uint64_t base_offset_;
  std::size_t pos_ = 0;
};

// Holds input not yet decoded and feeds it, record by record, to a parser.
class RecordBuffer {
 public:
  void append(std::span<const std::uint8_t> chunk);

  // Calls `parse_record(cursor)` for each record; the parser consumes exactly
  // one record per call. A record that needs more input stays buffered and is
  // retried after the next append. ParseError propagates to the caller.
  template <class ParseRecord>
  void drain(ParseRecord&& parse_record) {
    while (pending_size() > 0 && pending_size() >= bytes_needed_) {
      ByteCursor cursor(pending(), consumed_offset_);
      try {
        parse_record(cursor);
      } catch (const NeedMoreData& more) {
        bytes_needed_ = more.record_bytes_needed;
        return;
      }
      consume(cursor.position());
    }
  }

  std::size_t pending_size() const { return data_.size() - start_; }
  // Absolute offset of the first byte not yet decoded.
  std::uint64_t consumed_offset() const { return consumed_offset_; }

 private:
  std::span<const std::uint8_t> pending() const { return {data_.data() + start_, pending_size()}; }
  void consume(std::size_t count);

  std::vector<std::uint8_t> data_;
  std::size_t start_ = 0;
  std::size_t bytes_needed_ = 0;
  std::uint64_t consumed_offset_ = 0;
};

// I/O failure (missing file, unreadable, broken compression).
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ReadOptions {
  std::size_t chunk_size = 1 << 20;
  // Refuses gzip input that inflates past this (decompression bombs).
  std::uint64_t max_decompressed_bytes = std::uint64_t{32} << 30;
};

// Streams a file (or gzip-compressed file, detected by its magic) to `sink`
// in chunks. Returns the number of bytes delivered.
std::uint64_t read_file_chunks(const std::filesystem::path& path,
                               const std::function<void(std::span<const std::uint8_t>)>& sink,
                               const ReadOptions& options = {});

// The first `max_bytes` of a file, inflated when it is gzip-compressed (as
// read_file_chunks would deliver them), for telling formats apart.
struct FileStart {
  std::vector<std::uint8_t> bytes;
  bool gzipped = false;
};
FileStart read_file_start(const std::filesystem::path& path, std::size_t max_bytes);

}  // namespace jitprof::binio
