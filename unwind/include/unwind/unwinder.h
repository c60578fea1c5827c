// Out-of-process unwinding of sampled x86-64 user stacks.
//
// Native frames are unwound with libunwind's DWARF engine over the ELF files'
// .eh_frame (read from disk, at the addresses they were loaded at) and the
// stack bytes copied at the sample. PyPy's JIT code has no unwind info and
// RBP there holds the JIT frame object, so a dedicated step handles it: every
// loop and bridge runs in a frame of fixed size (arch/x86_64.h).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "arch/x86_64.h"
#include "symbols/symbols.h"

namespace jitprof::unwind {

enum class Stop : std::uint8_t {
  Complete,           // reached the outermost frame
  NoUnwindInfo,       // no CFI for a frame (e.g. [vdso], stripped without .eh_frame)
  UnreadableMemory,   // needed stack beyond the copied bytes, or an unmapped address
  JitFrame,           // a JIT frame whose return address is not code (prologue, epilogue, corrupt)
  DepthLimit,
  BadFrame,           // libunwind rejected a frame
};

struct Result {
  std::vector<std::uint64_t> frames;  // leaf first: the sample IP, then return addresses
  Stop stop = Stop::Complete;
};

class Unwinder {
 public:
  Unwinder();
  ~Unwinder();
  Unwinder(const Unwinder&) = delete;
  Unwinder& operator=(const Unwinder&) = delete;

  // `stack` holds the bytes at registers[arch::kRsp] when the sample was taken.
  Result unwind(const symbols::AddressSpace& space, const arch::Registers& registers,
                std::span<const std::uint8_t> stack, std::size_t max_frames = 512) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace jitprof::unwind
