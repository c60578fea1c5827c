// A 64-bit ELF file mapped read-only, with what the layout readers need:
// program headers, sections, dynamic symbols, relocations and PLT stubs.
#pragma once

#include <elf.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace jitprof::pypy {

class ElfFile {
 public:
  // Throws LayoutError when the file cannot be read or is not 64-bit x86-64 ELF.
  explicit ElfFile(const std::filesystem::path& path);
  ~ElfFile();
  ElfFile(const ElfFile&) = delete;
  ElfFile& operator=(const ElfFile&) = delete;

  std::span<const Elf64_Phdr> program_headers() const { return program_headers_; }
  std::optional<Elf64_Phdr> program_header(std::uint32_t type) const;
  std::string build_id() const;  // hex, empty when the file has none

  // Link-time address of an exported function (.dynsym).
  std::optional<std::uint64_t> dynamic_symbol(std::string_view name) const;
  // Every RELA relocation of the file, with its symbol's name when it has one.
  struct Relocation {
    std::uint64_t offset;
    std::uint32_t type;
    std::string symbol;
  };
  const std::vector<Relocation>& relocations() const { return relocations_; }
  // Start address of each PLT stub, by the name of the function it jumps to.
  const std::unordered_map<std::uint64_t, std::string>& plt_stubs() const { return plt_stubs_; }

  // File bytes at a link-time address, up to `count` (fewer at a segment's end).
  std::span<const std::uint8_t> bytes_at(std::uint64_t vaddr, std::size_t count) const;

 private:
  struct Section {
    std::string name;
    Elf64_Shdr header;
  };
  std::span<const std::uint8_t> section_bytes(const Elf64_Shdr& section) const;
  const char* string_at(const Elf64_Shdr& table, std::uint64_t offset) const;
  void read_sections();
  void read_dynamic_symbols();
  void read_relocations();
  void find_plt_stubs();

  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::span<const Elf64_Phdr> program_headers_;
  std::vector<Section> sections_;
  std::unordered_map<std::string, std::uint64_t> dynamic_symbols_;
  std::vector<std::string> dynamic_symbol_names_;  // by symbol index
  std::vector<Relocation> relocations_;
  std::unordered_map<std::uint64_t, std::string> plt_stubs_;
};

}  // namespace jitprof::pypy
