// `jitprof diff OLD NEW`: two runs compared (views::profile_diff_json), as
// JSON or as text in the style of `report`.
#include <fmt/format.h>

#include <algorithm>
#include <iostream>

#include "bundle/text.h"
#include "commands.h"
#include "common.h"
#include "terminal.h"
#include "views/views.h"

namespace jitprof::cli {
namespace {

using nlohmann::json;

std::string seconds_text(double seconds) { return fmt::format("{:.3f}", seconds); }

// A change, red when it grew and blue when it shrank, padded to `width`.
void print_change(const Style& style, const std::string& text, double change, std::size_t width) {
  const std::string padded = fmt::format("{:>{}}", text, width);
  if (change > 0) style.hot(padded);
  else if (change < 0) style.cooler(padded);
  else std::cout << padded;
}

// "old  12,345 samples (12.345 s of CPU time), 13.1 s run: pypy3 app.py  (old.jprof)"
void print_run(const char* which, const json& run, const std::string& file) {
  const std::string duration =
      run["duration_s"].is_null() ? "" : fmt::format(", {:.1f} s run", run["duration_s"].get<double>());
  std::cout << fmt::format("{} {:>10} samples ({} s of CPU time{}) from {}{}\n", which,
                           with_commas(run["samples"].get<std::uint64_t>()), seconds_text(run["cpu_seconds"].get<double>()),
                           duration, file,
                           run["command"].get<std::string>().empty() ? "" : ": " + run["command"].get<std::string>());
}

// One metric of an entry: old and new share, change in points, old and new seconds, change in seconds.
void print_metric(const Style& style, double old_share, double new_share, double change_points, double old_seconds,
                  double new_seconds) {
  std::cout << fmt::format("{:>7} {:>7} ", percent(old_share, 1), percent(new_share, 1));
  print_change(style, fmt::format("{:+.1f}", change_points), change_points, 7);
  std::cout << fmt::format(" {:>8} {:>8} ", seconds_text(old_seconds), seconds_text(new_seconds));
  print_change(style, fmt::format("{:+.3f}", new_seconds - old_seconds), new_seconds - old_seconds, 9);
}

std::string status_mark(const json& entry) {
  const std::string status = entry["status"].get<std::string>();
  return status == "changed" ? "" : "  [" + status + "]";
}

void print_text(const json& diff, const std::string& old_file, const std::string& new_file) {
  const Style style;
  print_run("old", diff["old"], old_file);
  print_run("new", diff["new"], new_file);

  style.title(fmt::format("Python functions whose share changed ({} of {}; self = innermost Python frame; "
                          "change in points and seconds)",
                          diff["functions"].size(), diff["functions_changed"].get<std::size_t>()));
  const std::string columns = fmt::format("{:>7} {:>7} {:>7} {:>8} {:>8} {:>9}", "old%", "new%", "points", "old s",
                                          "new s", "change s");
  std::cout << fmt::format("{:<{}}{}\n", "  self", columns.size() + 2, "  total");
  std::cout << columns << "  " << columns << "  function\n";
  for (const json& function : diff["functions"]) {
    const json &before = function["old"], &after = function["new"];
    print_metric(style, before["self_share"], after["self_share"], function["self_points"], before["self_seconds"],
                 after["self_seconds"]);
    std::cout << "  ";
    print_metric(style, before["total_share"], after["total_share"], function["total_points"], before["total_seconds"],
                 after["total_seconds"]);
    std::cout << fmt::format("  {}  {}:{}{}\n", function["name"].get<std::string>(), function["file"].get<std::string>(),
                             function["line"].get<std::int64_t>(), status_mark(function));
  }

  style.title(fmt::format("JIT traces whose share changed ({} of {}; matched by loop or bridge and source, not by id)",
                          diff["traces"].size(), diff["traces_changed"].get<std::size_t>()));
  std::cout << columns << "  trace\n";
  const auto ids = [](const json& side) {
    std::string text;
    for (const json& id : side["ids"]) text += (text.empty() ? "" : ",") + std::to_string(id.get<std::uint64_t>());
    return text.empty() ? std::string("-") : text;
  };
  for (const json& trace : diff["traces"]) {
    const json &before = trace["old"], &after = trace["new"];
    print_metric(style, before["share"], after["share"], trace["points"], before["seconds"], after["seconds"]);
    const std::string source = trace["function"].get<std::string>().empty()
                                   ? std::string("(no source)")
                                   : fmt::format("{} at {}:{}", trace["function"].get<std::string>(),
                                                 trace["file"].get<std::string>(), trace["line"].get<std::int64_t>());
    std::cout << fmt::format("  {} {}  (ids old {}, new {}){}\n", trace["type"].get<std::string>(), source,
                             ids(before), ids(after), status_mark(trace));
  }
}

}  // namespace

int run_diff(const DiffOptions& options) {
  const auto old_run = load_correlated(options.old_file, "to compare");
  if (!old_run) return 1;
  const auto new_run = load_correlated(options.new_file, "to compare");
  if (!new_run) return 1;
  json diff = views::profile_diff_json({old_run->bundle, old_run->profile}, {new_run->bundle, new_run->profile},
                                       options.top);
  if (options.json) {
    diff["old"]["file"] = options.old_file;
    diff["new"]["file"] = options.new_file;
    std::cout << bundle::json_text(diff, 2) << "\n";
  } else {
    print_text(diff, options.old_file, options.new_file);
  }
  return std::max(old_run->status, new_run->status);
}

}  // namespace jitprof::cli
