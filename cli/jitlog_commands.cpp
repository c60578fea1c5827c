// `jitprof jitlog FILE` and `jitprof trace FILE ID`.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <iostream>
#include <map>

#include "bundle/bundle.h"
#include "commands.h"
#include "correlate/profile.h"
#include "common.h"
#include "jitlog/disassembler.h"
#include "jitlog/jitlog.h"
#include "views/views.h"

namespace jitprof::cli {
namespace {

using jitlog::Forest;
using jitlog::MergePoint;
using jitlog::Operation;
using jitlog::Stage;
using jitlog::StageKind;
using jitlog::Trace;
using nlohmann::json;

std::string location(const MergePoint* point) {
  if (point == nullptr) return "-";
  return fmt::format("{} at {}:{}", point->function, point->file, point->line);
}

void print_diff(const Trace& trace) {
  auto list = [](const json& ops) {
    std::string text;
    for (const auto& [name, count] : ops.items())
      text += fmt::format("{}{} x{}", text.empty() ? "" : ", ", name, count.get<std::size_t>());
    return text.empty() ? std::string("none") : text;
  };
  for (const json& step : views::diff_json(trace)) {
    std::cout << fmt::format("{} -> {}: {} -> {} ops, {} -> {} guards\n", step["from"].get<std::string>(),
                             step["to"].get<std::string>(), step["ops"][0].get<std::size_t>(),
                             step["ops"][1].get<std::size_t>(), step["guards"][0].get<std::size_t>(),
                             step["guards"][1].get<std::size_t>());
    std::cout << fmt::format("  removed: {}\n  added:   {}\n", list(step["removed"]), list(step["added"]));
    if (step.contains("removed_by_kind"))
      for (const auto& [kind, ops] : step["removed_by_kind"].items())
        std::cout << fmt::format("    {}: {}\n", kind, list(ops));
  }
  std::cout << "\n";
}

bool same_line(const MergePoint* a, const MergePoint* b) {
  return a && b && a->file == b->file && a->line == b->line && a->function == b->function;
}

struct Counts {
  std::size_t loops = 0, bridges = 0, aborted = 0, merge_points = 0, code_bytes = 0;
  std::size_t guards = 0, call_assemblers = 0, linked_bridges = 0;
  std::array<std::size_t, 3> ops{};  // by StageKind
};

Counts count(const Forest& forest) {
  Counts counts;
  for (const Trace& trace : forest.traces) {
    (trace.kind == jitlog::TraceKind::Loop ? counts.loops : counts.bridges)++;
    counts.aborted += trace.aborted;
    counts.linked_bridges += trace.parent_guard.has_value();
    if (trace.code) counts.code_bytes += trace.code->end - trace.code->start;
    // Count each stage kind once: unrolled loops log the noopt stage twice.
    for (StageKind kind : {StageKind::NoOpt, StageKind::Opt, StageKind::Asm}) {
      const Stage* stage = trace.stage(kind);
      if (stage == nullptr) continue;
      counts.ops[static_cast<std::size_t>(kind)] += stage->ops.size();
      counts.merge_points += stage->merge_points.size();
    }
    if (const Stage* stage = trace.stage(StageKind::Asm)) {
      for (const Operation& op : stage->ops) {
        counts.guards += op.is_guard();
        counts.call_assemblers += op.is_call_assembler();
      }
    }
  }
  return counts;
}

std::vector<const Trace*> hottest(const Forest& forest, std::size_t limit) {
  std::vector<const Trace*> order;
  for (const Trace& trace : forest.traces) order.push_back(&trace);
  std::stable_sort(order.begin(), order.end(),
                   [](const Trace* a, const Trace* b) { return a->executions() > b->executions(); });
  if (order.size() > limit) order.resize(limit);
  return order;
}

}  // namespace

int run_jitlog_summary(const JitlogOptions& options) {
  const Forest forest = load_jitlog(options.file);
  const Counts counts = count(forest);
  std::size_t credited = 0;
  for (const auto& counter : forest.counters) credited += counter.matched;
  const auto hot = hottest(forest, options.top);

  if (options.json) {
    json out = {{"file", options.file},
                {"bytes", forest.bytes_read},
                {"records", forest.records},
                {"version", forest.header.version},
                {"machine", forest.header.machine},
                {"word_size", forest.header.word_size},
                {"op_names", forest.header.op_names.size()},
                {"traces", forest.traces.size()},
                {"loops", counts.loops},
                {"bridges", counts.bridges},
                {"aborted", counts.aborted},
                {"ops", {{"noopt", counts.ops[0]},
                         {"opt", counts.ops[1]},
                         {"asm", counts.ops[2]}}},
                {"merge_points", counts.merge_points},
                {"code_bytes", counts.code_bytes},
                {"guards", counts.guards},
                {"bridges_linked_to_guards", counts.linked_bridges},
                {"call_assembler_sites", counts.call_assemblers},
                {"redirects", forest.redirects.size()},
                {"tmp_callbacks", forest.tmp_callbacks.size()},
                {"counters", forest.counters.size()},
                {"counters_credited", credited}};
    out["hottest"] = json::array();
    for (const Trace* trace : hot) out["hottest"].push_back(views::trace_summary_json(*trace));
    out.update(diagnostics_json(forest.warnings, forest.error));
    std::cout << out.dump(2) << "\n";
    return report_diagnostics(options.file, forest.warnings, forest.error);
  }

  std::cout << fmt::format("jitlog {} ({} bytes, {} records)\n", options.file, with_commas(forest.bytes_read),
                           with_commas(forest.records));
  std::cout << fmt::format("format version {}, {} ({}-bit), {} op names in the header\n", forest.header.version,
                           forest.header.machine, forest.header.word_size * 8, forest.header.op_names.size());
  std::cout << fmt::format("traces: {} ({} loops, {} bridges, {} aborted)\n", forest.traces.size(), counts.loops,
                           counts.bridges, counts.aborted);
  std::cout << fmt::format("ops: {} noopt, {} opt, {} asm; {} merge points; {} bytes of machine code\n",
                           with_commas(counts.ops[0]), with_commas(counts.ops[1]),
                           with_commas(counts.ops[2]), with_commas(counts.merge_points),
                           with_commas(counts.code_bytes));
  std::cout << fmt::format(
      "links: {} guards, {} bridges attached to their guard, {} call_assembler sites, {} redirects, {} tmp callbacks\n",
      counts.guards, counts.linked_bridges, counts.call_assemblers, forest.redirects.size(),
      forest.tmp_callbacks.size());
  std::cout << fmt::format("counters: {} ({} credited to a trace)\n", forest.counters.size(), credited);
  if (!hot.empty()) {
    std::cout << fmt::format("\nhottest traces (entries + label passes):\n");
    std::cout << fmt::format("{:>6}  {:<6}  {:>13}  {:>13}  {}\n", "id", "type", "entries", "label passes",
                             "source");
    for (const Trace* trace : hot) {
      std::string note = trace->aborted ? " (aborted)" : "";
      if (trace->parent_guard) note += fmt::format(" (from trace {})", trace->parent_guard->trace_id);
      std::cout << fmt::format("{:>6}  {:<6}  {:>13}  {:>13}  {}{}\n", trace->id,
                               jitlog::trace_kind_name(trace->kind), with_commas(trace->entry_count),
                               with_commas(trace->label_count), location(trace->source()), note);
    }
  }
  return report_diagnostics(options.file, forest.warnings, forest.error);
}

namespace {

}  // namespace

int run_trace(const TraceOptions& options) {
  // A bundle brings samples: the trace is shown with its heat.
  std::optional<correlate::Profile> profile;
  Forest jitlog_only;
  bundle::Bundle read;
  if (bundle::is_bundle(options.file)) {
    read = bundle::read_bundle(options.file);
    report_diagnostics(options.file, read.warnings, read.error);
    profile = correlate::correlate(read);
  } else {
    jitlog_only = load_jitlog(options.file);
  }
  const Forest& forest = profile ? profile->forest : jitlog_only;
  const Trace* trace = forest.find(options.id);
  if (trace == nullptr) {
    int status = report_diagnostics(options.file, forest.warnings, forest.error);
    std::string ids;
    for (const Trace* each : hottest(forest, 10)) ids += fmt::format(" {}", each->id);
    std::cerr << fmt::format("jitprof: error: {} has no trace {} ({} traces; hottest:{})\n", options.file,
                             options.id, forest.traces.size(), ids.empty() ? " none" : ids);
    return status ? status : 1;
  }
  const StageKind kind = options.stage;
  const Stage* stage = trace->stage(kind);
  if (stage == nullptr) {
    std::string have;
    for (const Stage& each : trace->stages) have += fmt::format(" {}", jitlog::stage_name(each.kind));
    std::cerr << fmt::format("jitprof: error: trace {} has no {} stage (it has:{})\n", trace->id,
                             jitlog::stage_name(kind), have.empty() ? " none" : have);
    return 1;
  }
  std::optional<jitlog::Disassembler> disassembler;
  if (options.disassemble && trace->code) disassembler.emplace(forest.header.machine, forest.header.word_size);
  const auto sources = jitlog::op_sources(*trace, *stage);
  const std::optional<views::TraceHeat> heat =
      profile && profile->has_perf_samples ? std::optional(views::heat_of(*profile, *trace)) : std::nullopt;
  auto op_heat = [&](std::size_t i) -> std::optional<std::uint64_t> {
    if (!heat || kind != StageKind::Asm || heat->per_asm_op.empty()) return std::nullopt;
    return heat->per_asm_op[i];
  };
  // Source lines the bundle or the jitlog carries win over the files on this machine.
  SourceCache source_cache;
  const views::SourceFiles carried = views::source_files(read, forest);
  for (const auto& [file, lines] : carried)
    for (const auto& [number, text] : lines) source_cache.remember(file, static_cast<std::uint32_t>(number), text);

  if (options.json) {
    json out = views::trace_json(forest, *trace, kind, heat ? &*heat : nullptr, options.disassemble, &carried);
    out.update(diagnostics_json(forest.warnings, forest.error));
    std::cout << out.dump(2) << "\n";
    return report_diagnostics(options.file, forest.warnings, forest.error);
  }

  std::cout << fmt::format("trace {}: {}{}{}, {} entries, {} label passes{}\n", trace->id,
                           jitlog::trace_kind_name(trace->kind),
                           trace->logged_as_bridge && trace->kind == jitlog::TraceKind::Loop
                               ? " (compiled from the interpreter as an entry bridge)"
                               : "",
                           trace->jitdriver.empty() ? "" : fmt::format(", jitdriver {}", trace->jitdriver),
                           with_commas(trace->entry_count), with_commas(trace->label_count),
                           trace->aborted ? ", ABORTED" : "");
  std::cout << fmt::format("source: {}\n", location(trace->source()));
  if (trace->parent_guard) {
    const Trace* parent = forest.find(trace->parent_guard->trace_id);
    const Stage* parent_stage = parent ? parent->stage(StageKind::Asm) : nullptr;
    std::string guard_name = parent_stage && trace->parent_guard->op_index < parent_stage->ops.size()
                                 ? parent_stage->ops[trace->parent_guard->op_index].name
                                 : "guard";
    std::cout << fmt::format("leaves from: {} (op {}) of trace {}, descr {}\n", guard_name,
                             trace->parent_guard->op_index, trace->parent_guard->trace_id, hex(trace->start_descr));
  }
  if (trace->code)
    std::cout << fmt::format("machine code: {}..{} ({} bytes)\n", hex(trace->code->start), hex(trace->code->end),
                             with_commas(trace->code->end - trace->code->start));
  std::size_t passes = 0;
  for (const Stage& each : trace->stages) passes += each.kind == kind;
  std::cout << fmt::format("stage {}: {} ops, {} merge points{}\n", jitlog::stage_name(kind), stage->ops.size(),
                           stage->merge_points.size(),
                           passes > 1 ? fmt::format(" (logged {} times; the last is shown)", passes) : "");
  std::string inputs;
  for (const auto& arg : stage->input_args) inputs += (inputs.empty() ? "" : ", ") + arg;
  std::cout << fmt::format("inputs: [{}]\n", inputs);
  if (options.diff) {
    std::cout << "\n";
    print_diff(*trace);
  }
  if (heat)
    std::cout << fmt::format("samples: {} in this trace ({} in its entry code before the first op){}\n",
                             with_commas(heat->total), with_commas(heat->entry),
                             kind == StageKind::Asm ? "; the first column counts samples per op"
                                                    : "; samples per source line are on the # lines (--stage asm: per op)");
  std::cout << "\n";

  const MergePoint* shown = nullptr;
  for (std::size_t i = 0; i < stage->ops.size(); ++i) {
    const Operation& op = stage->ops[i];
    const MergePoint* point = sources[i];
    // Stages with merge points show each one; the asm stage, whose positions
    // are borrowed from the opt stage, shows only changes of line.
    const bool borrowed = stage->merge_points.empty();
    if (point != nullptr && point != shown && !(borrowed && same_line(point, shown))) {
      const std::string indent(2 * point->inline_depth, ' ');
      auto text = source_cache.line(point->file, point->line);
      std::string samples;
      if (heat && !borrowed) {
        auto found = heat->per_source.find(point);
        samples = fmt::format("  [{} samples]", found == heat->per_source.end() ? 0 : found->second);
      }
      std::cout << fmt::format("  {}# {}:{} in {} #{} {}{}{}\n", indent,
                               std::filesystem::path(point->file).filename().string(), point->line, point->function,
                               point->bytecode_index, point->opcode, text ? "  | " + *text : "", samples);
    }
    shown = point ? point : shown;
    std::string address = op.code && trace->code ? fmt::format("+{:<5}", op.code->offset) : std::string(6, ' ');
    std::string note;
    if (op.bridge) note += fmt::format("  -> bridge {}", *op.bridge);
    if (op.target_trace) note += fmt::format("  -> trace {}", *op.target_trace);
    if (op.counter) note += fmt::format("  ({} {})", with_commas(op.counter), op.is_guard() ? "failures" : "passes");
    const auto samples = op_heat(i);
    const std::string heat_column = samples ? fmt::format("{:>6} ", *samples ? with_commas(*samples) : "") : "";
    std::cout << fmt::format("  {}{} {:>4}  {}{}\n", heat_column, address, i, views::op_text(op), note);
    if (disassembler && op.code) {
      for (const auto& insn : disassembler->disassemble(op.code->bytes, trace->code->start + op.code->offset)) {
        const std::uint64_t hits = heat ? heat->in_range(insn.address, insn.size) : 0;
        std::cout << fmt::format("  {}              {:x}  {} {}\n",
                                 samples ? fmt::format("{:>6} ", hits ? with_commas(hits) : "") : "", insn.address,
                                 insn.mnemonic, insn.operands);
      }
    }
  }
  return report_diagnostics(options.file, forest.warnings, forest.error);
}

}  // namespace jitprof::cli
