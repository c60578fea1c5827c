#include "unwind/unwinder.h"

#include <elf.h>
#include <fcntl.h>
#include <libunwind.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "source_lines.h"

// Part of libunwind's remote API, exported but not declared in its header:
// looks an IP up in a binary-search table of FDEs (.eh_frame_hdr).
extern "C" int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t as, unw_word_t ip, unw_dyn_info_t* di,
                                                  unw_proc_info_t* pi, int need_unwind_info, void* arg);

namespace jitprof::unwind {

// PyPy's x86-64 JIT frame (rpython/jit/backend/x86/arch.py, assembler.py
// _call_header): the prologue subtracts FRAME_FIXED_SIZE words from RSP, so
// the return address sits just above; the caller's RBP is saved at slot
// PASS_ON_MY_FRAME and the callee-saved RBX, R12-R15 right after it.
constexpr std::uint64_t kWord = 8;
constexpr std::uint64_t kJitFrameWords = 19 + 4;
constexpr std::uint64_t kJitSavedRbpSlot = 12;

// A mapped ELF file: its loadable segments and its .eh_frame_hdr lookup table.
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

  static std::shared_ptr<const ElfImage> open(const std::string& path) {
    static std::mutex mutex;
    static std::unordered_map<std::string, std::weak_ptr<const ElfImage>> cache;
    std::lock_guard lock(mutex);
    if (auto cached = cache[path].lock()) return cached;
    auto image = std::shared_ptr<ElfImage>(new ElfImage());
    if (!image->load(path)) return nullptr;
    cache[path] = image;
    return image;
  }

  ~ElfImage() {
    if (data_ != MAP_FAILED) ::munmap(data_, size_);
  }

  // Bytes of the file image at a link-time address.
  bool read(std::uint64_t vaddr, void* out, std::size_t count) const {
    for (const Segment& segment : segments_) {
      if (vaddr < segment.vaddr || vaddr + count > segment.vaddr + segment.filesz) continue;
      const std::uint64_t offset = segment.offset + (vaddr - segment.vaddr);
      if (offset + count > size_) return false;
      std::memcpy(out, static_cast<const std::uint8_t*>(data_) + offset, count);
      return true;
    }
    return false;
  }

  // The link-time address of a file offset, through the segment holding it.
  std::optional<std::uint64_t> vaddr_of_offset(std::uint64_t offset) const {
    for (const Segment& segment : segments_)
      if (offset >= segment.offset && offset < segment.offset + segment.filesz)
        return segment.vaddr + (offset - segment.offset);
    return std::nullopt;
  }

  const std::vector<Segment>& segments() const { return segments_; }
  const std::string& path() const { return path_; }
  const std::string& build_id() const { return build_id_; }

  // The function symbol containing (or nearest below) a link-time address.
  std::optional<std::pair<std::string, std::uint64_t>> symbol_at(std::uint64_t vaddr) const {
    std::call_once(symbols_loaded_, [this] { load_symbols(); });
    auto after = std::upper_bound(symbols_.begin(), symbols_.end(), vaddr,
                                  [](std::uint64_t value, const FunctionSymbol& symbol) { return value < symbol.start; });
    if (after == symbols_.begin()) return std::nullopt;
    const FunctionSymbol& symbol = *std::prev(after);
    if (symbol.size > 0 && vaddr >= symbol.start + symbol.size) return std::nullopt;
    return std::make_pair(symbol.name, vaddr - symbol.start);
  }
  std::vector<SourceFrame> source_at(std::uint64_t vaddr) const {
    // Opened on first use: most images (and every stripped one) are never asked.
    std::call_once(source_lines_opened_, [this] { source_lines_ = std::make_unique<SourceLines>(path_); });
    return source_lines_->at(vaddr);
  }
  const std::optional<FdeTable>& fde_table() const { return fde_table_; }
  std::uint64_t low() const { return low_; }
  std::uint64_t high() const { return high_; }

 private:
  struct FunctionSymbol {
    std::uint64_t start, size;
    std::string name;
  };

