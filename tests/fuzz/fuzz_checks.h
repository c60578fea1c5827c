// What every reader promises on any input, checked by the fuzz targets.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>

namespace jitprof::fuzz {

inline void check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz: %s\n", what);
    __builtin_trap();
  }
}

// All input is accounted for, and every diagnostic points inside it.
template <class Result>
void check_diagnostics(const Result& result, std::size_t size) {
  check(result.bytes_read == size, "bytes_read differs from the input size");
  if (result.error) check(result.error->offset <= size, "error offset past the input");
  for (const auto& warning : result.warnings) check(warning.offset <= size, "warning offset past the input");
}

// Feeds `input` to a fresh incremental reader in chunks whose size comes from
// the input itself, so that the fuzzer explores the splits too; returns finish().
template <class Reader>
auto read_in_chunks(std::span<const std::uint8_t> input) {
  const std::size_t chunk = input.empty() ? 1 : 1 + input.back() % 64;
  Reader reader;
  for (std::size_t at = 0; at < input.size(); at += chunk)
    reader.feed(input.subspan(at, std::min(chunk, input.size() - at)));
  return reader.finish();
}

}  // namespace jitprof::fuzz
