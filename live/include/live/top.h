// `jitprof top --pid`: what the live view of a running PyPy process counts.
// A recording (record::attach) hands over the frames it wrote each
// interval; Top correlates only those (correlate::LiveCorrelator) and adds
// their samples to running counts, so a refresh costs what the interval's
// samples cost, however long the session has run. A snapshot holds, for the
// last interval and for the whole session: Python functions by self and
// total samples, hot JIT code, where the time goes, and threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bundle/bundle.h"
#include "correlate/profile.h"

namespace jitprof::live {

// Samples in the last interval and since the start.
struct Counts {
  std::uint64_t last = 0, all = 0;
};

struct FunctionRow {
  std::string name, file;
  std::int64_t line = 0;  // the function's first line, when known
  Counts self, total;
};

// JIT code samples were in or called from: a trace of the jitlog ("trace 4
// (loop)" and its function), or, without a jitlog, the Python function whose
// code PyPy compiled (from its JIT codemap).
struct JitRow {
  std::string label;
  Counts samples;
};

// Where the time goes: one group of correlate::Category.
struct ShareRow {
  std::string label;  // "JIT code", "interpreter", "GC", "JIT warm-up", "native", "kernel", ...
  Counts samples;
};

struct ThreadRow {
  std::uint32_t tid = 0;
  std::string name;          // correlate::ThreadName::shown(), when the recording saw one
  Counts samples;
  std::string top_function;  // the function with the most self samples in the last interval
};

struct Snapshot {
  std::int64_t pid = 0;
  std::vector<std::string> command;
  double elapsed_s = 0;        // since sampling started
  double interval_s = 0;       // length of the last interval
  double seconds_per_sample = 0.001;
  Counts samples;
  // Largest first: functions by self samples of the last interval, then of
  // the whole session, then by total; the rest by their last interval.
  std::vector<FunctionRow> functions;
  std::vector<JitRow> jit;
  std::vector<ShareRow> shares;  // groups with any sample, in a fixed order
  std::vector<ThreadRow> threads;
  std::size_t unnamed_code_objects = 0;  // shown as "code #ID": not found in the target's memory (yet)
};

class Top {
 public:
  // Counts the samples among `frames` (written since the last call) as the
  // interval that ends `elapsed_s` seconds after sampling started.
  void add(const bundle::Bundle& frames, double elapsed_s);
  // At most `rows` functions, JIT rows and threads.
  Snapshot snapshot(std::size_t rows) const;

 private:
  // What every sample of one stack adds, worked out once per stack.
  struct StackCounts {
    std::vector<std::size_t> functions;  // into functions_
    std::optional<std::size_t> self;     // into functions_
    std::optional<std::size_t> jit;      // into jit_
    std::uint64_t samples = 0;           // since the start
  };
  StackCounts& counts_of(const correlate::Profile& profile, std::uint32_t stack);
  std::size_t function_index(const correlate::Frame& frame);
  std::size_t jit_index(const std::string& label);
  void start_interval();
  void rename(const correlate::Frame& unnamed, const correlate::Frame& named);

  correlate::LiveCorrelator correlator_;
  // By the profile's stack id: a stack never changes (a code object named
  // later makes new stacks), so neither does what it adds.
  std::vector<std::optional<StackCounts>> stacks_;
  std::vector<FunctionRow> functions_;
  std::map<std::pair<std::string, std::string>, std::size_t> function_ids_;
  std::vector<JitRow> jit_;
  std::map<std::string, std::size_t> jit_ids_;
  std::vector<ShareRow> shares_;
  struct Thread {
    std::string name;
    Counts samples;
    std::map<std::size_t, std::uint64_t> self_last;  // function -> self samples in the last interval
  };
  std::map<std::uint32_t, Thread> threads_;
  std::vector<bundle::TaskRecord> tasks_;
  Snapshot header_;
};

}  // namespace jitprof::live