  ElfImage() = default;

  // .symtab when the file has one (unstripped), else .dynsym: function symbols by address.
  void load_symbols() const {
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
          const auto* name = static_cast<const char*>(data_) + strings.sh_offset + symbol.st_name;
          if (strings.sh_offset + symbol.st_name >= size_) continue;
          symbols_.push_back({symbol.st_value, symbol.st_size,
                              std::string(name, strnlen(name, size_ - strings.sh_offset - symbol.st_name))});
        }
      }
      if (!symbols_.empty()) break;
    }
    std::sort(symbols_.begin(), symbols_.end(),
              [](const FunctionSymbol& a, const FunctionSymbol& b) { return a.start < b.start; });
  }

  void read_build_id(const Elf64_Phdr& note) {
    std::uint64_t at_offset = note.p_offset;
    const std::uint64_t end = note.p_offset + note.p_filesz;
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

  template <class T>
  bool at(std::uint64_t offset, T& out) const {
    if (offset + sizeof(T) > size_) return false;
    std::memcpy(&out, static_cast<const std::uint8_t*>(data_) + offset, sizeof(T));
    return true;
  }

  bool load(const std::string& path) {
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
    std::optional<Elf64_Phdr> eh_frame_header;
    for (std::uint16_t i = 0; i < header.e_phnum; ++i) {
      Elf64_Phdr phdr;
      if (!at(header.e_phoff + std::uint64_t{i} * sizeof(Elf64_Phdr), phdr)) return false;
      if (phdr.p_type == PT_LOAD) {
        segments_.push_back({phdr.p_vaddr, phdr.p_memsz, phdr.p_offset, phdr.p_filesz, (phdr.p_flags & PF_X) != 0});
        low_ = segments_.size() == 1 ? phdr.p_vaddr : std::min(low_, phdr.p_vaddr);
        high_ = std::max(high_, phdr.p_vaddr + phdr.p_memsz);
      } else if (phdr.p_type == PT_GNU_EH_FRAME) {
        eh_frame_header = phdr;
      } else if (phdr.p_type == PT_NOTE && build_id_.empty()) {
        read_build_id(phdr);
      }
    }
    if (eh_frame_header) parse_eh_frame_header(eh_frame_header->p_vaddr);
    return !segments_.empty();
  }

  // .eh_frame_hdr: version, three pointer encodings, the .eh_frame pointer,
  // the FDE count, then the table libunwind searches (datarel sdata4 pairs).
  void parse_eh_frame_header(std::uint64_t vaddr) {
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

  void* data_ = MAP_FAILED;
  std::size_t size_ = 0;
  std::string path_;
  std::string build_id_;
  mutable std::once_flag symbols_loaded_;
  mutable std::vector<FunctionSymbol> symbols_;
  mutable std::once_flag source_lines_opened_;
  mutable std::unique_ptr<SourceLines> source_lines_;
  std::vector<Segment> segments_;
  std::optional<FdeTable> fde_table_;
  std::uint64_t low_ = 0, high_ = 0;
};

namespace {
// Unique across all address spaces, so a cache keyed by it cannot confuse two processes.
std::uint64_t next_generation() {
  static std::atomic<std::uint64_t> counter{0};
  return ++counter;
}
}  // namespace

AddressSpace::AddressSpace() : generation_(next_generation()) {}
AddressSpace::~AddressSpace() = default;
AddressSpace::AddressSpace(const AddressSpace&) = default;
AddressSpace& AddressSpace::operator=(const AddressSpace&) = default;
AddressSpace::AddressSpace(AddressSpace&&) noexcept = default;
AddressSpace& AddressSpace::operator=(AddressSpace&&) noexcept = default;

void AddressSpace::add(const Mapping& mapping) {
  generation_ = next_generation();
  const std::uint64_t end = mapping.start + mapping.length;
  // Anything mapped now replaces what was there before.
  for (auto it = jit_regions_.lower_bound(0); it != jit_regions_.end();) {
    if (it->first < end && it->second > mapping.start) it = jit_regions_.erase(it);
    else ++it;
  }
  if (mapping.path.empty() || mapping.path == "//anon" || mapping.path.starts_with("[anon")) {
    jit_regions_[mapping.start] = end;
    return;
  }
  if (mapping.path.starts_with("[")) return;  // [vdso], [vsyscall]: no file to read
  auto elf = ElfImage::open(mapping.path);
  if (!elf) return;
  const auto vaddr = elf->vaddr_of_offset(mapping.file_offset);
  if (!vaddr) return;
  const std::uint64_t bias = mapping.start - *vaddr;
  for (auto it = images_.begin(); it != images_.end();) {
    if (it->second.low < bias + elf->high() && it->second.high > bias + elf->low()) it = images_.erase(it);
    else ++it;
  }
  images_[bias + elf->low()] = Image{elf, bias, bias + elf->low(), bias + elf->high()};
}

bool AddressSpace::in_jit_code(std::uint64_t address) const {
  auto it = jit_regions_.upper_bound(address);
  if (it == jit_regions_.begin()) return false;
  return address < std::prev(it)->second;
}

const AddressSpace::Image* AddressSpace::image_at(std::uint64_t address) const {
  auto it = images_.upper_bound(address);
  if (it == images_.begin()) return nullptr;
  --it;
  return address < it->second.high ? &it->second : nullptr;
}

std::optional<Symbol> AddressSpace::symbolize(std::uint64_t address, bool return_address) const {
  const Image* image = image_at(address);
  if (image == nullptr) return std::nullopt;
  Symbol symbol{image->elf->path(), image->elf->build_id(), {}, address - image->low, {}};
  if (auto found = image->elf->symbol_at(address - image->bias)) {
    symbol.name = std::move(found->first);
    symbol.offset = found->second;
  }
  symbol.source = image->elf->source_at(address - image->bias - (return_address ? 1 : 0));
  return symbol;
}

KernelSymbols KernelSymbols::load(const std::string& path) {
  KernelSymbols symbols;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    // "ffffffff81000000 T _stext [module]"
    const std::size_t first_space = line.find(' ');
    if (first_space == std::string::npos || line.size() < first_space + 4) continue;
    const char type = static_cast<char>(std::tolower(static_cast<unsigned char>(line[first_space + 1])));
    if (type != 't' && type != 'w') continue;  // functions only
    const std::uint64_t address = std::strtoull(line.substr(0, first_space).c_str(), nullptr, 16);
    if (address == 0) continue;  // hidden by kptr_restrict
    std::string name = line.substr(first_space + 3);
    if (const std::size_t tab = name.find('\t'); tab != std::string::npos) name.resize(tab);
    symbols.names_.emplace_back(address, std::move(name));
  }
  std::sort(symbols.names_.begin(), symbols.names_.end());
  return symbols;
}

