#include "code_ranges.h"

#include <algorithm>
#include <charconv>

#include "correlate/runtime_phases.h"

namespace jitprof::correlate {
namespace {

// "function;file:first-current~#index OPCODE" (PyPy's get_printable_location) -> where the loop starts.
jitlog::MergePoint merge_point_of(std::string_view name) {
  jitlog::MergePoint point;
  const std::size_t semicolon = name.find(';');
  if (semicolon == std::string_view::npos) {
    point.function = std::string(name);
    return point;
  }
  point.function = std::string(name.substr(0, semicolon));
  std::string_view place = name.substr(semicolon + 1);
  const std::size_t index = place.find('~');
  std::string_view where = place.substr(0, index);
  if (index != std::string_view::npos) {
    const std::size_t space = place.find(' ', index);
    if (space != std::string_view::npos) point.opcode = std::string(place.substr(space + 1));
  }
  const std::size_t colon = where.rfind(':');
  point.file = std::string(where.substr(0, colon));
  if (colon != std::string_view::npos) {
    // "first-current": the code object's first line, then the loop's own.
    std::string_view lines = where.substr(colon + 1);
    if (const std::size_t dash = lines.find('-'); dash != std::string_view::npos) lines.remove_prefix(dash + 1);
    std::from_chars(lines.data(), lines.data() + lines.size(), point.line);
  }
  return point;
}

}  // namespace

CodeRangeTraces traces_of_code_ranges(const bundle::PypyLog& log) {
  CodeRangeTraces result;
  const auto clock = TscClock::fit(log.clock);
  if (!clock || log.jit_code.empty()) return result;
  // Loops keep PyPy's number; bridges are numbered after the last loop.
  std::uint64_t next_bridge = 1;
  for (const bundle::PypyLogJitCode& code : log.jit_code)
    if (code.kind == bundle::PypyLogJitCode::Kind::Loop) next_bridge = std::max(next_bridge, code.number + 1);
  jitlog::Forest& forest = result.forest;
  for (const bundle::PypyLogJitCode& code : log.jit_code) {
    jitlog::Trace trace;
    const bool bridge = code.kind == bundle::PypyLogJitCode::Kind::Bridge;
    trace.id = bridge ? next_bridge++ : code.number;
    if (forest.index_by_id.contains(trace.id)) continue;  // a loop number logged twice: keep the first
    trace.kind = bridge ? jitlog::TraceKind::Bridge : jitlog::TraceKind::Loop;
    trace.logged_as_bridge = bridge;
    trace.start_descr = bridge ? code.number : 0;
    trace.code = jitlog::CodeRange{code.start, code.end};
    trace.file_offset = trace.code_sequence = forest.traces.size();
    if (!bridge) {
      jitlog::Stage& stage = trace.stages.emplace_back();
      stage.kind = jitlog::StageKind::Opt;
      stage.merge_points.push_back(merge_point_of(code.name));
    }
    result.arrivals.push_back({trace.file_offset, clock->ns(code.logged_tsc)});
    forest.index_by_id[trace.id] = forest.traces.size();
    forest.traces.push_back(std::move(trace));
  }
  return result;
}

}  // namespace jitprof::correlate
