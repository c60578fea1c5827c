#include "elf_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "pypy/thread_locals.h"

namespace jitprof::pypy {

ElfFile::ElfFile(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw LayoutError(path.string() + ": cannot open: " + std::strerror(errno));
  struct stat status {};
  if (::fstat(fd, &status) != 0 || status.st_size < static_cast<off_t>(sizeof(Elf64_Ehdr))) {
    ::close(fd);
    throw LayoutError(path.string() + ": not an ELF file (too short)");
  }
  size_ = static_cast<std::size_t>(status.st_size);
  void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapped == MAP_FAILED) throw LayoutError(path.string() + ": cannot map: " + std::strerror(errno));
  data_ = static_cast<const std::uint8_t*>(mapped);

  const auto* header = reinterpret_cast<const Elf64_Ehdr*>(data_);
  if (std::memcmp(header->e_ident, ELFMAG, SELFMAG) != 0 || header->e_ident[EI_CLASS] != ELFCLASS64 ||
      header->e_machine != EM_X86_64) {
    ::munmap(mapped, size_);
    throw LayoutError(path.string() + ": not a 64-bit x86-64 ELF file");
  }
  if (header->e_phoff + std::uint64_t{header->e_phnum} * sizeof(Elf64_Phdr) > size_ ||
      header->e_shoff + std::uint64_t{header->e_shnum} * sizeof(Elf64_Shdr) > size_) {
    ::munmap(mapped, size_);
    throw LayoutError(path.string() + ": truncated ELF file (headers past its end)");
  }
  program_headers_ = {reinterpret_cast<const Elf64_Phdr*>(data_ + header->e_phoff), header->e_phnum};
  read_sections();
  read_dynamic_symbols();
  read_relocations();
  find_plt_stubs();
}

ElfFile::~ElfFile() { ::munmap(const_cast<std::uint8_t*>(data_), size_); }

std::optional<Elf64_Phdr> ElfFile::program_header(std::uint32_t type) const {
  for (const Elf64_Phdr& header : program_headers_)
    if (header.p_type == type) return header;
  return std::nullopt;
}

std::span<const std::uint8_t> ElfFile::section_bytes(const Elf64_Shdr& section) const {
  if (section.sh_type == SHT_NOBITS || section.sh_offset > size_ || section.sh_size > size_ - section.sh_offset)
    return {};
  return {data_ + section.sh_offset, section.sh_size};
}

const char* ElfFile::string_at(const Elf64_Shdr& table, std::uint64_t offset) const {
  const auto bytes = section_bytes(table);
  if (offset >= bytes.size() || !std::memchr(bytes.data() + offset, 0, bytes.size() - offset)) return "";
  return reinterpret_cast<const char*>(bytes.data() + offset);
}

void ElfFile::read_sections() {
  const auto* header = reinterpret_cast<const Elf64_Ehdr*>(data_);
  const std::span<const Elf64_Shdr> headers{reinterpret_cast<const Elf64_Shdr*>(data_ + header->e_shoff),
                                            header->e_shnum};
  if (header->e_shstrndx >= headers.size()) return;
  for (const Elf64_Shdr& section : headers)
    sections_.push_back({string_at(headers[header->e_shstrndx], section.sh_name), section});
}

void ElfFile::read_dynamic_symbols() {
  for (const Section& section : sections_) {
    if (section.header.sh_type != SHT_DYNSYM || section.header.sh_link >= sections_.size()) continue;
    const auto bytes = section_bytes(section.header);
    const auto& strings = sections_[section.header.sh_link].header;
    const std::span<const Elf64_Sym> symbols{reinterpret_cast<const Elf64_Sym*>(bytes.data()),
                                             bytes.size() / sizeof(Elf64_Sym)};
    for (const Elf64_Sym& symbol : symbols) {
      dynamic_symbol_names_.emplace_back(string_at(strings, symbol.st_name));
      if (symbol.st_shndx != SHN_UNDEF && ELF64_ST_TYPE(symbol.st_info) == STT_FUNC)
        dynamic_symbols_.emplace(dynamic_symbol_names_.back(), symbol.st_value);
    }
  }
}

