#include "unwind/unwinder.h"

#include <libunwind.h>

#include <cstring>
#include <optional>

#include "symbols/elf_image.h"

// Part of libunwind's remote API, exported but not declared in its header:
// looks an IP up in a binary-search table of FDEs (.eh_frame_hdr).
extern "C" int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t as, unw_word_t ip, unw_dyn_info_t* di,
                                                  unw_proc_info_t* pi, int need_unwind_info, void* arg);

namespace jitprof::unwind {

using namespace arch;  // the register names
using symbols::AddressSpace;

namespace {

// What the libunwind callbacks see of the sample being unwound.
struct Context {
  const AddressSpace* space;
  arch::Registers registers;
  std::span<const std::uint8_t> stack;
  std::uint64_t stack_base;

  bool read_word(std::uint64_t address, std::uint64_t& value) const {
    if (address >= stack_base && address - stack_base + arch::kWordBytes <= stack.size()) {
      std::memcpy(&value, stack.data() + (address - stack_base), arch::kWordBytes);
      return true;
    }
    const AddressSpace::Image* image = space->image_at(address);
    return image && image->elf->read(address - image->bias, &value, arch::kWordBytes);
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

// How far above RSP a JIT frame is looked for: past what an assembler helper
// (allocation and write-barrier slow paths, stack checks) or a call's stack
// arguments put below it.
constexpr std::uint64_t kJitFrameSearchBytes = 1024;

// The RSP of the JIT frame the stack at RSP belongs to: the frame whose
// shadow-stack entry (arch/x86_64.h) names itself. Nullopt when none is in
// reach, e.g. in a frame's prologue before the entry is written.
std::optional<std::uint64_t> find_jit_frame(const Context& context) {
  const std::uint64_t rsp = context.registers[kRsp];
  for (std::uint64_t frame = rsp; frame <= rsp + kJitFrameSearchBytes; frame += kWordBytes) {
    const std::uint64_t entry = frame + kJitShadowEntrySlot * kWordBytes;
    std::uint64_t value = 0, kind = 0;
    if (!context.read_word(entry + kWordBytes, value)) return std::nullopt;
    if (value == frame && context.read_word(entry + 2 * kWordBytes, kind) && kind == kShadowStackJitted) return frame;
  }
  return std::nullopt;
}

// Steps from a JIT frame to its caller; false when the frame does not look
// like one set up by PyPy's call header. Below the frame (in a helper it
// called), the helper's return address into the frame's code comes first.
bool step_jit_frame(Context& context, std::vector<std::uint64_t>& frames) {
  const std::uint64_t rsp = find_jit_frame(context).value_or(context.registers[kRsp]);
  if (std::uint64_t call_site = 0; rsp > context.registers[kRsp] && context.read_word(rsp - kWordBytes, call_site) &&
                                   call_site != context.registers[kRip] && context.space->in_jit_code(call_site))
    frames.push_back(call_site);
  std::uint64_t return_address = 0;
  if (!context.read_word(rsp + arch::kJitFrameWords * arch::kWordBytes, return_address)) return false;
  if (!context.space->is_code(return_address)) return false;
  std::array<std::uint64_t, arch::kJitSavedRegisters.size()> saved{};
  for (std::size_t i = 0; i < saved.size(); ++i)
    if (!context.read_word(rsp + (arch::kJitSavedRegistersSlot + i) * arch::kWordBytes, saved[i])) return false;
  for (std::size_t i = 0; i < saved.size(); ++i) context.registers[arch::kJitSavedRegisters[i]] = saved[i];
  context.registers[kRsp] = rsp + (arch::kJitFrameWords + 1) * arch::kWordBytes;
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

Result Unwinder::unwind(const AddressSpace& space, const arch::Registers& registers,
                        std::span<const std::uint8_t> stack, std::size_t max_frames) const {
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
      if (!step_jit_frame(context, result.frames)) {
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
