// `jitprof jitlog FILE` and `jitprof trace FILE ID`.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <iostream>
#include <map>

#include "bundle/bundle.h"
#include "bundle/text.h"
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

std::string location(const json& source) {
  if (source.is_null()) return "-";
  return fmt::format("{} at {}:{}", source["function"].get<std::string>(), source["file"].get<std::string>(),
                     source["line"].get<std::int64_t>());
}

void print_jitlog_text(const json& out, const std::string& file) {
  const auto number = [&](const char* key) { return out[key].get<std::uint64_t>(); };
  std::cout << fmt::format("jitlog {} ({} bytes, {} records)\n", file, with_commas(number("bytes")),
                           with_commas(number("records")));
  std::cout << fmt::format("format version {}, {} ({}-bit), {} op names in the header\n", number("version"),
                           out["machine"].get<std::string>(), number("word_size") * 8, number("op_names"));
  std::cout << fmt::format("traces: {} ({} loops, {} bridges, {} aborted)\n", number("traces"), number("loops"),
                           number("bridges"), number("aborted"));
  std::cout << fmt::format("ops: {} noopt, {} opt, {} asm; {} merge points; {} bytes of machine code\n",
                           with_commas(out["ops"]["noopt"].get<std::uint64_t>()),
                           with_commas(out["ops"]["opt"].get<std::uint64_t>()),
                           with_commas(out["ops"]["asm"].get<std::uint64_t>()), with_commas(number("merge_points")),
                           with_commas(number("code_bytes")));
  std::cout << fmt::format(
      "links: {} guards, {} bridges attached to their guard, {} call_assembler sites, {} redirects, {} tmp callbacks\n",
      number("guards"), number("bridges_linked_to_guards"), number("call_assembler_sites"), number("redirects"),
      number("tmp_callbacks"));
  std::cout << fmt::format("counters: {} ({} credited to a trace)\n", number("counters"), number("counters_credited"));
  if (!out["hottest"].empty()) {
    std::cout << fmt::format("\nhottest traces (entries + label passes):\n");
    std::cout << fmt::format("{:>6}  {:<6}  {:>13}  {:>13}  {}\n", "id", "type", "entries", "label passes", "source");
    for (const json& trace : out["hottest"]) {
      std::string note = trace["aborted"].get<bool>() ? " (aborted)" : "";
      if (!trace["parent"].is_null()) note += fmt::format(" (from trace {})", trace["parent"]["trace"].get<std::uint64_t>());
      std::cout << fmt::format("{:>6}  {:<6}  {:>13}  {:>13}  {}{}\n", trace["id"].get<std::uint64_t>(),
                               trace["type"].get<std::string>(), with_commas(trace["entries"].get<std::uint64_t>()),
                               with_commas(trace["label_passes"].get<std::uint64_t>()), location(trace["source"]),
                               note);
    }
  }
}

}  // namespace

int run_jitlog_summary(const JitlogOptions& options) {
  const Forest forest = load_jitlog(options.file);
  show(options, views::jitlog_json(forest, options.top), [&](const json& out) { print_jitlog_text(out, options.file); });
  return report_diagnostics(options.file, forest.warnings, forest.error);
}

