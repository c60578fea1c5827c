#include "symbols/elf_image.h"

#include <elf.h>
#include <elfutils/libdw.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "source_lines.h"

namespace jitprof::symbols {
namespace {

// The sections of a type (SHT_SYMTAB, SHT_RELA, ...), in file order.
std::vector<Elf_Scn*> sections_of_type(Elf* elf, std::uint32_t type) {
  std::vector<Elf_Scn*> sections;
  for (Elf_Scn* section = elf_nextscn(elf, nullptr); section; section = elf_nextscn(elf, section)) {
    GElf_Shdr header;
    if (gelf_getshdr(section, &header) && header.sh_type == type) sections.push_back(section);
  }
  return sections;
}

// Calls visit(symbol, name) for each entry of a symbol table section.
template <class Visit>
void for_each_symbol(Elf* elf, Elf_Scn* table, Visit&& visit) {
  GElf_Shdr header;
  Elf_Data* data = gelf_getshdr(table, &header) ? elf_getdata(table, nullptr) : nullptr;
  if (!data) return;
  GElf_Sym symbol;
  for (int index = 0; gelf_getsym(data, index, &symbol); ++index) {
    const char* name = elf_strptr(elf, header.sh_link, symbol.st_name);
    visit(symbol, std::string_view(name ? name : ""));
  }
}

}  // namespace

std::shared_ptr<const ElfImage> ElfImage::open(const std::string& path, int* error) {
  static std::mutex mutex;
  static std::unordered_map<std::string, std::weak_ptr<const ElfImage>> cache;
  std::lock_guard lock(mutex);
  if (auto cached = cache[path].lock()) return cached;
  auto image = std::shared_ptr<ElfImage>(new ElfImage());
  int load_error = 0;
  if (!image->load(path, load_error)) {
    if (error) *error = load_error;
    return nullptr;
  }
  cache[path] = image;
  return image;
}

ElfImage::~ElfImage() {
  if (libelf_) elf_end(libelf_);
  if (data_ != MAP_FAILED) ::munmap(data_, size_);
}

bool ElfImage::read(std::uint64_t vaddr, void* out, std::size_t count) const {
  for (const Segment& segment : segments_) {
    if (vaddr < segment.vaddr || vaddr + count > segment.vaddr + segment.filesz) continue;
    const std::uint64_t offset = segment.offset + (vaddr - segment.vaddr);
    if (offset + count > size_) return false;
    std::memcpy(out, static_cast<const std::uint8_t*>(data_) + offset, count);
    return true;
  }
  return false;
}

std::optional<std::uint64_t> ElfImage::vaddr_of_offset(std::uint64_t offset) const {
  for (const Segment& segment : segments_)
    if (offset >= segment.offset && offset < segment.offset + segment.filesz)
      return segment.vaddr + (offset - segment.offset);
  return std::nullopt;
}

bool ElfImage::is_executable(std::uint64_t vaddr) const {
  return std::any_of(segments_.begin(), segments_.end(), [vaddr](const Segment& segment) {
    return segment.executable && vaddr >= segment.vaddr && vaddr < segment.vaddr + segment.memsz;
  });
}

std::span<const std::uint8_t> ElfImage::bytes_at(std::uint64_t vaddr, std::size_t count) const {
  for (const Segment& segment : segments_) {
    if (vaddr < segment.vaddr || vaddr >= segment.vaddr + segment.filesz) continue;
    const std::uint64_t offset = segment.offset + (vaddr - segment.vaddr);
    if (offset >= size_) return {};
    const std::uint64_t available = std::min<std::uint64_t>(segment.vaddr + segment.filesz - vaddr, size_ - offset);
    return {static_cast<const std::uint8_t*>(data_) + offset, std::min<std::uint64_t>(count, available)};
  }
  return {};
}

std::optional<ElfImage::ProgramHeader> ElfImage::program_header(std::uint32_t type) const {
  for (const ProgramHeader& header : program_headers_)
    if (header.type == type) return header;
  return std::nullopt;
}

std::optional<std::pair<std::string, std::uint64_t>> ElfImage::symbol_at(std::uint64_t vaddr) const {
  std::call_once(symbols_loaded_, [this] { load_symbols(); });
  auto after = std::upper_bound(symbols_.begin(), symbols_.end(), vaddr,
                                [](std::uint64_t value, const FunctionSymbol& symbol) { return value < symbol.start; });
  if (after == symbols_.begin()) return std::nullopt;
  const FunctionSymbol& symbol = *std::prev(after);
  if (symbol.size > 0 && vaddr >= symbol.start + symbol.size) return std::nullopt;
  return std::make_pair(symbol.name, vaddr - symbol.start);
}

std::vector<SourceFrame> ElfImage::source_at(std::uint64_t vaddr) const {
  // Opened on first use: most images (and every stripped one) are never asked.
  std::call_once(source_lines_opened_, [this] { source_lines_ = std::make_unique<SourceLines>(path_); });
  return source_lines_->at(vaddr);
}

// libelf over the mapped file, for the section tables read on demand.
Elf* ElfImage::libelf() const {
  std::call_once(libelf_opened_, [this] {
    elf_version(EV_CURRENT);
    libelf_ = elf_memory(static_cast<char*>(data_), size_);
  });
  return libelf_;
}

std::optional<std::uint64_t> ElfImage::exported_function(std::string_view name) const {
  const auto& functions = dynamic_tables().exported_functions;
  if (auto found = functions.find(name); found != functions.end()) return found->second;
  return std::nullopt;
}

const std::vector<ElfImage::Relocation>& ElfImage::relocations() const { return dynamic_tables().relocations; }

const std::vector<ElfImage::RelativeRelocation>& ElfImage::relative_relocations() const {
  std::call_once(relative_relocations_loaded_, [this] {
    Elf* elf = libelf();
    if (!elf || machine_ != EM_X86_64) return;
    for (Elf_Scn* section : sections_of_type(elf, SHT_RELA)) {
      Elf_Data* data = elf_getdata(section, nullptr);
      GElf_Rela entry;
      for (int index = 0; data && gelf_getrela(data, index, &entry); ++index)
        if (GELF_R_TYPE(entry.r_info) == R_X86_64_RELATIVE)
          relative_relocations_.push_back({entry.r_offset, static_cast<std::uint64_t>(entry.r_addend)});
    }
    std::sort(relative_relocations_.begin(), relative_relocations_.end(),
              [](const RelativeRelocation& a, const RelativeRelocation& b) { return a.offset < b.offset; });
  });
  return relative_relocations_;
}

std::vector<ElfImage::AddressRange> ElfImage::function_ranges() const {
  std::vector<AddressRange> ranges;
  Elf* elf = libelf();
  Dwarf_CFI* cfi = elf && fde_table_ ? dwarf_getcfi_elf(elf) : nullptr;
  if (!cfi) return ranges;
  // The table's entries are (initial location, FDE address) pairs, sdata4
  // relative to the header, by location. libdw tells the rows of an FDE's
  // CFI: the FDE ends where its last row does, which is where no FDE
  // covers the next address, or where the next FDE starts.
  std::uint64_t start = 0;
  const auto location_of = [this, &start](std::uint64_t entry) {
    std::int32_t location;
    if (!read(fde_table_->table_vaddr + entry * 8, &location, sizeof location)) return false;
    start = fde_table_->header_vaddr + static_cast<std::int64_t>(location);
    return true;
  };
  const auto row_end = [cfi](std::uint64_t address) -> std::optional<std::uint64_t> {
    Dwarf_Frame* frame = nullptr;
    if (dwarf_cfi_addrframe(cfi, address, &frame) != 0) return std::nullopt;
    Dwarf_Addr row_start = 0, end = 0;
    const bool known = dwarf_frame_info(frame, &row_start, &end, nullptr) >= 0 && end > address;
    std::free(frame);
    return known ? std::optional<std::uint64_t>(end) : std::nullopt;
  };
  for (std::uint64_t entry = 0; entry < fde_table_->entries && location_of(entry); ++entry) {
    const std::uint64_t function_start = start;
    const std::uint64_t next_start = entry + 1 < fde_table_->entries && location_of(entry + 1) ? start : ~std::uint64_t{0};
    std::optional<std::uint64_t> end = row_end(function_start);
    if (!end) continue;
    while (*end < next_start) {
      const auto next_row = row_end(*end);
      if (!next_row) break;
      end = next_row;
    }
    ranges.push_back({function_start, std::min(*end, next_start)});
  }
  dwarf_cfi_end(cfi);
  std::sort(ranges.begin(), ranges.end(), [](const AddressRange& a, const AddressRange& b) { return a.start < b.start; });
  return ranges;
}

std::optional<std::uint64_t> ElfImage::plt_stub(std::string_view function) const {
  const auto& stubs = dynamic_tables().plt_stubs;
  if (auto found = stubs.find(function); found != stubs.end()) return found->second;
  return std::nullopt;
}

std::optional<std::string_view> ElfImage::plt_function(std::uint64_t stub) const {
  const auto& functions = dynamic_tables().plt_functions;
  if (auto found = functions.find(stub); found != functions.end()) return found->second;
  return std::nullopt;
}

const ElfImage::DynamicTables& ElfImage::dynamic_tables() const {
  std::call_once(dynamic_tables_loaded_, [this] { load_dynamic_tables(); });
  return dynamic_tables_;
}

void ElfImage::load_dynamic_tables() const {
  Elf* elf = libelf();
  if (!elf) return;
  DynamicTables& tables = dynamic_tables_;
  for (Elf_Scn* table : sections_of_type(elf, SHT_DYNSYM))
    for_each_symbol(elf, table, [&](const GElf_Sym& symbol, std::string_view name) {
      if (symbol.st_shndx != SHN_UNDEF && GELF_ST_TYPE(symbol.st_info) == STT_FUNC && !name.empty())
        tables.exported_functions.emplace(name, symbol.st_value);
    });

  // Each relocation's symbol is in the table its section links to (.dynsym).
  for (Elf_Scn* section : sections_of_type(elf, SHT_RELA)) {
    GElf_Shdr header, symbols_header;
    Elf_Data* data = gelf_getshdr(section, &header) ? elf_getdata(section, nullptr) : nullptr;
    Elf_Scn* symbols = data ? elf_getscn(elf, header.sh_link) : nullptr;
    Elf_Data* symbol_data = symbols && gelf_getshdr(symbols, &symbols_header) ? elf_getdata(symbols, nullptr) : nullptr;
    GElf_Rela entry;
    for (int index = 0; data && gelf_getrela(data, index, &entry); ++index) {
      if (GELF_R_TYPE(entry.r_info) == R_X86_64_RELATIVE) continue;
      GElf_Sym symbol;
      const char* name = nullptr;
      if (GELF_R_SYM(entry.r_info) != 0 && symbol_data &&
          gelf_getsym(symbol_data, static_cast<int>(GELF_R_SYM(entry.r_info)), &symbol))
        name = elf_strptr(elf, symbols_header.sh_link, symbol.st_name);
      tables.relocations.push_back(
          {entry.r_offset, static_cast<std::uint32_t>(GELF_R_TYPE(entry.r_info)), name ? name : ""});
    }
  }

  // A PLT entry jumps through its GOT slot with `jmp [rip+disp32]` (ff 25,
  // after endbr64 and a bnd prefix when the file was built with CET); the
  // slot's relocation names the function.
  std::unordered_map<std::uint64_t, const std::string*> slot_symbols;
  for (const Relocation& relocation : tables.relocations)
    if (!relocation.symbol.empty()) slot_symbols[relocation.offset] = &relocation.symbol;
  std::size_t names_index = 0;
  if (elf_getshdrstrndx(elf, &names_index) != 0) return;
  for (Elf_Scn* section = elf_nextscn(elf, nullptr); section; section = elf_nextscn(elf, section)) {
    GElf_Shdr header;
    if (!gelf_getshdr(section, &header) || header.sh_type != SHT_PROGBITS) continue;
    const char* name = elf_strptr(elf, names_index, header.sh_name);
    Elf_Data* data = name && std::string_view(name).starts_with(".plt") ? elf_getdata(section, nullptr) : nullptr;
    if (!data || !data->d_buf) continue;
    const auto* bytes = static_cast<const std::uint8_t*>(data->d_buf);
    const std::size_t entry_size = header.sh_entsize ? header.sh_entsize : 16;
    for (std::size_t entry = 0; entry + entry_size <= data->d_size; entry += entry_size) {
      for (std::size_t at = entry; at + 6 <= entry + entry_size; ++at) {
        if (bytes[at] != 0xff || bytes[at + 1] != 0x25) continue;
        std::int32_t displacement;
        std::memcpy(&displacement, bytes + at + 2, 4);
        const std::uint64_t next = header.sh_addr + at + 6;
        if (auto slot = slot_symbols.find(next + static_cast<std::int64_t>(displacement)); slot != slot_symbols.end()) {
          tables.plt_stubs.emplace(*slot->second, header.sh_addr + entry);
          tables.plt_functions.emplace(header.sh_addr + entry, *slot->second);
        }
        break;
      }
    }
  }
}

template <class T>
bool ElfImage::at(std::uint64_t offset, T& out) const {
  if (offset + sizeof(T) > size_) return false;
  std::memcpy(&out, static_cast<const std::uint8_t*>(data_) + offset, sizeof(T));
  return true;
}

// .symtab when the file has one (unstripped), else .dynsym: function symbols by address.
void ElfImage::load_symbols() const {
  Elf* elf = libelf();
  if (!elf) return;
  for (std::uint32_t wanted : {SHT_SYMTAB, SHT_DYNSYM}) {
    for (Elf_Scn* table : sections_of_type(elf, wanted))
      for_each_symbol(elf, table, [this](const GElf_Sym& symbol, std::string_view name) {
        const int type = GELF_ST_TYPE(symbol.st_info);
        if ((type == STT_FUNC || type == STT_GNU_IFUNC) && symbol.st_value != 0)
          symbols_.push_back({symbol.st_value, symbol.st_size, std::string(name)});
      });
    if (!symbols_.empty()) break;
  }
  std::sort(symbols_.begin(), symbols_.end(),
            [](const FunctionSymbol& a, const FunctionSymbol& b) { return a.start < b.start; });
}

void ElfImage::read_build_id(std::uint64_t offset, std::uint64_t size) {
  std::uint64_t at_offset = offset;
  const std::uint64_t end = offset + size;
  while (at_offset + sizeof(Elf64_Nhdr) <= end) {
    Elf64_Nhdr header;
    if (!at(at_offset, header)) return;
    const std::uint64_t name_at = at_offset + sizeof header;
    const std::uint64_t desc_at = name_at + ((header.n_namesz + 3) & ~3u);
    if (header.n_type == NT_GNU_BUILD_ID && header.n_namesz == 4 && desc_at + header.n_descsz <= size_ &&
        std::memcmp(static_cast<const char*>(data_) + name_at, "GNU", 4) == 0) {
      static constexpr char kHex[] = "0123456789abcdef";
      for (std::uint32_t i = 0; i < header.n_descsz; ++i) {
        const auto byte = static_cast<const std::uint8_t*>(data_)[desc_at + i];
        build_id_ += kHex[byte >> 4];
        build_id_ += kHex[byte & 15];
      }
      return;
    }
    at_offset = desc_at + ((header.n_descsz + 3) & ~3u);
  }
}

bool ElfImage::load(const std::string& path, int& error) {
  path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = errno;
    return false;
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0) error = errno;
  if (error == 0 && info.st_size >= static_cast<off_t>(sizeof(Elf64_Ehdr))) {
    size_ = static_cast<std::size_t>(info.st_size);
    data_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (data_ == MAP_FAILED) error = errno;
  }
  ::close(fd);
  if (data_ == MAP_FAILED) return false;  // error stays 0 for a file too short for an ELF header

