// Everything jitprof knows about the x86-64 machine, in one place: the
// general registers in the order perf samples them (the order every library
// passes them on in), and the layout of the frames PyPy's x86-64 JIT backend
// builds, which have no unwind information.
#pragma once

#include <sys/user.h>
#include <x86intrin.h>

#include <array>
#include <cstddef>
#include <cstdint>

namespace jitprof::arch {

// perf's sample order for PERF_SAMPLE_REGS_USER with kPerfUserRegisterMask:
// the mask's bits in increasing order (asm/perf_regs.h: AX..IP are bits 0-8,
// R8..R15 bits 16-23).
enum Register : std::size_t { kRax, kRbx, kRcx, kRdx, kRsi, kRdi, kRbp, kRsp, kRip, kR8, kR9, kR10, kR11, kR12, kR13, kR14, kR15, kRegisterCount };
using Registers = std::array<std::uint64_t, kRegisterCount>;

inline constexpr std::uint64_t kPerfUserRegisterMask = ((std::uint64_t{1} << 9) - 1) | (std::uint64_t{0xff} << 16);

// The CPU's timestamp counter, the clock PyPy's debug log (PYPYLOG) writes.
inline std::uint64_t timestamp_counter() { return __rdtsc(); }

// "rax", "rbx", ... as crash records name them.
inline constexpr std::array<const char*, kRegisterCount> kRegisterNames = {
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"};

// A stopped thread's registers (ptrace PTRACE_GETREGS), in perf's order.
inline Registers from_ptrace(const user_regs_struct& regs) {
  return {regs.rax, regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi, regs.rbp, regs.rsp, regs.rip,
          regs.r8,  regs.r9,  regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15};
}

inline constexpr std::uint64_t kWordBytes = 8;

// A return address points just after its call instruction; the call itself
// (the instruction a caller frame is executing) ends one byte before it. Every
// lookup of a caller frame (symbol, source line, trace op) uses this address.
inline constexpr std::uint64_t call_site(std::uint64_t return_address) { return return_address - 1; }
// The address to look a stack frame up at: the exact IP for the innermost
// frame, the call site for the others.
inline constexpr std::uint64_t lookup_address(std::uint64_t address, bool return_address) {
  return return_address ? call_site(address) : address;
}

// PyPy's x86-64 JIT frame (rpython/jit/backend/x86/arch.py, assembler.py
// _call_header): the prologue subtracts FRAME_FIXED_SIZE (19 + 4) words from
// RSP, so the return address sits just above them; the caller's RBP is saved
// at slot PASS_ON_MY_FRAME (12) and the callee-saved RBX, R12-R15 right after
// it. RBP inside JIT code holds the JIT frame object, not a frame pointer.
inline constexpr std::uint64_t kJitFrameWords = 19 + 4;
inline constexpr std::uint64_t kJitSavedRegistersSlot = 12;
inline constexpr std::array<Register, 6> kJitSavedRegisters = {kRbp, kRbx, kR12, kR13, kR14, kR15};
// The 4 extra words hold vmprof's shadow-stack entry for the frame, pushed by
// _call_header_vmprof whether vmprof is on or not: {next, value, kind} at
// word 19, where value is the frame's RSP and kind is JITTED (3). The entry
// names its own frame, so the frame is found from anywhere below it.
inline constexpr std::uint64_t kJitShadowEntrySlot = 19;
inline constexpr std::uint64_t kShadowStackJitted = 3;

}  // namespace jitprof::arch