std::optional<Symbol> KernelSymbols::symbolize(std::uint64_t address) const {
  auto after = std::upper_bound(names_.begin(), names_.end(), address,
                                [](std::uint64_t value, const auto& entry) { return value < entry.first; });
  if (after == names_.begin()) return std::nullopt;
  const auto& [start, name] = *std::prev(after);
  return Symbol{"[kernel.kallsyms]", {}, name, address - start, {}};
}

namespace {

// What the libunwind callbacks see of the sample being unwound.
struct Context {
  const AddressSpace* space;
  Registers registers;
  std::span<const std::uint8_t> stack;
  std::uint64_t stack_base;

  bool read_word(std::uint64_t address, std::uint64_t& value) const {
    if (address >= stack_base && address - stack_base + kWord <= stack.size()) {
      std::memcpy(&value, stack.data() + (address - stack_base), kWord);
      return true;
    }
    const AddressSpace::Image* image = space->image_at(address);
    return image && image->elf->read(address - image->bias, &value, kWord);
  }
};

std::optional<std::size_t> register_index(unw_regnum_t reg) {
  switch (reg) {
    case UNW_X86_64_RAX: return kRax;
    case UNW_X86_64_RDX: return kRdx;
    case UNW_X86_64_RCX: return kRcx;
    case UNW_X86_64_RBX: return kRbx;
    case UNW_X86_64_RSI: return kRsi;
    case UNW_X86_64_RDI: return kRdi;
    case UNW_X86_64_RBP: return kRbp;
    case UNW_X86_64_RSP: return kRsp;
    case UNW_X86_64_R8: return kR8;
    case UNW_X86_64_R9: return kR9;
    case UNW_X86_64_R10: return kR10;
    case UNW_X86_64_R11: return kR11;
    case UNW_X86_64_R12: return kR12;
    case UNW_X86_64_R13: return kR13;
    case UNW_X86_64_R14: return kR14;
    case UNW_X86_64_R15: return kR15;
    case UNW_X86_64_RIP: return kRip;
    default: return std::nullopt;
  }
}

int find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t* info, int need_unwind_info, void* arg) {
  const auto* context = static_cast<const Context*>(arg);
  const AddressSpace::Image* image = context->space->image_at(ip);
  if (image == nullptr || !image->elf->fde_table()) return -UNW_ENOINFO;
  const auto& table = *image->elf->fde_table();
  unw_dyn_info_t dyn{};
  dyn.format = UNW_INFO_FORMAT_REMOTE_TABLE;
  dyn.start_ip = image->low;
  dyn.end_ip = image->high;
  dyn.u.rti.segbase = image->bias + table.header_vaddr;
  dyn.u.rti.table_data = image->bias + table.table_vaddr;
  // In words: each entry is two 32-bit values.
  dyn.u.rti.table_len = table.entries * 8 / sizeof(unw_word_t);
  return _Ux86_64_dwarf_search_unwind_table(as, ip, &dyn, info, need_unwind_info, arg);
}