namespace {

// A trace of a bundle (with its samples) or of a jitlog file.
struct LoadedTrace {
  std::optional<correlate::Profile> profile;
  Forest jitlog_only;
  bundle::Bundle read;
  const Forest& forest() const { return profile ? profile->forest : jitlog_only; }
};

LoadedTrace load_trace_source(const std::string& file) {
  LoadedTrace loaded;
  if (bundle::identify_file(file).kind == bundle::FileKind::Bundle) {
    loaded.read = open_file(file).bundle;
    report_diagnostics(file, loaded.read.warnings, loaded.read.error);
    loaded.profile = correlate::correlate(loaded.read);
  } else {
    loaded.jitlog_only = load_jitlog(file);
  }
  return loaded;
}

void explain_missing_trace(const std::string& file, const Forest& forest, std::uint64_t id) {
  std::string ids;
  for (const Trace* each : views::hottest_traces(forest, 10)) ids += fmt::format(" {}", each->id);
  std::cerr << fmt::format("jitprof: error: {} has no trace {} ({} traces; hottest:{})\n", file, id,
                           forest.traces.size(), ids.empty() ? " none" : ids);
}

void explain_missing_stage(const Trace& trace, StageKind kind) {
  std::string have;
  for (const Stage& each : trace.stages) have += fmt::format(" {}", jitlog::stage_name(each.kind));
  std::cerr << fmt::format("jitprof: error: trace {} has no {} stage (it has:{})\n", trace.id, jitlog::stage_name(kind),
                           have.empty() ? " none" : have);
}

void print_trace_header(const Forest& forest, const Trace& trace, const Stage& stage, StageKind kind) {
  std::cout << fmt::format("trace {}: {}{}{}, {} entries, {} label passes{}\n", trace.id,
                           jitlog::trace_kind_name(trace.kind),
                           trace.logged_as_bridge && trace.kind == jitlog::TraceKind::Loop
                               ? " (compiled from the interpreter as an entry bridge)"
                               : "",
                           trace.jitdriver.empty() ? "" : fmt::format(", jitdriver {}", trace.jitdriver),
                           with_commas(trace.entry_count), with_commas(trace.label_count),
                           trace.aborted ? ", ABORTED" : "");
  std::cout << fmt::format("source: {}\n", location(trace.source()));
  if (trace.parent_guard) {
    const Trace* parent = forest.find(trace.parent_guard->trace_id);
    const Stage* parent_stage = parent ? parent->stage(StageKind::Asm) : nullptr;
    std::string_view guard_name = parent_stage && trace.parent_guard->op_index < parent_stage->ops.size()
                                 ? parent_stage->ops[trace.parent_guard->op_index].name
                                 : "guard";
    std::cout << fmt::format("leaves from: {} (op {}) of trace {}, descr {}\n", guard_name,
                             trace.parent_guard->op_index, trace.parent_guard->trace_id, hex(trace.start_descr));
  }
  if (trace.code)
    std::cout << fmt::format("machine code: {}..{} ({} bytes)\n", hex(trace.code->start), hex(trace.code->end),
                             with_commas(trace.code->end - trace.code->start));
  std::size_t passes = 0;
  for (const Stage& each : trace.stages) passes += each.kind == kind;
  std::cout << fmt::format("stage {}: {} ops, {} merge points{}\n", jitlog::stage_name(kind), stage.ops.size(),
                           stage.merge_points.size(),
                           passes > 1 ? fmt::format(" (logged {} times; the last is shown)", passes) : "");
  std::cout << fmt::format("inputs: [{}]\n", fmt::join(stage.input_args, ", "));
}

// The ops with their merge points (source lines), links, counters, samples
// per op (`heat`, asm stage) and, with `disassembler`, their instructions.
void print_ops(const Trace& trace, const Stage& stage, StageKind kind, const std::optional<views::TraceHeat>& heat,
               const std::optional<jitlog::Disassembler>& disassembler, SourceCache& source_cache) {
  const auto sources = jitlog::op_sources(trace, stage);
  const bool op_samples = heat && kind == StageKind::Asm && !heat->per_asm_op.empty();
  // Stages with merge points show each one; the asm stage, whose positions
  // are borrowed from the opt stage, shows only changes of line.
  const bool borrowed = stage.merge_points.empty();
  const MergePoint* shown = nullptr;
  for (std::size_t i = 0; i < stage.ops.size(); ++i) {
    const jitlog::Operation& op = stage.ops[i];
    const MergePoint* point = sources[i];
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
    std::string address = op.code && trace.code ? fmt::format("+{:<5}", op.code->offset) : std::string(6, ' ');
    std::string note;
    if (op.bridge) note += fmt::format("  -> bridge {}", *op.bridge);
    if (op.target_trace) note += fmt::format("  -> trace {}", *op.target_trace);
    if (op.counter) note += fmt::format("  ({} {})", with_commas(op.counter), op.is_guard() ? "failures" : "passes");
    const std::uint64_t samples = op_samples ? heat->per_asm_op[i] : 0;
    const std::string heat_column = op_samples ? fmt::format("{:>6} ", samples ? with_commas(samples) : "") : "";
    std::cout << fmt::format("  {}{} {:>4}  {}{}\n", heat_column, address, i, views::op_text(op), note);
    if (!disassembler || !op.code) continue;
    for (const auto& insn : disassembler->disassemble(op.code->bytes, trace.code->start + op.code->offset)) {
      const std::uint64_t hits = heat ? heat->in_range(insn.address, insn.size) : 0;
      std::cout << fmt::format("  {}              {:x}  {} {}\n",
                               op_samples ? fmt::format("{:>6} ", hits ? with_commas(hits) : "") : "", insn.address,
                               insn.mnemonic, insn.operands);
    }
  }
}

}  // namespace

int run_trace(const TraceOptions& options) {
  // A bundle brings samples: the trace is shown with its heat.
  const LoadedTrace loaded = load_trace_source(options.file);
  const Forest& forest = loaded.forest();
  const Trace* trace = forest.find(options.id);
  if (trace == nullptr) {
    const int status = report_diagnostics(options.file, forest.warnings, forest.error);
    explain_missing_trace(options.file, forest, options.id);
    return status ? status : 1;
  }
  const StageKind kind = options.stage;
  const Stage* stage = trace->stage(kind);
  if (stage == nullptr) {
    explain_missing_stage(*trace, kind);
    return 1;
  }
  const std::optional<views::TraceHeat> heat = loaded.profile && loaded.profile->has_perf_samples
                                                   ? std::optional(views::heat_of(*loaded.profile, *trace))
                                                   : std::nullopt;
  const views::SourceFiles carried = views::source_files(loaded.read, forest);
  if (options.json) {
    json out = views::trace_json(forest, *trace, kind, heat ? &*heat : nullptr, options.disassemble, &carried);
    out.update(views::diagnostics_json(forest.warnings, forest.error));
    std::cout << bundle::json_text(out, 2) << "\n";
    return report_diagnostics(options.file, forest.warnings, forest.error);
  }

  print_trace_header(forest, *trace, *stage, kind);
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
  // Source lines the bundle or the jitlog carries win over the files on this machine.
  SourceCache source_cache;
  for (const auto& [file, lines] : carried)
    for (const auto& [number, text] : lines) source_cache.remember(file, static_cast<std::uint32_t>(number), text);
  std::optional<jitlog::Disassembler> disassembler;
  if (options.disassemble && trace->code) disassembler.emplace(forest.header.machine, forest.header.word_size);
  print_ops(*trace, *stage, kind, heat, disassembler, source_cache);
  return report_diagnostics(options.file, forest.warnings, forest.error);
}

}  // namespace jitprof::cli
