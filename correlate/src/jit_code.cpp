#include "correlate/jit_code.h"

#include <algorithm>
#include <map>

#include "bundle/sections.h"
#include "jitlog/disassembler.h"

namespace jitprof::correlate {
namespace {

// x86 code cannot be decoded from an arbitrary byte: a sampled IP is an
// instruction start, so decoding begins at the earliest offset before it
// from which the instruction stream lands exactly on it.
std::size_t aligned_start(const jitlog::Disassembler& disassembler, const std::vector<std::uint8_t>& bytes,
                          std::uint64_t start, std::uint64_t first_sampled) {
  const std::size_t target = static_cast<std::size_t>(first_sampled - start);
  for (std::size_t offset = 0; offset < target; ++offset) {
    const auto decoded = disassembler.disassemble(std::span(bytes).subspan(offset, target - offset), start + offset);
    std::uint64_t end = start + offset;
    bool clean = true;
    for (const auto& instruction : decoded) {
      if (instruction.mnemonic == ".byte") clean = false;
      end = instruction.address + instruction.size;
    }
    if (clean && end == first_sampled) return offset;
  }
  return target;
}

}  // namespace

std::vector<JitCodeRegion> anonymous_jit_code(const bundle::Bundle& bundle, const Profile& profile) {
  std::vector<JitCodeRegion> regions;
  const std::vector<bundle::JitCodeRecord> code = bundle::read_jit_code(bundle);
  if (code.empty()) return regions;
  // Samples that hit JIT code, by their exact address (those in native code
  // called from JIT code only know a return address).
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint64_t> sampled;
  for (const Sample& sample : profile.samples) {
    const auto& stack = profile.stacks[sample.stack];
    if (sample.jit_address != 0 && !stack.empty() && profile.frames[stack.back()].category == Category::JitAnonymous)
      ++sampled[{sample.pid, sample.jit_address}];
  }

  const jitlog::Disassembler disassembler("x86_64", 8);
  for (const bundle::JitCodeRecord& record : code) {
    const std::vector<std::uint8_t>& bytes = record.bytes;
    JitCodeRegion region;
    region.pid = record.pid;
    region.start = record.address;
    region.end = region.start + bytes.size();
    auto first = sampled.lower_bound({region.pid, region.start});
    const auto last = sampled.lower_bound({region.pid, region.end});
    if (first == last) continue;
    for (auto it = first; it != last; ++it) region.samples += it->second;
    const std::size_t offset = aligned_start(disassembler, bytes, region.start, first->first.second);
    for (const auto& instruction : disassembler.disassemble(std::span(bytes).subspan(offset), region.start + offset)) {
      HotInstruction hot{instruction.address, instruction.mnemonic, 0};
      if (!instruction.operands.empty()) hot.text += " " + instruction.operands;
      if (auto count = sampled.find({region.pid, instruction.address}); count != sampled.end()) hot.samples = count->second;
      region.instructions.push_back(std::move(hot));
    }
    regions.push_back(std::move(region));
  }
  std::stable_sort(regions.begin(), regions.end(),
                   [](const JitCodeRegion& a, const JitCodeRegion& b) { return a.samples > b.samples; });
  return regions;
}

}  // namespace jitprof::correlate
