// libFuzzer target for the jitlog reader.
//
// Besides "no crash, no sanitizer report" it checks what the reader promises:
// diagnostics point inside the input, resolved links point at traces and ops
// that exist, and feeding the input in chunks gives the same result as
// feeding it at once.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_checks.h"

#include "jitlog/jitlog.h"
#include "jitlog/resolver.h"

namespace {

namespace jl = jitprof::jitlog;

using jitprof::fuzz::check;

void check_invariants(const jl::Forest& forest, std::size_t size) {
  jitprof::fuzz::check_diagnostics(forest, size);
  const jl::TraceResolver resolver(forest);
  for (const jl::Trace& trace : forest.traces) {
    check(trace.file_offset < size, "trace offset past the input");
    check(forest.find(trace.id) == &trace, "trace id not indexed, or not unique");
    if (trace.parent_guard) {
      const jl::Trace* parent = forest.find(trace.parent_guard->trace_id);
      check(parent != nullptr, "parent guard in an unknown trace");
      const jl::Stage* stage = parent->stage(jl::StageKind::Asm);
      if (stage == nullptr) stage = parent->stage(jl::StageKind::Opt);
      check(stage != nullptr && trace.parent_guard->op_index < stage->ops.size(), "parent guard op out of range");
    }
    if (trace.code && trace.code->end > trace.code->start) {
      const jl::Trace* at_start = resolver.find(trace.code->start).trace;
      check(at_start != nullptr && at_start->code->contains(trace.code->start), "the resolver missed a block");
    }
    (void)trace.source();
    for (const jl::Stage& stage : trace.stages) {
      check(stage.file_offset < size, "stage offset past the input");
      check(jl::op_sources(trace, stage).size() == stage.ops.size(), "op_sources size differs from the ops");
      for (const jl::Operation& op : stage.ops) {
        if (op.bridge) check(forest.find(*op.bridge) != nullptr, "guard bridge is an unknown trace");
        if (op.target_trace) check(forest.find(*op.target_trace) != nullptr, "op target is an unknown trace");
      }
      for (const jl::MergePoint& point : stage.merge_points)
        check(point.op_index <= stage.ops.size(), "merge point past the stage's ops");
    }
  }
  for (const auto& redirect : forest.redirects)
    if (redirect.target_trace) check(forest.find(*redirect.target_trace) != nullptr, "redirect to an unknown trace");
}

std::size_t count_ops(const jl::Forest& forest) {
  std::size_t ops = 0;
  for (const jl::Trace& trace : forest.traces)
    for (const jl::Stage& stage : trace.stages) ops += stage.ops.size();
  return ops;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  const jl::Forest whole = jl::parse_jitlog(input);
  check_invariants(whole, size);

  const jl::Forest chunked = jitprof::fuzz::read_in_chunks<jl::JitlogReader>(input);
  check(chunked.records == whole.records, "chunked feeding changed the record count");
  check(chunked.traces.size() == whole.traces.size(), "chunked feeding changed the traces");
  check(count_ops(chunked) == count_ops(whole), "chunked feeding changed the ops");
  check(chunked.counters.size() == whole.counters.size(), "chunked feeding changed the counters");
  check(chunked.error.has_value() == whole.error.has_value(), "chunked feeding changed the error");
  if (chunked.error && whole.error) {
    check(chunked.error->offset == whole.error->offset, "chunked feeding moved the error");
  }
  check(chunked.warnings.size() == whole.warnings.size(), "chunked feeding changed the warnings");
  for (std::size_t i = 0; i < whole.warnings.size() && i < chunked.warnings.size(); ++i)
    check(chunked.warnings[i].message == whole.warnings[i].message, "chunked feeding changed a warning");
  return 0;
}
