#include "correlate/profile.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "arch/x86_64.h"
#include "bundle/manifest.h"
#include "bundle/samples.h"
#include "bundle/sections.h"
#include "jitlog/resolver.h"
#include "code_ranges.h"
#include "correlate/runtime_phases.h"
#include "symbols/rpython_names.h"
#include "symbols/symbols.h"
#include "vmprof/profile.h"

namespace jitprof::correlate {

const char* category_name(Category category) {
  switch (category) {
    case Category::Python: return "python";
    case Category::JitInlined: return "jit-inlined";
    case Category::JitTrace: return "jit";
    case Category::JitHelper: return "jit-helper";
    case Category::JitAnonymous: return "jit-anonymous";
    case Category::Interpreter: return "interpreter";
    case Category::Runtime: return "runtime";
    case Category::Gc: return "gc";
    case Category::GcMinor: return "gc-minor";
    case Category::GcMajor: return "gc-major";
    case Category::JitTracing: return "jit-tracing";
    case Category::JitOptimizer: return "jit-optimizer";
    case Category::JitBackend: return "jit-backend";
    case Category::JitMetainterp: return "jit-metainterp";
    case Category::GuardFailure: return "guard-failure";
    case Category::Native: return "native";
    case Category::Kernel: return "kernel";
  }
  return "?";
}

const char* category_label(Category category) {
  switch (category) {
    case Category::Python: return "Python (interpreted)";
    case Category::JitInlined: return "JIT-inlined Python";
    case Category::JitTrace: return "JIT trace";
    case Category::JitHelper: return "JIT helper";
    case Category::JitAnonymous: return "JIT code (no jitlog)";
    case Category::Interpreter: return "interpreter";
    case Category::Runtime: return "other runtime";
    case Category::Gc: return "GC (outside collections: allocation, barriers)";
    case Category::GcMinor: return "GC minor";
    case Category::GcMajor: return "GC major";
    case Category::JitTracing: return "JIT tracing";
    case Category::JitOptimizer: return "JIT optimizer";
    case Category::JitBackend: return "JIT backend";
    case Category::JitMetainterp: return "JIT tracing or guard failure (metainterp)";
    case Category::GuardFailure: return "guard failure / blackhole";
    case Category::Native: return "native";
    case Category::Kernel: return "kernel";
  }
  return "?";
}

std::optional<Category> category_named(std::string_view name) {
  for (int i = 0; i <= static_cast<int>(Category::Kernel); ++i)
    if (name == category_name(static_cast<Category>(i))) return static_cast<Category>(i);
  return std::nullopt;
}

bool is_runtime_phase(const Frame& frame) {
  switch (frame.category) {
    case Category::GcMinor:
    case Category::GcMajor:
    case Category::JitTracing:
    case Category::JitOptimizer:
    case Category::JitBackend: return frame.file.empty();
    default: return false;
  }
}

std::optional<Category> phase_category(bundle::PypyLogName name) {
  switch (name) {
    case bundle::PypyLogName::GcMinor: return Category::GcMinor;
    case bundle::PypyLogName::GcCollectStep:
    case bundle::PypyLogName::GcCollectDone: return Category::GcMajor;
    case bundle::PypyLogName::JitTracing: return Category::JitTracing;
    case bundle::PypyLogName::JitOptimize: return Category::JitOptimizer;
    case bundle::PypyLogName::JitBackend: return Category::JitBackend;
  }
  return std::nullopt;
}

const char* phase_name(Category phase) {
  switch (phase) {
    case Category::GcMinor: return "GC minor";
    case Category::GcMajor: return "GC major";
    case Category::JitTracing: return "JIT tracing";
    case Category::JitOptimizer: return "JIT optimizer";
    case Category::JitBackend: return "JIT backend";
    default: return category_name(phase);
  }
}

std::string frame_label(const Frame& frame) {
  const std::string file = std::filesystem::path(frame.file).filename().string();
  switch (frame.category) {
    case Category::Python:
    case Category::JitInlined:
      // By function: merge points name the current line, vmprof the first one.
      return fmt::format("{} ({})", frame.name, file);
    case Category::JitTrace: return "[jit] " + frame.name;
    case Category::JitHelper:
    case Category::JitAnonymous: return "[jit] " + frame.name;
    case Category::Kernel: return frame.name + " [kernel]";
    default: {
      if (is_runtime_phase(frame)) return "[" + frame.name + "]";
      // "[vdso]" is its own bracket.
      const std::string library = file.starts_with("[") ? file : "[" + file + "]";
      return frame.name == file ? library : fmt::format("{} {}", frame.name, library);
    }
  }
}

std::optional<std::uint32_t> Profile::python_leaf(std::uint32_t stack) const {
  const auto& ids = stacks[stack];
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    const Category category = frames[*it].category;
    if (category == Category::Python || category == Category::JitInlined) return *it;
  }
  return std::nullopt;
}

std::vector<std::uint32_t> Profile::python_functions(std::uint32_t stack) const {
  std::vector<std::uint32_t> functions;
  std::set<std::pair<std::string_view, std::string_view>> seen;
  for (const std::uint32_t id : stacks[stack]) {
    const Frame& frame = frames[id];
    if (frame.category != Category::Python && frame.category != Category::JitInlined) continue;
    if (seen.emplace(frame.name, frame.file).second) functions.push_back(id);
  }
  return functions;
}

