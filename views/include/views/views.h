// The views of a bundle as JSON documents: what `jitprof report/trace/top
// --json` print and what `jitprof serve` answers, computed in one place so
// that the terminal and the web viewer always agree.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bundle/bundle.h"
#include "correlate/profile.h"
#include "jitlog/jitlog.h"
#include "jitlog/resolver.h"
#include "vmprof/profile.h"

namespace jitprof::views {

// --- what a file holds -------------------------------------------------------

// {"warnings": [{offset, message}], "error": {offset, message} or null}: a reader's problems.
nlohmann::json diagnostics_json(const std::vector<binio::Diagnostic>& warnings,
                                const std::optional<binio::Diagnostic>& error);
// `jitprof info`: the manifest, the sections (frames, bytes), the jitlog's
// and vmprof's counts and problems, the samples by where they ended (JIT
// samples resolved as `profile` did), the crash, the bundle's own problems.
nlohmann::json info_json(const bundle::Bundle& bundle, const correlate::Profile& profile);
// `jitprof jitlog`: format, counts of traces, ops, links and counters, the
// `top` most executed traces, and the reader's problems.
nlohmann::json jitlog_json(const jitlog::Forest& forest, std::size_t top);
// `jitprof profile`: a vmprof profile's header, samples by where their
// innermost frame was, and the `top` Python functions by self samples.
nlohmann::json vmprof_json(const vmprof::Profile& profile, std::size_t top);
// The traces executed most (entries + label passes), stable among equals.
std::vector<const jitlog::Trace*> hottest_traces(const jitlog::Forest& forest, std::size_t limit);

// --- traces ------------------------------------------------------------------

// "i3 = int_add(i1, i2, descr=...) [failargs]"
std::string op_text(const jitlog::Operation& op);
// {function, file, line, bytecode_index, opcode, inline_depth}, or null.
nlohmann::json location_json(const jitlog::MergePoint* point);
// id, type, jitdriver, counts, source, code range, parent guard.
nlohmann::json trace_summary_json(const jitlog::Trace& trace);
// The optimizer's (noopt -> opt) and the backend's (opt -> asm) changes.
nlohmann::json diff_json(const jitlog::Trace& trace);

// Samples of one trace: per asm op, in the entry code before the first op,
// per instruction address and per (opt-stage) merge point.
struct TraceHeat {
  std::uint64_t total = 0;
  std::uint64_t entry = 0;
  std::vector<std::uint64_t> per_asm_op;
  std::map<std::uint64_t, std::uint64_t> per_address;
  std::map<const jitlog::MergePoint*, std::uint64_t> per_source;
  std::uint64_t in_range(std::uint64_t start, std::uint64_t size) const;
};
TraceHeat heat_of(const correlate::Profile& profile, const jitlog::Trace& trace);
// The heat of every trace (with perf samples: zero for traces none hit;
// without: of the traces PyPy's own samples name), in one pass over the samples.
std::map<std::uint64_t, TraceHeat> heat_of_traces(const correlate::Profile& profile);

// Python source lines by file and line number: a bundle's copies of the
// files (SRCS) and the lines a jitlog carries itself (SOURCE_CODE records).
using SourceFiles = std::map<std::string, std::map<std::int64_t, std::string>>;
SourceFiles source_files(const bundle::Bundle& bundle, const jitlog::Forest& forest);

// One trace at one stage: its ops (text, source, guards' bridges, call
// targets, machine code, and their samples when `heat` is given), merge
// points and stage differences. `disassemble`: each op's instructions.
// With `sources`: "source_lines" {file: {line: text}} for the lines its ops come from.
nlohmann::json trace_json(const jitlog::Forest& forest, const jitlog::Trace& trace, jitlog::StageKind stage,
                          const TraceHeat* heat, bool disassemble, const SourceFiles* sources = nullptr);

// A thread: {pid (when known), tid, name (correlate::ThreadName::shown, or
// null), python_name, os_name (when known), label ("worker-1 (tid 1234)")}.
nlohmann::json thread_json(const correlate::ThreadName* name, std::uint32_t pid, std::uint32_t tid);

// The fatal fault a bundle recorded (section CRSH), or null, with the faulting
// thread (thread_json, named from `threads`) and the trace,
// op and source line of the innermost JIT frame on the faulting thread's
// stack: the faulting instruction itself, or the call from which the trace
// reached the native code that faulted. Registers and addresses also come as
// "0x..." strings ("registers_hex", frames' "address_hex"): JavaScript
// numbers cannot hold 64-bit values.
nlohmann::json crash_json(const bundle::Bundle& bundle, const jitlog::TraceResolver& resolver,
                          const correlate::ThreadNames& threads);

// --- the correlated profile --------------------------------------------------

// `jitprof report`: top functions (self/total), hot traces with failing guards,
// leaf categories, native libraries and functions, threads, attach details,
// JIT code without a jitlog. `top` limits each list.
nlohmann::json report_json(const correlate::Profile& profile, const bundle::Bundle& bundle, std::size_t top);
// The sampled threads, by process and thread id: thread_json with their
// samples and share. report_json's "threads" (with each one's busiest Python
// function), `top`'s threads line.
nlohmann::json threads_json(const correlate::Profile& profile);
// Where the samples' Python frames came from (exact from PyPy's shadow stack,
// joined with vmprof, none), the shadow-stack reads by status, and the code
// objects nothing named: report_json's "python_stacks", also in info_json.
nlohmann::json python_stacks_json(const correlate::Stats& stats);

// The "PyPy runtime" section: samples by the runtime's categories (GC minor
// and major, JIT tracing, optimizer, backend, guard failures, interpreter,
// other runtime) and, when PyPy's log timed the phases, GC time, collections
// and pause percentiles, JIT warm-up time by stage and the traces it was spent
// on (tied when every compilation the log shows is a trace of the jitlog).
// Also report_json's "runtime".
nlohmann::json runtime_json(const correlate::Profile& profile);

// The merged call tree by frame label (correlate::frame_label), outermost first.
struct CallTree {
  struct Node {
    std::uint64_t total = 0, self = 0;
    correlate::Category category = correlate::Category::Python;
    std::optional<std::uint64_t> trace;  // JIT trace frames
    std::map<std::string, Node> children;  // by label
  };
  Node root;
};
// `label` names each frame; frames of one name merge.
CallTree call_tree(const correlate::Profile& profile,
                   const std::function<std::string(const correlate::Frame&)>& label = correlate::frame_label);
// Children of `node` as [{frame, category, total, self, children}, trace
// for JIT trace frames], largest
// first, down to `depth` levels, leaving out branches below `minimum` samples.
nlohmann::json call_tree_json(const CallTree::Node& node, std::size_t depth, std::uint64_t minimum);


// --- two runs compared (`jitprof diff`, the viewer's /diff/OLD/NEW page) -----

// A trace by what it is, since trace numbers do not carry over from one run
// to the next: loop or bridge, and the function, file and line of its first
// merge point (jitlog::Trace::source). A trace the jitlog does not hold is
// {"unknown", "", "", 0}.
struct TraceIdentity {
  std::string type, function, file;
  std::int64_t line = 0;
  auto operator<=>(const TraceIdentity&) const = default;
};
TraceIdentity trace_identity(const jitlog::Forest& forest, std::uint64_t id);

// One recorded run: a bundle and its correlated profile.
struct Run {
  const bundle::Bundle& bundle;
  const correlate::Profile& profile;
};
// `jitprof diff OLD NEW`: "old" and "new" (each run's samples, CPU seconds,
// duration, command); "functions" (Python functions, self and total) and
// "traces" (summed by TraceIdentity) whose share changed, each with both
// runs' samples, shares and seconds (samples x that run's sampling period),
// the change in percentage points and in seconds, and "status" new, vanished
// or changed; largest change in points first, `top` of each (with how many
// changed in all); "flame": the call trees of both runs merged, each node
// with "total"/"self" (the new run's samples) and "old_total"/"old_self",
// trace frames named by identity so that they meet across runs.
nlohmann::json profile_diff_json(const Run& old_run, const Run& new_run, std::size_t top);

}  // namespace jitprof::views
