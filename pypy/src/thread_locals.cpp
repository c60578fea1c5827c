#include "pypy/thread_locals.h"

#include <capstone/capstone.h>
#include <elf.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <array>
#include <functional>
#include <set>
#include <unordered_set>

#include "process_memory.h"
#include "symbols/elf_image.h"

namespace jitprof::pypy {
namespace {

using symbols::ElfImage;

constexpr std::uint32_t kReadyMagic = 42;      // RPython's threadlocal.c marks a set-up block with it
constexpr std::size_t kFunctionWindow = 0x400;  // both functions read here are far shorter
constexpr std::size_t kPthreadWindow = 0x1000;  // glibc's struct pthread keeps its tid well inside this

class Disassembler {
 public:
  Disassembler() {
    if (cs_open(CS_ARCH_X86, CS_MODE_64, &handle_) != CS_ERR_OK) throw LayoutError("cannot start Capstone for x86-64");
    cs_option(handle_, CS_OPT_DETAIL, CS_OPT_ON);
  }
  ~Disassembler() { cs_close(&handle_); }
  Disassembler(const Disassembler&) = delete;
  Disassembler& operator=(const Disassembler&) = delete;

  // Calls `visit` for each instruction from `vaddr` until a ret or until it returns false.
  void walk(const ElfImage& elf, std::uint64_t vaddr, const std::function<bool(const cs_insn&)>& visit) const {
    const auto bytes = elf.bytes_at(vaddr, kFunctionWindow);
    const std::uint8_t* code = bytes.data();
    std::size_t size = bytes.size();
    std::uint64_t address = vaddr;
    cs_insn* instruction = cs_malloc(handle_);
    while (cs_disasm_iter(handle_, &code, &size, &address, instruction))
      if (!visit(*instruction) || instruction->id == X86_INS_RET) break;
    cs_free(instruction, 1);
  }

