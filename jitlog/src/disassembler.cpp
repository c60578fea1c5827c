#include "jitlog/disassembler.h"

#include <capstone/capstone.h>
#include <fmt/format.h>

#include <stdexcept>

namespace jitprof::jitlog {
namespace {

struct Target {
  cs_arch arch;
  cs_mode mode;
};

Target target_for(const std::string& machine, unsigned word_size) {
  if (machine == "x86_64" || machine == "amd64" || machine == "AMD64")
    return {CS_ARCH_X86, word_size == 4 ? CS_MODE_32 : CS_MODE_64};
  if (machine == "i386" || machine == "i486" || machine == "i586" || machine == "i686" || machine == "x86")
    return {CS_ARCH_X86, CS_MODE_32};
  if (machine == "aarch64" || machine == "arm64") return {CS_ARCH_ARM64, CS_MODE_LITTLE_ENDIAN};
  if (machine.starts_with("arm")) return {CS_ARCH_ARM, CS_MODE_ARM};
  if (machine == "ppc64le") return {CS_ARCH_PPC, static_cast<cs_mode>(CS_MODE_64 | CS_MODE_LITTLE_ENDIAN)};
  if (machine == "ppc64") return {CS_ARCH_PPC, static_cast<cs_mode>(CS_MODE_64 | CS_MODE_BIG_ENDIAN)};
  if (machine == "s390x") return {CS_ARCH_SYSZ, CS_MODE_BIG_ENDIAN};
  throw std::runtime_error(fmt::format("cannot disassemble machine code for architecture '{}'", machine));
}

}  // namespace

Disassembler::Disassembler(const std::string& machine, unsigned word_size) {
  const Target target = target_for(machine, word_size);
  csh handle = 0;
  if (cs_err err = cs_open(target.arch, target.mode, &handle); err != CS_ERR_OK)
    throw std::runtime_error(fmt::format("capstone cannot open {}: {}", machine, cs_strerror(err)));
  handle_ = handle;
}

Disassembler::~Disassembler() {
  csh handle = handle_;
  cs_close(&handle);
}

std::vector<Instruction> Disassembler::disassemble(std::span<const std::uint8_t> code, std::uint64_t address) const {
  std::vector<Instruction> result;
  cs_insn* insn = cs_malloc(handle_);
  const std::uint8_t* cursor = code.data();
  std::size_t remaining = code.size();
  std::uint64_t pc = address;
  while (remaining > 0) {
    if (cs_disasm_iter(handle_, &cursor, &remaining, &pc, insn)) {
      result.push_back({insn->address, insn->size, insn->mnemonic, insn->op_str});
      continue;
    }
    // Data inside code (e.g. an address literal): show one byte and resync.
    result.push_back({pc, 1, ".byte", fmt::format("0x{:02x}", *cursor)});
    ++cursor;
    --remaining;
    ++pc;
  }
  cs_free(insn, 1);
  return result;
}

}  // namespace jitprof::jitlog
