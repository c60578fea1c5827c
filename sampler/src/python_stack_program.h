// The BPF program that reads Python shadow stacks at each perf sample
// (sampler/bpf/shadow_stack.bpf.c), loaded with libbpf from the skeleton
// bpftool generated at build time, and its maps: the watched processes'
// layouts, the ring buffer of records, the count of records dropped.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "python_stack_join.h"
#include "sampler/sampler.h"

struct shadow_stack;
struct ring_buffer;

namespace jitprof::sampler {

class PythonStackProgram {
 public:
  // The loaded program, or why it cannot run (one line naming the fix).
  static std::variant<std::unique_ptr<PythonStackProgram>, std::string> load();
  ~PythonStackProgram();
  PythonStackProgram(const PythonStackProgram&) = delete;
  PythonStackProgram& operator=(const PythonStackProgram&) = delete;

  // Runs the program at each sample of the perf event `perf_fd` (and of the
  // events inherited from it later). Returns why not, when the kernel refuses.
  std::optional<std::string> attach(int perf_fd);

  // Starts or stops reading the stacks of process `pid`. Thread-safe.
  void watch(pid_t pid, const ShadowStackLayout& layout);
  void forget(pid_t pid);

  // Readable when records wait (woken once a quarter of the ring is used).
  int epoll_fd() const;
  // Hands every record in the ring to `on_record`.
  void drain(const std::function<void(PythonStackRecord)>& on_record);
  // Records the program dropped because the ring buffer was full.
  std::uint64_t dropped() const;
  // The kernel's count of the program's runs and their time, when its BPF
  // statistics are on (sysctl kernel.bpf_stats_enabled=1); zeros otherwise.
  struct RunStats {
    std::uint64_t runs = 0, nanoseconds = 0;
  };
  RunStats run_stats() const;

 private:
  PythonStackProgram() = default;
  static int on_ring_record(void* context, void* data, std::size_t size);

  shadow_stack* skeleton_ = nullptr;
  ring_buffer* ring_ = nullptr;
  const std::function<void(PythonStackRecord)>* on_record_ = nullptr;  // during drain()
};

}  // namespace jitprof::sampler
