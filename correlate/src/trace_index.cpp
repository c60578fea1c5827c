#include "trace_index.h"

#include <algorithm>

namespace jitprof::correlate {

namespace {
// A sample may hit new code before its jitlog record, written right after
// assembly, has crossed the pipe.
constexpr std::uint64_t kArrivalSlackNs = 50'000'000;
}  // namespace

TraceIndex::TraceIndex(const jitlog::Forest& forest, const std::vector<nlohmann::json>& arrivals) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> clock;  // (stream offset, time), by offset
  for (const auto& arrival : arrivals)
    clock.emplace_back(arrival.value("offset", std::uint64_t{0}), arrival.value("t", std::uint64_t{0}));
  std::sort(clock.begin(), clock.end());
  auto arrived = [&](std::uint64_t offset) -> std::uint64_t {
    auto after = std::upper_bound(clock.begin(), clock.end(), std::make_pair(offset, UINT64_MAX));
    return after == clock.begin() ? 0 : std::prev(after)->second;
  };
  for (const jitlog::Trace& trace : forest.traces) {
    const jitlog::Stage* asm_stage = trace.stage(jitlog::StageKind::Asm);
    if (!trace.code || asm_stage == nullptr) continue;
    Entry entry{trace.code->start, trace.code->end, arrived(asm_stage->file_offset), &trace, {}};
    for (std::size_t i = 0; i < asm_stage->ops.size(); ++i)
      if (asm_stage->ops[i].code && !asm_stage->ops[i].code->bytes.empty())
        entry.ops.emplace_back(asm_stage->ops[i].code->offset, i);
    std::stable_sort(entry.ops.begin(), entry.ops.end());
    longest_ = std::max(longest_, entry.end - entry.start);
    entries_.push_back(std::move(entry));
  }
  std::stable_sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) { return a.start < b.start; });
}

TraceIndex::Hit TraceIndex::find(std::uint64_t address, std::uint64_t time_ns) const {
  auto after = std::upper_bound(entries_.begin(), entries_.end(), address,
                                [](std::uint64_t value, const Entry& entry) { return value < entry.start; });
  // Among the traces covering the address, the newest born by `time_ns`; if
  // the sample came before all of them, the first.
  const Entry* best = nullptr;
  const Entry* earliest = nullptr;
  for (auto it = after; it != entries_.begin();) {
    const Entry& entry = *--it;
    if (entry.start + longest_ <= address) break;
    if (address >= entry.end) continue;
    if (!earliest || entry.born_ns < earliest->born_ns) earliest = &entry;
    if (entry.born_ns <= time_ns + kArrivalSlackNs && (!best || entry.born_ns >= best->born_ns)) best = &entry;
  }
  const Entry* chosen = best ? best : earliest;
  Hit hit;
  if (chosen == nullptr) return hit;
  hit.trace = chosen->trace;
  const std::uint64_t offset = address - chosen->start;
  auto op = std::upper_bound(chosen->ops.begin(), chosen->ops.end(), std::make_pair(offset, SIZE_MAX));
  if (op != chosen->ops.begin()) hit.op = std::prev(op)->second;
  return hit;
}

}  // namespace jitprof::correlate