namespace {

using FrameIds = std::vector<std::uint32_t>;

// A libpypy function's category, by its component's name (as the bundle stores it).
Category libpypy_category(std::string_view component) {
  using symbols::Component;
  for (const auto& [part, category] : {std::pair{Component::Gc, Category::Gc},
                                       std::pair{Component::JitOptimizer, Category::JitOptimizer},
                                       std::pair{Component::JitBackend, Category::JitBackend},
                                       std::pair{Component::JitMetainterp, Category::JitMetainterp},
                                       std::pair{Component::Runtime, Category::Runtime}})
    if (component == symbols::component_name(part)) return category;
  return Category::Interpreter;
}

class Builder {
 public:
  explicit Builder(Profile& profile) : profile_(profile) {}

  // A whole bundle.
  void run(const bundle::Bundle& read) {
    load_jit(read);
    load_manifest(read);
    load_names(read);
    load_vmprof(read);
    profile_.threads = thread_names(bundle::read_tasks(read));
    const auto table = bundle::decode_samples(read.stream(bundle::sections::kSamples));
    profile_.has_perf_samples = !table.rows.empty();
    add_perf_samples(table);
    // Without perf (refused, or --no-perf), PyPy's own samples stand in.
    if (!profile_.has_perf_samples) add_vmprof_samples();
    profile_.stats.samples = profile_.samples.size();
    profile_.stats.unnamed_code_objects = unnamed_codes_.size();
  }

  // The next frames of a recording that is still running (LiveCorrelator):
  // `jit` holds its jitlog and PyPy's log so far, read again when `jit_grew`.
  const std::vector<std::pair<Frame, Frame>>& renamed() const { return renamed_; }

  void add(const bundle::Bundle& fresh, const bundle::Bundle& jit, bool jit_grew, bundle::SampleDecoder& samples) {
    if (jit_grew) {
      load_jit(jit);
      jit_parts_.clear();  // a trace's merge points may have arrived since
    }
    if (fresh.has(bundle::sections::kManifest)) load_manifest(fresh);
    renamed_.clear();
    // Native parts name addresses by the symbols and mappings known when first built.
    if (fresh.has(bundle::sections::kSymbols) || fresh.has(bundle::sections::kMaps)) native_parts_.clear();
    load_names(fresh);
    profile_.samples.clear();
    for (const bundle::Frame& frame : fresh.frames) {
      if (frame.type != bundle::sections::kSamples) continue;
      const bundle::SampleTable& table = samples.decode(frame.data);
      profile_.has_perf_samples = profile_.has_perf_samples || !table.rows.empty();
      add_perf_samples(table);
    }
    profile_.stats.samples += profile_.samples.size();
    profile_.stats.unnamed_code_objects = unnamed_codes_.size();
  }

 private:
  // What names frames; added to what came before (a live recording brings them in batches).
  void load_names(const bundle::Bundle& read) {
    load_symbols(read);
    load_mappings(read);
    for (bundle::JitCodemapRecord& record : bundle::read_jit_codemap(read))
      jit_codemap_.try_emplace({record.pid, record.address}, std::move(record.unique_ids));
    for (bundle::CodeNameRecord& code : bundle::read_code_names(read)) {
      const std::pair key{code.pid, code.unique_id};
      if (!code_names_.try_emplace(key, CodeName{std::move(code.name), std::move(code.file), code.line}).second) continue;
      // Shown as "code #ID" so far: named from now on.
      if (unnamed_codes_.erase(key) == 0) continue;
      const CodeName& name = code_names_.at(key);
      std::erase_if(code_frames_, [&](const auto& cached) {
        if (std::get<0>(cached.first) != key.first || std::get<1>(cached.first) != key.second) return false;
        renamed_.emplace_back(profile_.frames[cached.second],
                              Frame{std::get<2>(cached.first), name.name, name.file, name.line, std::nullopt, "", ""});
        return true;
      });
    }
  }

  void add_perf_samples(const bundle::SampleTable& table) {
    profile_.samples.reserve(profile_.samples.size() + table.rows.size());
    for (std::size_t row = 0; row < table.rows.size(); ++row) add_perf_sample(table, row);
  }

  // The jitlog's traces (else the code ranges of PyPy's log), the resolver
  // of JIT addresses, and PyPy's log sections (the runtime's phases).
  void load_jit(const bundle::Bundle& read) {
    has_jitlog_ = read.has(bundle::sections::kJitlog);
    load_jitlog(read);
    traces_ = trace_resolver(read, profile_.forest);
    profile_.phases = date_runtime_phases(bundle::read_pypy_log(read));
    phase_lookup_.emplace(profile_.phases);
  }

  std::uint32_t frame_id(const Frame& frame) {
    const std::string key =
        fmt::format("{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}", static_cast<int>(frame.category), frame.name, frame.file,
                    frame.line, frame.trace ? *frame.trace : ~std::uint64_t{0}, frame.source_file, frame.component);
    auto [it, inserted] = frame_ids_.try_emplace(key, static_cast<std::uint32_t>(profile_.frames.size()));
    if (inserted) profile_.frames.push_back(frame);
    return it->second;
  }

  // The index of `ids` in `pool`, added once: frame sequences are shared by many samples.
  std::uint32_t intern(FrameIds ids, std::vector<FrameIds>& pool, std::unordered_map<std::string, std::uint32_t>& index) {
    std::string key(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(std::uint32_t));
    auto [it, inserted] = index.try_emplace(std::move(key), static_cast<std::uint32_t>(pool.size()));
    if (inserted) pool.push_back(std::move(ids));
    return it->second;
  }

  std::uint32_t stack_id(FrameIds ids) { return intern(std::move(ids), profile_.stacks, stack_ids_); }

  // Frame by frame: a copy of the whole section would double what the jitlog takes.
  void load_jitlog(const bundle::Bundle& read) {
    if (!read.has(bundle::sections::kJitlog)) {
      profile_.forest = traces_of_code_ranges(bundle::read_pypy_log(read)).forest;
      return;
    }
    jitlog::JitlogReader reader;
    for (const bundle::Frame& frame : read.frames)
      if (frame.type == bundle::sections::kJitlog && !reader.feed(frame.data)) break;
    profile_.forest = reader.finish();
  }

