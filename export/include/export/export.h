// Writes a correlated profile (or a jitlog's traces) in formats other tools read.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "correlate/profile.h"
#include "jitlog/jitlog.h"

namespace jitprof::exports {

// Brendan Gregg's collapsed stacks: "root;...;leaf count" per distinct stack.
void write_collapsed(const correlate::Profile& profile, std::ostream& out);

// speedscope's file format (https://www.speedscope.app/file-format-schema.json):
// one sampled profile per thread, weights in seconds of CPU time.
void write_speedscope(const correlate::Profile& profile, const std::string& name, std::ostream& out);

// The Firefox Profiler's Gecko profile format (docs/firefox-format.md): one
// thread track per thread, frames coloured by category (Python, JIT with
// trace / inlined / helper subcategories, interpreter, GC, native, kernel).
void write_firefox(const correlate::Profile& profile, const std::string& name, std::ostream& out);

// pprof's profile.proto, gzip-compressed (what `go tool pprof` and
// pprof-compatible viewers open): one sample per distinct stack, with values
// [samples, cpu nanoseconds]; locations leaf first.
void write_pprof(const correlate::Profile& profile, std::ostream& out);

// A perf map (/tmp/perf-PID.map): "START SIZE NAME" in hex, one line per trace
// with machine code, so that `perf report` names PyPy's JIT code.
void write_perf_map(const jitlog::Forest& forest, std::ostream& out);

// perf's jitdump: one code-load record per trace (name and machine code),
// for `perf inject --jit`. Every trace loads at `load_time_ns`
// (CLOCK_MONOTONIC): it must come after the process's exec in perf's
// recording, or perf drops the code with the old address space.
void write_jitdump(const jitlog::Forest& forest, std::uint32_t pid, std::uint64_t load_time_ns, std::ostream& out);

// The name a trace gets in symbol tables: "pypy:loop 4 f inlined.py:12".
std::string trace_symbol(const jitlog::Trace& trace);

}  // namespace jitprof::exports
