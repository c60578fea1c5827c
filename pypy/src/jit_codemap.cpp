#include "pypy/jit_codemap.h"

#include <elf.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

#include "process_memory.h"
#include "symbols/elf_image.h"
#include "symbols/symbols.h"

namespace jitprof::pypy {

namespace {

constexpr std::size_t kHeight = 8;                       // SKIPLIST_HEIGHT
constexpr std::size_t kHeadSize = 16 + 8 * kHeight;      // key, data, next[8]
constexpr std::size_t kMaxNodes = 1'000'000;             // per walk
constexpr std::size_t kNodesChecked = 16;                // of a candidate head's chain
constexpr std::uint32_t kMaxInfoLongs = 1u << 20;        // bytecode_info_size of one block
constexpr std::uint64_t kMaxTotalLongs = 1ull << 23;     // all blocks together (64 MiB)
constexpr std::size_t kChunk = 1 << 20;                  // bytes per read while scanning

// The target's mappings, by start, for "is this pointer readable / JIT code".
class Regions {
 public:
  explicit Regions(pid_t pid) : regions_(read_memory_regions(pid)) {
    std::sort(regions_.begin(), regions_.end(),
              [](const MemoryRegion& a, const MemoryRegion& b) { return a.start < b.start; });
  }
  const MemoryRegion* at(std::uint64_t address) const {
    auto after = std::upper_bound(regions_.begin(), regions_.end(), address,
                                  [](std::uint64_t value, const MemoryRegion& region) { return value < region.start; });
    if (after == regions_.begin()) return nullptr;
    const MemoryRegion& region = *std::prev(after);
    return address < region.end ? &region : nullptr;
  }
  // Anonymous executable memory: where PyPy's JIT writes machine code.
  const MemoryRegion* jit_at(std::uint64_t address) const {
    const MemoryRegion* region = at(address);
    if (!region || region->permissions.size() < 3 || region->permissions[2] != 'x') return nullptr;
    return symbols::is_jit_memory(region->path, PROT_EXEC) ? region : nullptr;
  }
  bool readable_data(std::uint64_t address) const {
    const MemoryRegion* region = at(address);
    return region && region->readable() && region->writable();
  }

 private:
  std::vector<MemoryRegion> regions_;
};

struct Node {
  std::uint64_t key = 0, data = 0;
  std::array<std::uint64_t, kHeight> next{};
  unsigned height = 0;
  // codemap_data_t
  std::uint32_t machine_code_size = 0, bytecode_info_size = 0;
  std::uint64_t bytecode_info = 0;
};

// Reads a node and the codemap data after its next[] array. Nullopt when the
// node cannot be read or its data is not where a skiplist node's is.
std::optional<Node> read_node(pid_t pid, std::uint64_t address) {
  std::array<std::uint64_t, 2 + kHeight + 2> words{};
  const std::size_t got = read_memory(pid, address, words.data(), sizeof words);
  if (got < 16) return std::nullopt;
  Node node;
  node.key = words[0];
  node.data = words[1];
  if (node.data < address + 16 + 8 || (node.data - address - 16) % 8 != 0) return std::nullopt;
  node.height = static_cast<unsigned>((node.data - address - 16) / 8);
  if (node.height < 1 || node.height > kHeight) return std::nullopt;
  const std::size_t needed = 16 + 8 * node.height + 16;  // the node, then codemap_data_t
  if (got < needed) return std::nullopt;
  for (unsigned level = 0; level < node.height; ++level) node.next[level] = words[2 + level];
  std::uint64_t sizes = words[2 + node.height];
  node.machine_code_size = static_cast<std::uint32_t>(sizes);
  node.bytecode_info_size = static_cast<std::uint32_t>(sizes >> 32);
  node.bytecode_info = words[3 + node.height];
  return node;
}

// What a codemap node must look like (see the header); the depthmap's fails.
bool looks_like_codemap(const Node& node, const Regions& regions) {
  const MemoryRegion* jit = regions.jit_at(node.key);
  if (!jit || node.machine_code_size == 0 || node.key + node.machine_code_size > jit->end) return false;
  for (unsigned level = 1; level < node.height; ++level)
    if (node.next[level] % 8 != 0) return false;
  if (node.bytecode_info_size == 0 || node.bytecode_info_size % 4 != 0 || node.bytecode_info_size > kMaxInfoLongs)
    return false;
  return node.bytecode_info % 8 == 0 && regions.readable_data(node.bytecode_info);
}

bool first_group_fits(const std::array<std::int64_t, 4>& group, std::uint32_t machine_code_size) {
  const auto [unique_id, start, stop, skip] = group;
  return unique_id >= 0 && unique_id % 4 == 0 && start >= 0 && start <= stop &&
         stop <= static_cast<std::int64_t>(machine_code_size) && skip >= 4;
}

// The level-0 chain from a candidate head, checked on its first nodes.
bool chain_is_codemap(pid_t pid, std::uint64_t first, const Regions& regions) {
  std::uint64_t address = first, last_key = 0;
  for (std::size_t checked = 0; address && checked < kNodesChecked; ++checked) {
    if (address % 8 != 0 || !regions.readable_data(address)) return false;
    const auto node = read_node(pid, address);
    if (!node || node->key <= last_key || !looks_like_codemap(*node, regions)) return false;
    std::array<std::int64_t, 4> group{};
    if (read_memory(pid, node->bytecode_info, group.data(), sizeof group) != sizeof group ||
        !first_group_fits(group, node->machine_code_size))
      return false;
    last_key = node->key;
    address = node->next[0];
  }
  return true;
}

// Scans [start, end) of the target for a head whose chain is the codemap.
std::optional<std::uint64_t> scan_for_head(pid_t pid, std::uint64_t start, std::uint64_t end,
                                           std::uint64_t image_low, std::uint64_t image_high,
                                           const Regions& regions) {
  start = (start + 7) & ~std::uint64_t{7};
  std::vector<std::uint64_t> words(kChunk / 8);
  for (std::uint64_t at = start; at + kHeadSize <= end;) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, end - at)) & ~std::size_t{7};
    const std::size_t got = read_memory(pid, at, words.data(), want) / 8;
    if (got < kHeadSize / 8) {  // unmapped (a hole in the segment): skip a page
      at = (at + 4096) & ~std::uint64_t{4095};
      continue;
    }
    const std::size_t windows = got - kHeadSize / 8 + 1;
    for (std::size_t i = 0; i < windows; ++i) {
      if (words[i] != 0 || words[i + 1] != 0 || words[i + 2] == 0) continue;
      const std::uint64_t* next = &words[i + 2];
      bool shaped = true;
      for (std::size_t level = 0; level < kHeight && shaped; ++level) {
        if (next[level] == 0) continue;
        shaped = next[level] % 8 == 0 && (next[level] < image_low || next[level] >= image_high) &&
                 (level == 0 || next[level - 1] != 0);
      }
      if (!shaped || !regions.readable_data(next[0])) continue;
      if (chain_is_codemap(pid, next[0], regions)) return at + 8 * i;
    }
    // The next chunk starts with the last window that did not fit in this one.
    at += 8 * windows;
  }
  return std::nullopt;
}

}  // namespace

