#include <algorithm>
#include <unordered_map>

#include "jitlog/jitlog.h"

namespace jitprof::jitlog {

const char* stage_name(StageKind kind) {
  switch (kind) {
    case StageKind::NoOpt: return "noopt";
    case StageKind::Opt: return "opt";
    case StageKind::Asm: return "asm";
  }
  return "?";
}

std::optional<StageKind> parse_stage_name(const std::string& name) {
  for (StageKind kind : {StageKind::NoOpt, StageKind::Opt, StageKind::Asm})
    if (name == stage_name(kind)) return kind;
  return std::nullopt;
}

const char* trace_kind_name(TraceKind kind) { return kind == TraceKind::Loop ? "loop" : "bridge"; }

const MergePoint* Stage::merge_point_before(std::size_t op_index) const {
  // merge_points are in op order; find the last one with op_index <= the op.
  auto after = std::upper_bound(merge_points.begin(), merge_points.end(), op_index,
                                [](std::size_t index, const MergePoint& point) { return index < point.op_index; });
  return after == merge_points.begin() ? nullptr : &*std::prev(after);
}

const Stage* Trace::stage(StageKind wanted) const {
  for (auto it = stages.rbegin(); it != stages.rend(); ++it)
    if (it->kind == wanted) return &*it;
  return nullptr;
}

const MergePoint* Trace::source() const {
  for (StageKind preferred : {StageKind::Opt, StageKind::NoOpt}) {
    const Stage* found = stage(preferred);
    if (found == nullptr) continue;
    for (const MergePoint& point : found->merge_points)
      if (point.inline_depth == 0) return &point;
  }
  return nullptr;
}

const Trace* Forest::find(std::uint64_t id) const {
  auto it = index_by_id.find(id);
  return it == index_by_id.end() ? nullptr : &traces[it->second];
}

namespace {

bool same_op(const Operation& lowered, const Operation& original) {
  if (lowered.name != original.name) return false;
  return lowered.descr_number == original.descr_number || (!lowered.descr_number && !original.descr_number);
}

// For each op of `lowered`, the index of the op of `original` it was aligned
// with, by longest common subsequence: the backend keeps the optimizer's
// order and most of its ops, lowers some (getfield_gc -> gc_load) and adds a
// few (increment_debug_counter).
std::vector<std::optional<std::size_t>> align(const Stage& lowered, const Stage& original) {
  const std::size_t n = lowered.ops.size(), m = original.ops.size();
  std::vector<std::optional<std::size_t>> match(n);
  constexpr std::size_t kMaxCells = std::size_t{16} << 20;
  if (n == 0 || m == 0 || (n + 1) * (m + 1) > kMaxCells || std::max(n, m) >= 0xffff) return match;
  std::vector<std::uint16_t> lcs((n + 1) * (m + 1), 0);  // lcs[i][j] = LCS of suffixes i.., j..
  auto at = [&](std::size_t i, std::size_t j) -> std::uint16_t& { return lcs[i * (m + 1) + j]; };
  for (std::size_t i = n; i-- > 0;)
    for (std::size_t j = m; j-- > 0;)
      at(i, j) = same_op(lowered.ops[i], original.ops[j]) ? static_cast<std::uint16_t>(at(i + 1, j + 1) + 1)
                                                          : std::max(at(i + 1, j), at(i, j + 1));
  for (std::size_t i = 0, j = 0; i < n && j < m;) {
    if (same_op(lowered.ops[i], original.ops[j])) {
      match[i++] = j++;
    } else if (at(i + 1, j) >= at(i, j + 1)) {
      ++i;
    } else {
      ++j;
    }
  }
  return match;
}

}  // namespace

std::vector<const MergePoint*> op_sources(const Trace& trace, const Stage& stage) {
  std::vector<const MergePoint*> sources(stage.ops.size(), nullptr);
  if (!stage.merge_points.empty()) {
    for (std::size_t i = 0; i < stage.ops.size(); ++i) sources[i] = stage.merge_point_before(i);
    return sources;
  }
  const Stage* opt = trace.stage(StageKind::Opt);
  if (opt == nullptr || &stage == opt) return sources;
  const auto match = align(stage, *opt);
  const MergePoint* current = trace.source();
  for (std::size_t i = 0; i < stage.ops.size(); ++i) {
    if (match[i])
      if (const MergePoint* point = opt->merge_point_before(*match[i])) current = point;
    sources[i] = current;
  }
  return sources;
}

StageDiff diff_stages(const Stage& before, const Stage& after) {
  StageDiff diff;
  std::map<std::string_view, std::ptrdiff_t> balance;
  for (const Operation& op : before.ops) {
    --balance[op.name];
    diff.guards_before += op.is_guard();
  }
  for (const Operation& op : after.ops) {
    ++balance[op.name];
    diff.guards_after += op.is_guard();
  }
  diff.ops_before = before.ops.size();
  diff.ops_after = after.ops.size();
  for (const auto& [name, change] : balance) {
    if (change < 0) diff.removed[std::string(name)] = static_cast<std::size_t>(-change);
    if (change > 0) diff.added[std::string(name)] = static_cast<std::size_t>(change);
  }
  return diff;
}

}  // namespace jitprof::jitlog
