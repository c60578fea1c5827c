// `jitprof report FILE`: the correlated profile of a bundle.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "commands.h"
#include "common.h"
#include "correlate/jit_code.h"
#include "correlate/profile.h"

namespace jitprof::cli {
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

struct Report {
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

Report summarize(const Profile& profile) {
  Report report;
  report.samples = profile.samples.size();
  for (const auto& sample : profile.samples) {
    const auto& stack = profile.stacks[sample.stack];
    ++report.threads[sample.tid];
    std::set<FunctionKey> seen;
    for (std::uint32_t id : stack) {
      const auto& frame = profile.frames[id];
      if (frame.category != Category::Python && frame.category != Category::JitInlined) continue;
      FunctionKey key{frame.name, frame.file};
      if (seen.insert(key).second) ++report.functions[key].total;
      auto [line, fresh] = report.first_line.try_emplace(key, frame.line);
      if (!fresh && frame.line > 0 && (line->second == 0 || frame.line < line->second)) line->second = frame.line;
    }
    if (auto leaf = profile.python_leaf(sample.stack)) {
      const auto& frame = profile.frames[*leaf];
      FunctionKey key{frame.name, frame.file};
      ++report.functions[key].self;
      ++report.thread_functions[sample.tid][key];
    }
    if (sample.trace) ++report.trace_samples[*sample.trace];
    const auto& leaf = profile.frames[stack.empty() ? 0 : stack.back()];
    if (stack.empty()) {
      ++report.leaf_categories["unknown"];
      continue;
    }
    ++report.leaf_categories[correlate::category_name(leaf.category)];
    if (leaf.category == Category::Native || leaf.category == Category::Interpreter || leaf.category == Category::Gc) {
      const std::string library = std::filesystem::path(leaf.file).filename().string();
      ++report.native_libraries[library];
      if (leaf.name != library && !leaf.name.starts_with("0x")) {
        NativeFunction& function = report.native_functions[{leaf.name, leaf.file}];
        ++function.self;
        if (!leaf.source_file.empty()) ++function.lines[{leaf.source_file, leaf.line}];
      }
    }
    if (leaf.category == Category::Kernel) ++report.native_libraries["[kernel]"];
  }
  return report;
}

template <class Map>
std::vector<std::pair<typename Map::key_type, typename Map::mapped_type>> top(const Map& map, std::size_t limit,
                                                                               auto by) {
  std::vector<std::pair<typename Map::key_type, typename Map::mapped_type>> items(map.begin(), map.end());
  std::stable_sort(items.begin(), items.end(), [&](const auto& a, const auto& b) { return by(a.second) > by(b.second); });
  if (items.size() > limit) items.resize(limit);
  return items;
}

class Style {
 public:
  Style() : on_(::isatty(STDOUT_FILENO) && std::getenv("NO_COLOR") == nullptr) {}
  std::string title(const std::string& text) const { return on_ ? "\033[1m" + text + "\033[0m" : text; }
  std::string hot(const std::string& text) const { return on_ ? "\033[31m" + text + "\033[0m" : text; }