  void load_manifest(const bundle::Bundle& bundle) {
    const bundle::ManifestRead read = bundle::read_manifest(bundle);
    if (!read.manifest) return;
    const bundle::Manifest& manifest = *read.manifest;
    if (manifest.perf && manifest.perf->state == bundle::Manifest::Perf::State::On && manifest.perf->rate_hz > 0)
      profile_.seconds_per_sample = 1.0 / manifest.perf->rate_hz;
    if (manifest.pid) target_pid_ = static_cast<std::uint32_t>(*manifest.pid);
    if (manifest.clock) {
      profile_.clock_monotonic_ns = manifest.clock->monotonic_ns;
      profile_.clock_unix_s = manifest.clock->unix_s;
    }
    if (manifest.phases) {
      profile_.phases_source = manifest.phases->source;
      profile_.phases_note = manifest.phases->note.value_or("");
      profile_.phases_pid = static_cast<std::uint32_t>(manifest.phases->pid.value_or(0));
    }
  }

  void load_symbols(const bundle::Bundle& read) {
    for (bundle::SymbolRecord& symbol : bundle::read_symbols(read))
      symbols_[{symbol.pid, symbol.address}] = std::move(symbol);
  }

  void load_mappings(const bundle::Bundle& read) {
    for (const bundle::MappingRecord& mapping : bundle::read_mappings(read)) {
      if (symbols::is_jit_memory(mapping.path, mapping.prot))
        jit_regions_[mapping.pid].emplace_back(mapping.start, mapping.start + mapping.length);
      else
        mappings_[mapping.pid][mapping.start] = {mapping.start + mapping.length, mapping.path};
    }
  }

  // What a process had mapped at an address no symbol names ("[vdso]", a file
  // jitprof could not read); empty when nothing.
  std::string mapping_path(std::uint32_t pid, std::uint64_t address) const {
    const auto mappings = mappings_.find(pid);
    if (mappings == mappings_.end()) return {};
    auto after = mappings->second.upper_bound(address);
    if (after == mappings->second.begin() || address >= std::prev(after)->second.first) return {};
    return std::prev(after)->second.second;
  }

  bool in_jit_memory(std::uint32_t pid, std::uint64_t address) const {
    auto regions = jit_regions_.find(pid);
    if (regions == jit_regions_.end()) return false;
    return std::any_of(regions->second.begin(), regions->second.end(),
                       [address](const auto& r) { return address >= r.first && address < r.second; });
  }

  // --- vmprof: Python callers of JIT code, and Python stacks by time --------

  FrameIds python_frames_of(const vmprof::Profile& vm, const vmprof::Sample& sample) {
    // Leaf first on disk; JIT uids repeat as interpreted frames below them.
    FrameIds leaf_first;
    std::optional<std::uint64_t> previous;
    for (const vmprof::Frame& frame : vm.stack(sample)) {
      if (frame.kind != vmprof::FrameKind::Interpreted && frame.kind != vmprof::FrameKind::Jitted) continue;
      if (previous == frame.value) continue;
      previous = frame.value;
      Frame python{Category::Python, fmt::format("<code {:#x}>", frame.value), "", 0, std::nullopt, "", ""};
      if (const vmprof::CodeName* name = vm.code_name(frame.value)) {
        python.name = name->function.empty() ? name->raw : name->function;
        python.file = name->file;
        python.line = name->line;
      }
      leaf_first.push_back(frame_id(python));
    }
    return FrameIds(leaf_first.rbegin(), leaf_first.rend());
  }

  void load_vmprof(const bundle::Bundle& read) {
    const auto bytes = read.stream(bundle::sections::kVmprof);
    if (bytes.empty()) return;
    const vmprof::Profile vm = vmprof::parse_profile(bytes);
    for (const auto& [uid, name] : vm.code_names)
      vmprof_names_.try_emplace(uid, CodeName{name.function.empty() ? name.raw : name.function, name.file, name.line});
    std::map<std::pair<std::string, std::string>, std::map<FrameIds, std::size_t>> callers;
    for (const vmprof::Sample& sample : vm.samples) {
      FrameIds stack = python_frames_of(vm, sample);
      // For each function, the Python frames below its outermost appearance.
      std::set<std::pair<std::string, std::string>> seen;
      for (std::size_t i = 0; i < stack.size(); ++i) {
        const Frame& frame = profile_.frames[stack[i]];
        if (!seen.insert({frame.file, frame.name}).second) continue;
        ++callers[{frame.file, frame.name}][FrameIds(stack.begin(), stack.begin() + static_cast<std::ptrdiff_t>(i))];
      }
      vmprof_stacks_.push_back(intern(std::move(stack), parts_, part_index_));
      // The first JIT block of the stack: with native mode on, the block of
      // the interrupted instruction; without it, possibly a stale one.
      std::optional<std::uint64_t> block;
      for (const vmprof::Frame& frame : vm.stack(sample))
        if (frame.kind == vmprof::FrameKind::Assembler) {
          block = frame.value;
          break;
        }
      vmprof_blocks_.push_back(block);
    }
    vmprof_period_s_ = double(vm.header.period_usec) / 1e6;
    for (const auto& [function, chains] : callers) {
      auto most = std::max_element(chains.begin(), chains.end(),
                                   [](const auto& a, const auto& b) { return a.second < b.second; });
      callers_of_[function] = most->first;
    }
    if (vm.start_time && vm.end_time) {
      vmprof_start_s_ = double(vm.start_time->seconds) + double(vm.start_time->microseconds) / 1e6;
      vmprof_end_s_ = double(vm.end_time->seconds) + double(vm.end_time->microseconds) / 1e6;
    }
  }

