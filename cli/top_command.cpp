// `jitprof top FILE --depth N`: the correlated profile as a call tree.
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <map>

#include "commands.h"
#include "common.h"
#include "correlate/profile.h"
#include "export/export.h"

namespace jitprof::cli {
namespace {

using nlohmann::json;

struct Node {
  std::uint64_t total = 0, self = 0;
  std::map<std::string, Node> children;  // by frame label
};

Node build_tree(const correlate::Profile& profile) {
  std::vector<std::string> labels;
  for (const auto& frame : profile.frames) labels.push_back(exports::frame_label(frame));
  Node root;
  for (const auto& sample : profile.samples) {
    Node* node = &root;
    ++node->total;
    for (std::uint32_t id : profile.stacks[sample.stack]) {
      node = &node->children[labels[id]];
      ++node->total;
    }
    ++node->self;
  }
  return root;
}

std::vector<std::pair<const std::string*, const Node*>> ranked(const Node& node, std::uint64_t minimum) {
  std::vector<std::pair<const std::string*, const Node*>> children;
  for (const auto& [label, child] : node.children)
    if (child.total >= minimum) children.emplace_back(&label, &child);
  std::stable_sort(children.begin(), children.end(),
                   [](const auto& a, const auto& b) { return a.second->total > b.second->total; });
  return children;
}

json tree_json(const Node& node, std::size_t depth, std::uint64_t minimum) {
  json children = json::array();
  if (depth > 0)
    for (const auto& [label, child] : ranked(node, minimum)) {
      json item = {{"frame", *label}, {"total", child->total}, {"self", child->self}};
      item["children"] = tree_json(*child, depth - 1, minimum);
      children.push_back(std::move(item));
    }
  return children;
}

void print_tree(const Node& node, std::size_t depth, std::uint64_t minimum, double samples, int indent) {
  if (depth == 0) return;
  for (const auto& [label, child] : ranked(node, minimum)) {
    std::cout << fmt::format("{:>7} {:>7}  {}{}\n", percent(double(child->total), samples),
                             percent(double(child->self), samples), std::string(2 * indent, ' '), *label);
    print_tree(*child, depth - 1, minimum, samples, indent + 1);
  }
}

}  // namespace

int run_top(const TopOptions& options) {
  const auto correlated = load_correlated(options.file, "to show");
  if (!correlated) return 1;
  const correlate::Profile& profile = correlated->profile;
  const int status = correlated->status;
  const Node root = build_tree(profile);
  const auto minimum = static_cast<std::uint64_t>(options.min_percent / 100.0 * double(root.total));
  if (options.json) {
    const json out = {{"file", options.file}, {"samples", root.total}, {"children", tree_json(root, options.depth, minimum)}};
    std::cout << out.dump(2) << "\n";
    return status;
  }
  std::cout << fmt::format("{} samples; call tree to depth {}, branches under {}% left out\n", with_commas(root.total),
                           options.depth, options.min_percent);
  std::cout << fmt::format("{:>7} {:>7}  {}\n", "total", "self", "frame");
  print_tree(root, options.depth, minimum, double(root.total), 0);
  return status;
}

}  // namespace jitprof::cli
