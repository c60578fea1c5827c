// Disassembly of a trace's machine code at the addresses it ran at (Capstone).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace jitprof::jitlog {

struct Instruction {
  std::uint64_t address;
  std::uint16_t size;
  std::string mnemonic;  // ".byte" for bytes that do not decode
  std::string operands;
};

class Disassembler {
 public:
  // `machine` is the jitlog header's architecture ("x86_64", "aarch64", ...).
  // Throws std::runtime_error for an architecture Capstone cannot decode.
  Disassembler(const std::string& machine, unsigned word_size);
  ~Disassembler();
  Disassembler(const Disassembler&) = delete;
  Disassembler& operator=(const Disassembler&) = delete;

  std::vector<Instruction> disassemble(std::span<const std::uint8_t> code, std::uint64_t address) const;

 private:
  std::size_t handle_ = 0;  // Capstone's csh
};

}  // namespace jitprof::jitlog
