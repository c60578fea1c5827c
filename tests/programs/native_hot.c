// A native hot spot built with debug information: `spin` (line numbers known)
// with `mix` inlined into it, called from PyPy through ctypes by native_hot.py.
#include <stdint.h>

static inline __attribute__((always_inline)) uint64_t mix(uint64_t x) {
  for (int round = 0; round < 8; ++round) x = (x ^ (x >> 29)) * 0xbf58476d1ce4e5b9u;  // mix: hot line
  return x;
}

__attribute__((noinline)) uint64_t spin(uint64_t iterations) {
  uint64_t state = 0;
  for (uint64_t i = 0; i < iterations; ++i) state = mix(state + i);  // spin: calls mix
  return state;
}
