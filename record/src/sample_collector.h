// Turns the sampler's records into bundle sections: samples unwound and
// encoded with their Python stacks, mappings, tasks, and a name for every
// address seen. When a kept process maps libpypy, it asks the sampler to read
// that process's Python stacks, with the layout read from that libpypy file,
// and starts loading libpypy's function names (symbols::RpythonNames) on a
// thread of their own: computing them takes seconds the first time, so
// libpypy addresses are named once they are loaded, at the latest when
// sampling ends, never while the rings wait.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "bundle/bundle.h"
#include "bundle/samples.h"
#include "bundle/sections.h"
#include "crash_watcher.h"
#include "pypy/thread_locals.h"
#include "sampler/sampler.h"
#include "symbols/symbols.h"
#include "unwind/unwinder.h"

namespace jitprof::record {

// Receives perf records on the sampler's reader thread and keeps them, in
// their bundle encodings, until the recorder's loop takes them.
class SampleCollector : public sampler::Listener {
 public:
  // Asks the sampler to read a process's Python stacks from now on (Sampler::watch_python_stacks).
  using WatchPythonStacks = std::function<void(pid_t, const sampler::ShadowStackLayout&)>;

  // Keeps the samples of `target`, and with `children` of its child processes
  // too; reads their Python stacks through `watch` when given.
  SampleCollector(pid_t target, bool children, WatchPythonStacks watch = {})
      : target_(target), children_(children), watch_(std::move(watch)) {}

  void on_sample(const sampler::Sample& sample) override;
  void on_mapping(const sampler::Mapping& mapping) override;
  void on_mapping_read(const sampler::Mapping& mapping) override;
  void on_task(const sampler::TaskEvent& event) override;

  // Appends what arrived since the last call: samples, mappings, tasks, symbols.
  void flush_into(bundle::BundleWriter& writer);

  // Samples whose innermost frame was in JIT memory, by (pid, address).
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint64_t> jit_leaves() const;
  std::size_t threads_sampled() const;
  std::uint64_t kept() const;
  // Processes whose Python stacks are read; why others' are not (a line per libpypy file).
  std::size_t python_processes() const;
  std::vector<std::string> python_stack_problems() const;
  // The code objects' unique ids on the Python stacks kept, by process.
  std::map<std::uint32_t, std::vector<std::uint64_t>> code_ids() const;
  // The JIT addresses those stacks name their JIT levels by (as the
  // correlator looks them up: a return address at its call), by process.
  std::map<std::uint32_t, std::vector<std::uint64_t>> python_jit_addresses() const;

  // Only once the sampler's reader thread has stopped: names the kernel
  // addresses seen; returns how many got a name.
  std::size_t name_kernel_addresses();
  // Only once the sampler's reader thread has stopped: waits for libpypy's
  // names and names the libpypy addresses that came before them.
  void name_libpypy_addresses();
  // One-line messages for the user since the last call (from any thread):
  // that libpypy's names are being computed.
  std::vector<std::string> take_notices();
  // Only once the sampler's reader thread has stopped: the faulting thread's
  // stack unwound like a sample, its native frames named.
  std::vector<bundle::CrashFrame> unwind_fault(std::uint32_t pid, const Fault& fault);

 private:
  // Names each address once per process, so the bundle reads on a machine
  // without these binaries.
  void remember_symbols(std::uint32_t pid, const symbols::AddressSpace& space, const std::vector<std::uint64_t>& frames);

  bool keeps(std::uint32_t pid) const { return children_ || pid == static_cast<std::uint32_t>(target_); }
  void watch_libpypy(const sampler::Mapping& mapping);
  // Starts loading a libpypy file's names; whether they are loaded.
  bool libpypy_names_ready(const std::shared_ptr<const symbols::ElfImage>& libpypy);
  // Names the deferred addresses whose libpypy names are loaded (all, when `wait`).
  void name_deferred(bool wait);

  // A libpypy address seen before its file's names were loaded.
  struct Deferred {
    std::uint32_t pid;
    std::uint64_t address;
    bool return_address;
    symbols::AddressSpace::Image image;
  };
  struct Notices {
    std::mutex mutex;
    std::vector<std::string> lines;
  };

  const pid_t target_;
  const bool children_;
  const WatchPythonStacks watch_;
  // Touched by the sampler's reader thread only.
  unwind::Unwinder unwinder_;
  std::unordered_map<std::uint32_t, symbols::AddressSpace> spaces_;
  std::unordered_map<std::uint32_t, std::unordered_set<std::uint64_t>> symbolized_;
  std::unordered_set<std::uint64_t> kernel_addresses_;
  std::vector<Deferred> deferred_;
  // Shared with the threads that load libpypy's names, which may outlive a collector.
  std::shared_ptr<Notices> notices_ = std::make_shared<Notices>();
  std::map<std::string, std::optional<pypy::ThreadLocalLayout>> layouts_;  // by libpypy path; nullopt: unreadable
  mutable std::mutex mutex_;
  bundle::SampleEncoder encoder_;
  bundle::SectionBuffer<bundle::MappingRecord> mappings_;
  bundle::SectionBuffer<bundle::TaskRecord> tasks_;
  bundle::SectionBuffer<bundle::SymbolRecord> symbols_;
  std::uint64_t kept_ = 0;
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint64_t> jit_leaves_;
  std::unordered_set<std::uint32_t> tids_;
  std::unordered_map<std::uint32_t, sampler::ShadowStackLayout> python_processes_;
  std::vector<std::string> python_stack_problems_;
  std::unordered_map<std::uint32_t, std::unordered_set<std::uint64_t>> code_ids_, python_jit_addresses_;
};

}  // namespace jitprof::record
