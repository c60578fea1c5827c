// LEB128 varints, as the binary sections (SMPL, PYLG) store their integers.
#pragma once

#include <cstdint>
#include <vector>

namespace jitprof::bundle {

constexpr std::size_t kMaxVarintBytes = 10;

inline void put_varint(std::vector<std::uint8_t>& out, std::uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(value | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(value));
}

enum class VarintRead : std::uint8_t { Ok, Truncated, TooLong, Overflow };

// Reads one varint at `p` (advanced past it when Ok).
inline VarintRead read_varint(const std::uint8_t*& p, const std::uint8_t* end, std::uint64_t& out) {
  std::uint64_t value = 0;
  const std::uint8_t* at = p;
  for (std::size_t i = 0; i < kMaxVarintBytes; ++i) {
    if (at == end) return VarintRead::Truncated;
    const std::uint8_t byte = *at++;
    value |= static_cast<std::uint64_t>(byte & 0x7f) << (7 * i);
    if (!(byte & 0x80)) {
      if (i == kMaxVarintBytes - 1 && byte > 1) return VarintRead::Overflow;
      out = value;
      p = at;
      return VarintRead::Ok;
    }
  }
  return VarintRead::TooLong;
}

}  // namespace jitprof::bundle
