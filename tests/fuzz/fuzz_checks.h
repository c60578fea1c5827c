// What every reader promises on any input, checked by the fuzz targets.
#pragma once

#include <cstddef>
#include <cstdio>

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

}  // namespace jitprof::fuzz