  void add_vmprof_samples() {
    if (vmprof_stacks_.empty()) return;
    profile_.samples_from_vmprof = true;
    if (vmprof_period_s_ > 0) profile_.seconds_per_sample = vmprof_period_s_;
    const bool timed = profile_.clock_monotonic_ns != 0 && vmprof_end_s_ > vmprof_start_s_;
    for (std::size_t i = 0; i < vmprof_stacks_.size(); ++i) {
      Sample sample;
      if (timed) {
        // Spread evenly over the run, as vmprof's CPU-time timer spreads them.
        const double wall = vmprof_start_s_ + (double(i) + 0.5) / double(vmprof_stacks_.size()) *
                                                  (vmprof_end_s_ - vmprof_start_s_);
        sample.time_ns = profile_.clock_monotonic_ns + static_cast<std::uint64_t>((wall - profile_.clock_unix_s) * 1e9);
      }
      FrameIds ids = parts_[vmprof_stacks_[i]];
      if (const auto& block = vmprof_blocks_[i]) {
        ++profile_.stats.jit;
        if (const jitlog::Trace* trace = traces_.find(*block).trace) {
          ++profile_.stats.jit_in_trace;
          sample.trace = trace->id;
          ids.push_back(trace_frame(*trace));
        }
      }
      ++profile_.stats.python_from_vmprof_time;
      sample.stack = stack_id(std::move(ids));
      sample.category = leaf_category(sample.stack);
      profile_.samples.push_back(sample);
    }
  }

  // The vmprof stack (an interned part) at about this time.
  std::optional<std::uint32_t> vmprof_stack_at(std::uint64_t time_ns) const {
    if (vmprof_stacks_.empty() || profile_.clock_monotonic_ns == 0 || vmprof_end_s_ <= vmprof_start_s_) return std::nullopt;
    const double wall = profile_.clock_unix_s + (double(time_ns) - double(profile_.clock_monotonic_ns)) / 1e9;
    const double position = (wall - vmprof_start_s_) / (vmprof_end_s_ - vmprof_start_s_);
    if (position < 0 || position > 1) return std::nullopt;
    const auto index = std::min(vmprof_stacks_.size() - 1, static_cast<std::size_t>(position * double(vmprof_stacks_.size())));
    return vmprof_stacks_[index];
  }

  // --- perf samples ----------------------------------------------------------

  // The frames of a native address, outermost first: one, or with debug
  // information the function and each function inlined into it.
  void add_native_frames(std::uint32_t pid, std::uint64_t address, FrameIds& frames) {
    auto symbol = symbols_.find({pid, address});
    if (symbol == symbols_.end()) {
      // Unnamed: the mapping it is in, like an unnamed frame of a library; the address when in none.
      const std::string path = mapping_path(pid, address);
      const std::string name = path.empty() ? fmt::format("{:#x}", address) : std::filesystem::path(path).filename().string();
      frames.push_back(frame_id({Category::Native, name, path, 0, std::nullopt, "", ""}));
      return;
    }
    const bundle::SymbolRecord& known = symbol->second;
    const Category category = symbols::is_libpypy(known.path) ? libpypy_category(known.component) : Category::Native;
    if (!known.source.empty()) {
      for (const bundle::SourceLocation& source : known.source)
        frames.push_back(frame_id({category, source.function.empty() ? known.name : source.function, known.path,
                                   source.line, std::nullopt, source.file, known.component}));
      return;
    }
    // Unnamed frames collapse into their library, so that flame graphs of a
    // stripped libpypy stay readable.
    const std::string library = std::filesystem::path(known.path).filename().string();
    frames.push_back(
        frame_id({category, known.name.empty() ? library : known.name, known.path, 0, std::nullopt, "", known.component}));
  }

  // Python frames of a trace at an op, outermost first, from its merge points
  // (jit_part caches the result per op).
  FrameIds jit_python_frames(const jitlog::TraceResolver::Hit& hit) {
    FrameIds chain;
    const jitlog::Trace& trace = *hit.trace;
    const jitlog::Stage* opt = trace.stage(jitlog::StageKind::Opt);
    const jitlog::MergePoint* point = hit.source ? hit.source : trace.source();
    if (point && opt && !opt->merge_points.empty() && point >= opt->merge_points.data() &&
        point < opt->merge_points.data() + opt->merge_points.size()) {
      // Walk back to the enclosing frame of each inlining level.
      std::size_t index = static_cast<std::size_t>(point - opt->merge_points.data());
      unsigned depth = point->inline_depth;
      std::vector<const jitlog::MergePoint*> innermost_first = {point};
      for (std::size_t i = index; i-- > 0 && depth > 0;) {
        if (opt->merge_points[i].inline_depth < depth) {
          innermost_first.push_back(&opt->merge_points[i]);
          depth = opt->merge_points[i].inline_depth;
        }
      }
      // The trace's own function, then the functions inlined into it.
      for (auto it = innermost_first.rbegin(); it != innermost_first.rend(); ++it)
        chain.push_back(frame_id({(*it)->inline_depth == 0 ? Category::Python : Category::JitInlined,
                                  (*it)->function, (*it)->file, (*it)->line, trace.id, "", ""}));
    } else if (point) {
      chain.push_back(frame_id({Category::Python, point->function, point->file, point->line, trace.id, "", ""}));
    }
    return chain;
  }

