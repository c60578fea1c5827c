// Out-of-process sampling of a process tree with perf_event_open: the
// software cpu-clock event (no hardware PMU needed), one ring buffer per CPU,
// drained by a reader thread. Each sample carries the time, pid/tid, exact
// user IP, the kernel callchain, the user registers and a copy of the top of
// the user stack; mmap, comm, fork and exit records describe the address
// spaces so that addresses can be resolved later.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "arch/x86_64.h"

namespace jitprof::sampler {

struct Settings {
  unsigned rate_hz = 1000;               // samples per second of CPU time, per thread
  // Copied per sample for unwinding: 16 KiB ended 8% of a two-thread PyPy
  // program's stacks early, 32 KiB 0.2%.
  std::uint32_t user_stack_bytes = 32768;
  std::size_t ring_pages = 2048;         // per CPU, a power of two (8 MiB: ~250 ms of 32 KiB stacks at 1 kHz)
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
  virtual void on_task(const TaskEvent& event) = 0;
};

struct Stats {
  std::uint64_t samples = 0;
  std::uint64_t lost = 0;        // dropped by the kernel: the ring buffer was full
  std::uint64_t throttled = 0;   // times the kernel throttled the event
  std::uint64_t records = 0;
};

class SamplerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// sampler/src: the events and their rings, the record parser and the sorter.
class Ring;
class RecordSorter;
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

 private:
  explicit Sampler(Events events);
  void run(Listener& listener);
  void read_rings();
  void keep(std::span<const std::uint8_t> record);

  std::vector<std::unique_ptr<Ring>> rings_;
  std::unique_ptr<RecordSorter> sorter_;  // reader thread only
  std::thread reader_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> samples_{0}, lost_{0}, throttled_{0}, records_{0};
  bool kernel_frames_ = true;
  int wake_fd_ = -1;
};

}  // namespace jitprof::sampler
