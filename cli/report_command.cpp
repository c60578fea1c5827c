// `jitprof report FILE`: the correlated profile of a bundle (views::report_json),
// as JSON or as text.
#include <fmt/format.h>
#include <algorithm>
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "terminal.h"
#include "views/views.h"

namespace jitprof::cli {
namespace {

using nlohmann::json;

std::string source_text(const json& source) {
  if (!source.is_object()) return "-";
  return fmt::format("{} at {}:{}", source["function"].get<std::string>(), source["file"].get<std::string>(),
                     source["line"].get<std::int64_t>());
}

// Named counts of a JSON object, largest first, at most `limit`.
std::vector<std::pair<std::string, std::uint64_t>> ranked(const json& counts, std::size_t limit) {
  std::vector<std::pair<std::string, std::uint64_t>> items;
  for (const auto& [name, count] : counts.items()) items.emplace_back(name, count.get<std::uint64_t>());
  std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (items.size() > limit) items.resize(limit);
  return items;
}

// Durations of one kind of section: "573 (p50 0.50 ms, p90 4.7 ms, p99 13 ms, max 25 ms; 901 ms in all)".
std::string durations_text(const json& durations) {
  const auto n = durations["count"].get<std::uint64_t>();
  if (n == 0) return "none";
  return fmt::format("{} (p50 {:.2f} ms, p90 {:.2f} ms, p99 {:.2f} ms, max {:.2f} ms; {:.0f} ms in all)", with_commas(n),
                     durations["p50_ms"].get<double>(), durations["p90_ms"].get<double>(),
                     durations["p99_ms"].get<double>(), durations["max_ms"].get<double>(),
                     durations["total_ms"].get<double>());
}

// The "PyPy runtime" section: GC and JIT warm-up from PyPy's log, or what names alone say.
void print_runtime(const json& runtime, double total, const Style& style) {
  if (!runtime.is_object() || runtime["phases_source"].get<std::string>().empty()) return;
  const std::string source = runtime["phases_source"].get<std::string>();
  style.title(source == "names" ? "PyPy runtime (phases told by libpypy's function names only)"
                                : "PyPy runtime (phases timed by PyPy's own log sections)");
  if (runtime.contains("note")) std::cout << "  " << runtime["note"].get<std::string>() << "\n";
  const json& categories = runtime["categories"];
  const auto share = [&](std::initializer_list<const char*> names) {
    std::uint64_t n = 0;
    for (const char* name : names) n += categories.value(name, std::uint64_t{0});
    return fmt::format("{} of samples", percent(double(n), total));
  };
  if (!runtime["timed"].get<bool>()) {
    std::cout << fmt::format("  GC {}; JIT optimizer and backend {}; metainterp (tracing or guard failures) {}\n",
                             share({"gc"}), share({"jit-optimizer", "jit-backend"}), share({"jit-metainterp"}));
    return;
  }
  const json& gc = runtime["gc"];
  const json& jit = runtime["jit"];
  std::cout << fmt::format("  GC: {} ({:.0f} ms in collections)\n", share({"gc-minor", "gc-major"}),
                           gc["time_ms"].get<double>());
  std::cout << "    minor collections: " << durations_text(gc["minor"]) << "\n";
  std::cout << fmt::format("    major collections: {}, in steps: {}\n", gc["major_collections"].get<std::uint64_t>(),
                           durations_text(gc["major_steps"]));
  std::cout << fmt::format("  JIT warm-up: {} ({:.0f} ms compiling)\n",
                           share({"jit-tracing", "jit-optimizer", "jit-backend"}), jit["warmup_ms"].get<double>());
  std::cout << "    tracing: " << durations_text(jit["tracing"]) << "\n";
  std::cout << "    optimizer: " << durations_text(jit["optimizer"]) << "\n";
  std::cout << "    backend: " << durations_text(jit["backend"]) << "\n";
  const json& traces = jit["traces"];
  if (traces["tied"].get<bool>()) {
    std::cout << "    longest compilations:";
    for (const json& trace : traces["traces"])
      std::cout << fmt::format(" {} {} {:.1f} ms;", trace["type"].get<std::string>(), trace["id"].get<std::uint64_t>(),
                               trace["ms"].get<double>());
    std::cout << "\n";
  } else if (traces["compilations"].get<std::uint64_t>() > 0) {
    std::cout << fmt::format("    ({} compilations in the log, {} traces in the jitlog: not tied to traces)\n",
                             traces["compilations"].get<std::uint64_t>(), traces["jitlog_traces"].get<std::uint64_t>());
  }
  std::cout << fmt::format("  Guard failures / blackhole: {}; interpreter: {}; other runtime: {}\n",
                           share({"guard-failure"}), share({"interpreter"}), share({"runtime"}));
}

void print_text(const json& report, const std::string& file, const correlate::Profile& profile, std::size_t top) {
  const Style style;
  const double total = report["samples"].get<double>();
  const auto count = [](const json& value) { return with_commas(value.get<std::uint64_t>()); };
  const auto share = [&](const json& value) { return percent(value.get<double>(), total); };
  if (profile.samples_from_vmprof)
    std::cout << fmt::format("{} samples from PyPy's own sampling (vmprof) in {}\n", count(report["samples"]), file);
  else
    std::cout << fmt::format("{} samples ({:.3f} s of CPU time) from {}\n", count(report["samples"]),
                             total * profile.seconds_per_sample, file);
  if (const json& attached = report["attach"]; attached.is_object())
    std::cout << fmt::format("attached to process {} for {:.1f} s; JIT code: {} ({})\n", attached.value("pid", 0),
                             attached.value("seconds", 0.0), attached.value("jit_names", "?"),
                             attached.value("explanation", ""));
  const json& jit = report["jit"];
  std::cout << fmt::format("JIT code: {} samples; {} inside a trace, {} ({}) attributed to an IR op\n",
                           count(jit["samples"]), count(jit["in_traces"]), count(jit["on_ops"]),
                           percent(jit["on_ops"].get<double>(), jit["samples"].get<double>()));
  if (jit.contains("names_from")) std::cout << fmt::format("  (JIT code named from {})\n", jit["names_from"].get<std::string>());

  std::cout << python_stacks_line(report["python_stacks"], report["samples"].get<std::uint64_t>()) << "\n";

  style.title("Python functions (self = innermost Python frame)");
  std::cout << fmt::format("{:>7} {:>8} {:>7} {:>8}  {}\n", "self%", "self", "total%", "total", "function");
  for (const auto& function : report["functions"]) {
    style.hot(fmt::format("{:>7}", share(function["self"])));
    std::cout << fmt::format(" {:>8} {:>7} {:>8}  {}  {}:{}\n", count(function["self"]), share(function["total"]),
                             count(function["total"]), function["name"].get<std::string>(),
                             function["file"].get<std::string>(), function["line"].get<std::int64_t>());
  }

  style.title("Hot traces");
  for (const auto& trace : report["traces"]) {
    if (!trace.contains("type")) continue;
    // Without a jitlog (record --jit ranges) there are no counters to show.
    const std::string counts = jit.contains("names_from") ? ""
                                                          : fmt::format("  entries {}  label passes {}",
                                                                        count(trace["entries"]), count(trace["label_passes"]));
    std::cout << fmt::format("{:>7} {:>8}  {} {}{}  {}\n", share(trace["samples"]), count(trace["samples"]),
                             trace["type"].get<std::string>(), trace["id"].get<std::uint64_t>(), counts,
                             source_text(trace["source"]));
    for (const auto& guard : trace["failing_guards"]) {
      std::cout << fmt::format("                  guard op {} {} fails {} times", guard["op_index"].get<std::size_t>(),
                               guard["op"].get<std::string>(), count(guard["failures"]));
      if (!guard["bridge"].is_null())
        std::cout << fmt::format(" -> bridge {} ({} samples)", guard["bridge"].get<std::uint64_t>(),
                                 count(guard["bridge_samples"]));
      std::cout << "\n";
    }
  }

  if (!report["anonymous_jit_code"].empty()) {
    style.title("JIT code without a jitlog (read from the process; hottest regions)");
    for (const auto& region : report["anonymous_jit_code"]) {
      std::cout << fmt::format("{:>7} {:>8}  {:#x}-{:#x} in process {}\n", share(region["samples"]),
                               count(region["samples"]), region["start"].get<std::uint64_t>(),
                               region["end"].get<std::uint64_t>(), region["pid"].get<std::uint32_t>());
      // From the first to the last sampled instruction: the hot part of the region.
      const auto& instructions = region["instructions"];
      std::size_t first = instructions.size(), last = 0;
      for (std::size_t i = 0; i < instructions.size(); ++i)
        if (instructions[i]["samples"].get<std::uint64_t>() > 0) first = std::min(first, i), last = i;
      for (std::size_t i = first; i <= last && i < instructions.size(); ++i) {
        const auto samples = instructions[i]["samples"].get<std::uint64_t>();
        std::cout << fmt::format("{:>17}  {:#x}  {}\n", samples ? with_commas(samples) : "",
                                 instructions[i]["address"].get<std::uint64_t>(),
                                 instructions[i]["text"].get<std::string>());
      }
    }
  }

  style.title("Where the time goes (a sample's runtime phase, else its innermost frame)");
  for (const auto& [category, samples] : ranked(report["leaf_categories"], 20)) {
    const auto known = correlate::category_named(category);
    std::cout << fmt::format("{:>7} {:>8}  {}\n", percent(double(samples), total), with_commas(samples),
                             known ? correlate::category_label(*known) : category);
  }
  print_runtime(report["runtime"], total, style);
  if (!report["native_libraries"].empty()) {
    style.title("Native code by library");
    for (const auto& [library, samples] : ranked(report["native_libraries"], top))
      std::cout << fmt::format("{:>7} {:>8}  {}\n", percent(double(samples), total), with_commas(samples), library);
  }
  if (!report["native_functions"].empty()) {
    style.title("Native functions (self; hottest source line where the binary has debug information)");
    for (const auto& function : report["native_functions"]) {
      std::string hottest;
      if (!function["lines"].empty()) {
        const json& line = function["lines"][0];
        hottest = fmt::format("  {}:{} ({})", line["file"].get<std::string>(), line["line"].get<std::int64_t>(),
                              count(line["samples"]));
      }
      std::cout << fmt::format("{:>7} {:>8}  {}  [{}]{}\n", share(function["self"]), count(function["self"]),
                               function["name"].get<std::string>(),
                               std::filesystem::path(function["library"].get<std::string>()).filename().string(), hottest);
    }
  }

  style.title("Threads");
  for (const auto& thread : report["threads"])
    std::cout << fmt::format("{:>7} {:>8}  {}{}\n", share(thread["samples"]), count(thread["samples"]),
                             thread["label"].get<std::string>(),
                             thread.contains("top_function") ? "  mostly in " + thread["top_function"].get<std::string>()
                                                             : "");
}

}  // namespace

int run_report(const ReportOptions& options) {
  const auto correlated = load_correlated(options.file, "to report");
  if (!correlated) return 1;
  json report = views::report_json(correlated->profile, correlated->bundle, options.top);
  if (options.json) {
    print_json(std::move(report), options.file);
  } else {
    print_text(report, options.file, correlated->profile, options.top);
  }
  return correlated->status;
}

}  // namespace jitprof::cli