 private:
  csh handle_ = 0;
};

const cs_x86& x86(const cs_insn& instruction) { return instruction.detail->x86; }

std::optional<std::uint64_t> direct_call_target(const cs_insn& instruction) {
  if (instruction.id != X86_INS_CALL || x86(instruction).op_count != 1 || x86(instruction).operands[0].type != X86_OP_IMM)
    return std::nullopt;
  return static_cast<std::uint64_t>(x86(instruction).operands[0].imm);
}

// The address a RIP-relative memory operand refers to.
std::optional<std::uint64_t> rip_relative_target(const cs_insn& instruction, const cs_x86_op& operand) {
  if (operand.type != X86_OP_MEM || operand.mem.base != X86_REG_RIP) return std::nullopt;
  return instruction.address + instruction.size + static_cast<std::uint64_t>(operand.mem.disp);
}

bool is_register_based(const cs_x86_op& operand) {
  return operand.type == X86_OP_MEM && operand.mem.base != X86_REG_RIP && operand.mem.base != X86_REG_INVALID &&
         operand.mem.index == X86_REG_INVALID && operand.mem.disp >= 0;
}

std::uint64_t dtpmod_slot(const ElfImage& elf) {
  std::vector<std::uint64_t> slots;
  for (const auto& relocation : elf.relocations())
    if (relocation.type == R_X86_64_DTPMOD64) slots.push_back(relocation.offset);
  if (slots.empty()) throw LayoutError("no R_X86_64_DTPMOD64 relocation (libpypy's TLS module id slot)");
  if (slots.size() > 1)
    throw LayoutError(std::to_string(slots.size()) + " R_X86_64_DTPMOD64 relocations where libpypy has one");
  return slots.front();
}

// pypy_execute_source compares `ready` with 42 (its displacement is the
// offset) and, when the block is not ready, calls the thread-locals builder.
void read_execute_source(const ElfImage& elf, const Disassembler& disassembler, ThreadLocalLayout& layout,
                         std::uint64_t& builder) {
  const auto execute_source = elf.exported_function("pypy_execute_source");
  if (!execute_source) throw LayoutError("no exported function pypy_execute_source: not a PyPy library");
  std::optional<std::uint32_t> ready;
  std::optional<std::uint64_t> called;
  disassembler.walk(elf, *execute_source, [&](const cs_insn& instruction) {
    const cs_x86& detail = x86(instruction);
    if (!ready && instruction.id == X86_INS_CMP && detail.op_count == 2 && is_register_based(detail.operands[0]) &&
        detail.operands[1].type == X86_OP_IMM && detail.operands[1].imm == kReadyMagic) {
      ready = static_cast<std::uint32_t>(detail.operands[0].mem.disp);
    } else if (ready) {
      if (auto target = direct_call_target(instruction); target && !elf.plt_function(*target)) called = target;
    }
    return !called;
  });
  if (!ready) throw LayoutError("pypy_execute_source does not compare with 42 (the thread-locals `ready` check)");
  if (!called) throw LayoutError("pypy_execute_source calls no thread-locals builder after its `ready` check");
  layout.ready_offset = *ready;
  builder = *called;
}

// The builder stores pthread_self()'s result into the block (thread_ident),
// loads the list head with its first RIP-relative lea (other than the TLS
// descriptor lea that precedes __tls_get_addr) and links the block in after
// the head, storing it into head.next with a RIP-relative mov.
void read_builder(const ElfImage& elf, const Disassembler& disassembler, std::uint64_t builder,
                  ThreadLocalLayout& layout) {
  const auto pthread_self = elf.plt_stub("pthread_self");
  if (!pthread_self) throw LayoutError("libpypy has no PLT entry for pthread_self (needed for thread_ident)");
  bool after_pthread_self = false;
  std::optional<std::uint32_t> ident;
  std::optional<std::uint64_t> head;
  std::vector<std::uint64_t> rip_stores;
  disassembler.walk(elf, builder, [&](const cs_insn& instruction) {
    const cs_x86& detail = x86(instruction);
    if (direct_call_target(instruction) == pthread_self) {
      after_pthread_self = true;
    } else if (instruction.id == X86_INS_MOV && detail.op_count == 2) {
      const cs_x86_op& destination = detail.operands[0];
      const cs_x86_op& source = detail.operands[1];
      if (after_pthread_self && !ident && is_register_based(destination) && source.type == X86_OP_REG &&
          source.reg == X86_REG_RAX)
        ident = static_cast<std::uint32_t>(destination.mem.disp);
      if (auto target = rip_relative_target(instruction, destination); target && source.type == X86_OP_REG)
        rip_stores.push_back(*target);
    } else if (instruction.id == X86_INS_LEA && detail.op_count == 2 && !head) {
      if (auto target = rip_relative_target(instruction, detail.operands[1]);
          target && *target != layout.dtpmod_slot_vaddr)
        head = target;
    }
    return true;
  });
  if (!ident) throw LayoutError("the thread-locals builder does not store pthread_self() into the block");
  if (!head) throw LayoutError("the thread-locals builder loads no list head (no RIP-relative lea)");
  const auto next_store = std::find_if(rip_stores.begin(), rip_stores.end(), [&](std::uint64_t target) {
    return target > *head && target < *head + layout.tls_size;
  });
  if (next_store == rip_stores.end())
    throw LayoutError("the thread-locals builder does not link the block into the list (no store into the head)");
  layout.thread_ident_offset = *ident;
  layout.thread_list_head_vaddr = *head;
  layout.list_next_offset = static_cast<std::uint32_t>(*next_store - *head);
}

// /proc/PID/map_files names a mapping by its range in bare hex.
std::string map_files_name(const MemoryRegion& region) {
  char name[40];
  std::snprintf(name, sizeof name, "%lx-%lx", static_cast<unsigned long>(region.start),
                static_cast<unsigned long>(region.end));
  return name;
}

// The file's start is mapped at `mapped_at`: less its link-time address.
std::uint64_t load_bias_of(const std::filesystem::path& path, std::uint64_t mapped_at) {
  const auto elf = ElfImage::open(path);
  return mapped_at - (elf ? elf->vaddr_of_offset(0).value_or(0) : 0);
}

// The offset of the kernel tid in glibc's struct pthread: the one where the
// main thread's value is the PID, every block's value is a live thread and
// no two blocks share one.
std::optional<std::size_t> learn_tid_offset(pid_t pid, const std::vector<std::vector<std::uint8_t>>& pthreads,
                                            const std::set<pid_t>& live) {
  std::optional<std::size_t> best;
  std::size_t best_matches = 0;
  for (std::size_t offset = 0; offset + 4 <= kPthreadWindow; offset += 4) {
    bool main_thread = false;
    std::set<pid_t> seen;
    std::size_t matches = 0;
    for (const auto& bytes : pthreads) {
      if (offset + 4 > bytes.size()) continue;
      pid_t value;
      std::memcpy(&value, bytes.data() + offset, 4);
      main_thread |= value == pid;
      if (live.count(value) && seen.insert(value).second) ++matches;
    }
    if (main_thread && matches > best_matches) best = offset, best_matches = matches;
  }
  return best;
}

}  // namespace

ThreadLocalLayout read_thread_local_layout(const std::filesystem::path& libpypy) {
  int error = 0;
  const auto image = ElfImage::open(libpypy, &error);
  if (!image && error != 0) throw LayoutError(libpypy.string() + ": cannot open: " + std::strerror(error));
  if (!image || image->machine() != EM_X86_64)
    throw LayoutError(libpypy.string() + ": not a 64-bit x86-64 ELF file");
  const ElfImage& elf = *image;
  ThreadLocalLayout layout;
  layout.build_id = elf.build_id();
  const auto tls = elf.program_header(PT_TLS);
  if (!tls) throw LayoutError("no PT_TLS segment: " + libpypy.string() + " has no thread-local storage");
  if (tls->memsz < 16 || tls->memsz % 8 != 0)
    throw LayoutError("PT_TLS segment of " + std::to_string(tls->memsz) + " bytes is not a thread-locals block");
  layout.tls_size = tls->memsz;
  layout.tls_align = tls->align;
  layout.dtpmod_slot_vaddr = dtpmod_slot(elf);
  // RPython lays the block's fields out sorted by name: vmprof_tl_stack comes last.
  layout.shadow_stack_offset = static_cast<std::uint32_t>(layout.tls_size - 8);

  const Disassembler disassembler;
  std::uint64_t builder = 0;
  read_execute_source(elf, disassembler, layout, builder);
  read_builder(elf, disassembler, builder, layout);

  const std::array offsets{layout.ready_offset, layout.thread_ident_offset, layout.list_next_offset,
                           layout.shadow_stack_offset};
  for (std::size_t i = 0; i < offsets.size(); ++i) {
    if (offsets[i] + 4 > layout.tls_size)
      throw LayoutError("a thread-locals field at offset " + std::to_string(offsets[i]) + " lies outside PT_TLS");
    for (std::size_t j = 0; j < i; ++j)
      if (offsets[i] == offsets[j])
        throw LayoutError("two thread-locals fields at offset " + std::to_string(offsets[i]) +
                          ": the builder's code is not what this reader expects");
  }
  return layout;
}

std::optional<LoadedLibpypy> find_libpypy(pid_t pid) {
  for (const MemoryRegion& region : read_memory_regions(pid)) {
    if (region.file_offset != 0 || !symbols::is_libpypy(region.path)) continue;
    // The path as the target sees it may name another file here (another
    // mount namespace): then go through the target's root or its mapping.
    std::filesystem::path path = region.path;
    struct stat status {};
    if (::stat(path.c_str(), &status) != 0 || status.st_ino != region.inode) {
      const std::string proc = "/proc/" + std::to_string(pid);
      path = proc + "/root" + region.path;
      if (::stat(path.c_str(), &status) != 0 || status.st_ino != region.inode)
        path = proc + "/map_files/" + map_files_name(region);
    }
    return LoadedLibpypy{path, load_bias_of(path, region.start)};
  }
  return std::nullopt;
}

std::optional<LiveThreadLocals> inspect_thread_locals(pid_t pid, const ThreadLocalLayout& layout,
                                                      std::uint64_t load_bias) {
  const auto module_id = read_value<std::uint64_t>(pid, load_bias + layout.dtpmod_slot_vaddr);
  if (!module_id || *module_id == 0) return std::nullopt;
  const std::uint64_t head = load_bias + layout.thread_list_head_vaddr;
  const auto first = read_value<std::uint64_t>(pid, head + layout.list_next_offset);
  if (!first || *first == 0 || *first == head) return std::nullopt;

  LiveThreadLocals result{*module_id, {}};
  std::vector<std::vector<std::uint8_t>> pthreads;
  std::unordered_set<std::uint64_t> visited;
  std::vector<std::uint8_t> block(layout.tls_size);
  auto field = [&](std::uint32_t offset) {
    std::uint64_t value = 0;
    std::memcpy(&value, block.data() + offset, 8);
    return value;
  };
  for (std::uint64_t address = *first; address && address != head && visited.insert(address).second;
       address = field(layout.list_next_offset)) {
    // A block unlinked while we read it leaves the walk with nowhere to go.
    if (read_memory(pid, address, block.data(), block.size()) != block.size()) break;
    const std::uint64_t ident = field(layout.thread_ident_offset);
    if (static_cast<std::uint32_t>(field(layout.ready_offset)) != kReadyMagic || ident == 0) continue;
    if (read_value<std::uint64_t>(pid, ident) != ident) continue;
    std::vector<std::uint8_t> pthread(kPthreadWindow);
    pthread.resize(read_memory(pid, ident, pthread.data(), pthread.size()));
    result.blocks.push_back({address, ident, 0});
    pthreads.push_back(std::move(pthread));
  }
  if (result.blocks.empty()) return std::nullopt;

  const std::vector<pid_t> tids = thread_ids(pid);
  const std::set<pid_t> live(tids.begin(), tids.end());
  if (const auto tid_offset = learn_tid_offset(pid, pthreads, live)) {
    for (std::size_t i = 0; i < result.blocks.size(); ++i) {
      if (*tid_offset + 4 > pthreads[i].size()) continue;
      pid_t tid;
      std::memcpy(&tid, pthreads[i].data() + *tid_offset, 4);
      if (live.count(tid)) result.blocks[i].tid = tid;
    }
  }
  return result;
}

}  // namespace jitprof::pypy