void put_unwind_info(unw_addr_space_t, unw_proc_info_t*, void*) {}

int get_dyn_info_list_addr(unw_addr_space_t, unw_word_t*, void*) { return -UNW_ENOINFO; }

int access_mem(unw_addr_space_t, unw_word_t address, unw_word_t* value, int write, void* arg) {
  if (write) return -UNW_EINVAL;
  std::uint64_t word = 0;
  if (!static_cast<const Context*>(arg)->read_word(address, word)) return -UNW_EINVAL;
  *value = word;
  return 0;
}

int access_reg(unw_addr_space_t, unw_regnum_t reg, unw_word_t* value, int write, void* arg) {
  auto* context = static_cast<Context*>(arg);
  const auto index = register_index(reg);
  if (!index) return -UNW_EBADREG;
  if (write) context->registers[*index] = *value;
  else *value = context->registers[*index];
  return 0;
}

int access_fpreg(unw_addr_space_t, unw_regnum_t, unw_fpreg_t*, int, void*) { return -UNW_EINVAL; }
int resume(unw_addr_space_t, unw_cursor_t*, void*) { return -UNW_EINVAL; }
int get_proc_name(unw_addr_space_t, unw_word_t, char*, std::size_t, unw_word_t*, void*) { return -UNW_EINVAL; }

bool is_code(const AddressSpace& space, std::uint64_t address) {
  if (space.in_jit_code(address)) return true;
  const AddressSpace::Image* image = space.image_at(address);
  if (image == nullptr) return false;
  for (const auto& segment : image->elf->segments())
    if (segment.executable && address - image->bias >= segment.vaddr &&
        address - image->bias < segment.vaddr + segment.memsz)
      return true;
  return false;
}