  // What a sample's native stacks give, the same for every sample with the
  // same (pid, user stack, kernel stack): computed once.
  struct NativePart {
    std::optional<std::size_t> jit_index;  // first frame (from the leaf) in JIT memory
    std::uint64_t jit_lookup = 0;          // its address, or its call instruction for a return address
    // The JIT frame right after it, if any: the trace that called it when it
    // is one of PyPy's assembler helpers (which no jitlog describes).
    std::optional<std::uint64_t> caller_jit_lookup;
    std::uint32_t frames = 0;              // interned: native frames leafward of it, then kernel frames
    // The innermost frame that is JIT code or libpypy is libpypy: the thread
    // runs PyPy's runtime (only then can it be in a GC or JIT phase).
    bool in_runtime = false;
    // The runtime's phase as the names of its libpypy frames tell it (GC,
    // optimizer, backend, metainterp), innermost first; for bundles without PyPy's log.
    std::optional<Category> named_phase;
  };


  const NativePart& native_part(const bundle::SampleTable& table, const bundle::SampleTable::Row& row) {
    const std::uint64_t key = (std::uint64_t{row.pid} << 40) ^ (std::uint64_t{row.user_stack} << 20) ^ row.kernel_stack;
    auto cached = native_parts_.find(key);
    if (cached != native_parts_.end() && cached->second.first == std::make_tuple(row.pid, row.user_stack, row.kernel_stack))
      return cached->second.second;
    static const std::vector<std::uint64_t> kNone;
    const auto& user = row.user_stack == bundle::SampleTable::kNoStack ? kNone : table.stacks[row.user_stack];
    const auto& kernel = row.kernel_stack == bundle::SampleTable::kNoStack ? kNone : table.stacks[row.kernel_stack];
    NativePart part;
    for (std::size_t i = 0; i < user.size(); ++i) {
      if (!in_jit_memory(row.pid, user[i])) continue;
      part.jit_index = i;
      part.jit_lookup = arch::lookup_address(user[i], i > 0);
      if (i + 1 < user.size() && in_jit_memory(row.pid, user[i + 1])) part.caller_jit_lookup = arch::call_site(user[i + 1]);
      break;
    }
    // Native frames leafward of the JIT frame; without one, those leafward of
    // the interpreter (the first libpypy frame), or all of them for a
    // program that is not PyPy.
    std::size_t native_end = part.jit_index ? *part.jit_index : user.size();
    if (!part.jit_index) {
      for (std::size_t i = 0; i < user.size(); ++i) {
        auto symbol = symbols_.find({row.pid, user[i]});
        if (symbol != symbols_.end() && symbols::is_libpypy(symbol->second.path)) {
          native_end = i + 1;
          break;
        }
      }
    }
    for (std::size_t i = 0; i < user.size() && !(part.jit_index && i >= *part.jit_index); ++i) {
      const auto symbol = symbols_.find({row.pid, user[i]});
      if (symbol == symbols_.end() || !symbols::is_libpypy(symbol->second.path)) continue;
      part.in_runtime = true;
      const Category category = libpypy_category(symbol->second.component);
      if (category != Category::Interpreter && category != Category::Runtime) {
        part.named_phase = category;
        break;
      }
    }
    FrameIds frames;
    for (std::size_t i = native_end; i-- > 0;) add_native_frames(row.pid, user[i], frames);
    for (auto it = kernel.rbegin(); it != kernel.rend(); ++it) {
      auto symbol = symbols_.find({0u, *it});
      frames.push_back(frame_id({Category::Kernel,
                                 symbol != symbols_.end() && !symbol->second.name.empty() ? symbol->second.name
                                                                                         : fmt::format("{:#x}", *it),
                                 "[kernel]", 0, std::nullopt, "", ""}));
    }
    part.frames = intern(std::move(frames), parts_, part_index_);
    auto& slot = native_parts_[key];
    slot = {std::make_tuple(row.pid, row.user_stack, row.kernel_stack), part};
    return slot.second;
  }

  // The Python frames and trace frame of a JIT sample: the same for every
  // sample at the same op, computed once.
  std::uint32_t jit_part(const jitlog::TraceResolver::Hit& hit, bool via_helper) {
    const jitlog::Trace& trace = *hit.trace;
    const std::optional<std::size_t> op = hit.op;
    const std::uint64_t key = (trace.id << 21) ^ ((op ? *op + 1 : 0) << 1) ^ via_helper;
    auto cached = jit_parts_.find(key);
    if (cached != jit_parts_.end() && cached->second.first == std::make_tuple(trace.id, op, via_helper))
      return cached->second.second;
    FrameIds inner = jit_python_frames(hit);
    FrameIds frames;
    if (!inner.empty()) {
      const Frame& outermost = profile_.frames[inner.front()];
      auto callers = callers_of_.find({outermost.file, outermost.name});
      if (callers != callers_of_.end()) frames = callers->second;
    }
    frames.insert(frames.end(), inner.begin(), inner.end());
    frames.push_back(trace_frame(trace));
    if (via_helper) frames.push_back(helper_frame());
    const std::uint32_t id = intern(std::move(frames), parts_, part_index_);
    jit_parts_[key] = {std::make_tuple(trace.id, op, via_helper), id};
    return id;
  }

