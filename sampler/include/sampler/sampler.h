// Out-of-process sampling of a process tree with perf_event_open: the
// software cpu-clock event (no hardware PMU needed), one ring buffer per CPU,
// drained by a reader thread. Each sample carries the time, pid/tid, exact
// user IP, the kernel callchain, the user registers and a copy of the top of
// the user stack; mmap, comm, fork and exit records describe the address
// spaces so that addresses can be resolved later.
//
// With Settings::python_stacks, a BPF program attached to the same events
// also reads, at each sample, the Python shadow stack (PyPy's vmprof stack)
// of the interrupted thread in the processes given to watch_python_stacks:
// the sample carries the exact Python frames of its moment.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "arch/x86_64.h"

namespace jitprof::sampler {

struct Settings {
  unsigned rate_hz = 1000;               // samples per second of CPU time, per thread
  // Copied per sample for unwinding: 16 KiB ended 8% of a two-thread PyPy
  // program's stacks early, 32 KiB 0.2%.
  std::uint32_t user_stack_bytes = 32768;
  std::size_t ring_pages = 2048;         // per CPU, a power of two (8 MiB: ~250 ms of 32 KiB stacks at 1 kHz)
  // Load the BPF program that reads Python shadow stacks (needs root or
  // CAP_BPF + CAP_PERFMON and kernel BTF; without them the sampler runs without).
  bool python_stacks = false;
};

// Where a process keeps each thread's shadow stack, a linked list of
// {next, value, kind} words: in a block of a shared library's thread-local
// storage, found through the thread's DTV with the library's TLS module id.
// The caller computes it from the library's ELF (for libpypy: the GOT slot of
// its R_X86_64_DTPMOD64 relocation, and pypy_threadlocal_s's fields).
struct ShadowStackLayout {
  std::uint64_t dtpmod_slot_address;  // in the process: the word holding the module id
  std::uint32_t ready_offset;         // in the block: a word that is 42 once the block is set up
  std::uint32_t ident_offset;         // a word equal to the thread's fs_base (pthread_self())
  std::uint32_t stack_offset;         // the head of the list
  bool check_ident;                   // a block whose ident is not the thread's is NoThreadBlock
};

enum class PythonStackStatus : std::uint8_t {
  Complete,
  Truncated,      // deeper than 256 entries: the innermost 256
  NotReady,       // the module id is 0, the block is not allocated, or ready != 42
  NoThreadBlock,  // the block's ident is not the thread's
  Unreadable,     // a read failed: the entries read before it
  Lost,           // the BPF record was dropped or not found for this sample
};

struct PythonFrameEntry {
  static constexpr std::uint8_t kCode = 1;    // value: the code object's unique id
  static constexpr std::uint8_t kJitted = 3;  // value: the JIT frame's RSP; return_address: the word at value - 8
  std::uint8_t kind;
  std::uint64_t value, return_address;  // return_address is 0 unless kJitted
  friend bool operator==(const PythonFrameEntry&, const PythonFrameEntry&) = default;
};

struct PythonStack {
  PythonStackStatus status = PythonStackStatus::Complete;
  std::vector<PythonFrameEntry> entries;  // innermost first
};

struct Sample {
  std::uint64_t time_ns;  // CLOCK_MONOTONIC
  std::uint32_t pid, tid, cpu;
  std::uint64_t ip;        // where the sample hit (kernel or user)
  bool in_kernel;
  std::vector<std::uint64_t> kernel_callchain;  // leaf first; empty when the sample hit user code
  bool has_user_registers;
  arch::Registers user_registers;
  std::span<const std::uint8_t> user_stack;  // from user_registers[arch::kRsp]; valid during the callback only
  // Set for samples of processes watched (watch_python_stacks) at the
  // sample's time, when the BPF program runs.
  std::optional<PythonStack> python_stack;
};

struct Mapping {
  std::uint64_t time_ns;
  std::uint32_t pid, tid;
  std::uint64_t start, length, file_offset;
  std::uint32_t major, minor;
  std::uint64_t inode;
  std::uint32_t prot, flags;
  std::string path;  // "//anon", "[heap]", "/usr/lib/...", ...
};

struct TaskEvent {
  enum class Kind { Fork, Exit, Comm, Exec };
  Kind kind;
  std::uint64_t time_ns;
  std::uint32_t pid, tid, parent_pid, parent_tid;
  std::string comm;  // Comm and Exec
};

// Called on the reader thread.
class Listener {
 public:
  virtual ~Listener() = default;
  virtual void on_sample(const Sample& sample) = 0;
  virtual void on_mapping(const Mapping& mapping) = 0;
  // Each mapping again, as soon as its ring is read: before the records are
  // put in time order, which holds them back for up to a few hundred
  // milliseconds. For work later samples need, such as watch_python_stacks.
  virtual void on_mapping_read(const Mapping&) {}
  virtual void on_task(const TaskEvent& event) = 0;
};

struct Stats {
  std::uint64_t samples = 0;
  std::uint64_t lost = 0;        // dropped by the kernel: the ring buffer was full
  std::uint64_t throttled = 0;   // times the kernel throttled the event
  std::uint64_t records = 0;
  std::uint64_t python_stacks = 0;          // samples joined with their shadow stack record
  std::uint64_t python_stacks_lost = 0;     // samples of watched processes without their record
  std::uint64_t python_stacks_dropped = 0;  // records the BPF program dropped: its ring buffer was full
  // The BPF program's runs and their time, from the kernel's BPF statistics
  // (zeros unless sysctl kernel.bpf_stats_enabled=1 while it ran).
  std::uint64_t python_program_runs = 0, python_program_ns = 0;
};

class SamplerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// sampler/src: the events and their rings, the record parser and the sorter.
class Ring;
class RecordSorter;
class PythonStackProgram;
class PythonStackJoin;
struct Events;

class Sampler {
 public:
  // Opens per-CPU events that follow `pid` and every thread and process it
  // starts, counting from its next exec. Throws SamplerError with the cause
  // and the fix when the kernel refuses.
  static std::unique_ptr<Sampler> for_process_at_exec(pid_t pid, const Settings& settings);
  // Opens events on every thread of a running process, now, and follows the
  // threads it starts later. The target is never stopped. Its executable
  // mappings and thread names come first, read from /proc.
  static std::unique_ptr<Sampler> for_running_process(pid_t pid, const Settings& settings);
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // Starts the reader thread; stop() drains what is left and joins it.
  void start(Listener& listener);
  void stop();
  Stats stats() const;
  bool kernel_frames() const { return kernel_frames_; }

