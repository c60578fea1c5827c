// PyPy's JIT codemap, read from a live process without stopping it: for
// every block of machine code the JIT compiled (a loop or a bridge), which
// Python code objects (vmprof unique ids) each of its addresses belongs to,
// the function the block was compiled for first, then every function inlined
// into it down to the one the address is in. vmprof asks the same map
// in-process; `jitprof attach` reads it so that JIT code is named even when
// the target runs without a jitlog.
//
// Where it lives (rpython/jit/backend/llsupport/src/{skiplist,codemap}.c):
// - a static skiplist head in libpypy's .bss, 80 bytes
//   {uintptr_t key = 0; char* data = 0; node* next[8]}, not exported;
// - malloc'd nodes of a random height h (1..8): {key, data, next[h]}, with
//   `data` pointing right after next[h-1], at
//   {u32 machine_code_size; u32 bytecode_info_size; long* bytecode_info}.
//   The key is the block's first address; the list is sorted by it;
// - bytecode_info: groups of four longs (unique_id, start, stop, skip_to),
//   start and stop relative to the block; the groups whose [start, stop)
//   contains an address, followed from the first group (a group that does not
//   contain it sends the walk on to its skip_to), are the address's frames.
//
// Finding the head (no symbol: libpypy is stripped). Every 8-byte-aligned
// 80-byte window of libpypy's writable PT_LOAD segments (as mapped, .bss
// first) is a candidate when:
//   key == 0 and data == 0 (a static head is never written but for next[]);
//   next[0] != 0; every non-null next[] is 8-aligned and lies outside
//   libpypy; next[k] != 0 only if next[k-1] != 0 (a node on level k is on
//   every level below);
// and it is the codemap's head when its level-0 chain, for its first nodes
// (up to 16), holds nodes that
//   have a key in anonymous executable memory (JIT code) strictly greater
//   than the node before;
//   have data == node + 16 + 8*h for an h in 1..8, and next[1..h-1] that
//   are null or 8-aligned;
//   carry codemap data: machine_code_size > 0 with the block inside the JIT
//   mapping holding its key; bytecode_info_size a non-zero multiple of 4
//   (bounded); bytecode_info 8-aligned and readable, its first group's
//   unique id a multiple of 4 and its start/stop within the block.
// The depthmap (jit_depthmap_head, the other skiplist of the same shape) has
// 8-byte data {block_size, stack_depth}: what would be its bytecode_info is
// whatever follows in the heap, which fails these checks. The first head that
// passes wins; a process whose JIT compiled nothing yet has an empty head
// (all zeros), which cannot be told from any other zeros: then read() gives
// nullopt.
//
// Races: the target keeps compiling and freeing code while the list is read.
// The walk follows level 0 only, stops at the first node it cannot read, whose
// key does not grow, or after 1,000,000 nodes; a node whose data fails the
// checks above is skipped. Sizes are bounded (bytecode_info_size, the total
// read), so neither a corrupt nor a racing list can loop or allocate without
// bound. Lookups never leave the copy taken by read().
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

namespace jitprof::pypy {

// PyPy's JIT codemap read from a live process (process_vm_readv, never stopping it).
class JitCodemap {
 public:
  // Finds the codemap's head in libpypy's writable data (loaded at
  // `load_bias`; see pypy::find_libpypy in thread_locals.h) and reads every
  // block once. Nullopt when the process has no JIT code yet or the head is
  // not found; throws std::system_error when the memory cannot be read (its
  // message names the fix: root or CAP_SYS_PTRACE).
  static std::optional<JitCodemap> read(pid_t pid, const std::filesystem::path& libpypy, std::uint64_t load_bias);

  // The unique ids of the code objects at a JIT address, outermost first: the
  // function whose loop/bridge this is, then each function inlined into it
  // down to the one the address is in. Empty outside every block.
  std::vector<std::uint64_t> unique_ids_at(std::uint64_t address) const;
  std::size_t blocks() const { return blocks_.size(); }

  struct Block {
    std::uint64_t start = 0;              // the node's key: the block's first address
    std::uint32_t size = 0;               // machine_code_size
    std::vector<std::int64_t> info;       // bytecode_info, groups of 4
  };
  const std::vector<Block>& all_blocks() const { return blocks_; }  // sorted by start
  // Where the head was found in the target (for diagnostics).
  std::uint64_t head_address() const { return head_; }

 private:
  std::vector<Block> blocks_;
  std::uint64_t head_ = 0;
};

}  // namespace jitprof::pypy