// Steps from a JIT frame to its caller; false when the frame does not look
// like one set up by PyPy's call header.
bool step_jit_frame(Context& context) {
  const std::uint64_t rsp = context.registers[kRsp];
  std::uint64_t return_address = 0;
  if (!context.read_word(rsp + kJitFrameWords * kWord, return_address)) return false;
  if (!is_code(*context.space, return_address)) return false;
  std::array<std::uint64_t, 6> saved{};  // RBP, RBX, R12, R13, R14, R15
  for (std::size_t i = 0; i < saved.size(); ++i)
    if (!context.read_word(rsp + (kJitSavedRbpSlot + i) * kWord, saved[i])) return false;
  context.registers[kRbp] = saved[0];
  context.registers[kRbx] = saved[1];
  context.registers[kR12] = saved[2];
  context.registers[kR13] = saved[3];
  context.registers[kR14] = saved[4];
  context.registers[kR15] = saved[5];
  context.registers[kRsp] = rsp + (kJitFrameWords + 1) * kWord;
  context.registers[kRip] = return_address;
  return true;
}

}  // namespace

struct Unwinder::Impl {
  unw_accessors_t accessors{};
  unw_addr_space_t space = nullptr;

  Impl() {
    accessors.find_proc_info = find_proc_info;
    accessors.put_unwind_info = put_unwind_info;
    accessors.get_dyn_info_list_addr = get_dyn_info_list_addr;
    accessors.access_mem = access_mem;
    accessors.access_reg = access_reg;
    accessors.access_fpreg = access_fpreg;
    accessors.resume = resume;
    accessors.get_proc_name = get_proc_name;
    space = unw_create_addr_space(&accessors, 0);
    // Unwind info comes from the ELF files and stays valid while the address
    // space is unchanged; the stack bytes are never cached (they are not read
    // through the cache).
    unw_set_caching_policy(space, UNW_CACHE_GLOBAL);
  }
  std::uint64_t cached_generation = 0;
  ~Impl() { unw_destroy_addr_space(space); }
};

Unwinder::Unwinder() : impl_(std::make_unique<Impl>()) {}
Unwinder::~Unwinder() = default;

Result Unwinder::unwind(const AddressSpace& space, const Registers& registers, std::span<const std::uint8_t> stack,
                        std::size_t max_frames) const {
  if (impl_->cached_generation != space.generation()) {
    unw_flush_cache(impl_->space, 0, 0);
    impl_->cached_generation = space.generation();
  }
  Context context{&space, registers, stack, registers[kRsp]};
  Result result;
  result.frames.push_back(registers[kRip]);
  unw_cursor_t cursor;
  bool cursor_ready = false;
  while (true) {
    if (result.frames.size() >= max_frames) {
      result.stop = Stop::DepthLimit;
      break;
    }
    if (space.in_jit_code(context.registers[kRip])) {
      if (!step_jit_frame(context)) {
        result.stop = Stop::JitFrame;
        break;
      }
      result.frames.push_back(context.registers[kRip]);
      cursor_ready = false;  // libunwind restarts from the registers of the caller
      continue;
    }
    if (!cursor_ready) {
      if (unw_init_remote(&cursor, impl_->space, &context) < 0) {
        result.stop = Stop::BadFrame;
        break;
      }
      cursor_ready = true;
    }
    const int step = unw_step(&cursor);
    if (step == 0) {
      result.stop = Stop::Complete;
      break;
    }
    if (step < 0) {
      result.stop = step == -UNW_ENOINFO ? Stop::NoUnwindInfo
                    : step == -UNW_EINVAL || step == -UNW_EBADREG ? Stop::UnreadableMemory
                                                                  : Stop::BadFrame;
      break;
    }
    for (unw_regnum_t reg : {UNW_X86_64_RIP, UNW_X86_64_RSP, UNW_X86_64_RBP, UNW_X86_64_RBX, UNW_X86_64_R12,
                             UNW_X86_64_R13, UNW_X86_64_R14, UNW_X86_64_R15}) {
      unw_word_t value = 0;
      if (unw_get_reg(&cursor, reg, &value) == 0) context.registers[*register_index(reg)] = value;
    }
    if (context.registers[kRip] == 0) {
      result.stop = Stop::Complete;
      break;
    }
    result.frames.push_back(context.registers[kRip]);
  }
  return result;
}

}  // namespace jitprof::unwind
