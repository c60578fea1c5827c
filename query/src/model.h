// What the evaluator reads: the bundle's items, flattened and indexed once.
#pragma once

#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "jitlog/jitlog.h"
#include "query/query.h"

namespace jitprof::query {

struct TraceInfo {
  const jitlog::Trace* trace = nullptr;
  std::uint64_t samples = 0;
  std::vector<std::uint64_t> op_samples;        // per asm op
  std::vector<std::size_t> bridges;             // traces leaving from its guards (indexes into traces)
  std::map<std::string, std::size_t> removed;   // noopt -> opt: op name -> how many fewer
  std::map<std::string, std::size_t> added;
  std::set<std::string> inlined;                // functions inlined into it
  std::set<std::pair<std::string, std::string>> functions;  // (name, file) of all its merge points
};

struct GuardInfo {
  std::size_t trace;  // index into traces
  std::size_t op;     // asm-stage op index
};

struct OpInfo {
  std::size_t trace;
  jitlog::StageKind stage;
  std::size_t op;
};

// Caller function, file and line; line -1 when only the calling function is
// known (a call the JIT did not inline, seen in sampled stacks).
using CallSite = std::tuple<std::string, std::string, std::int64_t>;

struct MethodInfo {
  std::string name, file;
  std::int64_t line = 0;
  std::uint64_t self = 0, total = 0;
  std::set<CallSite> callsites;
  std::size_t traces = 0;  // traces whose merge points include it
};

struct Model::Data {
  const correlate::Profile* profile = nullptr;
  std::uint64_t first_sample_ns = 0;  // sample times are shown from here
  std::vector<TraceInfo> traces;
  std::map<std::uint64_t, std::size_t> trace_by_id;
  std::vector<GuardInfo> guards;
  std::vector<MethodInfo> methods;
  std::vector<OpInfo> ops;
};

}  // namespace jitprof::query