  void add_perf_sample(const bundle::SampleTable& table, std::size_t row_index) {
    const auto& row = table.rows[row_index];
    Sample sample;
    sample.time_ns = row.time_ns;
    sample.pid = row.pid;
    sample.tid = row.tid;
    const NativePart& native = native_part(table, row);

    std::uint32_t python_part = kNoPart;
    if (row.python_status && static_cast<std::size_t>(*row.python_status) < profile_.stats.python_stack_status.size())
      ++profile_.stats.python_stack_status[static_cast<std::size_t>(*row.python_status)];
    // A stack read at the sample is the truth, even empty (a thread running no
    // Python); only a lost one falls back to the statistical join.
    if (row.python_status && *row.python_status != bundle::PythonStackStatus::Lost) {
      python_part = exact_python_part(table, row, native, sample);
      ++profile_.stats.python_exact;
    } else if (native.jit_index) {
      const auto [hit, via_helper] = innermost_jit_hit(row, native, native.jit_lookup, sample);
      if (hit.trace) {
        python_part = jit_part(hit, via_helper);
        ++profile_.stats.python_from_jit;
      } else {
        python_part = helper_part(row.time_ns);
      }
    } else if (auto vmprof = vmprof_stack_at(row.time_ns)) {
      python_part = *vmprof;
      ++profile_.stats.python_from_vmprof_time;
    } else {
      ++profile_.stats.python_unknown;
    }

    const std::optional<Category> phase = timed_phase(sample, native);
    const StackParts key{python_part, native.frames, phase ? static_cast<std::uint8_t>(*phase) : kNoPhase};
    auto [stack, fresh] = stack_of_parts_.try_emplace(key, 0);
    if (fresh) {
      FrameIds ids = python_part == kNoPart ? FrameIds{} : parts_[python_part];
      // The phase's own frame holds what ran in it.
      if (phase) ids.push_back(frame_id({*phase, phase_name(*phase), "", 0, std::nullopt, "", ""}));
      const FrameIds& suffix = parts_[native.frames];
      ids.insert(ids.end(), suffix.begin(), suffix.end());
      stack->second = stack_id(std::move(ids));
    }
    sample.stack = stack->second;
    if (phase) sample.category = *phase;
    else if (!timed_phases() && native.named_phase) sample.category = *native.named_phase;
    else sample.category = leaf_category(sample.stack);
    profile_.samples.push_back(sample);
  }

  // --- the runtime's phases -------------------------------------------------

  bool timed_phases() const { return !profile_.phases.empty(); }

  // The innermost section of PyPy's log open at the sample, for samples of
  // the process that wrote the log running PyPy's runtime (the log says
  // nothing of threads; the GIL lets one run the runtime at a time).
  std::optional<Category> timed_phase(const Sample& sample, const NativePart& native) const {
    if (!timed_phases() || !native.in_runtime || (profile_.phases_pid != 0 && sample.pid != profile_.phases_pid))
      return std::nullopt;
    const RuntimePhase* phase = phase_lookup_->innermost_at(sample.time_ns);
    return phase ? phase_category(phase->name) : std::nullopt;
  }

  // A sample outside any phase: its innermost frame's category; metainterp
  // code outside tracing is a guard failing (resume, blackhole interpreter)
  // when PyPy's log timed the tracing.
  Category leaf_category(std::uint32_t stack) const {
    const FrameIds& ids = profile_.stacks[stack];
    if (ids.empty()) return Category::Native;
    const Category leaf = profile_.frames[ids.back()].category;
    return leaf == Category::JitMetainterp && timed_phases() ? Category::GuardFailure : leaf;
  }

  // --- Python stacks read from PyPy's shadow stack --------------------------

  std::uint32_t code_frame(std::uint32_t pid, std::uint64_t unique_id, bool& unnamed, Category category = Category::Python) {
    const auto [cached, fresh] = code_frames_.try_emplace({pid, unique_id, category}, 0);
    if (!fresh) {
      unnamed = unnamed || unnamed_codes_.contains({pid, unique_id});
      return cached->second;
    }
    const CodeName* name = nullptr;
    if (const auto found = code_names_.find({pid, unique_id}); found != code_names_.end())
      name = &found->second;
    else if (const auto from_vmprof = vmprof_names_.find(unique_id);
             pid == target_pid_ && from_vmprof != vmprof_names_.end())
      name = &from_vmprof->second;
    if (!name) {
      unnamed = true;
      unnamed_codes_.insert({pid, unique_id});
      return cached->second = frame_id({category, fmt::format("code #{}", unique_id), "", 0, std::nullopt, "", ""});
    }
    return cached->second = frame_id({category, name->name, name->file, name->line, std::nullopt, "", ""});
  }

  // The Python frames of a sample whose Python stack was read at the sample,
  // root first; the innermost JIT level also sets the sample's trace and op.
  std::uint32_t exact_python_part(const bundle::SampleTable& table, const bundle::SampleTable::Row& row,
                                  const NativePart& native, Sample& sample) {
    const std::vector<bundle::PythonFrame> entries =  // innermost first
        row.python_stack == bundle::SampleTable::kNoStack ? std::vector<bundle::PythonFrame>{} : table.python_frames(row.python_stack);
    // Each JIT level, innermost first: the address in its code, when known.
    std::vector<std::optional<std::uint64_t>> jit_addresses(entries.size());
    std::optional<std::size_t> innermost_jit;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (entries[i].kind != bundle::PythonFrame::Kind::Jitted) continue;
      if (!innermost_jit) {
        innermost_jit = i;
        if (native.jit_index) jit_addresses[i] = native.jit_lookup;
      } else if (in_jit_memory(row.pid, entries[i].value)) {
        // An outer level is calling the next one: its own return address says from where.
        jit_addresses[i] = arch::call_site(entries[i].value);
      }
    }

