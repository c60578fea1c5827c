#include "sample_collector.h"

#include <fmt/format.h>

#include "arch/x86_64.h"
#include "symbols/elf_image.h"
#include "symbols/rpython_names.h"

namespace jitprof::record {
namespace {

bundle::UnwindStop to_bundle(unwind::Stop stop) {
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

// Kernel addresses go under pid 0.
bundle::SymbolRecord symbol_record(std::uint32_t pid, std::uint64_t address, const symbols::Symbol& symbol) {
  bundle::SymbolRecord record{pid, address, symbol.path, symbol.build_id, symbol.name, symbol.offset, {}, symbol.component};
  for (const auto& frame : symbol.source) record.source.push_back({frame.function, frame.file, frame.line});
  return record;
}

bundle::TaskRecord::Kind task_kind(sampler::TaskEvent::Kind kind) {
  switch (kind) {
    case sampler::TaskEvent::Kind::Fork: return bundle::TaskRecord::Kind::Fork;
    case sampler::TaskEvent::Kind::Exit: return bundle::TaskRecord::Kind::Exit;
    case sampler::TaskEvent::Kind::Comm: return bundle::TaskRecord::Kind::Comm;
    case sampler::TaskEvent::Kind::Exec: return bundle::TaskRecord::Kind::Exec;
  }
  return bundle::TaskRecord::Kind::Comm;
}

bundle::PythonStackStatus to_bundle(sampler::PythonStackStatus status) {
  switch (status) {
    case sampler::PythonStackStatus::Complete: return bundle::PythonStackStatus::Complete;
    case sampler::PythonStackStatus::Truncated: return bundle::PythonStackStatus::Truncated;
    case sampler::PythonStackStatus::NotReady: return bundle::PythonStackStatus::NotReady;
    case sampler::PythonStackStatus::NoThreadBlock: return bundle::PythonStackStatus::NoThreadBlock;
    case sampler::PythonStackStatus::Unreadable: return bundle::PythonStackStatus::Unreadable;
    case sampler::PythonStackStatus::Lost: return bundle::PythonStackStatus::Lost;
  }
  return bundle::PythonStackStatus::Unreadable;
}

}  // namespace

void SampleCollector::on_sample(const sampler::Sample& sample) {
  if (!keeps(sample.pid)) return;
  bundle::NativeSample out;
  out.time_ns = sample.time_ns;
  out.pid = sample.pid;
  out.tid = sample.tid;
  out.cpu = sample.cpu;
  if (sample.in_kernel) {
    out.kernel_stack = sample.kernel_callchain;
    kernel_addresses_.insert(sample.kernel_callchain.begin(), sample.kernel_callchain.end());
  }
  const symbols::AddressSpace& space = spaces_[sample.pid];
  if (sample.has_user_registers) {
    unwind::Result unwound = unwinder_.unwind(space, sample.user_registers, sample.user_stack);
    out.user_stack = std::move(unwound.frames);
    remember_symbols(sample.pid, space, out.user_stack);
    out.unwind_stop = to_bundle(unwound.stop);
  } else {
    out.unwind_stop = bundle::UnwindStop::NoUserStack;
  }
  const bool jit_leaf = !out.user_stack.empty() && space.in_jit_code(out.user_stack.front());
  if (sample.python_stack) {
    out.python_status = to_bundle(sample.python_stack->status);
    for (const sampler::PythonFrameEntry& entry : sample.python_stack->entries) {
      if (entry.kind == sampler::PythonFrameEntry::kCode)
        out.python_stack.push_back({bundle::PythonFrame::Kind::Code, entry.value});
      else if (entry.kind == sampler::PythonFrameEntry::kJitted)
        out.python_stack.push_back({bundle::PythonFrame::Kind::Jitted, entry.return_address});
    }
  }
  std::lock_guard lock(mutex_);
  if (out.python_status) {
    bool innermost_jit = true;  // its return address is stale: the user stack names it
    for (const bundle::PythonFrame& frame : out.python_stack) {
      if (frame.kind == bundle::PythonFrame::Kind::Code) {
        code_ids_[sample.pid].insert(frame.value);
      } else {
        if (!innermost_jit && space.in_jit_code(frame.value))
          python_jit_addresses_[sample.pid].insert(arch::call_site(frame.value));
        innermost_jit = false;
      }
    }
    for (std::size_t i = 0; i < out.user_stack.size(); ++i)
      if (space.in_jit_code(out.user_stack[i]))
        python_jit_addresses_[sample.pid].insert(arch::lookup_address(out.user_stack[i], i > 0));
  }
  if (jit_leaf) ++jit_leaves_[{sample.pid, out.user_stack.front()}];
  tids_.insert(sample.tid);
  encoder_.add(out);
  ++kept_;
}

void SampleCollector::on_mapping(const sampler::Mapping& mapping) {
  symbols::AddressSpace& space = spaces_[mapping.pid];
  space.add({mapping.start, mapping.length, mapping.file_offset, mapping.path, mapping.prot});
  // Loaded while the program runs, so that they are ready when sampling ends.
  if (keeps(mapping.pid) && (mapping.prot & PROT_EXEC) && symbols::is_libpypy(mapping.path))
    if (const auto* image = space.image_at(mapping.start)) libpypy_names_ready(image->elf);
  // Mappings of a running process (attach) come only this way.
  watch_libpypy(mapping);
  std::lock_guard lock(mutex_);
  mappings_.add({mapping.time_ns, mapping.pid, mapping.tid, mapping.start, mapping.length, mapping.file_offset,
                 mapping.prot, mapping.flags, mapping.major, mapping.minor, mapping.inode, mapping.path});
}

void SampleCollector::on_task(const sampler::TaskEvent& event) {
  // A new process starts as a copy of its parent, its libpypy too; exec
  // replaces it all (and ends the sampler's watch).
  std::optional<sampler::ShadowStackLayout> watch;
  {
    std::lock_guard lock(mutex_);
    if (event.kind == sampler::TaskEvent::Kind::Fork && event.pid != event.parent_pid) {
      spaces_[event.pid] = spaces_[event.parent_pid];
      // Unless the child's own libpypy was read already (it exec'd since).
      if (const auto parent = python_processes_.find(event.parent_pid);
          watch_ && keeps(event.pid) && parent != python_processes_.end() && !python_processes_.contains(event.pid))
        watch = parent->second;
      if (watch) python_processes_[event.pid] = *watch;
    }
    if (event.kind == sampler::TaskEvent::Kind::Exec) {
      spaces_[event.pid] = symbols::AddressSpace{};
      // The sampler ended the watch; a libpypy the new program mapped (read
      // early, before this exec came in time order) comes again in order.
      python_processes_.erase(event.pid);
    }
    tasks_.add({task_kind(event.kind), event.time_ns, event.pid, event.tid, event.parent_pid, event.parent_tid, event.comm});
  }
  if (watch) watch_(static_cast<pid_t>(event.pid), *watch);
}

void SampleCollector::flush_into(bundle::BundleWriter& writer) {
  std::lock_guard lock(mutex_);
  const auto samples = encoder_.take();
  if (!samples.empty()) writer.append(bundle::sections::kSamples, samples);
  mappings_.flush_into(writer);
  tasks_.flush_into(writer);
  symbols_.flush_into(writer);
}

std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint64_t> SampleCollector::jit_leaves() const {
  std::lock_guard lock(mutex_);
  return jit_leaves_;
}

std::size_t SampleCollector::threads_sampled() const {
  std::lock_guard lock(mutex_);
  return tids_.size();
}

std::uint64_t SampleCollector::kept() const {
  std::lock_guard lock(mutex_);
  return kept_;
}

void SampleCollector::on_mapping_read(const sampler::Mapping& mapping) { watch_libpypy(mapping); }

void SampleCollector::watch_libpypy(const sampler::Mapping& mapping) {
  if (!watch_ || !keeps(mapping.pid) || !(mapping.prot & PROT_EXEC) || !symbols::is_libpypy(mapping.path)) return;
  auto [layout, fresh] = layouts_.try_emplace(mapping.path);
  if (fresh) {
    try {
      layout->second = pypy::read_thread_local_layout(mapping.path);
    } catch (const pypy::LayoutError& error) {
      std::lock_guard lock(mutex_);
      python_stack_problems_.push_back(fmt::format("{}: {}", mapping.path, error.what()));
    }
  }
  // The load bias, from the file offset mapped at `start`.
  const auto elf = symbols::ElfImage::open(mapping.path);
  const auto mapped_vaddr = elf ? elf->vaddr_of_offset(mapping.file_offset) : std::nullopt;
  if (!layout->second || !mapped_vaddr) return;
  const std::uint64_t bias = mapping.start - *mapped_vaddr;
  const sampler::ShadowStackLayout where{bias + layout->second->dtpmod_slot_vaddr, layout->second->ready_offset,
                                         layout->second->thread_ident_offset, layout->second->shadow_stack_offset, true};
  {
    // Seen before (read early, then in time order), or inherited at a fork
    // before this exec mapped another libpypy: watched again only if it moved.
    std::lock_guard lock(mutex_);
    const auto known = python_processes_.find(mapping.pid);
    if (known != python_processes_.end() && known->second.dtpmod_slot_address == where.dtpmod_slot_address) return;
    python_processes_[mapping.pid] = where;
  }
  watch_(static_cast<pid_t>(mapping.pid), where);
}

std::size_t SampleCollector::python_processes() const {
  std::lock_guard lock(mutex_);
  return python_processes_.size();
}

std::vector<std::string> SampleCollector::python_stack_problems() const {
  std::lock_guard lock(mutex_);
  return python_stack_problems_;
}

std::map<std::uint32_t, std::vector<std::uint64_t>> SampleCollector::code_ids() const {
  std::lock_guard lock(mutex_);
  std::map<std::uint32_t, std::vector<std::uint64_t>> ids;
  for (const auto& [pid, set] : code_ids_) ids[pid].assign(set.begin(), set.end());
  return ids;
}

std::map<std::uint32_t, std::vector<std::uint64_t>> SampleCollector::python_jit_addresses() const {
  std::lock_guard lock(mutex_);
  std::map<std::uint32_t, std::vector<std::uint64_t>> addresses;
  for (const auto& [pid, set] : python_jit_addresses_) addresses[pid].assign(set.begin(), set.end());
  return addresses;
}

std::size_t SampleCollector::name_kernel_addresses() {
  if (kernel_addresses_.empty()) return 0;
  std::vector<std::uint64_t> addresses;
  {
    std::lock_guard lock(mutex_);
    addresses.assign(kernel_addresses_.begin(), kernel_addresses_.end());
  }
  const auto named = symbols::kernel_symbols(addresses);
  std::lock_guard lock(mutex_);
  for (const auto& [address, symbol] : named) symbols_.add(symbol_record(0, address, symbol));
  return named.size();
}

std::vector<bundle::CrashFrame> SampleCollector::unwind_fault(std::uint32_t pid, const Fault& fault) {
  const symbols::AddressSpace& space = spaces_[pid];
  const unwind::Result unwound = unwinder_.unwind(space, fault.registers, fault.stack);
  std::vector<bundle::CrashFrame> frames;
  for (std::size_t i = 0; i < unwound.frames.size(); ++i) {
    const std::uint64_t address = unwound.frames[i];
    bundle::CrashFrame frame{address, space.in_jit_code(address), std::nullopt};
    if (auto symbol = space.symbolize(address, i > 0)) frame.symbol = symbol_record(pid, address, *symbol);
    frames.push_back(std::move(frame));
  }
  return frames;
}

void SampleCollector::remember_symbols(std::uint32_t pid, const symbols::AddressSpace& space,
                                       const std::vector<std::uint64_t>& frames) {
  if (!deferred_.empty() && symbols::RpythonNames::ready(*deferred_.front().image.elf)) name_deferred(false);
  std::vector<bundle::SymbolRecord> named;
  auto& seen = symbolized_[pid];
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const std::uint64_t address = frames[i];
    if (!seen.insert(address).second) continue;
    const symbols::AddressSpace::Image* image = space.image_at(address);
    if (image == nullptr) continue;
    if (symbols::is_libpypy(image->elf->path()) && !libpypy_names_ready(image->elf)) {
      deferred_.push_back({pid, address, i > 0, *image});
      continue;
    }
    named.push_back(symbol_record(pid, address, symbols::AddressSpace::symbolize_in(*image, address, i > 0)));
  }
  if (named.empty()) return;
  std::lock_guard lock(mutex_);
  for (const auto& record : named) symbols_.add(record);
}

bool SampleCollector::libpypy_names_ready(const std::shared_ptr<const symbols::ElfImage>& libpypy) {
  if (symbols::RpythonNames::ready(*libpypy)) return true;
  symbols::RpythonNames::prepare(libpypy, [notices = notices_](const std::filesystem::path& cache_file) {
    std::lock_guard lock(notices->mutex);
    notices->lines.push_back(cache_file.empty()
                                 ? std::string("naming libpypy's functions (its file has no build id: not cached)")
                                 : fmt::format("naming libpypy's functions (once per build; cached in {})",
                                               cache_file.string()));
  });
  return false;
}

void SampleCollector::name_deferred(bool wait) {
  std::vector<bundle::SymbolRecord> named;
  std::erase_if(deferred_, [&](const Deferred& deferred) {
    if (!wait && !symbols::RpythonNames::ready(*deferred.image.elf)) return false;
    named.push_back(symbol_record(deferred.pid, deferred.address,
                                  symbols::AddressSpace::symbolize_in(deferred.image, deferred.address,
                                                                      deferred.return_address)));
    return true;
  });
  if (named.empty()) return;
  std::lock_guard lock(mutex_);
  for (const auto& record : named) symbols_.add(record);
}

void SampleCollector::name_libpypy_addresses() { name_deferred(true); }

std::vector<std::string> SampleCollector::take_notices() {
  std::lock_guard lock(notices_->mutex);
  return std::exchange(notices_->lines, {});
}

}  // namespace jitprof::record
