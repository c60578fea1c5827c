// Out-of-process unwinding of sampled x86-64 user stacks.
//
// Native frames are unwound with libunwind's DWARF engine over the ELF files'
// .eh_frame (read from disk, at the addresses they were loaded at) and the
// stack bytes copied at the sample. PyPy's JIT code has no unwind info and
// RBP there holds the JIT frame object, so a dedicated step handles it: every
// loop and bridge runs in a frame of fixed size (x86 backend: FRAME_FIXED_SIZE
// = 23 words below the return address, callee-saved registers at fixed slots).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace jitprof::unwind {

// An executable mapping of a process, as perf's mmap records report it.
struct Mapping {
  std::uint64_t start = 0, length = 0, file_offset = 0;
  std::string path;  // "//anon" (or empty) for anonymous memory, "[vdso]", or a file
};

// x86-64 general registers in perf's sample order (AX..IP, R8..R15).
enum Register : std::size_t { kRax, kRbx, kRcx, kRdx, kRsi, kRdi, kRbp, kRsp, kRip, kR8, kR9, kR10, kR11, kR12, kR13, kR14, kR15, kRegisterCount };
using Registers = std::array<std::uint64_t, kRegisterCount>;

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

class ElfImage;

// A function and the source line an address is at, from DWARF.
struct SourceFrame {
  std::string function;
  std::string file;
  std::int64_t line = 0;
};

// What an address is, for a bundle that must be readable on another machine.
struct Symbol {
  std::string path;      // the ELF file
  std::string build_id;  // hex, empty when the file has none
  std::string name;      // function symbol from .symtab or .dynsym; empty when unknown
  std::uint64_t offset;  // from the symbol's start, or from the file's load address when unnamed
  // With debug information: the function, then the functions inlined into it,
  // outermost first, each at its line. Empty for stripped binaries.
  std::vector<SourceFrame> source;
};

// One process's executable images and JIT regions, built from mmap events.
class AddressSpace {
 public:
  AddressSpace();
  ~AddressSpace();
  AddressSpace(const AddressSpace&);  // a forked child starts with its parent's
  AddressSpace& operator=(const AddressSpace&);
  AddressSpace(AddressSpace&&) noexcept;
  AddressSpace& operator=(AddressSpace&&) noexcept;

  void add(const Mapping& mapping);
  bool in_jit_code(std::uint64_t address) const;

  struct Image {
    std::shared_ptr<const ElfImage> elf;
    std::uint64_t bias;  // load address minus link-time address
    std::uint64_t low, high;  // target addresses covered by the ELF's loadable segments
  };
  const Image* image_at(std::uint64_t address) const;
  // Changes whenever a mapping is added, so that cached unwind info can be dropped.
  std::uint64_t generation() const { return generation_; }
  // Nullopt for addresses outside any ELF image (JIT code, [vdso], unmapped).
  // A return address's source line is its call's, looked up one byte before.
  std::optional<Symbol> symbolize(std::uint64_t address, bool return_address = false) const;

 private:
  std::map<std::uint64_t, Image> images_;  // by low
  std::map<std::uint64_t, std::uint64_t> jit_regions_;  // start -> end
  std::uint64_t generation_ = 0;
};

// Kernel function names from /proc/kallsyms (empty when the kernel hides
// addresses from this user: kptr_restrict).
class KernelSymbols {
 public:
  static KernelSymbols load(const std::string& path = "/proc/kallsyms");
  bool empty() const { return names_.empty(); }
  // Nullopt below the first symbol; otherwise the nearest symbol at or below.
  std::optional<Symbol> symbolize(std::uint64_t address) const;

 private:
  std::vector<std::pair<std::uint64_t, std::string>> names_;  // sorted by address
};

class Unwinder {
 public:
  Unwinder();
  ~Unwinder();
  Unwinder(const Unwinder&) = delete;
  Unwinder& operator=(const Unwinder&) = delete;

  // `stack` holds the bytes at registers[kRsp] when the sample was taken.
  Result unwind(const AddressSpace& space, const Registers& registers, std::span<const std::uint8_t> stack,
                std::size_t max_frames = 512) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace jitprof::unwind
