// PyPy's per-thread block (pypy_threadlocal_s, libpypy's PT_TLS segment) and
// the global list that links every thread's block, found in the libpypy file
// at hand and read in a live process without stopping it.
//
// Contract:
// - Every offset is derived from the binary: nothing of one build is built in.
//   read_thread_local_layout reads the ELF file and disassembles
//   pypy_execute_source and the thread-locals builder it calls; it throws
//   LayoutError naming the first thing it did not find.
// - Nothing is cached here: callers cache layouts by build id.
// - inspect_thread_locals only reads the target (process_vm_readv): the walk
//   races the target's threads, so a block that changes under it is skipped.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace jitprof::pypy {

struct ThreadLocalLayout {
  std::string build_id;  // hex GNU build id of the libpypy file
  std::uint64_t tls_size = 0, tls_align = 0;  // PT_TLS memsz and alignment
  // Link-time address of the GOT slot of libpypy's only R_X86_64_DTPMOD64
  // relocation: the dynamic linker writes libpypy's TLS module id there.
  std::uint64_t dtpmod_slot_vaddr = 0;
  // Link-time address of the global list head of all thread blocks: the first
  // RIP-relative lea (other than the TLS descriptor's) of the thread-locals
  // builder that pypy_execute_source calls.
  std::uint64_t thread_list_head_vaddr = 0;
  // Holds 42 once the block is set up: the memory operand of pypy_execute_source's `cmp ..., 42`.
  std::uint32_t ready_offset = 0;
  // pthread_self() of the block's thread (its fs_base): where the builder
  // stores rax into the block right after calling pthread_self@plt.
  std::uint32_t thread_ident_offset = 0;
  // vmprof_tl_stack, head of the vmprof shadow stack: the last word of PT_TLS,
  // as RPython sorts the block's fields by name.
  std::uint32_t shadow_stack_offset = 0;
  // `next` of the doubly linked list of blocks: the builder links a new block
  // in after the head with a RIP-relative store into head.next.
  std::uint32_t list_next_offset = 0;
};

class LayoutError : public std::runtime_error {
  using runtime_error::runtime_error;
};

// Throws LayoutError, with one line naming what was not found, when `libpypy`
// cannot be read or is not a PyPy library this code understands.
ThreadLocalLayout read_thread_local_layout(const std::filesystem::path& libpypy);

struct LoadedLibpypy {
  std::filesystem::path path;  // openable by this process (through /proc/PID/root when needed)
  std::uint64_t load_bias;     // runtime address minus link-time address
};
// From /proc/PID/maps; nullopt when the process has no libpypy mapped (or is gone).
std::optional<LoadedLibpypy> find_libpypy(pid_t pid);

struct LiveThreadBlock {
  std::uint64_t address;       // of the block in the target
  std::uint64_t thread_ident;  // pthread_self() of its thread
  pid_t tid;                   // kernel thread id; 0 when it could not be tied (the thread just ended)
};
struct LiveThreadLocals {
  std::uint64_t module_id;  // libpypy's TLS module id, from the DTPMOD64 slot
  std::vector<LiveThreadBlock> blocks;
};

// Walks the list of blocks from its head, keeping the blocks that are ready
// (42) and whose thread_ident is a thread pointer (its first word points to
// itself, as the x86-64 TLS ABI requires), each tied to its kernel tid through
// struct pthread (the tid's offset there is learned as the one where the
// main thread's value is the PID). nullopt when the process has not set up
// its thread locals yet; throws std::system_error when its memory cannot be
// read (no such process, or no permission: ptrace access is needed).
std::optional<LiveThreadLocals> inspect_thread_locals(pid_t pid, const ThreadLocalLayout& layout,
                                                      std::uint64_t load_bias);

}  // namespace jitprof::pypy
