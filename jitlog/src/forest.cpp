#include <algorithm>
#include <unordered_map>

#include "jitlog/jitlog.h"

namespace jitprof::jitlog {

const char* stage_name(StageKind kind) {
  switch (kind) {
    case StageKind::NoOpt: return "noopt";
    case StageKind::Opt: return "opt";
    case StageKind::Asm: return "asm";
  }
  return "?";
}

std::optional<StageKind> parse_stage_name(const std::string& name) {
  for (StageKind kind : {StageKind::NoOpt, StageKind::Opt, StageKind::Asm})
    if (name == stage_name(kind)) return kind;
  return std::nullopt;
}

const char* trace_kind_name(TraceKind kind) { return kind == TraceKind::Loop ? "loop" : "bridge"; }

const MergePoint* Stage::merge_point_before(std::size_t op_index) const {
  // merge_points are in op order; find the last one with op_index <= the op.
  auto after = std::upper_bound(merge_points.begin(), merge_points.end(), op_index,
                                [](std::size_t index, const MergePoint& point) { return index < point.op_index; });
  return after == merge_points.begin() ? nullptr : &*std::prev(after);
}

const Stage* Trace::stage(StageKind wanted) const {
  for (auto it = stages.rbegin(); it != stages.rend(); ++it)
    if (it->kind == wanted) return &*it;
  return nullptr;
}

const MergePoint* Trace::source() const {
  for (StageKind preferred : {StageKind::Opt, StageKind::NoOpt}) {
    const Stage* found = stage(preferred);
    if (found == nullptr) continue;
    for (const MergePoint& point : found->merge_points)
      if (point.inline_depth == 0) return &point;
  }
  return nullptr;
}

std::optional<std::size_t> Trace::asm_op_at(std::uint64_t address) const {
  const Stage* asm_stage = stage(StageKind::Asm);
  if (asm_stage == nullptr || !code || !code->contains(address)) return std::nullopt;
  const std::uint64_t offset = address - code->start;
  for (std::size_t i = 0; i < asm_stage->ops.size(); ++i) {
    const auto& op_code = asm_stage->ops[i].code;
    if (op_code && offset >= op_code->offset && offset < op_code->offset + op_code->bytes.size()) return i;
  }
  return std::nullopt;
}

const Trace* Forest::find(std::uint64_t id) const {
  auto it = index_by_id.find(id);
  return it == index_by_id.end() ? nullptr : &traces[it->second];
}

const Trace* Forest::trace_at_address(std::uint64_t address) const {
  // Ranges may overlap when freed code was reused: among the traces whose
  // range holds the address, the one compiled last is live.
  auto after = std::upper_bound(index_by_code_start.begin(), index_by_code_start.end(), address,
                                [&](std::uint64_t value, std::size_t i) { return value < traces[i].code->start; });
  const Trace* newest = nullptr;
  for (auto it = after; it != index_by_code_start.begin();) {
    const Trace& trace = traces[*--it];
    if (trace.code->start + longest_code <= address) break;
    if (trace.code->contains(address) && (!newest || trace.code_sequence > newest->code_sequence)) newest = &trace;
  }
  return newest;
}

std::vector<const MergePoint*> op_sources(const Trace& trace, const Stage& stage) {
  std::vector<const MergePoint*> sources(stage.ops.size(), nullptr);
  if (!stage.merge_points.empty()) {
    for (std::size_t i = 0; i < stage.ops.size(); ++i) sources[i] = stage.merge_point_before(i);
    return sources;
  }
  const Stage* opt = trace.stage(StageKind::Opt);
  if (opt == nullptr || &stage == opt) return sources;
  std::unordered_map<std::uint64_t, std::size_t> opt_op_by_descr;
  for (std::size_t i = 0; i < opt->ops.size(); ++i)
    if (opt->ops[i].descr_number) opt_op_by_descr.emplace(*opt->ops[i].descr_number, i);
  const MergePoint* current = trace.source();
  for (std::size_t i = 0; i < stage.ops.size(); ++i) {
    const auto& descr = stage.ops[i].descr_number;
    if (descr) {
      auto match = opt_op_by_descr.find(*descr);
      if (match != opt_op_by_descr.end())
        if (const MergePoint* point = opt->merge_point_before(match->second)) current = point;
    }
    sources[i] = current;
  }
  return sources;
}

}  // namespace jitprof::jitlog
