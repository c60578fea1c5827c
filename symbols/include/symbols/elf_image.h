// A mapped ELF file, read once per path and shared: the one place that
// reads ELF files. Its program headers, build id and the .eh_frame_hdr lookup
// table the unwinder searches are read on open; function symbols, DWARF source
// lines and the dynamic-linking tables (exported functions, relocations, PLT
// stubs, the R_X86_64_RELATIVE relocations, the .eh_frame function ranges)
// only when first asked for, so the unwinder never pays for them.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "symbols/symbols.h"

struct Elf;  // libelf's handle

namespace jitprof::symbols {

class SourceLines;

class ElfImage {
 public:
  struct Segment {
    std::uint64_t vaddr, memsz, offset, filesz;
    bool executable;
  };
  struct FdeTable {
    std::uint64_t header_vaddr;  // .eh_frame_hdr
    std::uint64_t table_vaddr;   // its sorted (initial location, FDE) pairs
    std::uint64_t entries;
  };
  // Any program header, as Elf64_Phdr has it (PT_TLS, PT_NOTE, ...).
  struct ProgramHeader {
    std::uint32_t type, flags;
    std::uint64_t offset, vaddr, filesz, memsz, align;
  };
  // A RELA relocation, with the name of its symbol when it has one.
  struct Relocation {
    std::uint64_t offset;
    std::uint32_t type;  // R_X86_64_*
    std::string symbol;
  };
  // An R_X86_64_RELATIVE relocation: the word at `offset` holds load bias + `addend`.
  struct RelativeRelocation {
    std::uint64_t offset;
    std::uint64_t addend;
  };
  // A function's code as an .eh_frame FDE covers it: [start, end), link-time.
  struct AddressRange {
    std::uint64_t start, end;
  };

  // Nullptr when the file cannot be read or is not a 64-bit ELF file; then
  // `error`, when given, is the errno of the failed read, or 0 when the file
  // was read but is no 64-bit ELF file.
  static std::shared_ptr<const ElfImage> open(const std::string& path, int* error = nullptr);
  ~ElfImage();
  ElfImage(const ElfImage&) = delete;
  ElfImage& operator=(const ElfImage&) = delete;

  // Bytes of the file image at a link-time address.
  bool read(std::uint64_t vaddr, void* out, std::size_t count) const;
  // The link-time address of a file offset, through the segment holding it.
  std::optional<std::uint64_t> vaddr_of_offset(std::uint64_t offset) const;
  bool is_executable(std::uint64_t vaddr) const;
  // The file bytes from a link-time address on, up to `count` (fewer at the
  // end of the segment holding it, none when no segment does).
  std::span<const std::uint8_t> bytes_at(std::uint64_t vaddr, std::size_t count) const;

  const std::vector<Segment>& segments() const { return segments_; }
  const std::vector<ProgramHeader>& program_headers() const { return program_headers_; }
  // The first program header of a type (PT_TLS, ...).
  std::optional<ProgramHeader> program_header(std::uint32_t type) const;
  std::uint16_t machine() const { return machine_; }  // EM_X86_64, ...
  const std::string& path() const { return path_; }
  const std::string& build_id() const { return build_id_; }
  const std::optional<FdeTable>& fde_table() const { return fde_table_; }
  std::uint64_t low() const { return low_; }
  std::uint64_t high() const { return high_; }

  // The function symbol containing a link-time address (for a symbol without
  // a size: the nearest below), with the address's offset from its start.
  std::optional<std::pair<std::string, std::uint64_t>> symbol_at(std::uint64_t vaddr) const;
  // DWARF source frames at a link-time address, outermost first (SourceLines).
  std::vector<SourceFrame> source_at(std::uint64_t vaddr) const;

  // The dynamic-linking tables, read (through libelf) on first use.
  // The link-time address of a function the file defines in .dynsym.
  std::optional<std::uint64_t> exported_function(std::string_view name) const;
  // Every RELA relocation of the file (.rela.dyn, .rela.plt, ...) but the
  // R_X86_64_RELATIVE ones: they name nothing, and are most of a large
  // library's (700,000 of libpypy's), which would make reading them slow.
  const std::vector<Relocation>& relocations() const;
  // The R_X86_64_RELATIVE relocations, by offset: read on their own first
  // use, for the few callers that look for pointers stored in the data.
  const std::vector<RelativeRelocation>& relative_relocations() const;
  // The ranges of the FDEs .eh_frame_hdr lists (libdw's CFI), by start;
  // empty without an .eh_frame_hdr. Not kept: its callers keep what they derive.
  std::vector<AddressRange> function_ranges() const;
  // The PLT stub (in .plt, .plt.sec or .plt.got) that jumps to an imported
  // function, by its name; and the function a stub jumps to, by its address.
  std::optional<std::uint64_t> plt_stub(std::string_view function) const;
  std::optional<std::string_view> plt_function(std::uint64_t stub) const;

 private:
  struct FunctionSymbol {
    std::uint64_t start, size;
    std::string name;
  };

  struct DynamicTables {
    std::map<std::string, std::uint64_t, std::less<>> exported_functions;
    std::vector<Relocation> relocations;
    std::map<std::string, std::uint64_t, std::less<>> plt_stubs;
    std::map<std::uint64_t, std::string> plt_functions;
  };

  ElfImage() = default;
  bool load(const std::string& path, int& error);
  Elf* libelf() const;
  void load_symbols() const;
  const DynamicTables& dynamic_tables() const;
  void load_dynamic_tables() const;
  void read_build_id(std::uint64_t offset, std::uint64_t size);
  void parse_eh_frame_header(std::uint64_t vaddr);
  template <class T>
  bool at(std::uint64_t offset, T& out) const;

  void* data_ = MAP_FAILED;
  std::size_t size_ = 0;
  std::string path_;
  std::string build_id_;
  mutable std::once_flag symbols_loaded_;
  mutable std::vector<FunctionSymbol> symbols_;
  mutable std::once_flag source_lines_opened_;
  mutable std::unique_ptr<SourceLines> source_lines_;
  mutable std::once_flag libelf_opened_;
  mutable Elf* libelf_ = nullptr;
  mutable std::once_flag dynamic_tables_loaded_;
  mutable DynamicTables dynamic_tables_;
  mutable std::once_flag relative_relocations_loaded_;
  mutable std::vector<RelativeRelocation> relative_relocations_;
  std::vector<Segment> segments_;
  std::vector<ProgramHeader> program_headers_;
  std::uint16_t machine_ = 0;
  std::optional<FdeTable> fde_table_;
  std::uint64_t low_ = 0, high_ = 0;
};

}  // namespace jitprof::symbols
