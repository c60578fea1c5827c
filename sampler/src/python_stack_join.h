// Joins the BPF program's shadow-stack records to the perf samples they were
// read for. Both come from the same timer interrupt on the sampled thread, so
// a sample's record is the thread's record dated nearest to it, a few
// microseconds apart, with the same user IP. Which is dated first depends on
// the kernel: on 6.18 the sample is dated 0.3 to 8 microseconds before the
// program runs (older kernels prepared the sample after the program). A
// thread's samples are a sampling period of its CPU time apart, so a window
// of half a period tells them apart. Pure: the sampler feeds it records as it
// drains them (any order) and samples in time order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <unordered_map>

#include "sampler/sampler.h"

namespace jitprof::sampler {

struct PythonStackRecord {
  std::uint64_t time_ns;  // CLOCK_MONOTONIC, microseconds from the sample's own time
  std::uint32_t pid, tid;
  std::uint64_t ip;  // user IP of the interrupted context
  PythonStack stack;
};

class PythonStackJoin {
 public:
  // A record is for a sample at most `window_ns` before or after it (keep it
  // below half the sampling period, so that a record whose sample was lost
  // never passes for the next sample's).
  explicit PythonStackJoin(std::uint64_t window_ns);

  // Samples of `pid` dated `since` or later get a stack (or Lost).
  void watch(std::uint32_t pid, std::uint64_t since);
  // The process exec'd or exited at `time`: its layout is gone. A watch
  // that began after `time` stays. Returns whether the watch ended.
  bool forget(std::uint32_t pid, std::uint64_t time);
  bool watched(std::uint32_t pid, std::uint64_t time) const;

  void add(PythonStackRecord record);

  // The stack of the sample of `tid` at `time` whose user IP is `user_ip`:
  // nullopt when `pid` is not watched then, Lost when its record is missing.
  // The thread's records up to `time` (and up to its record) are used up.
  std::optional<PythonStack> take(std::uint32_t pid, std::uint32_t tid, std::uint64_t time, std::uint64_t user_ip);

  // Samples up to `horizon` were all taken: records no later sample can
  // match are dropped.
  void discard_before(std::uint64_t horizon);
  std::size_t pending() const;

 private:
  std::uint64_t window_ns_;
  std::unordered_map<std::uint32_t, std::uint64_t> watched_since_;        // pid → time
  std::unordered_map<std::uint32_t, std::deque<PythonStackRecord>> by_tid_;  // in time order
};

}  // namespace jitprof::sampler