std::optional<JitCodemap> JitCodemap::read(pid_t pid, const std::filesystem::path& libpypy, std::uint64_t load_bias) {
  const auto elf = symbols::ElfImage::open(libpypy.string());
  if (!elf) return std::nullopt;
  const Regions regions(pid);
  const std::uint64_t image_low = elf->low() + load_bias, image_high = elf->high() + load_bias;

  // The head is a zero-initialised static: .bss (the part of a writable
  // segment past its file bytes) first, then the rest of the segment.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  for (const auto& header : elf->program_headers()) {
    if (header.type != PT_LOAD || !(header.flags & PF_W) || header.memsz == 0) continue;
    const std::uint64_t start = header.vaddr + load_bias, file_end = start + header.filesz,
                        end = start + header.memsz;
    if (end > file_end) ranges.insert(ranges.begin(), {file_end, end});
    ranges.emplace_back(start, std::min(end, file_end + kHeadSize));
  }
  std::optional<std::uint64_t> head;
  for (const auto& [start, end] : ranges)
    if ((head = scan_for_head(pid, start, end, image_low, image_high, regions))) break;
  if (!head) return std::nullopt;

  JitCodemap codemap;
  codemap.head_ = *head;
  const auto first = read_value<std::uint64_t>(pid, *head + 16);
  std::uint64_t address = first.value_or(0), last_key = 0, total_longs = 0;
  for (std::size_t walked = 0; address && walked < kMaxNodes; ++walked) {
    // A node freed or reused under the walk ends it.
    if (address % 8 != 0) break;
    const auto node = read_node(pid, address);
    if (!node || node->key <= last_key) break;
    last_key = node->key;
    address = node->next[0];
    if (!looks_like_codemap(*node, regions)) continue;
    if (total_longs + node->bytecode_info_size > kMaxTotalLongs) break;
    Block block{node->key, node->machine_code_size, std::vector<std::int64_t>(node->bytecode_info_size)};
    const std::size_t bytes = block.info.size() * sizeof(std::int64_t);
    if (read_memory(pid, node->bytecode_info, block.info.data(), bytes) != bytes) continue;
    total_longs += block.info.size();
    codemap.blocks_.push_back(std::move(block));
  }
  return codemap;
}

std::vector<std::uint64_t> JitCodemap::unique_ids_at(std::uint64_t address) const {
  std::vector<std::uint64_t> ids;
  auto after = std::upper_bound(blocks_.begin(), blocks_.end(), address,
                                [](std::uint64_t value, const Block& block) { return value < block.start; });
  if (after == blocks_.begin()) return ids;
  const Block& block = *std::prev(after);
  if (address - block.start >= block.size) return ids;
  const auto relative = static_cast<std::int64_t>(address - block.start);
  // As pypy_yield_codemap_at_addr walks it: a group holding the address is a
  // frame (the next group is the first inlined into it); one that does not
  // sends the walk to its skip_to. Positions only grow, so the walk ends.
  const std::size_t size = block.info.size();
  for (std::size_t position = 0; position + 4 <= size;) {
    const std::int64_t* group = &block.info[position];
    if (group[1] > relative) break;
    if (group[2] > relative) {
      ids.push_back(static_cast<std::uint64_t>(group[0]));
      position += 4;
      continue;
    }
    if (group[3] <= static_cast<std::int64_t>(position) || group[3] % 4 != 0) break;  // corrupt: would not advance
    position = static_cast<std::size_t>(group[3]);
  }
  return ids;
}

}  // namespace jitprof::pypy
