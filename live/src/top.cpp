#include "live/top.h"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>
#include <utility>

#include "bundle/manifest.h"
#include "bundle/sections.h"

namespace jitprof::live {
namespace {

using correlate::Category;

// The groups a live view shows where the time goes in, in this order.
constexpr const char* kShareGroups[] = {"JIT code", "interpreter", "GC", "JIT warm-up", "guard failure", "native",
                                        "kernel"};

std::size_t share_group(Category category) {
  switch (category) {
    case Category::JitTrace:
    case Category::JitInlined:
    case Category::JitHelper:
    case Category::JitAnonymous: return 0;
    case Category::Python:
    case Category::Interpreter:
    case Category::Runtime: return 1;
    case Category::Gc:
    case Category::GcMinor:
    case Category::GcMajor: return 2;
    case Category::JitTracing:
    case Category::JitOptimizer:
    case Category::JitBackend:
    case Category::JitMetainterp: return 3;
    case Category::GuardFailure: return 4;
    case Category::Native: return 5;
    case Category::Kernel: return 6;
  }
  return 5;
}

// JIT code no jitlog names, by the function PyPy compiled it for.
const std::string kCompiledPrefix = "[jit] code of ";

bool is_jit_code(Category category) {
  return category == Category::JitTrace || category == Category::JitAnonymous || category == Category::JitHelper;
}

// The Python function whose compiled code the JIT frame at `at` runs: the
// nearest Python frame outside it (the functions inlined into it sit between).
std::string compiled_function(const correlate::Profile& profile, const std::vector<std::uint32_t>& stack, std::size_t at) {
  for (std::size_t i = at; i-- > 0;) {
    const correlate::Frame& frame = profile.frames[stack[i]];
    if (frame.category == Category::Python) return correlate::frame_label(frame);
    if (frame.category != Category::JitInlined) break;
  }
  return "";
}

// The JIT code a stack ran or called from: its innermost trace, else its innermost JIT frame.
std::optional<std::string> jit_label(const correlate::Profile& profile, const std::vector<std::uint32_t>& stack) {
  std::optional<std::size_t> innermost;
  for (std::size_t i = stack.size(); i-- > 0;) {
    const correlate::Frame& frame = profile.frames[stack[i]];
    if (frame.category == Category::JitTrace) {
      innermost = i;
      break;
    }
    if (!innermost && is_jit_code(frame.category)) innermost = i;
  }
  if (!innermost) return std::nullopt;
  const correlate::Frame& frame = profile.frames[stack[*innermost]];
  const std::string function = compiled_function(profile, stack, *innermost);
  if (frame.category == Category::JitHelper) return correlate::frame_label(frame);
  if (frame.category == Category::JitAnonymous)
    return function.empty() ? correlate::frame_label(frame) : kCompiledPrefix + function;
  return function.empty() ? correlate::frame_label(frame) : fmt::format("{} {}", correlate::frame_label(frame), function);
}

void count(Counts& counts, std::uint64_t samples = 1) {
  counts.last += samples;
  counts.all += samples;
}

}  // namespace

std::size_t Top::function_index(const correlate::Frame& frame) {
  const auto [found, fresh] = function_ids_.try_emplace({frame.name, frame.file}, functions_.size());
  if (fresh) functions_.push_back({frame.name, frame.file, frame.line, {}, {}});
  FunctionRow& row = functions_[found->second];
  // Merge points name the line they are at: the smallest is the nearest to the function's first.
  if (frame.line > 0 && (row.line == 0 || frame.line < row.line)) row.line = frame.line;
  return found->second;
}

std::size_t Top::jit_index(const std::string& label) {
  const auto [found, fresh] = jit_ids_.try_emplace(label, jit_.size());
  if (fresh) jit_.push_back({label, {}});
  return found->second;
}

Top::StackCounts& Top::counts_of(const correlate::Profile& profile, std::uint32_t stack) {
  if (stacks_.size() <= stack) stacks_.resize(stack + 1);
  std::optional<StackCounts>& counts = stacks_[stack];
  if (counts) return *counts;
  counts.emplace();
  for (const std::uint32_t id : profile.python_functions(stack)) counts->functions.push_back(function_index(profile.frames[id]));
  if (const auto leaf = profile.python_leaf(stack)) counts->self = function_index(profile.frames[*leaf]);
  if (const auto label = jit_label(profile, profile.stacks[stack])) counts->jit = jit_index(*label);
  return *counts;
}

// Samples counted under "code #ID" before the code object was named count
// under its name from now on (its new samples come with new stacks).
void Top::rename(const correlate::Frame& unnamed, const correlate::Frame& named) {
  const auto merge = [](Counts& into, Counts& from) {
    into.last += std::exchange(from.last, 0);
    into.all += std::exchange(from.all, 0);
  };
  if (const auto old = function_ids_.find({unnamed.name, unnamed.file}); old != function_ids_.end()) {
    const std::size_t from = old->second, into = function_index(named);
    merge(functions_[into].self, functions_[from].self);
    // A stack may hold both (the call named by a jitlog's merge point, its
    // code object unnamed): its samples count once toward the total.
    functions_[from].total = {};
    functions_[into].total.all = 0;
    for (std::optional<StackCounts>& stack : stacks_) {
      if (!stack) continue;
      auto& ids = stack->functions;
      const bool had_from = std::erase(ids, from) > 0;
      const bool had_into = std::find(ids.begin(), ids.end(), into) != ids.end();
      if (had_from && !had_into) ids.push_back(into);
      if (had_from || had_into) functions_[into].total.all += stack->samples;
      if (stack->self == from) stack->self = into;
    }
  }
  if (unnamed.category != Category::Python) return;
  const std::string prefix = kCompiledPrefix;
  if (const auto old = jit_ids_.find(prefix + correlate::frame_label(unnamed)); old != jit_ids_.end()) {
    const std::size_t from = old->second, into = jit_index(prefix + correlate::frame_label(named));
    merge(jit_[into].samples, jit_[from].samples);
  }
}

void Top::start_interval() {
  for (FunctionRow& row : functions_) row.self.last = row.total.last = 0;
  for (JitRow& row : jit_) row.samples.last = 0;
  for (ShareRow& row : shares_) row.samples.last = 0;
  for (auto& [tid, thread] : threads_) {
    thread.samples.last = 0;
    thread.self_last.clear();
  }
  header_.samples.last = 0;
}

void Top::add(const bundle::Bundle& frames, double elapsed_s) {
  start_interval();
  if (shares_.empty())
    for (const char* group : kShareGroups) shares_.push_back({group, {}});
  if (frames.has(bundle::sections::kManifest))
    if (const auto read = bundle::read_manifest(frames); read.manifest) {
      header_.pid = read.manifest->pid.value_or(0);
      header_.command = read.manifest->command;
    }
  // Named by the profile's one rule, over every TASK record so far (a few a thread).
  if (std::vector<bundle::TaskRecord> tasks = bundle::read_tasks(frames); !tasks.empty()) {
    tasks_.insert(tasks_.end(), std::make_move_iterator(tasks.begin()), std::make_move_iterator(tasks.end()));
    for (const auto& [thread, names] : correlate::thread_names(tasks_)) threads_[thread.second].name = names.shown();
  }

  const correlate::Profile& profile = correlator_.add(frames);
  for (const auto& [unnamed, named] : correlator_.renamed()) rename(unnamed, named);
  for (const correlate::Sample& sample : profile.samples) {
    StackCounts& counts = counts_of(profile, sample.stack);
    ++counts.samples;
    for (const std::size_t function : counts.functions) count(functions_[function].total);
    if (counts.self) count(functions_[*counts.self].self);
    if (counts.jit) count(jit_[*counts.jit].samples);
    count(shares_[share_group(sample.category)].samples);
    Thread& thread = threads_[sample.tid];
    count(thread.samples);
    if (counts.self) ++thread.self_last[*counts.self];
  }
  count(header_.samples, profile.samples.size());
  header_.interval_s = elapsed_s - header_.elapsed_s;
  header_.elapsed_s = elapsed_s;
  header_.seconds_per_sample = profile.seconds_per_sample;
  header_.unnamed_code_objects = profile.stats.unnamed_code_objects;
}

Snapshot Top::snapshot(std::size_t rows) const {
  Snapshot out = header_;
  const auto keep = [rows](auto& list, auto by) {
    std::stable_sort(list.begin(), list.end(), [&](const auto& a, const auto& b) { return by(a) > by(b); });
    if (list.size() > rows) list.resize(rows);
  };
  for (const FunctionRow& row : functions_)
    if (row.total.all > 0) out.functions.push_back(row);
  keep(out.functions, [](const FunctionRow& row) { return std::tuple(row.self.last, row.self.all, row.total.last); });
  for (const JitRow& row : jit_)
    if (row.samples.all > 0) out.jit.push_back(row);
  keep(out.jit, [](const JitRow& row) { return std::pair(row.samples.last, row.samples.all); });
  for (const ShareRow& row : shares_)
    if (row.samples.all > 0) out.shares.push_back(row);
  for (const auto& [tid, thread] : threads_) {
    if (thread.samples.all == 0) continue;
    ThreadRow row{tid, thread.name, thread.samples, ""};
    const auto busiest = std::max_element(thread.self_last.begin(), thread.self_last.end(),
                                          [](const auto& a, const auto& b) { return a.second < b.second; });
    if (busiest != thread.self_last.end()) row.top_function = correlate::frame_label(
        {Category::Python, functions_[busiest->first].name, functions_[busiest->first].file, 0, std::nullopt, "", ""});
    out.threads.push_back(std::move(row));
  }
  keep(out.threads, [](const ThreadRow& row) { return std::pair(row.samples.last, row.samples.all); });
  return out;
}

}  // namespace jitprof::live
