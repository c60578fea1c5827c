#include "correlate/runtime_phases.h"

#include <algorithm>
#include <cmath>

namespace jitprof::correlate {
namespace {

constexpr std::size_t kNone = ~std::size_t{0};

}  // namespace

std::optional<TscClock> TscClock::fit(const std::vector<bundle::TimestampPair>& pairs) {
  if (pairs.size() < 2) return std::nullopt;
  // Least squares, centred on the first pair, then on the mean, so that doubles keep the nanoseconds.
  const double tsc0 = double(pairs.front().tsc), ns0 = double(pairs.front().monotonic_ns);
  double mean_x = 0, mean_y = 0;
  for (const auto& pair : pairs) {
    mean_x += double(pair.tsc) - tsc0;
    mean_y += double(pair.monotonic_ns) - ns0;
  }
  mean_x /= double(pairs.size());
  mean_y /= double(pairs.size());
  double covariance = 0, variance = 0;
  for (const auto& pair : pairs) {
    const double x = double(pair.tsc) - tsc0 - mean_x;
    covariance += x * (double(pair.monotonic_ns) - ns0 - mean_y);
    variance += x * x;
  }
  if (variance <= 0) return std::nullopt;
  TscClock clock;
  clock.tsc0_ = tsc0 + mean_x;
  clock.ns0_ = ns0 + mean_y;
  clock.ns_per_tick_ = covariance / variance;
  return clock;
}

std::uint64_t TscClock::ns(std::uint64_t tsc) const {
  const double ns = ns0_ + (double(tsc) - tsc0_) * ns_per_tick_;
  return ns <= 0 ? std::uint64_t{0} : static_cast<std::uint64_t>(std::llround(ns));
}

std::vector<RuntimePhase> date_runtime_phases(const bundle::PypyLog& log) {
  const auto clock = TscClock::fit(log.clock);
  if (!clock || log.sections.empty()) return {};
  std::vector<RuntimePhase> phases;
  phases.reserve(log.sections.size());
  for (const bundle::PypyLogSection& section : log.sections)
    phases.push_back({section.name, clock->ns(section.start_tsc), clock->ns(section.end_tsc), 0});
  // Outer sections first where two start together.
  std::sort(phases.begin(), phases.end(), [](const RuntimePhase& a, const RuntimePhase& b) {
    return a.start_ns != b.start_ns ? a.start_ns < b.start_ns : a.end_ns > b.end_ns;
  });
  std::vector<std::uint64_t> open_ends;
  for (RuntimePhase& phase : phases) {
    while (!open_ends.empty() && open_ends.back() < phase.start_ns) open_ends.pop_back();
    phase.depth = static_cast<std::uint32_t>(open_ends.size());
    open_ends.push_back(phase.end_ns);
  }
  return phases;
}

RuntimePhaseLookup::RuntimePhaseLookup(const std::vector<RuntimePhase>& phases) : phases_(phases), parent_(phases.size(), kNone) {
  std::vector<std::size_t> open;
  for (std::size_t i = 0; i < phases.size(); ++i) {
    while (!open.empty() && phases[open.back()].end_ns < phases[i].start_ns) open.pop_back();
    if (!open.empty()) parent_[i] = open.back();
    open.push_back(i);
  }
}

const RuntimePhase* RuntimePhaseLookup::innermost_at(std::uint64_t time_ns) const {
  auto after = std::upper_bound(phases_.begin(), phases_.end(), time_ns,
                                [](std::uint64_t time, const RuntimePhase& phase) { return time < phase.start_ns; });
  if (after == phases_.begin()) return nullptr;
  // The last section started by then, or the one it sits in, still open.
  for (std::size_t i = static_cast<std::size_t>(after - phases_.begin()) - 1; i != kNone; i = parent_[i])
    if (phases_[i].end_ns >= time_ns) return &phases_[i];
  return nullptr;
}

}  // namespace jitprof::correlate
