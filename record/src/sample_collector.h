// Turns the sampler's records into bundle sections: samples unwound and
// encoded, mappings, tasks, and a name for every address seen.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "bundle/bundle.h"
#include "bundle/samples.h"
#include "crash_watcher.h"
#include "sampler/sampler.h"
#include "symbols/symbols.h"
#include "unwind/unwinder.h"

namespace jitprof::record {

// Receives perf records on the sampler's reader thread and keeps them, in
// their bundle encodings, until the recorder's loop takes them.
class SampleCollector : public sampler::Listener {
 public:
  SampleCollector(pid_t target, bool children) : target_(target), children_(children) {}

  void on_sample(const sampler::Sample& sample) override {
    if (!children_ && sample.pid != static_cast<std::uint32_t>(target_)) return;
    bundle::NativeSample out;
    out.time_ns = sample.time_ns;
    out.pid = sample.pid;
    out.tid = sample.tid;
    out.cpu = sample.cpu;
    if (sample.in_kernel) {
      out.kernel_stack = sample.kernel_callchain;
      kernel_addresses_.insert(sample.kernel_callchain.begin(), sample.kernel_callchain.end());
    }
    if (sample.has_user_registers) {
      const symbols::AddressSpace& space = spaces_[sample.pid];
      unwind::Result unwound = unwinder_.unwind(space, sample.user_registers, sample.user_stack);
      out.user_stack = std::move(unwound.frames);
      remember_symbols(sample.pid, space, out.user_stack);
      out.unwind_stop = to_bundle(unwound.stop);
    } else {
      out.unwind_stop = bundle::UnwindStop::NoUserStack;
    }
    const bool jit_leaf = !out.user_stack.empty() && spaces_[sample.pid].in_jit_code(out.user_stack.front());
    std::lock_guard lock(mutex_);
    if (jit_leaf) ++jit_leaves_[{sample.pid, out.user_stack.front()}];
    tids_.insert(sample.tid);
    encoder_.add(out);
    ++kept_;
  }

  void on_mapping(const sampler::Mapping& mapping) override {
    spaces_[mapping.pid].add({mapping.start, mapping.length, mapping.file_offset, mapping.path, mapping.prot});
    const nlohmann::json line = {{"t", mapping.time_ns},       {"pid", mapping.pid},   {"tid", mapping.tid},
                                 {"start", mapping.start},     {"length", mapping.length},
                                 {"offset", mapping.file_offset}, {"prot", mapping.prot}, {"flags", mapping.flags},
                                 {"major", mapping.major},     {"minor", mapping.minor}, {"inode", mapping.inode},
                                 {"path", mapping.path}};
    std::lock_guard lock(mutex_);
    maps_ += line.dump() + "\n";
  }

  void on_task(const sampler::TaskEvent& event) override {
    // A new process starts as a copy of its parent; exec replaces it all.
    if (event.kind == sampler::TaskEvent::Kind::Fork && event.pid != event.parent_pid)
      spaces_[event.pid] = spaces_[event.parent_pid];
    if (event.kind == sampler::TaskEvent::Kind::Exec) spaces_[event.pid] = symbols::AddressSpace{};
    static constexpr const char* kKinds[] = {"fork", "exit", "comm", "exec"};
    const nlohmann::json line = {{"t", event.time_ns},   {"kind", kKinds[static_cast<int>(event.kind)]},
                                 {"pid", event.pid},     {"tid", event.tid},
                                 {"ppid", event.parent_pid}, {"ptid", event.parent_tid},
                                 {"comm", event.comm}};
    std::lock_guard lock(mutex_);
    tasks_ += line.dump() + "\n";
  }

  void flush_into(bundle::BundleWriter& writer) {
    std::lock_guard lock(mutex_);
    const auto samples = encoder_.take();
    if (!samples.empty()) writer.append(bundle::sections::kSamples, samples);
    if (!maps_.empty()) writer.append(bundle::sections::kMaps, maps_);
    if (!tasks_.empty()) writer.append(bundle::sections::kTasks, tasks_);
    if (!symbols_.empty()) writer.append(bundle::sections::kSymbols, symbols_);
    maps_.clear();
    tasks_.clear();
    symbols_.clear();
  }

  // Samples whose innermost frame was in JIT memory, by (pid, address).
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint64_t> jit_leaves() const {
    std::lock_guard lock(mutex_);
    return jit_leaves_;
  }

  std::size_t threads_sampled() const {
    std::lock_guard lock(mutex_);
    return tids_.size();
  }