void ElfFile::read_relocations() {
  for (const Section& section : sections_) {
    if (section.header.sh_type != SHT_RELA) continue;
    const auto bytes = section_bytes(section.header);
    const std::span<const Elf64_Rela> entries{reinterpret_cast<const Elf64_Rela*>(bytes.data()),
                                              bytes.size() / sizeof(Elf64_Rela)};
    for (const Elf64_Rela& entry : entries) {
      const std::size_t symbol = ELF64_R_SYM(entry.r_info);
      relocations_.push_back({entry.r_offset, static_cast<std::uint32_t>(ELF64_R_TYPE(entry.r_info)),
                              symbol < dynamic_symbol_names_.size() ? dynamic_symbol_names_[symbol] : ""});
    }
  }
}

// A PLT entry jumps through its GOT slot with `jmp [rip+disp32]` (ff 25,
// after endbr64 and a bnd prefix when the file was built with CET); the slot's
// relocation names the function.
void ElfFile::find_plt_stubs() {
  std::unordered_map<std::uint64_t, const std::string*> slot_symbols;
  for (const Relocation& relocation : relocations_)
    if (!relocation.symbol.empty()) slot_symbols[relocation.offset] = &relocation.symbol;
  for (const Section& section : sections_) {
    if (!section.name.starts_with(".plt")) continue;
    const auto bytes = section_bytes(section.header);
    const std::size_t entry_size = section.header.sh_entsize ? section.header.sh_entsize : 16;
    for (std::size_t entry = 0; entry + entry_size <= bytes.size(); entry += entry_size) {
      for (std::size_t at = entry; at + 6 <= entry + entry_size; ++at) {
        if (bytes[at] != 0xff || bytes[at + 1] != 0x25) continue;
        std::int32_t displacement;
        std::memcpy(&displacement, bytes.data() + at + 2, 4);
        const std::uint64_t next = section.header.sh_addr + at + 6;
        if (auto slot = slot_symbols.find(next + static_cast<std::int64_t>(displacement)); slot != slot_symbols.end())
          plt_stubs_.emplace(section.header.sh_addr + entry, *slot->second);
        break;
      }
    }
  }
}

std::optional<std::uint64_t> ElfFile::dynamic_symbol(std::string_view name) const {
  if (auto found = dynamic_symbols_.find(std::string(name)); found != dynamic_symbols_.end()) return found->second;
  return std::nullopt;
}

std::string ElfFile::build_id() const {
  for (const Elf64_Phdr& header : program_headers_) {
    if (header.p_type != PT_NOTE || header.p_offset > size_ || header.p_filesz > size_ - header.p_offset) continue;
    std::size_t at = header.p_offset;
    const std::size_t end = header.p_offset + header.p_filesz;
    while (at + sizeof(Elf64_Nhdr) <= end) {
      Elf64_Nhdr note;
      std::memcpy(&note, data_ + at, sizeof note);
      const std::size_t name_at = at + sizeof note;
      const std::size_t descriptor_at = name_at + ((note.n_namesz + 3) & ~3u);
      const std::size_t next = descriptor_at + ((note.n_descsz + 3) & ~3u);
      if (next > end) break;
      if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 && std::memcmp(data_ + name_at, "GNU", 4) == 0) {
        static constexpr char kHex[] = "0123456789abcdef";
        std::string hex;
        for (std::size_t i = 0; i < note.n_descsz; ++i) {
          hex += kHex[data_[descriptor_at + i] >> 4];
          hex += kHex[data_[descriptor_at + i] & 15];
        }
        return hex;
      }
      at = next;
    }
  }
  return "";
}

std::span<const std::uint8_t> ElfFile::bytes_at(std::uint64_t vaddr, std::size_t count) const {
  for (const Elf64_Phdr& header : program_headers_) {
    if (header.p_type != PT_LOAD || vaddr < header.p_vaddr || vaddr >= header.p_vaddr + header.p_filesz) continue;
    const std::uint64_t offset = header.p_offset + (vaddr - header.p_vaddr);
    if (offset >= size_) return {};
    const std::uint64_t available =
        std::min<std::uint64_t>(header.p_vaddr + header.p_filesz - vaddr, size_ - offset);
    return {data_ + offset, std::min<std::size_t>(count, available)};
  }
  return {};
}

}  // namespace jitprof::pypy