 private:
  bool on_;
};

std::optional<std::string> busiest_function(const Report& report, std::uint32_t tid) {
  auto functions = report.thread_functions.find(tid);
  if (functions == report.thread_functions.end() || functions->second.empty()) return std::nullopt;
  return top(functions->second, 1, [](std::uint64_t n) { return n; }).front().first.name;
}

std::string source_text(const jitlog::Trace& trace) {
  const jitlog::MergePoint* point = trace.source();
  return point ? fmt::format("{} at {}:{}", point->function, point->file, point->line) : "-";
}

// `jitprof attach` bundles: which process, and how its JIT code got names.
std::optional<json> attach_summary(const bundle::Bundle& read) {
  const bundle::Frame* frame = read.latest(bundle::sections::kManifest);
  if (frame == nullptr) return std::nullopt;
  const json manifest = json::parse(frame->data, nullptr, false);
  if (!manifest.is_object() || manifest.value("mode", "") != "attach" || !manifest.contains("attach")) return std::nullopt;
  json summary = manifest["attach"];
  summary["pid"] = manifest.value("pid", 0);
  summary["seconds"] = manifest.value("duration_s", 0.0);
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

}  // namespace

int run_report(const ReportOptions& options) {
  const auto correlated = load_correlated(options.file, "to report");
  if (!correlated) return 1;
  const Profile& profile = correlated->profile;
  const int status = correlated->status;
  const Report report = summarize(profile);
  const double total = double(report.samples);
  const auto functions = top(report.functions, options.top, [](const Count& c) { return c.self * 1'000'000 + c.total; });
  const auto traces = top(report.trace_samples, options.top, [](std::uint64_t n) { return n; });
  const auto native_functions = top(report.native_functions, options.top, [](const NativeFunction& f) { return f.self; });
  const auto& stats = profile.stats;
  const std::optional<json> attached = attach_summary(correlated->bundle);
  auto regions = correlate::anonymous_jit_code(correlated->bundle, profile);
  if (regions.size() > options.top) regions.resize(options.top);

  auto trace_json = [&](std::uint64_t id, std::uint64_t count) {
    const jitlog::Trace* trace = profile.forest.find(id);
    json item = {{"id", id}, {"samples", count}, {"share", double(count) / total}};
    if (trace == nullptr) return item;
    item["type"] = jitlog::trace_kind_name(trace->kind);
    item["entries"] = trace->entry_count;
    item["label_passes"] = trace->label_count;
    if (const jitlog::MergePoint* point = trace->source())
      item["source"] = {{"function", point->function}, {"file", point->file}, {"line", point->line}};
    // The guards that fail most, and the bridges they lead to.
    std::vector<std::pair<std::uint64_t, std::size_t>> guards;
    if (const jitlog::Stage* stage = trace->stage(jitlog::StageKind::Asm))
      for (std::size_t i = 0; i < stage->ops.size(); ++i)
        if (stage->ops[i].is_guard() && stage->ops[i].counter > 0) guards.emplace_back(stage->ops[i].counter, i);
    std::sort(guards.rbegin(), guards.rend());
    item["failing_guards"] = json::array();
    for (std::size_t g = 0; g < std::min<std::size_t>(guards.size(), 3); ++g) {
      const auto& op = trace->stage(jitlog::StageKind::Asm)->ops[guards[g].second];
      json guard = {{"op_index", guards[g].second}, {"op", op.name}, {"failures", op.counter}};
      guard["bridge"] = op.bridge ? json(*op.bridge) : json(nullptr);
      if (op.bridge) {
        auto bridge_samples = report.trace_samples.find(*op.bridge);
        guard["bridge_samples"] = bridge_samples == report.trace_samples.end() ? 0 : bridge_samples->second;
      }
      item["failing_guards"].push_back(std::move(guard));
    }
    return item;
  };

  if (options.json) {
    json out = {{"file", options.file},
                {"samples", report.samples},
                {"seconds_per_sample", profile.seconds_per_sample},
                {"sample_source", profile.samples_from_vmprof ? "vmprof" : "perf"},
                {"jit", {{"samples", stats.jit}, {"in_traces", stats.jit_in_trace}, {"on_ops", stats.jit_on_op}}},
                {"python_stacks",
                 {{"from_jitlog", stats.python_from_jit},
                  {"from_vmprof_by_time", stats.python_from_vmprof_time},
                  {"unknown", stats.python_unknown}}}};
    out["functions"] = json::array();
    for (const auto& [key, count] : functions)
      out["functions"].push_back({{"name", key.name},
                                  {"file", key.file},
                                  {"line", report.first_line.at(key)},
                                  {"self", count.self},
                                  {"total", count.total}});
    out["traces"] = json::array();
    for (const auto& [id, count] : traces) out["traces"].push_back(trace_json(id, count));
    out["leaf_categories"] = report.leaf_categories;
    out["native_libraries"] = report.native_libraries;
    if (attached) out["attach"] = *attached;
    out["anonymous_jit_code"] = json::array();
    for (const auto& region : regions) out["anonymous_jit_code"].push_back(region_json(region));
    out["native_functions"] = json::array();
    for (const auto& [key, function] : native_functions) {
      json lines = json::array();
      for (const auto& [location, count] : top(function.lines, options.top, [](std::uint64_t n) { return n; }))
        lines.push_back({{"file", location.first}, {"line", location.second}, {"samples", count}});
      out["native_functions"].push_back(
          {{"name", key.name}, {"library", key.file}, {"self", function.self}, {"lines", std::move(lines)}});
    }
    out["threads"] = json::array();
    for (const auto& [tid, count] : report.threads) {
      json thread = {{"tid", tid}, {"samples", count}};
      if (auto name = busiest_function(report, tid)) thread["top_function"] = *name;
      out["threads"].push_back(std::move(thread));
    }
    std::cout << out.dump(2) << "\n";
    return status;
  }

  const Style style;
  if (profile.samples_from_vmprof)
    std::cout << fmt::format("{} samples from PyPy's own sampling (vmprof) in {}\n", with_commas(report.samples),
                             options.file);
  else
    std::cout << fmt::format("{} samples ({:.3f} s of CPU time) from {}\n", with_commas(report.samples),
                             total * profile.seconds_per_sample, options.file);
  if (attached)
    std::cout << fmt::format("attached to process {} for {:.1f} s; JIT code: {} ({})\n", attached->value("pid", 0),
                             attached->value("seconds", 0.0), attached->value("jit_names", "?"),
                             attached->value("explanation", ""));
  std::cout << fmt::format("JIT code: {} samples; {} inside a trace, {} ({}) attributed to an IR op\n",
                           with_commas(stats.jit), with_commas(stats.jit_in_trace), with_commas(stats.jit_on_op),
                           percent(double(stats.jit_on_op), double(stats.jit)));

  std::cout << "\n" << style.title("Python functions (self = innermost Python frame)") << "\n";
  std::cout << fmt::format("{:>7} {:>8} {:>7} {:>8}  {}\n", "self%", "self", "total%", "total", "function");
  for (const auto& [key, count] : functions)
    std::cout << fmt::format("{:>7} {:>8} {:>7} {:>8}  {}  {}:{}\n", style.hot(percent(double(count.self), total)),
                             with_commas(count.self), percent(double(count.total), total), with_commas(count.total),
                             key.name, key.file, report.first_line.at(key));

  std::cout << "\n" << style.title("Hot traces") << "\n";
  for (const auto& [id, count] : traces) {
    const jitlog::Trace* trace = profile.forest.find(id);
    if (trace == nullptr) continue;
    std::cout << fmt::format("{:>7} {:>8}  {} {}  entries {}  label passes {}  {}\n", percent(double(count), total),
                             with_commas(count), jitlog::trace_kind_name(trace->kind), id,
                             with_commas(trace->entry_count), with_commas(trace->label_count), source_text(*trace));
    const json summary = trace_json(id, count);
    for (const auto& guard : summary["failing_guards"]) {
      std::cout << fmt::format("                  guard op {} {} fails {} times", guard["op_index"].get<std::size_t>(),
                               guard["op"].get<std::string>(), with_commas(guard["failures"].get<std::uint64_t>()));
      if (!guard["bridge"].is_null())
        std::cout << fmt::format(" -> bridge {} ({} samples)", guard["bridge"].get<std::uint64_t>(),
                                 guard["bridge_samples"].get<std::uint64_t>());
      std::cout << "\n";
    }
  }

  if (!regions.empty()) {
    std::cout << "\n" << style.title("JIT code without a jitlog (read from the process; hottest regions)") << "\n";
    for (const auto& region : regions) {
      std::cout << fmt::format("{:>7} {:>8}  {:#x}-{:#x} in process {}\n", percent(double(region.samples), total),
                               with_commas(region.samples), region.start, region.end, region.pid);
      // From the first to the last sampled instruction: the hot part of the region.
      auto first = std::find_if(region.instructions.begin(), region.instructions.end(),
                                [](const auto& instruction) { return instruction.samples > 0; });
      auto last = std::find_if(region.instructions.rbegin(), region.instructions.rend(),
                               [](const auto& instruction) { return instruction.samples > 0; });
      for (auto it = first; it != region.instructions.end() && it <= std::prev(last.base()); ++it)
        std::cout << fmt::format("{:>17}  {:#x}  {}\n", it->samples ? with_commas(it->samples) : "", it->address,
                                 it->text);
    }
  }

  std::cout << "\n" << style.title("Where samples ended") << "\n";
  for (const auto& [category, count] : top(report.leaf_categories, 20, [](std::uint64_t n) { return n; }))
    std::cout << fmt::format("{:>7} {:>8}  {}\n", percent(double(count), total), with_commas(count), category);
  if (!report.native_libraries.empty()) {
    std::cout << "\n" << style.title("Native code by library") << "\n";
    for (const auto& [library, count] : top(report.native_libraries, options.top, [](std::uint64_t n) { return n; }))
      std::cout << fmt::format("{:>7} {:>8}  {}\n", percent(double(count), total), with_commas(count), library);
  }
  if (!native_functions.empty()) {
    std::cout << "\n" << style.title("Native functions (self; hottest source line where the binary has debug information)")
              << "\n";
    for (const auto& [key, function] : native_functions) {
      std::string hottest;
      if (!function.lines.empty()) {
        const auto hottest_line = top(function.lines, 1, [](std::uint64_t n) { return n; });
        const auto& [location, count] = hottest_line.front();
        hottest = fmt::format("  {}:{} ({})", location.first, location.second, with_commas(count));
      }
      std::cout << fmt::format("{:>7} {:>8}  {}  [{}]{}\n", percent(double(function.self), total),
                               with_commas(function.self), key.name,
                               std::filesystem::path(key.file).filename().string(), hottest);
    }
  }

  std::cout << "\n" << style.title("Threads") << "\n";
  for (const auto& [tid, count] : report.threads) {
    const auto name = busiest_function(report, tid);
    std::cout << fmt::format("{:>7} {:>8}  thread {}{}\n", percent(double(count), total), with_commas(count), tid,
                             name ? "  mostly in " + *name : "");
  }
  return status;
}

}  // namespace jitprof::cli
