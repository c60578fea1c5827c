#include <algorithm>

#include "views/views.h"

namespace jitprof::views {

using nlohmann::json;

CallTree call_tree(const correlate::Profile& profile,
                   const std::function<std::string(const correlate::Frame&)>& label) {
  std::vector<std::string> labels;
  labels.reserve(profile.frames.size());
  for (const auto& frame : profile.frames) labels.push_back(label(frame));
  CallTree tree;
  for (const auto& sample : profile.samples) {
    CallTree::Node* node = &tree.root;
    ++node->total;
    for (std::uint32_t id : profile.stacks[sample.stack]) {
      auto [child, fresh] = node->children.try_emplace(labels[id]);
      if (fresh) {
        child->second.category = profile.frames[id].category;
        if (child->second.category == correlate::Category::JitTrace) child->second.trace = profile.frames[id].trace;
      }
      node = &child->second;
      ++node->total;
    }
    ++node->self;
  }
  return tree;
}

json call_tree_json(const CallTree::Node& node, std::size_t depth, std::uint64_t minimum) {
  json children = json::array();
  if (depth == 0) return children;
  std::vector<std::pair<const std::string*, const CallTree::Node*>> ranked;
  for (const auto& [label, child] : node.children)
    if (child.total >= minimum) ranked.emplace_back(&label, &child);
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const auto& a, const auto& b) { return a.second->total > b.second->total; });
  for (const auto& [label, child] : ranked) {
    json item = {{"frame", *label},
                 {"category", correlate::category_name(child->category)},
                 {"total", child->total},
                 {"self", child->self},
                 {"children", call_tree_json(*child, depth - 1, minimum)}};
    if (child->trace) item["trace"] = *child->trace;
    children.push_back(std::move(item));
  }
  return children;
}

}  // namespace jitprof::views
