// The one rule for naming a JIT address: which trace's machine code held it
// at a given moment, which asm-stage op of that trace, and the Python line
// that op comes from. The profile, the crash view and the server all ask it.
//
// PyPy frees machine code and reuses the memory, so the code ranges of
// several traces may cover one address. A trace is born when the part of the
// jitlog holding its machine code reached the recorder (arrival times, if the
// recording kept them); at time t an address belongs to the newest trace born
// by then, ties going to the one later in the log. A sample may hit new code
// before its record crossed the pipe: births count from 50 ms earlier; an
// address sampled before every trace covering it goes to the first one born.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "jitlog/jitlog.h"

namespace jitprof::jitlog {

// When the jitlog stream had reached `offset` bytes (CLOCK_MONOTONIC ns).
struct Arrival {
  std::uint64_t offset = 0;
  std::uint64_t time_ns = 0;
};

class TraceResolver {
 public:
  static constexpr std::uint64_t kLatest = UINT64_MAX;

  TraceResolver() = default;
  // Without arrivals every trace is born at the start, so the newest in the log wins.
  explicit TraceResolver(const Forest& forest, std::vector<Arrival> arrivals = {});

  struct Hit {
    const Trace* trace = nullptr;   // nullptr: no trace's code holds the address
    std::optional<std::size_t> op;  // asm-stage op whose bytes hold it; none in the entry code before the first op
    const MergePoint* source = nullptr;  // the op's Python line (jitlog::op_sources), when known
  };
  // `address`: an exact IP, or the call site of a return address (arch::call_site).
  // Not thread-safe: the ops' source lines are aligned on first use, per trace.
  Hit find(std::uint64_t address, std::uint64_t time_ns = kLatest) const;

 private:
  struct Entry {
    std::uint64_t start, end;
    std::uint64_t born_ns;
    std::uint64_t sequence;  // position in the log: later code replaces earlier
    const Trace* trace;
    std::vector<std::pair<std::uint64_t, std::size_t>> ops;  // (code offset, op index) of ops with code, by offset
  };
  std::vector<Entry> entries_;  // by start
  std::uint64_t longest_ = 0;
  mutable std::unordered_map<const Trace*, std::vector<const MergePoint*>> sources_;
};

}  // namespace jitprof::jitlog
