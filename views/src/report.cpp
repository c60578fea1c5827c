#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "arch/x86_64.h"
#include "bundle/manifest.h"
#include "bundle/samples.h"
#include "bundle/sections.h"
#include "correlate/jit_code.h"
#include "views/views.h"

namespace jitprof::views {
namespace {

using correlate::Category;
using correlate::Profile;
using nlohmann::json;

struct Count {
  std::uint64_t self = 0, total = 0;
};

struct FunctionKey {
  std::string name, file;
  auto operator<=>(const FunctionKey&) const = default;
};

struct NativeFunction {
  std::uint64_t self = 0;
  std::map<std::pair<std::string, std::int64_t>, std::uint64_t> lines;  // (source file, line), with debug information
};

struct Summary {
  std::size_t samples = 0;
  std::map<FunctionKey, Count> functions;
  std::map<FunctionKey, std::int64_t> first_line;
  std::map<std::uint64_t, std::uint64_t> trace_samples;  // by trace id
  std::map<std::string, std::uint64_t> leaf_categories;
  std::map<std::string, std::uint64_t> native_libraries;  // leaf frames outside Python and JIT code
  std::map<FunctionKey, NativeFunction> native_functions;  // named leaf frames, by name and library
  std::map<std::uint32_t, std::uint64_t> threads;
  std::map<std::uint32_t, std::map<FunctionKey, std::uint64_t>> thread_functions;
};

// A frame of a native binary: libpypy (any of its components) or another library.
bool is_native_code(const correlate::Frame& frame) {
  switch (frame.category) {
    case Category::Python:
    case Category::JitInlined:
    case Category::JitTrace:
    case Category::JitHelper:
    case Category::JitAnonymous:
    case Category::Kernel: return false;
    default: return !correlate::is_runtime_phase(frame);
  }
}

Summary summarize(const Profile& profile) {
  Summary summary;
  summary.samples = profile.samples.size();
  for (const auto& sample : profile.samples) {
    const auto& stack = profile.stacks[sample.stack];
    ++summary.threads[sample.tid];
    for (std::uint32_t id : profile.python_functions(sample.stack)) {
      const auto& frame = profile.frames[id];
      ++summary.functions[{frame.name, frame.file}].total;
    }
    for (std::uint32_t id : stack) {
      const auto& frame = profile.frames[id];
      if (frame.category != Category::Python && frame.category != Category::JitInlined) continue;
      auto [line, fresh] = summary.first_line.try_emplace({frame.name, frame.file}, frame.line);
      if (!fresh && frame.line > 0 && (line->second == 0 || frame.line < line->second)) line->second = frame.line;
    }
    if (auto leaf = profile.python_leaf(sample.stack)) {
      const auto& frame = profile.frames[*leaf];
      FunctionKey key{frame.name, frame.file};
      ++summary.functions[key].self;
      ++summary.thread_functions[sample.tid][key];
    }
    if (sample.trace) ++summary.trace_samples[*sample.trace];
    if (stack.empty()) {
      ++summary.leaf_categories["unknown"];
      continue;
    }
    const auto& leaf = profile.frames[stack.back()];
    ++summary.leaf_categories[correlate::category_name(sample.category)];
    if (is_native_code(leaf)) {
      const std::string library = leaf.file.empty() ? "[unknown]" : std::filesystem::path(leaf.file).filename().string();
      ++summary.native_libraries[library];
      if (leaf.name != library && !leaf.name.starts_with("0x")) {
        NativeFunction& function = summary.native_functions[{leaf.name, leaf.file}];
        ++function.self;
        if (!leaf.source_file.empty()) ++function.lines[{leaf.source_file, leaf.line}];
      }
    }
    if (leaf.category == Category::Kernel) ++summary.native_libraries["[kernel]"];
  }
  return summary;
}

// The `limit` largest entries of a map by `by(value)`, keeping map order among equals.
template <class Map>
std::vector<std::pair<typename Map::key_type, typename Map::mapped_type>> largest(const Map& map, std::size_t limit,
                                                                                  auto by) {
  std::vector<std::pair<typename Map::key_type, typename Map::mapped_type>> items(map.begin(), map.end());
  std::stable_sort(items.begin(), items.end(), [&](const auto& a, const auto& b) { return by(a.second) > by(b.second); });
  if (items.size() > limit) items.resize(limit);
  return items;
}

json hot_trace_json(const Profile& profile, const Summary& summary, std::uint64_t id, std::uint64_t count) {
  json item = {{"id", id}, {"samples", count}, {"share", double(count) / double(summary.samples)}};
  const jitlog::Trace* trace = profile.forest.find(id);
  if (trace == nullptr) return item;
  item["type"] = jitlog::trace_kind_name(trace->kind);
  item["entries"] = trace->entry_count;
  item["label_passes"] = trace->label_count;
  item["source"] = location_json(trace->source());
  // The guards that fail most, and the bridges they lead to.
  std::vector<std::pair<std::uint64_t, std::size_t>> guards;
  const jitlog::Stage* stage = trace->stage(jitlog::StageKind::Asm);
  if (stage)
    for (std::size_t i = 0; i < stage->ops.size(); ++i)
      if (stage->ops[i].is_guard() && stage->ops[i].counter > 0) guards.emplace_back(stage->ops[i].counter, i);
  std::sort(guards.rbegin(), guards.rend());
  item["failing_guards"] = json::array();
  for (std::size_t g = 0; g < std::min<std::size_t>(guards.size(), 3); ++g) {
    const auto& op = stage->ops[guards[g].second];
    json guard = {{"op_index", guards[g].second}, {"op", op.name}, {"failures", op.counter}};
    guard["bridge"] = op.bridge ? json(*op.bridge) : json(nullptr);
    if (op.bridge) {
      auto bridge_samples = summary.trace_samples.find(*op.bridge);
      guard["bridge_samples"] = bridge_samples == summary.trace_samples.end() ? 0 : bridge_samples->second;
    }
    item["failing_guards"].push_back(std::move(guard));
  }
  return item;
}

// `jitprof attach` bundles: which process, and how its JIT code got names.
json attach_json(const bundle::Bundle& read) {
  const bundle::ManifestRead manifest = bundle::read_manifest(read);
  if (!manifest.manifest || manifest.manifest->mode != "attach" || !manifest.manifest->attach) return nullptr;
  const bundle::Manifest::Attach& attach = *manifest.manifest->attach;
  json summary = {{"jit_names", attach.jit_names},
                  {"explanation", attach.explanation},
                  {"pid", manifest.manifest->pid.value_or(0)},
                  {"seconds", manifest.manifest->duration_s.value_or(0.0)}};
  if (attach.jitlog_path) summary["jitlog_path"] = *attach.jitlog_path;
  if (attach.jit_code_bytes) summary["jit_code_bytes"] = *attach.jit_code_bytes;
  return summary;
}

json region_json(const correlate::JitCodeRegion& region) {
  json instructions = json::array();
  for (const auto& instruction : region.instructions)
    instructions.push_back({{"address", instruction.address}, {"text", instruction.text}, {"samples", instruction.samples}});
  return {{"pid", region.pid},
          {"start", region.start},
          {"end", region.end},
          {"samples", region.samples},
          {"instructions", std::move(instructions)}};
}

std::optional<FunctionKey> busiest_function(const Summary& summary, std::uint32_t tid) {
  auto functions = summary.thread_functions.find(tid);
  if (functions == summary.thread_functions.end() || functions->second.empty()) return std::nullopt;
  return largest(functions->second, 1, [](std::uint64_t n) { return n; }).front().first;
}

}  // namespace

json crash_json(const bundle::Bundle& read, const jitlog::TraceResolver& resolver) {
  const std::optional<bundle::CrashRecord> crash = bundle::read_crash(read);
  if (!crash) return nullptr;
  const auto hex = [](std::uint64_t value) { return fmt::format("{:#x}", value); };
  json out = {{"signal", crash->signal},
              {"signal_name", crash->signal_name},
              {"code", crash->code},
              {"fault_address", crash->fault_address},
              {"fault_address_hex", hex(crash->fault_address)},
              {"tid", crash->tid},
              {"registers", json::object()},
              {"registers_hex", json::object()},
              {"frames", json::array()}};
  for (const auto& [name, value] : crash->registers) {
    out["registers"][name] = value;
    out["registers_hex"][name] = hex(value);
  }
  for (const bundle::CrashFrame& frame : crash->frames) {
    json entry = {{"address", frame.address}, {"address_hex", hex(frame.address)}, {"jit", frame.jit}};
    if (const auto& symbol = frame.symbol) {
      entry["path"] = symbol->path;
      entry["name"] = symbol->name;
      entry["offset"] = symbol->offset;
      if (!symbol->source.empty()) {
        entry["source"] = json::array();
        for (const auto& source : symbol->source)
          entry["source"].push_back({{"function", source.function}, {"file", source.file}, {"line", source.line}});
      }
    }
    out["frames"].push_back(std::move(entry));
  }
  // The innermost JIT frame: the faulting instruction itself, or the call
  // from which the trace reached the native code that faulted.
  for (std::size_t i = 0; i < crash->frames.size(); ++i) {
    if (!crash->frames[i].jit) continue;
    const jitlog::TraceResolver::Hit hit = resolver.find(arch::lookup_address(crash->frames[i].address, i > 0));
    if (hit.trace == nullptr) break;
    out["trace"] = {{"id", hit.trace->id}, {"type", jitlog::trace_kind_name(hit.trace->kind)}, {"frame_index", i}};
    out["frames"][i]["trace"] = hit.trace->id;
    if (hit.op) {
      out["trace"]["op_index"] = *hit.op;
      out["trace"]["op"] = hit.trace->stage(jitlog::StageKind::Asm)->ops[*hit.op].name;
      if (hit.source)
        out["trace"]["source"] = {{"function", hit.source->function}, {"file", hit.source->file}, {"line", hit.source->line}};
    }
    break;
  }
  return out;
}

json python_stacks_json(const correlate::Stats& stats) {
  json out = {{"exact", stats.python_exact},
              {"from_jitlog", stats.python_from_jit},
              {"from_vmprof_by_time", stats.python_from_vmprof_time},
              {"unknown", stats.python_unknown},
              {"read_status", json::object()},
              {"unnamed_code_objects", stats.unnamed_code_objects},
              {"samples_with_unnamed_code", stats.samples_with_unnamed_code}};
  for (std::size_t status = 0; status < stats.python_stack_status.size(); ++status)
    if (stats.python_stack_status[status] > 0)
      out["read_status"][bundle::python_stack_status_name(static_cast<bundle::PythonStackStatus>(status))] =
          stats.python_stack_status[status];
  return out;
}

json report_json(const Profile& profile, const bundle::Bundle& bundle, std::size_t top) {
  const Summary summary = summarize(profile);
  const auto& stats = profile.stats;
  const auto by_count = [](std::uint64_t n) { return n; };
  json out = {{"samples", summary.samples},
              {"seconds_per_sample", profile.seconds_per_sample},
              {"sample_source", profile.samples_from_vmprof ? "vmprof" : "perf"},
              {"jit", {{"samples", stats.jit}, {"in_traces", stats.jit_in_trace}, {"on_ops", stats.jit_on_op}}},
              {"python_stacks", python_stacks_json(stats)}};
  out["functions"] = json::array();
  for (const auto& [key, count] :
       largest(summary.functions, top, [](const Count& c) { return c.self * 1'000'000 + c.total; }))
    out["functions"].push_back({{"name", key.name},
                                {"file", key.file},
                                {"line", summary.first_line.at(key)},
                                {"self", count.self},
                                {"total", count.total}});
  out["traces"] = json::array();
  for (const auto& [id, count] : largest(summary.trace_samples, top, by_count))
    out["traces"].push_back(hot_trace_json(profile, summary, id, count));
  out["leaf_categories"] = summary.leaf_categories;
  out["runtime"] = runtime_json(profile);
  out["native_libraries"] = summary.native_libraries;
  out["native_functions"] = json::array();
  for (const auto& [key, function] : largest(summary.native_functions, top, [](const NativeFunction& f) { return f.self; })) {
    json lines = json::array();
    for (const auto& [location, count] : largest(function.lines, top, by_count))
      lines.push_back({{"file", location.first}, {"line", location.second}, {"samples", count}});
    out["native_functions"].push_back(
        {{"name", key.name}, {"library", key.file}, {"self", function.self}, {"lines", std::move(lines)}});
  }
  out["threads"] = json::array();
  for (const auto& [tid, count] : summary.threads) {
    json thread = {{"tid", tid}, {"samples", count}};
    if (auto function = busiest_function(summary, tid)) thread["top_function"] = function->name;
    out["threads"].push_back(std::move(thread));
  }
  out["attach"] = attach_json(bundle);
  if (const auto manifest = bundle::read_manifest(bundle).manifest; manifest && manifest->jit == "ranges")
    out["jit"]["names_from"] =
        "PyPy's log (record --jit ranges): loops and bridges by name and code range; no IR, ops, machine code or "
        "guard counts";
  out["anonymous_jit_code"] = json::array();
  auto regions = correlate::anonymous_jit_code(bundle, profile);
  if (regions.size() > top) regions.resize(top);
  for (const auto& region : regions) out["anonymous_jit_code"].push_back(region_json(region));
  return out;
}

}  // namespace jitprof::views
