#include "jitlog/resolver.h"

#include <algorithm>

namespace jitprof::jitlog {
namespace {
constexpr std::uint64_t kArrivalSlackNs = 50'000'000;
}  // namespace

TraceResolver::TraceResolver(const Forest& forest, std::vector<Arrival> arrivals) {
  std::sort(arrivals.begin(), arrivals.end(), [](const Arrival& a, const Arrival& b) { return a.offset < b.offset; });
  auto arrived = [&](std::uint64_t offset) -> std::uint64_t {
    auto after = std::upper_bound(arrivals.begin(), arrivals.end(), offset,
                                  [](std::uint64_t value, const Arrival& arrival) { return value < arrival.offset; });
    return after == arrivals.begin() ? 0 : std::prev(after)->time_ns;
  };
  for (const Trace& trace : forest.traces) {
    if (!trace.code) continue;
    const Stage* asm_stage = trace.stage(StageKind::Asm);
    Entry entry{trace.code->start, trace.code->end, arrived(asm_stage ? asm_stage->file_offset : trace.file_offset),
                trace.code_sequence, &trace, {}};
    if (asm_stage)
      for (std::size_t i = 0; i < asm_stage->ops.size(); ++i)
        if (asm_stage->ops[i].code && !asm_stage->ops[i].code->bytes.empty())
          entry.ops.emplace_back(asm_stage->ops[i].code->offset, i);
    std::stable_sort(entry.ops.begin(), entry.ops.end());
    longest_ = std::max(longest_, entry.end - entry.start);
    entries_.push_back(std::move(entry));
  }
  std::stable_sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) { return a.start < b.start; });
}

TraceResolver::Hit TraceResolver::find(std::uint64_t address, std::uint64_t time_ns) const {
  auto after = std::upper_bound(entries_.begin(), entries_.end(), address,
                                [](std::uint64_t value, const Entry& entry) { return value < entry.start; });
  const auto newer = [](const Entry& a, const Entry* b) {
    return !b || a.born_ns > b->born_ns || (a.born_ns == b->born_ns && a.sequence > b->sequence);
  };
  const Entry* best = nullptr;      // the newest born by time_ns
  const Entry* earliest = nullptr;  // the first born, for samples before them all
  for (auto it = after; it != entries_.begin();) {
    const Entry& entry = *--it;
    if (entry.start + longest_ <= address) break;
    if (address >= entry.end) continue;
    if (!earliest || !newer(entry, earliest)) earliest = &entry;
    const bool born = time_ns == kLatest || entry.born_ns <= time_ns + kArrivalSlackNs;
    if (born && newer(entry, best)) best = &entry;
  }
  const Entry* chosen = best ? best : earliest;
  Hit hit;
  if (chosen == nullptr) return hit;
  hit.trace = chosen->trace;
  const std::uint64_t offset = address - chosen->start;
  auto op = std::upper_bound(chosen->ops.begin(), chosen->ops.end(), std::make_pair(offset, SIZE_MAX));
  if (op == chosen->ops.begin()) return hit;
  const std::size_t index = std::prev(op)->second;
  const Stage& asm_stage = *hit.trace->stage(StageKind::Asm);
  if (offset >= std::prev(op)->first + asm_stage.ops[index].code->bytes.size()) return hit;
  hit.op = index;
  auto [sources, fresh] = sources_.try_emplace(hit.trace);
  if (fresh) sources->second = op_sources(*hit.trace, asm_stage);
  hit.source = sources->second[index];
  return hit;
}

}  // namespace jitprof::jitlog
