// Two runs of a program compared: what changed in share and in time.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "bundle/manifest.h"
#include "summary.h"
#include "views/views.h"

namespace jitprof::views {
namespace {

using nlohmann::json;

// One run's side of the comparison: sample counts turned into shares and seconds.
struct Side {
  double samples = 0;
  double seconds_per_sample = 0;
  double share(std::uint64_t n) const { return samples > 0 ? double(n) / samples : 0.0; }
  double seconds(std::uint64_t n) const { return double(n) * seconds_per_sample; }
};

json run_json(const Run& run) {
  const auto manifest = bundle::read_manifest(run.bundle).manifest;
  std::string command;
  if (manifest)
    for (const std::string& word : manifest->command) command += (command.empty() ? "" : " ") + word;
  const double samples = double(run.profile.samples.size());
  return {{"samples", run.profile.samples.size()},
          {"seconds_per_sample", run.profile.seconds_per_sample},
          {"cpu_seconds", samples * run.profile.seconds_per_sample},
          {"duration_s", manifest && manifest->duration_s ? json(*manifest->duration_s) : json(nullptr)},
          {"command", command},
          {"sample_source", run.profile.samples_from_vmprof ? "vmprof" : "perf"}};
}

const char* status_of(std::uint64_t old_count, std::uint64_t new_count) {
  if (old_count == 0) return "new";
  if (new_count == 0) return "vanished";
  return "changed";
}

// Percentage points, rounded to what a reader can tell apart, so that equal
// changes sort by their next key instead of by floating-point noise.
double points(double old_share, double new_share) { return std::round((new_share - old_share) * 1e6) / 1e4; }

// Entries with the size of their change, and how many changed in all.
struct Changes {
  std::vector<std::pair<double, json>> entries;
  // Into `out`: LIST, the `top` largest changes (stable among equals), and LIST_changed.
  void put(json& out, const std::string& list, std::size_t top) {
    std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    out[list + "_changed"] = entries.size();
    out[list] = json::array();
    for (std::size_t i = 0; i < std::min(top, entries.size()); ++i) out[list].push_back(std::move(entries[i].second));
  }
};

Changes function_changes(const Summary& old_summary, const Side& old_side, const Summary& new_summary,
                         const Side& new_side) {
  std::set<FunctionKey> keys;
  for (const auto& [key, count] : old_summary.functions) keys.insert(key);
  for (const auto& [key, count] : new_summary.functions) keys.insert(key);
  Changes changes;
  for (const FunctionKey& key : keys) {
    const auto find = [&](const Summary& summary) {
      const auto it = summary.functions.find(key);
      return it == summary.functions.end() ? Count{} : it->second;
    };
    const Count before = find(old_summary), after = find(new_summary);
    const double self_points = points(old_side.share(before.self), new_side.share(after.self));
    const double total_points = points(old_side.share(before.total), new_side.share(after.total));
    if (self_points == 0 && total_points == 0) continue;
    const auto side = [&](const Count& count, const Side& run) {
      return json{{"self", count.self},
                  {"total", count.total},
                  {"self_share", run.share(count.self)},
                  {"total_share", run.share(count.total)},
                  {"self_seconds", run.seconds(count.self)},
                  {"total_seconds", run.seconds(count.total)}};
    };
    const auto line = new_summary.first_line.contains(key) ? new_summary.first_line.at(key) : old_summary.first_line.at(key);
    changes.entries.emplace_back(std::max(std::abs(self_points), std::abs(total_points)),
                         json{{"name", key.name},
                              {"file", key.file},
                              {"line", line},
                              {"status", status_of(before.total, after.total)},
                              {"old", side(before, old_side)},
                              {"new", side(after, new_side)},
                              {"self_points", self_points},
                              {"total_points", total_points},
                              {"self_seconds_change", new_side.seconds(after.self) - old_side.seconds(before.self)},
                              {"total_seconds_change", new_side.seconds(after.total) - old_side.seconds(before.total)}});
  }
  return changes;
}

// Samples per trace identity, with the ids that have it in this run.
struct TraceGroup {
  std::uint64_t samples = 0;
  std::vector<std::uint64_t> ids;
};
std::map<TraceIdentity, TraceGroup> traces_by_identity(const Summary& summary, const jitlog::Forest& forest) {
  std::map<TraceIdentity, TraceGroup> groups;
  for (const auto& [id, samples] : summary.trace_samples) {
    TraceGroup& group = groups[trace_identity(forest, id)];
    group.samples += samples;
    group.ids.push_back(id);
  }
  return groups;
}

Changes trace_changes(const Run& old_run, const Summary& old_summary, const Side& old_side, const Run& new_run,
                      const Summary& new_summary, const Side& new_side) {
  const auto before = traces_by_identity(old_summary, old_run.profile.forest);
  const auto after = traces_by_identity(new_summary, new_run.profile.forest);
  std::set<TraceIdentity> keys;
  for (const auto& [key, group] : before) keys.insert(key);
  for (const auto& [key, group] : after) keys.insert(key);
  Changes changes;
  for (const TraceIdentity& key : keys) {
    const auto find = [&](const std::map<TraceIdentity, TraceGroup>& groups) {
      const auto it = groups.find(key);
      return it == groups.end() ? TraceGroup{} : it->second;
    };
    const TraceGroup old_group = find(before), new_group = find(after);
    const double change = points(old_side.share(old_group.samples), new_side.share(new_group.samples));
    if (change == 0) continue;
    const auto side = [](const TraceGroup& group, const Side& run) {
      return json{{"samples", group.samples},
                  {"share", run.share(group.samples)},
                  {"seconds", run.seconds(group.samples)},
                  {"ids", group.ids}};
    };
    changes.entries.emplace_back(std::abs(change),
                         json{{"type", key.type},
                              {"function", key.function},
                              {"file", key.file},
                              {"line", key.line},
                              {"status", status_of(old_group.samples, new_group.samples)},
                              {"old", side(old_group, old_side)},
                              {"new", side(new_group, new_side)},
                              {"points", change},
                              {"seconds_change", new_side.seconds(new_group.samples) - old_side.seconds(old_group.samples)}});
  }
  return changes;
}

// A trace frame named by what the trace is, e.g. "[jit] loop f (app.py:12)".
std::function<std::string(const correlate::Frame&)> identity_labels(const correlate::Profile& profile) {
  return [&profile](const correlate::Frame& frame) {
    if (frame.category != correlate::Category::JitTrace || !frame.trace) return correlate::frame_label(frame);
    const TraceIdentity identity = trace_identity(profile.forest, *frame.trace);
    if (identity.function.empty()) return fmt::format("[jit] {} trace", identity.type);
    return fmt::format("[jit] {} {} ({}:{})", identity.type, identity.function,
                       std::filesystem::path(identity.file).filename().string(), identity.line);
  };
}

struct MergedNode {
  std::uint64_t old_total = 0, old_self = 0, new_total = 0, new_self = 0;
  correlate::Category category = correlate::Category::Python;
  std::map<std::string, MergedNode> children;
};

void merge(MergedNode& into, const CallTree::Node& node, bool is_new) {
  (is_new ? into.new_total : into.old_total) += node.total;
  (is_new ? into.new_self : into.old_self) += node.self;
  for (const auto& [label, child] : node.children) {
    auto [merged, fresh] = into.children.try_emplace(label);
    if (fresh) merged->second.category = child.category;
    merge(merged->second, child, is_new);
  }
}

// Children largest first (in the new run, then the old), leaving out
// branches under both runs' minimum, down to `depth` levels.
json merged_json(const MergedNode& node, std::size_t depth, std::uint64_t old_minimum, std::uint64_t new_minimum) {
  json children = json::array();
  if (depth == 0) return children;
  std::vector<std::pair<const std::string*, const MergedNode*>> ranked;
  for (const auto& [label, child] : node.children)
    if (child.old_total >= old_minimum || child.new_total >= new_minimum) ranked.emplace_back(&label, &child);
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return std::tie(a.second->new_total, a.second->old_total) > std::tie(b.second->new_total, b.second->old_total);
  });
  for (const auto& [label, child] : ranked)
    children.push_back({{"frame", *label},
                        {"category", correlate::category_name(child->category)},
                        {"total", child->new_total},
                        {"self", child->new_self},
                        {"old_total", child->old_total},
                        {"old_self", child->old_self},
                        {"children", merged_json(*child, depth - 1, old_minimum, new_minimum)}});
  return children;
}

