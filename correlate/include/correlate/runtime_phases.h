// PyPy's log sections (bundle section PYLG) on the samples' clock, and the
// innermost one open at a moment.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "bundle/pypy_log.h"
#include "correlate/profile.h"

namespace jitprof::correlate {

// PyPy's log timestamps (the CPU's counter) on the samples' clock: a straight
// line fitted through the (timestamp counter, CLOCK_MONOTONIC) pairs jitprof
// read while recording. None without two distinct pairs.
class TscClock {
 public:
  static std::optional<TscClock> fit(const std::vector<bundle::TimestampPair>& pairs);
  std::uint64_t ns(std::uint64_t tsc) const;

 private:
  double tsc0_ = 0, ns0_ = 0, ns_per_tick_ = 0;  // centred on the pairs' mean so doubles keep the nanoseconds
};

// The sections dated with a straight line fitted through the (timestamp
// counter, CLOCK_MONOTONIC) pairs jitprof read while recording, in start
// order, each with its nesting depth. Empty without two pairs.
std::vector<RuntimePhase> date_runtime_phases(const bundle::PypyLog& log);

class RuntimePhaseLookup {
 public:
  explicit RuntimePhaseLookup(const std::vector<RuntimePhase>& phases);
  // The innermost section open at `time_ns`, if any.
  const RuntimePhase* innermost_at(std::uint64_t time_ns) const;

 private:
  const std::vector<RuntimePhase>& phases_;
  std::vector<std::size_t> parent_;  // the enclosing section's index, or npos
};

}  // namespace jitprof::correlate
