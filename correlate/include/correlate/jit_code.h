// JIT code that no jitlog describes (`jitprof attach` to a process that
// writes none): the hot machine code the bundle holds (section JCOD),
// disassembled, with the samples of each instruction.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bundle/bundle.h"
#include "correlate/profile.h"

namespace jitprof::correlate {

struct HotInstruction {
  std::uint64_t address = 0;
  std::string text;  // "mov rax, qword ptr [rbp + 0x18]"
  std::uint64_t samples = 0;
};

struct JitCodeRegion {
  std::uint32_t pid = 0;
  std::uint64_t start = 0, end = 0;  // the code read: [start, end)
  std::uint64_t samples = 0;         // samples whose IP is in it
  std::vector<HotInstruction> instructions;  // decoded from the first sampled address backwards-aligned, in order
};

// Regions by samples, hottest first. Empty when the bundle has no JCOD section.
std::vector<JitCodeRegion> anonymous_jit_code(const bundle::Bundle& bundle, const Profile& profile);

}  // namespace jitprof::correlate