  // The samples of `pid` taken from now on carry their Python stack, read
  // as `layout` says. Thread-safe; may be called from the Listener (e.g. once
  // the library holding the stacks is mapped). The watch ends when the
  // process execs or exits. Does nothing when python_stacks_unavailable().
  void watch_python_stacks(pid_t pid, const ShadowStackLayout& layout);
  // Why the BPF program does not run, in one line that names the fix;
  // nullopt when it runs or Settings::python_stacks was false.
  std::optional<std::string> python_stacks_unavailable() const { return python_unavailable_; }

 private:
  struct PythonStacks;
  Sampler(Events events, PythonStacks python, const Settings& settings);
  void run(Listener& listener);
  void read_rings(Listener& listener);
  void drain_python_stacks();
  void keep(std::span<const std::uint8_t> record, Listener& listener);
  // Hands the sorted records up to the horizon (all of them when `all`) to the listener.
  void hand_out(bool all, Listener& listener);

  std::vector<std::unique_ptr<Ring>> rings_;
  std::unique_ptr<RecordSorter> sorter_;  // reader thread only
  std::thread reader_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> samples_{0}, lost_{0}, throttled_{0}, records_{0};
  bool kernel_frames_ = true;
  int wake_fd_ = -1;
  std::vector<Mapping> existing_mappings_;  // a running process's, from /proc: read before any sample
  // Python stacks: the BPF program (null when not running), the join (reader
  // thread only), and the watches not yet given to the join.
  std::unique_ptr<PythonStackProgram> python_;
  std::optional<std::string> python_unavailable_;
  std::uint64_t join_window_ns_;
  std::unique_ptr<PythonStackJoin> join_;
  std::mutex watch_mutex_;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> new_watches_;  // pid, since
  std::atomic<std::uint64_t> python_stacks_{0}, python_stacks_lost_{0};
};

}  // namespace jitprof::sampler