  std::uint64_t kept() const {
    std::lock_guard lock(mutex_);
    return kept_;
  }

  // Only once the sampler's reader thread has stopped: names the kernel
  // addresses seen; returns how many got a name.
  std::size_t name_kernel_addresses() {
    if (kernel_addresses_.empty()) return 0;
    const auto kernel = symbols::KernelSymbols::load();
    std::size_t named = 0;
    std::string lines;
    for (std::uint64_t address : kernel_addresses_) {
      const auto symbol = kernel.symbolize(address);
      if (!symbol) continue;
      ++named;
      lines += symbol_line(0, address, *symbol);
    }
    std::lock_guard lock(mutex_);
    symbols_ += lines;
    return named;
  }

  // Only once the sampler's reader thread has stopped.
  std::vector<nlohmann::json> unwind_fault(std::uint32_t pid, const Fault& fault) {
    const symbols::AddressSpace& space = spaces_[pid];
    const unwind::Result unwound = unwinder_.unwind(space, fault.registers, fault.stack);
    std::vector<nlohmann::json> frames;
    for (std::size_t i = 0; i < unwound.frames.size(); ++i) {
      const std::uint64_t address = unwound.frames[i];
      nlohmann::json frame = {{"address", address}, {"jit", space.in_jit_code(address)}};
      if (auto symbol = space.symbolize(address, i > 0)) {
        frame["path"] = symbol->path;
        frame["name"] = symbol->name;
        frame["offset"] = symbol->offset;
        if (!symbol->source.empty()) frame["source"] = source_json(symbol->source);
      }
      frames.push_back(std::move(frame));
    }
    return frames;
  }

 private:
  // [{"function", "file", "line"}...], outermost first.
  static nlohmann::json source_json(const std::vector<symbols::SourceFrame>& source) {
    nlohmann::json frames = nlohmann::json::array();
    for (const auto& frame : source)
      frames.push_back({{"function", frame.function}, {"file", frame.file}, {"line", frame.line}});
    return frames;
  }

  // One SYMS line; kernel addresses go under pid 0.
  static std::string symbol_line(std::uint32_t pid, std::uint64_t address, const symbols::Symbol& symbol) {
    nlohmann::json line = {{"pid", pid},           {"address", address},   {"path", symbol.path},
                           {"build_id", symbol.build_id}, {"name", symbol.name}, {"offset", symbol.offset}};
    if (!symbol.source.empty()) line["source"] = source_json(symbol.source);
    return line.dump() + "\n";
  }

  // Names each address once per process, so the bundle reads on a machine
  // without these binaries.
  void remember_symbols(std::uint32_t pid, const symbols::AddressSpace& space, const std::vector<std::uint64_t>& frames) {
    std::string lines;
    auto& seen = symbolized_[pid];
    for (std::size_t i = 0; i < frames.size(); ++i) {
      const std::uint64_t address = frames[i];
      if (!seen.insert(address).second) continue;
      const auto symbol = space.symbolize(address, i > 0);
      if (!symbol) continue;
      lines += symbol_line(pid, address, *symbol);
    }
    if (lines.empty()) return;
    std::lock_guard lock(mutex_);
    symbols_ += lines;
  }

  static bundle::UnwindStop to_bundle(unwind::Stop stop) {
    switch (stop) {
      case unwind::Stop::Complete: return bundle::UnwindStop::Complete;
      case unwind::Stop::NoUnwindInfo: return bundle::UnwindStop::NoUnwindInfo;
      case unwind::Stop::UnreadableMemory: return bundle::UnwindStop::UnreadableMemory;
      case unwind::Stop::JitFrame: return bundle::UnwindStop::JitFrame;
      case unwind::Stop::DepthLimit: return bundle::UnwindStop::DepthLimit;
      case unwind::Stop::BadFrame: return bundle::UnwindStop::BadFrame;
    }
    return bundle::UnwindStop::BadFrame;
  }

  const pid_t target_;
  const bool children_;
  // Touched by the sampler's reader thread only.
  unwind::Unwinder unwinder_;
  std::unordered_map<std::uint32_t, symbols::AddressSpace> spaces_;
  std::unordered_map<std::uint32_t, std::unordered_set<std::uint64_t>> symbolized_;
  std::unordered_set<std::uint64_t> kernel_addresses_;
  mutable std::mutex mutex_;
  bundle::SampleEncoder encoder_;
  std::string maps_, tasks_, symbols_;
  std::uint64_t kept_ = 0;
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint64_t> jit_leaves_;
  std::unordered_set<std::uint32_t> tids_;
};

}  // namespace jitprof::record
