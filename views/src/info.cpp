// The views of what a bundle and a jitlog hold: `jitprof info` and `jitprof jitlog`.
#include <algorithm>
#include <array>

#include "bundle/manifest.h"
#include "bundle/samples.h"
#include "views/views.h"
#include "vmprof/profile.h"

namespace jitprof::views {

using nlohmann::json;

json diagnostics_json(const std::vector<binio::Diagnostic>& warnings, const std::optional<binio::Diagnostic>& error) {
  json result = json::object();
  result["warnings"] = json::array();
  for (const auto& warning : warnings) result["warnings"].push_back({{"offset", warning.offset}, {"message", warning.message}});
  result["error"] = error ? json{{"offset", error->offset}, {"message", error->message}} : json(nullptr);
  return result;
}

std::vector<const jitlog::Trace*> hottest_traces(const jitlog::Forest& forest, std::size_t limit) {
  std::vector<const jitlog::Trace*> order;
  for (const jitlog::Trace& trace : forest.traces) order.push_back(&trace);
  std::stable_sort(order.begin(), order.end(),
                   [](const jitlog::Trace* a, const jitlog::Trace* b) { return a->executions() > b->executions(); });
  if (order.size() > limit) order.resize(limit);
  return order;
}

namespace {

struct Counts {
  std::size_t loops = 0, bridges = 0, aborted = 0, merge_points = 0, code_bytes = 0;
  std::size_t guards = 0, call_assemblers = 0, linked_bridges = 0, credited = 0;
  std::array<std::size_t, 3> ops{};  // by StageKind
};

Counts count(const jitlog::Forest& forest) {
  Counts counts;
  for (const jitlog::Trace& trace : forest.traces) {
    (trace.kind == jitlog::TraceKind::Loop ? counts.loops : counts.bridges)++;
    counts.aborted += trace.aborted;
    counts.linked_bridges += trace.parent_guard.has_value();
    if (trace.code) counts.code_bytes += trace.code->end - trace.code->start;
    // Count each stage kind once: unrolled loops log the noopt stage twice.
    for (jitlog::StageKind kind : {jitlog::StageKind::NoOpt, jitlog::StageKind::Opt, jitlog::StageKind::Asm}) {
      const jitlog::Stage* stage = trace.stage(kind);
      if (stage == nullptr) continue;
      counts.ops[static_cast<std::size_t>(kind)] += stage->ops.size();
      counts.merge_points += stage->merge_points.size();
    }
    if (const jitlog::Stage* stage = trace.stage(jitlog::StageKind::Asm)) {
      for (const jitlog::Operation& op : stage->ops) {
        counts.guards += op.is_guard();
        counts.call_assemblers += op.is_call_assembler();
      }
    }
  }
  for (const auto& counter : forest.counters) counts.credited += counter.matched;
  return counts;
}

// Samples by where they ended; JIT samples resolved at their own time, as
// the correlator does (code is freed and reused), so that info and report agree.
json samples_json(const bundle::Bundle& read, const correlate::Profile& profile) {
  const bundle::SampleTable table = bundle::decode_samples(read.stream(bundle::sections::kSamples));
  std::size_t in_kernel = 0, user_frames = 0;
  std::map<std::string, std::size_t> unwind_stops;  // why user stacks end
  for (const auto& row : table.rows) {
    in_kernel += row.kernel_stack != bundle::SampleTable::kNoStack;
    ++unwind_stops[bundle::unwind_stop_name(row.unwind_stop)];
    if (row.user_stack != bundle::SampleTable::kNoStack) user_frames += table.stacks[row.user_stack].size();
  }
  const bool perf = profile.has_perf_samples;
  return {{"count", table.rows.size()},
          {"in_kernel", in_kernel},
          {"in_jit_code", perf ? profile.stats.jit : 0},
          {"in_jitlog_traces", perf ? profile.stats.jit_in_trace : 0},
          {"unique_stacks", table.stacks.size()},
          {"user_frames", user_frames},
          {"unwind_stops", unwind_stops}};
}

}  // namespace

json jitlog_json(const jitlog::Forest& forest, std::size_t top) {
  const Counts counts = count(forest);
  json out = {{"bytes", forest.bytes_read},
              {"records", forest.records},
              {"version", forest.header.version},
              {"machine", forest.header.machine},
              {"word_size", forest.header.word_size},
              {"op_names", forest.header.op_names.size()},
              {"traces", forest.traces.size()},
              {"loops", counts.loops},
              {"bridges", counts.bridges},
              {"aborted", counts.aborted},
              {"ops", {{"noopt", counts.ops[0]}, {"opt", counts.ops[1]}, {"asm", counts.ops[2]}}},
              {"merge_points", counts.merge_points},
              {"code_bytes", counts.code_bytes},
              {"guards", counts.guards},
              {"bridges_linked_to_guards", counts.linked_bridges},
              {"call_assembler_sites", counts.call_assemblers},
              {"redirects", forest.redirects.size()},
              {"tmp_callbacks", forest.tmp_callbacks.size()},
              {"counters", forest.counters.size()},
              {"counters_credited", counts.credited}};
  out["hottest"] = json::array();
  for (const jitlog::Trace* trace : hottest_traces(forest, top)) out["hottest"].push_back(trace_summary_json(*trace));
  out.update(diagnostics_json(forest.warnings, forest.error));
  return out;
}

json info_json(const bundle::Bundle& read, const correlate::Profile& profile) {
  const bundle::ManifestRead manifest = bundle::read_manifest(read);
  json out = {{"bytes", read.bytes_read}, {"manifest", manifest.manifest ? to_json(*manifest.manifest) : json(nullptr)}};
  if (!manifest.manifest && read.has(bundle::sections::kManifest)) out["manifest_error"] = manifest.error;
  std::vector<std::pair<std::string, std::pair<std::size_t, std::uint64_t>>> sections;  // type, (frames, bytes)
  for (const bundle::Frame& frame : read.frames) {
    const std::string type = frame.type.name();
    auto it = std::find_if(sections.begin(), sections.end(), [&](const auto& section) { return section.first == type; });
    if (it == sections.end()) it = sections.insert(sections.end(), {type, {0, 0}});
    ++it->second.first;
    it->second.second += frame.data.size();
  }
  out["sections"] = json::array();
  for (const auto& [type, counts] : sections)
    out["sections"].push_back({{"type", type}, {"frames", counts.first}, {"bytes", counts.second}});
  // An empty section is no error: PyPy compiled nothing, or its logs were off.
  const jitlog::Forest& forest = profile.forest;
  const bool has_vmprof = read.has(bundle::sections::kVmprof);
  const vmprof::Profile vm = has_vmprof ? vmprof::parse_profile(read.stream(bundle::sections::kVmprof)) : vmprof::Profile{};
  std::size_t loops = 0;
  for (const auto& trace : forest.traces) loops += trace.kind == jitlog::TraceKind::Loop;
  const bool has_jitlog = read.has(bundle::sections::kJitlog);
  out["jitlog"] = {{"present", has_jitlog},
                   {"traces", forest.traces.size()},
                   {"loops", loops},
                   {"bridges", forest.traces.size() - loops},
                   {"diagnostics", has_jitlog ? diagnostics_json(forest.warnings, forest.error) : diagnostics_json({}, {})}};
  out["vmprof"] = {{"present", has_vmprof},
                   {"samples", vm.samples.size()},
                   {"code_objects", vm.code_names.size()},
                   {"diagnostics", diagnostics_json(vm.warnings, vm.error)}};
  out["samples"] = samples_json(read, profile);
  out["python_stacks"] = python_stacks_json(profile.stats);
  out["crash"] = crash_json(read, correlate::trace_resolver(read, forest), profile.threads);
  out.update(diagnostics_json(read.warnings, read.error));
  return out;
}

}  // namespace jitprof::views