    FrameIds frames;
    if (row.python_status == bundle::PythonStackStatus::Truncated)
      frames.push_back(frame_id({Category::Python, "[outer Python frames not read]", "", 0, std::nullopt, "", ""}));
    bool unnamed = false;
    for (std::size_t i = entries.size(); i-- > 0;) {
      if (entries[i].kind == bundle::PythonFrame::Kind::Jitted) {
        // A level calling the next one: the codemap at the call already names the callee, which the next level shows.
        const bool calls_next = i > 0 && entries[i - 1].kind == bundle::PythonFrame::Kind::Jitted;
        const std::vector<std::uint64_t>* next_ids = calls_next && jit_addresses[i - 1] ? codemap_ids(row.pid, *jit_addresses[i - 1]) : nullptr;
        append_jit_level(row, native, jit_addresses[i], i == innermost_jit, sample, frames, unnamed,
                         next_ids && !next_ids->empty() ? std::optional(next_ids->front()) : std::nullopt);
        continue;
      }
      const std::uint32_t id = code_frame(row.pid, entries[i].value, unnamed);
      // The call whose loop the JIT level just inside it runs: that level names it.
      if (i > 0 && jit_addresses[i - 1] && runs_loop_of(row, *jit_addresses[i - 1], profile_.frames[id])) continue;
      frames.push_back(id);
    }
    // JIT code the shadow stack shows no entry for (it is always entered through one).
    if (!innermost_jit && native.jit_index) append_jit_level(row, native, native.jit_lookup, true, sample, frames, unnamed);
    if (unnamed) ++profile_.stats.samples_with_unnamed_code;
    return intern(std::move(frames), parts_, part_index_);
  }

  // One JIT level of an exact Python stack: the trace's Python frames and the
  // trace, PyPy's helpers, or JIT code no jitlog names.
  void append_jit_level(const bundle::SampleTable::Row& row, const NativePart& native, std::optional<std::uint64_t> address,
                        bool innermost, Sample& sample, FrameIds& frames, bool& unnamed,
                        std::optional<std::uint64_t> callee = std::nullopt) {
    if (!address) {
      frames.push_back(frame_id({Category::JitAnonymous, "JIT code (not unwound)", "", 0, std::nullopt, "", ""}));
      return;
    }
    jitlog::TraceResolver::Hit hit;
    bool via_helper = false;
    if (innermost)
      std::tie(hit, via_helper) = innermost_jit_hit(row, native, *address, sample);
    else
      hit = traces_.find(*address, row.time_ns);
    if (!hit.trace) {
      // Without a jitlog, PyPy's codemap may name the functions there.
      if (const std::vector<std::uint64_t>* ids = codemap_ids(row.pid, *address)) {
        const std::size_t shown = !ids->empty() && ids->back() == callee ? ids->size() - 1 : ids->size();
        for (std::size_t level = 0; level < shown; ++level)
          frames.push_back(code_frame(row.pid, (*ids)[level], unnamed, level == 0 ? Category::Python : Category::JitInlined));
      }
      frames.push_back(jit_code_unnamed()
                           ? frame_id({Category::JitAnonymous, "JIT code (no jitlog)", "", 0, std::nullopt, "", ""})
                           : helper_frame());
      return;
    }
    const FrameIds inner = jit_python_frames(hit);
    frames.insert(frames.end(), inner.begin(), inner.end());
    frames.push_back(trace_frame(*hit.trace));
    if (via_helper) frames.push_back(helper_frame());
  }

  // What PyPy's JIT codemap said of a JIT address (attach without a jitlog), or null.
  const std::vector<std::uint64_t>* codemap_ids(std::uint32_t pid, std::uint64_t address) const {
    const auto found = jit_codemap_.find({pid, address});
    return found == jit_codemap_.end() ? nullptr : &found->second;
  }

  // Whether the JIT code at `address` is the compiled loop of `call`'s
  // function: its trace's own function, or the codemap's outermost one.
  bool runs_loop_of(const bundle::SampleTable::Row& row, std::uint64_t address, const Frame& call) {
    const jitlog::TraceResolver::Hit hit = traces_.find(address, row.time_ns);
    if (const jitlog::MergePoint* own = hit.trace ? hit.trace->source() : nullptr)
      return own->function == call.name && own->file == call.file;
    const std::vector<std::uint64_t>* ids = codemap_ids(row.pid, address);
    if (!ids || ids->empty()) return false;
    bool unnamed = false;
    const Frame& own = profile_.frames[code_frame(row.pid, ids->front(), unnamed)];
    return !unnamed && own.name == call.name && own.file == call.file;
  }

  // The trace of a sample's innermost JIT frame at `address`, counted, and
  // noted on the sample; a helper is charged to the trace that called it, at
  // the calling op (second: true).
  std::pair<jitlog::TraceResolver::Hit, bool> innermost_jit_hit(const bundle::SampleTable::Row& row, const NativePart& native,
                                                                std::uint64_t address, Sample& sample) {
    jitlog::TraceResolver::Hit hit = traces_.find(address, row.time_ns);
    sample.jit_address = address;
    if (native.jit_index == 0u) {
      ++profile_.stats.jit;
      profile_.stats.jit_in_trace += hit.trace != nullptr;
      profile_.stats.jit_on_op += hit.op.has_value();
    }
    bool via_helper = false;
    if (!hit.trace && native.caller_jit_lookup) {
      if (const auto caller = traces_.find(*native.caller_jit_lookup, row.time_ns); caller.trace) {
        hit = caller;
        via_helper = true;
        sample.jit_address = *native.caller_jit_lookup;
      }
    }
    if (hit.trace) {
      sample.trace = hit.trace->id;
      sample.op = hit.op;
    }
    return {hit, via_helper};
  }

  std::uint32_t trace_frame(const jitlog::Trace& trace) {
    const jitlog::MergePoint* source = trace.source();
    return frame_id({Category::JitTrace, fmt::format("trace {} ({})", trace.id, jitlog::trace_kind_name(trace.kind)),
                     source ? source->file : "", source ? source->line : 0, trace.id, "", ""});
  }

