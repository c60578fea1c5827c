#include "symbols/elf_image.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "source_lines.h"

namespace jitprof::symbols {

std::shared_ptr<const ElfImage> ElfImage::open(const std::string& path) {
  static std::mutex mutex;
  static std::unordered_map<std::string, std::weak_ptr<const ElfImage>> cache;
  std::lock_guard lock(mutex);
  if (auto cached = cache[path].lock()) return cached;
  auto image = std::shared_ptr<ElfImage>(new ElfImage());
  if (!image->load(path)) return nullptr;
  cache[path] = image;
  return image;
}

ElfImage::~ElfImage() {
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

template <class T>
bool ElfImage::at(std::uint64_t offset, T& out) const {
  if (offset + sizeof(T) > size_) return false;
  std::memcpy(&out, static_cast<const std::uint8_t*>(data_) + offset, sizeof(T));
  return true;
}

// .symtab when the file has one (unstripped), else .dynsym: function symbols by address.
void ElfImage::load_symbols() const {
  Elf64_Ehdr header;
  if (!at(0, header) || header.e_shentsize != sizeof(Elf64_Shdr)) return;
  std::vector<Elf64_Shdr> sections(header.e_shnum);
  for (std::uint16_t i = 0; i < header.e_shnum; ++i)
    if (!at(header.e_shoff + std::uint64_t{i} * sizeof(Elf64_Shdr), sections[i])) return;
  for (std::uint32_t wanted : {SHT_SYMTAB, SHT_DYNSYM}) {
    for (const Elf64_Shdr& table : sections) {
      if (table.sh_type != wanted || table.sh_link >= sections.size() || table.sh_entsize != sizeof(Elf64_Sym))
        continue;
      const Elf64_Shdr& strings = sections[table.sh_link];
      for (std::uint64_t at_offset = table.sh_offset; at_offset + sizeof(Elf64_Sym) <= table.sh_offset + table.sh_size;
           at_offset += sizeof(Elf64_Sym)) {
        Elf64_Sym symbol;
        if (!at(at_offset, symbol)) break;
        const int type = ELF64_ST_TYPE(symbol.st_info);
        if ((type != STT_FUNC && type != STT_GNU_IFUNC) || symbol.st_value == 0 || symbol.st_name >= strings.sh_size)
          continue;
        if (strings.sh_offset + symbol.st_name >= size_) continue;
        const auto* name = static_cast<const char*>(data_) + strings.sh_offset + symbol.st_name;
        symbols_.push_back({symbol.st_value, symbol.st_size,
                            std::string(name, strnlen(name, size_ - strings.sh_offset - symbol.st_name))});
      }
    }
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

bool ElfImage::load(const std::string& path) {
  path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat info {};
  if (::fstat(fd, &info) != 0 || info.st_size < static_cast<off_t>(sizeof(Elf64_Ehdr))) {
    ::close(fd);
    return false;
  }
  size_ = static_cast<std::size_t>(info.st_size);
  data_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (data_ == MAP_FAILED) return false;

  Elf64_Ehdr header;
  if (!at(0, header) || std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64 ||
      header.e_phentsize != sizeof(Elf64_Phdr))
    return false;
  std::optional<std::uint64_t> eh_frame_header;
  for (std::uint16_t i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr phdr;
    if (!at(header.e_phoff + std::uint64_t{i} * sizeof(Elf64_Phdr), phdr)) return false;
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
