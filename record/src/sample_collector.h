// Turns the sampler's records into bundle sections: samples unwound and
// encoded, mappings, tasks, and a name for every address seen.
#pragma once

#include <sys/types.h>

#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "bundle/bundle.h"
#include "bundle/samples.h"
#include "bundle/sections.h"
#include "crash_watcher.h"
#include "sampler/sampler.h"
#include "symbols/symbols.h"
#include "unwind/unwinder.h"

namespace jitprof::record {

// Receives perf records on the sampler's reader thread and keeps them, in
// their bundle encodings, until the recorder's loop takes them.
class SampleCollector : public sampler::Listener {
 public:
  // Keeps the samples of `target`, and with `children` of its child processes too.
  SampleCollector(pid_t target, bool children) : target_(target), children_(children) {}

  void on_sample(const sampler::Sample& sample) override;
  void on_mapping(const sampler::Mapping& mapping) override;
  void on_task(const sampler::TaskEvent& event) override;

  // Appends what arrived since the last call: samples, mappings, tasks, symbols.
  void flush_into(bundle::BundleWriter& writer);

  // Samples whose innermost frame was in JIT memory, by (pid, address).
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint64_t> jit_leaves() const;
  std::size_t threads_sampled() const;
  std::uint64_t kept() const;

  // Only once the sampler's reader thread has stopped: names the kernel
  // addresses seen; returns how many got a name.
  std::size_t name_kernel_addresses();
  // Only once the sampler's reader thread has stopped: the faulting thread's
  // stack unwound like a sample, its native frames named.
  std::vector<bundle::CrashFrame> unwind_fault(std::uint32_t pid, const Fault& fault);

 private:
  // Names each address once per process, so the bundle reads on a machine
  // without these binaries.
  void remember_symbols(std::uint32_t pid, const symbols::AddressSpace& space, const std::vector<std::uint64_t>& frames);

  const pid_t target_;
  const bool children_;
  // Touched by the sampler's reader thread only.
  unwind::Unwinder unwinder_;
  std::unordered_map<std::uint32_t, symbols::AddressSpace> spaces_;
  std::unordered_map<std::uint32_t, std::unordered_set<std::uint64_t>> symbolized_;
  std::unordered_set<std::uint64_t> kernel_addresses_;
  mutable std::mutex mutex_;
  bundle::SampleEncoder encoder_;
  bundle::SectionBuffer<bundle::MappingRecord> mappings_;
  bundle::SectionBuffer<bundle::TaskRecord> tasks_;
  bundle::SectionBuffer<bundle::SymbolRecord> symbols_;
  std::uint64_t kept_ = 0;
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint64_t> jit_leaves_;
  std::unordered_set<std::uint32_t> tids_;
};

}  // namespace jitprof::record
