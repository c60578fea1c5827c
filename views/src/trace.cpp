#include <fmt/format.h>
#include <fmt/ranges.h>

#include <optional>

#include "bundle/sections.h"
#include "jitlog/disassembler.h"
#include "views/views.h"

namespace jitprof::views {

using jitlog::MergePoint;
using jitlog::Operation;
using jitlog::Stage;
using jitlog::StageKind;
using jitlog::Trace;
using nlohmann::json;

std::string op_text(const Operation& op) {
  std::string args = fmt::format("{}", fmt::join(op.args, ", "));
  if (!op.descr.empty()) args += fmt::format("{}descr={}", args.empty() ? "" : ", ", op.descr);
  std::string text = op.result == "?" ? fmt::format("{}({})", op.name, args)
                                      : fmt::format("{} = {}({})", op.result, op.name, args);
  if (!op.failargs.empty()) text += fmt::format(" [{}]", fmt::join(op.failargs, ", "));
  return text;
}

json location_json(const MergePoint* point) {
  if (point == nullptr) return nullptr;
  return {{"function", point->function}, {"file", point->file},       {"line", point->line},
          {"bytecode_index", point->bytecode_index}, {"opcode", point->opcode}, {"inline_depth", point->inline_depth}};
}

json trace_summary_json(const Trace& trace) {
  json item = {{"id", trace.id},
               {"type", jitlog::trace_kind_name(trace.kind)},
               {"jitdriver", trace.jitdriver},
               {"entries", trace.entry_count},
               {"label_passes", trace.label_count},
               {"executions", trace.executions()},
               {"aborted", trace.aborted},
               {"source", location_json(trace.source())}};
  item["code"] = trace.code ? json{{"start", trace.code->start}, {"end", trace.code->end}} : json(nullptr);
  item["parent"] = trace.parent_guard
                       ? json{{"trace", trace.parent_guard->trace_id}, {"op_index", trace.parent_guard->op_index}}
                       : json(nullptr);
  return item;
}

namespace {

// What the optimizer's removal of an op most likely means, by op family.
const char* removal_kind(const std::string& op) {
  if (op == "new" || op.starts_with("new_") || op.starts_with("newstr") || op.starts_with("newunicode"))
    return "allocations removed (virtuals)";
  if (op.starts_with("guard_")) return "guards removed (implied or merged)";
  if (op.starts_with("getfield") || op.starts_with("setfield") || op.starts_with("getarrayitem") ||
      op.starts_with("setarrayitem") || op.starts_with("getinteriorfield") || op.starts_with("setinteriorfield"))
    return "heap accesses removed (cached, or on virtuals)";
  if (op.starts_with("call")) return "calls removed (pure or on virtuals)";
  return "other ops removed (constant-folded or shared)";
}

}  // namespace

json diff_json(const Trace& trace) {
  static constexpr std::pair<StageKind, StageKind> kSteps[] = {{StageKind::NoOpt, StageKind::Opt},
                                                                {StageKind::Opt, StageKind::Asm}};
  json diffs = json::array();
  for (const auto& [from_kind, to_kind] : kSteps) {
    const Stage* from = trace.stage(from_kind);
    const Stage* to = trace.stage(to_kind);
    if (!from || !to) continue;
    const jitlog::StageDiff diff = jitlog::diff_stages(*from, *to);
    diffs.push_back({{"from", jitlog::stage_name(from_kind)},
                     {"to", jitlog::stage_name(to_kind)},
                     {"ops", {diff.ops_before, diff.ops_after}},
                     {"guards", {diff.guards_before, diff.guards_after}},
                     {"removed", diff.removed},
                     {"added", diff.added}});
    // The optimizer's work by kind; the backend's rewriting (opt -> asm) is not optimization.
    if (from_kind == StageKind::NoOpt) {
      json kinds = json::object();
      for (const auto& [op, count] : diff.removed) kinds[removal_kind(op)][op] = count;
      diffs.back()["removed_by_kind"] = std::move(kinds);
    }
  }
  return diffs;
}

std::uint64_t TraceHeat::in_range(std::uint64_t start, std::uint64_t size) const {
  std::uint64_t sum = 0;
  for (auto it = per_address.lower_bound(start); it != per_address.end() && it->first < start + size; ++it)
    sum += it->second;
  return sum;
}

namespace {

void add_sample(TraceHeat& heat, const correlate::Sample& sample) {
  ++heat.total;
  if (sample.op && *sample.op < heat.per_asm_op.size()) ++heat.per_asm_op[*sample.op];
  else ++heat.entry;
  ++heat.per_address[sample.jit_address];
}

// Sizes the per-op counts; false for a trace without machine code.
bool start_heat(TraceHeat& heat, const Trace& trace) {
  const Stage* asm_stage = trace.stage(StageKind::Asm);
  if (asm_stage == nullptr) return false;
  heat.per_asm_op.assign(asm_stage->ops.size(), 0);
  return true;
}

void finish_heat(TraceHeat& heat, const Trace& trace) {
  const Stage* asm_stage = trace.stage(StageKind::Asm);
  if (asm_stage == nullptr) return;
  const auto sources = jitlog::op_sources(trace, *asm_stage);
  for (std::size_t i = 0; i < sources.size(); ++i)
    if (sources[i] && heat.per_asm_op[i]) heat.per_source[sources[i]] += heat.per_asm_op[i];
}

}  // namespace

TraceHeat heat_of(const correlate::Profile& profile, const Trace& trace) {
  TraceHeat heat;
  if (!start_heat(heat, trace)) return heat;
  for (const auto& sample : profile.samples)
    if (sample.trace == trace.id) add_sample(heat, sample);
  finish_heat(heat, trace);
  return heat;
}

std::map<std::uint64_t, TraceHeat> heat_of_traces(const correlate::Profile& profile) {
  std::map<std::uint64_t, TraceHeat> heats;
  // With perf samples, a trace none hit has a heat of zero, not an unknown one.
  if (profile.has_perf_samples)
    for (const Trace& trace : profile.forest.traces)
      if (TraceHeat heat; start_heat(heat, trace)) heats.emplace(trace.id, std::move(heat));
  for (const auto& sample : profile.samples) {
    if (!sample.trace) continue;
    auto [heat, fresh] = heats.try_emplace(*sample.trace);
    const Trace* trace = fresh ? profile.forest.find(*sample.trace) : nullptr;
    if (fresh && (trace == nullptr || !start_heat(heat->second, *trace))) {
      heats.erase(heat);
      continue;
    }
    add_sample(heat->second, sample);
  }
  for (auto& [id, heat] : heats) finish_heat(heat, *profile.forest.find(id));
  return heats;
}

SourceFiles source_files(const bundle::Bundle& bundle, const jitlog::Forest& forest) {
  SourceFiles files;
  for (const auto& [file, lines] : forest.source_code)
    for (const auto& [number, line] : lines) files[file][number] = line.text;
  for (const bundle::SourceFileRecord& source : bundle::read_source_files(bundle)) {
    if (source.file.empty()) continue;
    auto& lines = files[source.file];
    const std::string& content = source.text;
    std::int64_t number = 1;
    for (std::size_t start = 0; start <= content.size(); ++number) {
      const std::size_t stop = std::min(content.find('\n', start), content.size());
      lines.try_emplace(number, content.substr(start, stop - start));
      start = stop + 1;
    }
  }
  return files;
}

json trace_json(const jitlog::Forest& forest, const Trace& trace, StageKind kind, const TraceHeat* heat,
                bool disassemble, const SourceFiles* files) {
  json out = trace_summary_json(trace);
  const Stage* stage = trace.stage(kind);
  out["stage"] = jitlog::stage_name(kind);
  out["stages"] = json::array();
  for (StageKind each : {StageKind::NoOpt, StageKind::Opt, StageKind::Asm})
    if (trace.stage(each)) out["stages"].push_back(jitlog::stage_name(each));
  out["stage_diffs"] = diff_json(trace);
  if (stage == nullptr) return out;
  out["input_args"] = stage->input_args;
  std::optional<jitlog::Disassembler> disassembler;
  if (disassemble && trace.code) disassembler.emplace(forest.header.machine, forest.header.word_size);
  const auto sources = jitlog::op_sources(trace, *stage);
  if (heat) {
    out["samples"] = heat->total;
    out["entry_code_samples"] = heat->entry;
  }
  out["ops"] = json::array();
  for (std::size_t i = 0; i < stage->ops.size(); ++i) {
    const Operation& op = stage->ops[i];
    json item = {{"index", i},           {"opnum", op.opnum}, {"name", op.name},
                 {"result", op.result},  {"args", op.args},   {"descr", op.descr},
                 {"failargs", op.failargs}, {"text", op_text(op)}, {"source", location_json(sources[i])}};
    item["descr_number"] = op.descr_number ? json(*op.descr_number) : json(nullptr);
    item["bridge"] = op.bridge ? json(*op.bridge) : json(nullptr);
    item["target_trace"] = op.target_trace ? json(*op.target_trace) : json(nullptr);
    item["guard"] = op.is_guard();
    item["counter"] = op.counter;
    if (heat && kind == StageKind::Asm && !heat->per_asm_op.empty()) item["samples"] = heat->per_asm_op[i];
    if (op.code && trace.code) {
      item["address"] = trace.code->start + op.code->offset;
      item["code_size"] = op.code->bytes.size();
      if (disassembler) {
        item["instructions"] = json::array();
        for (const auto& insn : disassembler->disassemble(op.code->bytes, trace.code->start + op.code->offset))
          item["instructions"].push_back({{"address", insn.address},
                                          {"size", insn.size},
                                          {"mnemonic", insn.mnemonic},
                                          {"operands", insn.operands},
                                          {"samples", heat ? heat->in_range(insn.address, insn.size) : 0}});
      }
    }
    out["ops"].push_back(std::move(item));
  }
  if (files) {
    json lines = json::object();
    for (const MergePoint* point : sources) {
      if (point == nullptr) continue;
      auto file = files->find(point->file);
      if (file == files->end()) continue;
      auto line = file->second.find(point->line);
      if (line != file->second.end()) lines[point->file][std::to_string(point->line)] = line->second;
    }
    out["source_lines"] = std::move(lines);
  }
  out["merge_points"] = json::array();
  for (const MergePoint& point : stage->merge_points) {
    json item = location_json(&point);
    item["op_index"] = point.op_index;
    if (heat) {
      auto samples = heat->per_source.find(&point);
      item["samples"] = samples == heat->per_source.end() ? 0 : samples->second;
    }
    out["merge_points"].push_back(std::move(item));
  }
  return out;
}

}  // namespace jitprof::views
