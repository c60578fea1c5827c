#include "binio/binio.h"

#include <fmt/format.h>

#include <cstring>

namespace jitprof::binio {

ParseError::ParseError(std::uint64_t offset, const std::string& message)
    : std::runtime_error(fmt::format("at byte offset {}: {}", offset, message)),
      offset_(offset),
      detail_(message) {}

ByteCursor::ByteCursor(std::span<const std::uint8_t> data, std::uint64_t base_offset)
    : data_(data), base_offset_(base_offset) {}

void ByteCursor::require(std::size_t count) {
  if (count > data_.size() - pos_) {
    // Saturate so that an absurd length cannot overflow the bookkeeping.
    const std::size_t needed = count > SIZE_MAX - pos_ ? SIZE_MAX : pos_ + count;
    throw NeedMoreData{needed};
  }
}

std::uint8_t ByteCursor::u8() {
  require(1);
  return data_[pos_++];
}

std::uint64_t ByteCursor::uint_le(std::size_t width) {
  require(width);
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < width; ++i) value |= std::uint64_t{data_[pos_ + i]} << (8 * i);
  pos_ += width;
  return value;
}

std::int64_t ByteCursor::int_le(std::size_t width) {
  const std::uint64_t raw = uint_le(width);
  if (width >= 8) return static_cast<std::int64_t>(raw);
  const std::uint64_t sign_bit = std::uint64_t{1} << (8 * width - 1);
  return static_cast<std::int64_t>((raw ^ sign_bit) - sign_bit);
}

std::uint16_t ByteCursor::u16le() { return static_cast<std::uint16_t>(uint_le(2)); }
std::uint32_t ByteCursor::u32le() { return static_cast<std::uint32_t>(uint_le(4)); }
std::uint64_t ByteCursor::u64le() { return uint_le(8); }

std::uint16_t ByteCursor::u16be() {
  require(2);
  const auto value = static_cast<std::uint16_t>((data_[pos_] << 8) | data_[pos_ + 1]);
  pos_ += 2;
  return value;
}

std::span<const std::uint8_t> ByteCursor::bytes(std::size_t count) {
  require(count);
  auto view = data_.subspan(pos_, count);
  pos_ += count;
  return view;
}

std::string ByteCursor::string(std::size_t count) {
  auto view = bytes(count);
  return std::string(reinterpret_cast<const char*>(view.data()), view.size());
}

void ByteCursor::fail(const std::string& message) const { throw ParseError(offset(), message); }

void ByteCursor::fail_at(std::uint64_t at, const std::string& message) const {
  throw ParseError(at, message);
}

void RecordBuffer::append(std::span<const std::uint8_t> chunk) {
  // Drop decoded bytes before growing, so the buffer holds at most one
  // partial record plus the newest chunk.
  if (start_ > 0 && start_ >= data_.size() / 2) {
    data_.erase(data_.begin(), data_.begin() + static_cast<std::ptrdiff_t>(start_));
    start_ = 0;
  }
  data_.insert(data_.end(), chunk.begin(), chunk.end());
}

void RecordBuffer::consume(std::size_t count) {
  start_ += count;
  consumed_offset_ += count;
  bytes_needed_ = 0;
}

}  // namespace jitprof::binio
