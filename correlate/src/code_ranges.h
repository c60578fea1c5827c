// `record --jit ranges`: no jitlog, but PyPy's log named the machine code of
// each loop and bridge (PYLG). These become traces with only a code range and,
// for loops, one merge point made from the name PyPy gave them, so that every
// view names JIT samples as it does with a jitlog (no ops, IR or counts).
#pragma once

#include <vector>

#include "bundle/pypy_log.h"
#include "jitlog/jitlog.h"
#include "jitlog/resolver.h"

namespace jitprof::correlate {

struct CodeRangeTraces {
  jitlog::Forest forest;
  // When PyPy logged each trace: its "offset" is the trace's file_offset.
  std::vector<jitlog::Arrival> arrivals;
};
CodeRangeTraces traces_of_code_ranges(const bundle::PypyLog& log);

}  // namespace jitprof::correlate
