#include <atomic>

#include "arch/x86_64.h"
#include "symbols/elf_image.h"
#include "symbols/rpython_names.h"
#include "symbols/symbols.h"

namespace jitprof::symbols {

bool is_jit_memory(std::string_view path, std::uint32_t prot) {
  const bool anonymous = path.empty() || path == "//anon" || path.starts_with("[anon");
  return anonymous && (prot & PROT_EXEC);
}

bool is_libpypy(std::string_view path) {
  // libpypy3.9-c.so, or with a version after it: libpypy3.9-c.so.1.0
  const std::string_view name = path.substr(path.rfind('/') + 1);
  const std::size_t suffix = name.find("-c.so");
  if (!name.starts_with("libpypy") || suffix == std::string_view::npos) return false;
  const std::string_view version = name.substr(suffix + 5);
  return version.empty() || (version.front() == '.' && version.back() != '.' &&
                             version.find_first_not_of(".0123456789") == std::string_view::npos);
}

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
  for (auto it = jit_regions_.begin(); it != jit_regions_.end();) {
    if (it->first < end && it->second > mapping.start) it = jit_regions_.erase(it);
    else ++it;
  }
  if (is_jit_memory(mapping.path, mapping.prot)) {
    jit_regions_[mapping.start] = end;
    return;
  }
  if (mapping.path.empty() || mapping.path.starts_with("[") || mapping.path.starts_with("//")) return;  // no file to read
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

bool AddressSpace::is_code(std::uint64_t address) const {
  if (in_jit_code(address)) return true;
  const Image* image = image_at(address);
  return image != nullptr && image->elf->is_executable(address - image->bias);
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
  return symbolize_in(*image, address, return_address);
}

Symbol AddressSpace::symbolize_in(const Image& image, std::uint64_t address, bool return_address) {
  const std::uint64_t vaddr = address - image.bias;
  Symbol symbol{image.elf->path(), image.elf->build_id(), {}, address - image.low, {}, {}};
  const std::uint64_t lookup = arch::lookup_address(vaddr, return_address);
  const auto exported = image.elf->symbol_at(lookup);
  if (exported) {
    symbol.name = exported->first;
    symbol.offset = vaddr - (lookup - exported->second);
  }
  // libpypy exports only its C API: the rest of its code is named by
  // RPython's records, and the component comes from them.
  if (is_libpypy(image.elf->path())) {
    const auto function = RpythonNames::of(image.elf)->function_at(lookup);
    if (function && function->component) symbol.component = component_name(*function->component);
    if (!exported && function && !function->name.empty()) {
      symbol.name = function->name;
      symbol.offset = vaddr - function->start;
    }
  }
  symbol.source = image.elf->source_at(lookup);
  return symbol;
}

}  // namespace jitprof::symbols