  // A JIT sample outside every trace: the Python stack at that time, then a
  // frame for PyPy's JIT helpers, or for JIT code no jitlog describes at all.
  std::uint32_t helper_part(std::uint64_t time_ns) {
    FrameIds frames;
    if (auto vmprof = vmprof_stack_at(time_ns)) frames = parts_[*vmprof];
    frames.push_back(jit_code_unnamed()
                         ? frame_id({Category::JitAnonymous, "JIT code (no jitlog)", "", 0, std::nullopt, "", ""})
                         : helper_frame());
    return intern(std::move(frames), parts_, part_index_);
  }

  // Neither a jitlog nor PyPy's log (record --jit ranges) named the JIT code.
  bool jit_code_unnamed() const { return !has_jitlog_ && profile_.forest.traces.empty(); }

  std::uint32_t helper_frame() {
    return frame_id({Category::JitHelper, "PyPy JIT helper (not in the jitlog)", "", 0, std::nullopt, "", ""});
  }

  struct CodeName {
    std::string name, file;
    std::int64_t line = 0;
  };

  static constexpr std::uint32_t kNoPart = 0xffffffff;
  Profile& profile_;
  bool has_jitlog_ = false;
  std::vector<std::pair<Frame, Frame>> renamed_;  // (unnamed, named): code objects named by the last add
  jitlog::TraceResolver traces_;
  std::unordered_map<std::string, std::uint32_t> frame_ids_;
  std::unordered_map<std::string, std::uint32_t> stack_ids_;
  std::map<std::pair<std::uint32_t, std::uint64_t>, bundle::SymbolRecord> symbols_;
  std::unordered_map<std::uint32_t, std::vector<std::pair<std::uint64_t, std::uint64_t>>> jit_regions_;
  std::unordered_map<std::uint32_t, std::map<std::uint64_t, std::pair<std::uint64_t, std::string>>> mappings_;  // start -> (end, path)
  std::map<std::pair<std::string, std::string>, FrameIds> callers_of_;
  std::vector<std::uint32_t> vmprof_stacks_;  // interned parts, in file order
  std::vector<std::optional<std::uint64_t>> vmprof_blocks_;  // each sample's first JIT block
  double vmprof_period_s_ = 0;
  // Interned frame sequences ("parts") and the caches that build stacks from them.
  std::vector<FrameIds> parts_;
  std::unordered_map<std::string, std::uint32_t> part_index_;
  std::unordered_map<std::uint64_t, std::pair<std::tuple<std::uint32_t, std::uint32_t, std::uint32_t>, NativePart>>
      native_parts_;
  std::unordered_map<std::uint64_t, std::pair<std::tuple<std::uint64_t, std::optional<std::size_t>, bool>, std::uint32_t>>
      jit_parts_;
  // A sample's stack: its Python part, native part and phase.
  struct StackParts {
    std::uint32_t python, native;
    std::uint8_t phase;
    friend bool operator==(const StackParts&, const StackParts&) = default;
  };
  struct StackPartsHash {
    std::size_t operator()(const StackParts& parts) const {
      return std::hash<std::uint64_t>()((std::uint64_t{parts.python} << 32 | parts.native) ^ (std::uint64_t{parts.phase} << 56));
    }
  };
  static constexpr std::uint8_t kNoPhase = 0xff;
  std::unordered_map<StackParts, std::uint32_t, StackPartsHash> stack_of_parts_;
  std::optional<RuntimePhaseLookup> phase_lookup_;
  double vmprof_start_s_ = 0, vmprof_end_s_ = 0;
  // Code objects by unique id: from PYCN per process, from vmprof for any.
  std::map<std::pair<std::uint32_t, std::uint64_t>, CodeName> code_names_;
  std::unordered_map<std::uint64_t, CodeName> vmprof_names_;  // the target's own: other processes' ids differ
  std::uint32_t target_pid_ = 0;
  std::map<std::tuple<std::uint32_t, std::uint64_t, Category>, std::uint32_t> code_frames_;
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::vector<std::uint64_t>> jit_codemap_;  // (pid, address) -> ids
  std::set<std::pair<std::uint32_t, std::uint64_t>> unnamed_codes_;
};

}  // namespace

jitlog::TraceResolver trace_resolver(const bundle::Bundle& bundle, const jitlog::Forest& forest) {
  if (!bundle.has(bundle::sections::kJitlog))
    return jitlog::TraceResolver(forest, traces_of_code_ranges(bundle::read_pypy_log(bundle)).arrivals);
  std::vector<jitlog::Arrival> arrivals;
  for (const bundle::JitlogArrival& arrival : bundle::read_jitlog_arrivals(bundle))
    arrivals.push_back({arrival.offset, arrival.time_ns});
  return jitlog::TraceResolver(forest, std::move(arrivals));
}

Profile correlate(const bundle::Bundle& bundle) {
  Profile profile;
  Builder(profile).run(bundle);
  return profile;
}

struct LiveCorrelator::State {
  Profile profile;
  Builder builder{profile};
  bundle::SampleDecoder samples;
  bundle::Bundle jit;  // the jitlog, its arrival times and PyPy's log so far
  bool first = true;
};

LiveCorrelator::LiveCorrelator() : state_(std::make_unique<State>()) {}
LiveCorrelator::~LiveCorrelator() = default;

const Profile& LiveCorrelator::add(const bundle::Bundle& frames) {
  bool jit_grew = false;
  for (const bundle::Frame& frame : frames.frames)
    if (frame.type == bundle::sections::kJitlog || frame.type == bundle::sections::kJitlogClock ||
        frame.type == bundle::sections::kPypyLog) {
      state_->jit.frames.push_back(frame);
      jit_grew = true;
    }
  state_->builder.add(frames, state_->jit, jit_grew || std::exchange(state_->first, false), state_->samples);
  return state_->profile;
}

const std::vector<std::pair<Frame, Frame>>& LiveCorrelator::renamed() const { return state_->builder.renamed(); }

}  // namespace jitprof::correlate
