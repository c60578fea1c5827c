// `jitprof top FILE --depth N`: the correlated profile as a call tree.
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "commands.h"
#include "common.h"
#include "correlate/profile.h"
#include "views/views.h"

namespace jitprof::cli {
namespace {

using nlohmann::json;

void print_tree(const json& children, double samples, int indent) {
  for (const auto& child : children) {
    std::cout << fmt::format("{:>7} {:>7}  {}{}\n", percent(child["total"].get<double>(), samples),
                             percent(child["self"].get<double>(), samples), std::string(2 * indent, ' '),
                             child["frame"].get<std::string>());
    print_tree(child["children"], samples, indent + 1);
  }
}

// "where the time goes: GC minor 51.2%, GC major 25.4%, ...": the largest sample categories.
std::string categories_line(const correlate::Profile& profile) {
  std::map<correlate::Category, std::uint64_t> counts;
  for (const auto& sample : profile.samples) ++counts[sample.category];
  std::vector<std::pair<std::uint64_t, correlate::Category>> ranked;
  for (const auto& [category, count] : counts) ranked.emplace_back(count, category);
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string line = "where the time goes:";
  for (std::size_t i = 0; i < std::min<std::size_t>(ranked.size(), 8); ++i)
    line += fmt::format("{} {} {}", i ? "," : "", correlate::category_label(ranked[i].second),
                        percent(double(ranked[i].first), double(profile.samples.size())));
  return line;
}

// "threads: MainThread (tid 4242) 50.3%, worker-1 (tid 4243) 49.7%", busiest first.
std::string threads_line(json threads) {
  std::stable_sort(threads.begin(), threads.end(),
                   [](const json& a, const json& b) { return a["samples"].get<std::uint64_t>() > b["samples"].get<std::uint64_t>(); });
  std::string line = "threads:";
  for (std::size_t i = 0; i < threads.size(); ++i)
    line += fmt::format("{} {} {}", i ? "," : "", threads[i]["label"].get<std::string>(),
                        percent(threads[i]["share"].get<double>(), 1.0));
  return line;
}

}  // namespace

int run_top(const TopOptions& options) {
  const auto correlated = load_correlated(options.file, "to show");
  if (!correlated) return 1;
  const correlate::Profile& profile = correlated->profile;
  const int status = correlated->status;
  const views::CallTree tree = views::call_tree(profile);
  const auto& root = tree.root;
  const auto minimum = static_cast<std::uint64_t>(options.min_percent / 100.0 * double(root.total));
  const json children = views::call_tree_json(root, options.depth, minimum);
  json threads = views::threads_json(profile);
  if (options.json) {
    print_json({{"samples", root.total}, {"threads", std::move(threads)}, {"children", children}}, options.file);
    return status;
  }
  std::cout << fmt::format("{} samples; call tree to depth {}, branches under {}% left out\n", with_commas(root.total),
                           options.depth, options.min_percent);
  if (!profile.samples.empty()) std::cout << categories_line(profile) << "\n" << threads_line(threads) << "\n";
  std::cout << fmt::format("{:>7} {:>7}  {}\n", "total", "self", "frame");
  print_tree(children, double(root.total), 0);
  return status;
}

}  // namespace jitprof::cli
