// The "PyPy runtime" section of report and the viewer: where PyPy's own
// machinery took time, from the phases PyPy's log timed and from the
// samples' categories.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "views/views.h"

namespace jitprof::views {
namespace {

using correlate::Category;
using correlate::Profile;
using correlate::RuntimePhase;
using nlohmann::json;
using Name = bundle::PypyLogName;

bool is_gc(Name name) { return name == Name::GcMinor || name == Name::GcCollectStep || name == Name::GcCollectDone; }

// Durations of a kind of section: how many, their sum and pause percentiles, in milliseconds.
json durations_json(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  json out = {{"count", ms.size()}};
  double total = 0;
  for (double value : ms) total += value;
  out["total_ms"] = total;
  if (ms.empty()) return out;
  // Nearest rank: the smallest value at or above a share p of them.
  const auto percentile = [&](double p) {
    const auto rank = static_cast<std::size_t>(std::ceil(p * double(ms.size())));
    return ms[std::clamp<std::size_t>(rank, 1, ms.size()) - 1];
  };
  out["p50_ms"] = percentile(0.50);
  out["p90_ms"] = percentile(0.90);
  out["p99_ms"] = percentile(0.99);
  out["max_ms"] = ms.back();
  return out;
}

double milliseconds(const RuntimePhase& phase) { return double(phase.end_ns - phase.start_ns) / 1e6; }

// Each top-level jit-tracing section that reached the backend compiled one
// trace, in the order the jitlog lists them: tied only when the counts agree.
json warmup_traces_json(const Profile& profile, const std::vector<const RuntimePhase*>& compiled) {
  json out = {{"tied", false}, {"compilations", compiled.size()}, {"jitlog_traces", profile.forest.traces.size()}};
  if (compiled.empty() || compiled.size() != profile.forest.traces.size()) return out;
  out["tied"] = true;
  std::vector<std::pair<double, std::size_t>> by_time;
  for (std::size_t i = 0; i < compiled.size(); ++i) by_time.emplace_back(milliseconds(*compiled[i]), i);
  std::sort(by_time.rbegin(), by_time.rend());
  json traces = json::array();
  for (std::size_t k = 0; k < std::min<std::size_t>(by_time.size(), 10); ++k) {
    const jitlog::Trace& trace = profile.forest.traces[by_time[k].second];
    const auto source = trace.source();
    json item = {{"id", trace.id}, {"type", jitlog::trace_kind_name(trace.kind)}, {"ms", by_time[k].first}};
    if (source) item["source"] = {{"function", source->function}, {"file", source->file}, {"line", source->line}};
    traces.push_back(std::move(item));
  }
  out["traces"] = std::move(traces);
  return out;
}

}  // namespace

json runtime_json(const Profile& profile) {
  json out = {{"phases_source", profile.phases_source}, {"timed", !profile.phases.empty()}};
  if (!profile.phases_note.empty()) out["note"] = profile.phases_note;
  // Samples by the runtime's categories (the rest: Python, JIT code, native, kernel).
  std::map<Category, std::uint64_t> samples;
  for (const auto& sample : profile.samples) ++samples[sample.category];
  json categories = json::object();
  for (Category category : {Category::GcMinor, Category::GcMajor, Category::Gc, Category::JitTracing,
                            Category::JitOptimizer, Category::JitBackend, Category::JitMetainterp,
                            Category::GuardFailure, Category::Interpreter, Category::Runtime})
    categories[correlate::category_name(category)] = samples[category];
  out["samples"] = profile.samples.size();
  out["categories"] = std::move(categories);
  if (profile.phases.empty()) return out;

  std::map<Name, std::vector<double>> durations;
  double gc_ms = 0, jit_ms = 0;
  std::vector<const RuntimePhase*> compiled;  // top-level jit-tracing sections that reached the backend
  const RuntimePhase* tracing = nullptr;
  bool tracing_compiled = false;
  // Sections are in start order with their depth: a GC section inside
  // another GC section, or a JIT one inside a JIT one, is not counted twice.
  std::vector<const RuntimePhase*> open;
  for (const RuntimePhase& phase : profile.phases) {
    while (!open.empty() && open.back()->end_ns < phase.start_ns) open.pop_back();
    const bool inside_gc = std::any_of(open.begin(), open.end(), [](const RuntimePhase* o) { return is_gc(o->name); });
    const bool inside_jit = std::any_of(open.begin(), open.end(), [](const RuntimePhase* o) { return !is_gc(o->name); });
    durations[phase.name].push_back(milliseconds(phase));
    if (is_gc(phase.name) && !inside_gc) gc_ms += milliseconds(phase);
    if (!is_gc(phase.name) && !inside_jit) jit_ms += milliseconds(phase);
    if (phase.name == Name::JitTracing && !inside_jit) {
      if (tracing && tracing_compiled) compiled.push_back(tracing);
      tracing = &phase;
      tracing_compiled = false;
    } else if (phase.name == Name::JitBackend && tracing && phase.start_ns <= tracing->end_ns) {
      tracing_compiled = true;
    }
    open.push_back(&phase);
  }
  if (tracing && tracing_compiled) compiled.push_back(tracing);

  out["gc"] = {{"time_ms", gc_ms},
               {"minor", durations_json(durations[Name::GcMinor])},
               {"major_steps", durations_json(durations[Name::GcCollectStep])},
               {"major_collections", durations[Name::GcCollectDone].size()}};
  out["jit"] = {{"warmup_ms", jit_ms},
                {"tracing", durations_json(durations[Name::JitTracing])},
                {"optimizer", durations_json(durations[Name::JitOptimize])},
                {"backend", durations_json(durations[Name::JitBackend])},
                {"traces", warmup_traces_json(profile, compiled)}};
  return out;
}

}  // namespace jitprof::views