  Elf64_Ehdr header;
  if (!at(0, header) || std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64 ||
      header.e_phentsize != sizeof(Elf64_Phdr))
    return false;
  machine_ = header.e_machine;
  std::optional<std::uint64_t> eh_frame_header;
  for (std::uint16_t i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr phdr;
    if (!at(header.e_phoff + std::uint64_t{i} * sizeof(Elf64_Phdr), phdr)) return false;
    program_headers_.push_back(
        {phdr.p_type, phdr.p_flags, phdr.p_offset, phdr.p_vaddr, phdr.p_filesz, phdr.p_memsz, phdr.p_align});
    if (phdr.p_type == PT_LOAD) {
      segments_.push_back({phdr.p_vaddr, phdr.p_memsz, phdr.p_offset, phdr.p_filesz, (phdr.p_flags & PF_X) != 0});
      low_ = segments_.size() == 1 ? phdr.p_vaddr : std::min(low_, phdr.p_vaddr);
      high_ = std::max(high_, phdr.p_vaddr + phdr.p_memsz);
    } else if (phdr.p_type == PT_GNU_EH_FRAME) {
      eh_frame_header = phdr.p_vaddr;
    } else if (phdr.p_type == PT_NOTE && build_id_.empty()) {
      read_build_id(phdr.p_offset, phdr.p_filesz);
    }
  }
  if (eh_frame_header) parse_eh_frame_header(*eh_frame_header);
  return !segments_.empty();
}

// .eh_frame_hdr: version, three pointer encodings, the .eh_frame pointer,
// the FDE count, then the table libunwind searches (datarel sdata4 pairs).
void ElfImage::parse_eh_frame_header(std::uint64_t vaddr) {
  std::uint8_t head[4];
  if (!read(vaddr, head, sizeof head) || head[0] != 1 || head[3] != 0x3b) return;
  auto width = [](std::uint8_t encoding) -> std::uint64_t {
    switch (encoding & 0x0f) {
      case 0x02: case 0x0a: return 2;  // udata2, sdata2
      case 0x03: case 0x0b: return 4;  // udata4, sdata4
      case 0x04: case 0x0c: return 8;  // udata8, sdata8
      default: return 0;
    }
  };
  const std::uint64_t pointer_width = width(head[1]);
  const std::uint64_t count_width = width(head[2]);
  if (pointer_width == 0 || count_width == 0) return;
  std::uint64_t count = 0;
  if (!read(vaddr + 4 + pointer_width, &count, count_width)) return;
  fde_table_ = FdeTable{vaddr, vaddr + 4 + pointer_width + count_width, count};
}

}  // namespace jitprof::symbols
