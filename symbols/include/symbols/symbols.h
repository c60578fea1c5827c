// Names for native addresses: which ELF file and function an address of a
// process is in (with its build id, so a bundle reads on another machine),
// the source line and inlined functions there when the file has DWARF,
// RPython's names and components in a stripped libpypy (rpython_names.h), and
// kernel functions from /proc/kallsyms. One AddressSpace per process is the
// code map both the unwinder and the symbolizer look addresses up in.
#pragma once

#include <sys/mman.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace jitprof::symbols {

class ElfImage;

// An executable mapping of a process, as perf's mmap records report it.
struct Mapping {
  std::uint64_t start = 0, length = 0, file_offset = 0;
  std::string path;  // "//anon" (or empty) for anonymous memory, "[vdso]", or a file
  std::uint32_t prot = PROT_READ | PROT_EXEC;
};

// The rule for PyPy's JIT memory: anonymous executable memory, which perf
// names "//anon" (or "[anon:...]" when the process named it).
bool is_jit_memory(std::string_view path, std::uint32_t prot);

// PyPy's library, by file name alone (libpypy3.9-c.so, libpypy-c.so.1.0):
// cheap enough for every mmap record.
bool is_libpypy(std::string_view path);

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
  std::string name;      // function symbol from .symtab or .dynsym (libpypy: RPython's name); empty when unknown
  std::uint64_t offset;  // from the symbol's start, or from the file's load address when unnamed
  // libpypy's functions: the part of PyPy (component_name in rpython_names.h); empty elsewhere.
  std::string component;
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
  // In an executable segment of an ELF image, or in JIT memory.
  bool is_code(std::uint64_t address) const;

  struct Image {
    std::shared_ptr<const ElfImage> elf;
    std::uint64_t bias;  // load address minus link-time address
    std::uint64_t low, high;  // target addresses covered by the ELF's loadable segments
  };
  const Image* image_at(std::uint64_t address) const;
  // Changes whenever a mapping is added, so that cached unwind info can be dropped.
  std::uint64_t generation() const { return generation_; }
  // Nullopt for addresses outside any ELF image (JIT code, [vdso], unmapped).
  // A return address is looked up at its call (arch::call_site). In libpypy,
  // an exported function names the addresses inside it, RPython's records
  // (rpython_names.h) the rest; waits for libpypy's names to be loaded
  // (RpythonNames::ready says whether that would wait).
  std::optional<Symbol> symbolize(std::uint64_t address, bool return_address = false) const;
  // The same, for an address in `image` (kept from an earlier image_at).
  static Symbol symbolize_in(const Image& image, std::uint64_t address, bool return_address = false);

 private:
  std::map<std::uint64_t, Image> images_;  // by low
  std::map<std::uint64_t, std::uint64_t> jit_regions_;  // start -> end
  std::uint64_t generation_ = 0;
};

// Kernel function names from /proc/kallsyms for `addresses`: each the
// nearest function at or below it. Addresses below the first function are
// left out, and all of them when the kernel hides addresses from this user
// (kptr_restrict). Keeps one candidate an address, not the kernel's ~100,000
// names (11 MiB at the end of every recording).
std::map<std::uint64_t, Symbol> kernel_symbols(const std::vector<std::uint64_t>& addresses,
                                               const std::string& path = "/proc/kallsyms");

}  // namespace jitprof::symbols
