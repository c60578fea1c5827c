// JIT address -> trace at a given time -> asm-stage op.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <vector>

#include "jitlog/jitlog.h"

namespace jitprof::correlate {

class TraceIndex {
 public:
  TraceIndex() = default;
  // `arrivals`: JSON lines {"offset", "t"}: when each part of the jitlog
  // stream reached the recorder (CLOCK_MONOTONIC ns). Without them every
  // trace counts as present from the start, and the newest covering wins.
  TraceIndex(const jitlog::Forest& forest, const std::vector<nlohmann::json>& arrivals);

  struct Hit {
    const jitlog::Trace* trace = nullptr;  // whose code held the address at the time
    std::optional<std::size_t> op;         // asm-stage op; none in the entry code before the first op
  };
  Hit find(std::uint64_t address, std::uint64_t time_ns) const;

 private:
  struct Entry {
    std::uint64_t start, end;
    std::uint64_t born_ns;  // when its record reached the recorder
    const jitlog::Trace* trace;
    std::vector<std::pair<std::uint64_t, std::size_t>> ops;  // (code offset, op index), by offset
  };
  std::vector<Entry> entries_;  // by start
  std::uint64_t longest_ = 0;
};

}  // namespace jitprof::correlate