json flame_json(const correlate::Profile& old_profile, const correlate::Profile& new_profile) {
  MergedNode root;
  merge(root, call_tree(old_profile, identity_labels(old_profile)).root, false);
  merge(root, call_tree(new_profile, identity_labels(new_profile)).root, true);
  // As for one run's flame graph: branches under 1/5000 of a run's samples cannot show.
  return {{"samples", root.new_total},
          {"old_samples", root.old_total},
          {"children", merged_json(root, 256, std::max<std::uint64_t>(1, root.old_total / 5000),
                                   std::max<std::uint64_t>(1, root.new_total / 5000))}};
}

}  // namespace

TraceIdentity trace_identity(const jitlog::Forest& forest, std::uint64_t id) {
  const jitlog::Trace* trace = forest.find(id);
  if (trace == nullptr) return {"unknown", "", "", 0};
  TraceIdentity identity{jitlog::trace_kind_name(trace->kind), "", "", 0};
  if (const jitlog::MergePoint* point = trace->source()) {
    identity.function = point->function;
    identity.file = point->file;
    identity.line = point->line;
  }
  return identity;
}

json profile_diff_json(const Run& old_run, const Run& new_run, std::size_t top) {
  const Summary old_summary = summarize(old_run.profile), new_summary = summarize(new_run.profile);
  const Side old_side{double(old_summary.samples), old_run.profile.seconds_per_sample};
  const Side new_side{double(new_summary.samples), new_run.profile.seconds_per_sample};
  json out = {{"old", run_json(old_run)}, {"new", run_json(new_run)}};
  function_changes(old_summary, old_side, new_summary, new_side).put(out, "functions", top);
  trace_changes(old_run, old_summary, old_side, new_run, new_summary, new_side).put(out, "traces", top);
  out["flame"] = flame_json(old_run.profile, new_run.profile);
  return out;
}

}  // namespace jitprof::views
