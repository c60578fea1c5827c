// Reader of PyPy's binary jitlog (versions 1-4) into a forest of traces.
//
// The jitlog is a stream of unframed marker records. START_TRACE opens a
// trace; TRACE / TRACE_OPT / TRACE_ASM open its stages (noopt, opt, asm);
// the records after a stage marker (ops, merge points, machine code) belong
// to it. Links between traces (bridges, call_assembler, redirects) and the
// counters are resolved when the reader finishes. Trace ids are unique (PyPy
// numbers traces from one counter): a START_TRACE that repeats an id is
// malformed input, and the reader stops there.
//
// The texts of ops (names, args, descrs, failargs) and their machine code are
// views into storage the forest owns and shares with its copies: PyPy repeats
// the same descrs and argument lists many times, so each is stored once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "binio/binio.h"

namespace jitprof::jitlog {

using binio::Diagnostic;

enum class StageKind : std::uint8_t { NoOpt, Opt, Asm };
const char* stage_name(StageKind kind);  // "noopt", "opt", "asm"
std::optional<StageKind> parse_stage_name(const std::string& name);

enum class TraceKind : std::uint8_t { Loop, Bridge };
const char* trace_kind_name(TraceKind kind);

// Machine code of one operation: bytes from its offset up to the next op's.
struct MachineCode {
  std::uint64_t offset;  // from the trace's code start (the u16 on disk, unwrapped)
  std::span<const std::uint8_t> bytes;
};

struct Operation {
  std::uint16_t opnum = 0;
  std::string_view name;
  std::string_view result;  // "i5", "p3", "f1"; "?" for ops without a result
  std::span<const std::string_view> args;
  std::string_view descr;  // descr text, e.g. "<Guard0x...>", "TargetToken(...)"; empty if none
  std::optional<std::uint64_t> descr_number;
  std::span<const std::string_view> failargs;
  std::optional<MachineCode> code;  // asm stage only

  // Resolved links and counters.
  std::optional<std::uint64_t> bridge;        // guard: id of the bridge that leaves from it
  std::optional<std::uint64_t> target_trace;  // jump / call_assembler: trace it enters
  std::uint64_t counter = 0;                  // guard: failures ('b'); label: passes ('l')

  bool is_guard() const { return name.starts_with("guard_"); }
  bool is_call_assembler() const { return name.starts_with("call_assembler"); }
};

// A debug_merge_point: where in the Python source the following ops come from.
struct MergePoint {
  std::size_t op_index = 0;       // number of the stage's ops before this point
  unsigned inline_depth = 0;      // Python calls inlined at this point (0 = the trace's own function)
  std::string file;               // co_filename
  std::int64_t line = 0;          // current source line
  std::string function;           // co_name
  std::int64_t bytecode_index = 0;
  std::string opcode;             // bytecode name, e.g. FOR_ITER
};

struct Stage {
  StageKind kind = StageKind::NoOpt;
  std::span<const std::string_view> input_args;
  std::vector<Operation> ops;
  std::vector<MergePoint> merge_points;
  std::uint64_t file_offset = 0;

  // The last merge point at or before op `op_index`, if any.
  const MergePoint* merge_point_before(std::size_t op_index) const;
};

struct CodeRange {
  std::uint64_t start = 0;  // block start (GC table); vmprof's (6, addr) value
  std::uint64_t end = 0;    // one past the last byte, failure stubs included
  bool contains(std::uint64_t address) const { return address >= start && address < end; }
};

struct GuardRef {
  std::uint64_t trace_id;
  std::size_t op_index;  // in the parent's asm stage
};

struct Trace {
  std::uint64_t id = 0;
  // Loop or bridge by what PyPy compiled: a START_TRACE "bridge" that starts
  // from the interpreter (function entry) is assembled as a loop.
  TraceKind kind = TraceKind::Loop;
  bool logged_as_bridge = false;  // START_TRACE said "bridge"
  std::string jitdriver;
  // START_TRACE's third field: a bridge's guard descr uid; a loop's entry-bridge flag.
  std::uint64_t start_descr = 0;
  std::vector<Stage> stages;  // as written; unrolled loops log noopt twice
  std::optional<CodeRange> code;
  std::uint64_t code_sequence = 0;  // record number of its ASM_ADDR: later code replaces earlier
  bool aborted = false;
  std::uint64_t file_offset = 0;

  // Resolved links and counters.
  std::optional<GuardRef> parent_guard;  // bridges: the guard they leave from
  std::optional<std::uint64_t> stitched_at;  // STITCH_BRIDGE block address
  std::uint64_t entry_count = 0;  // 'e' for loops, 'b' for bridges
  std::uint64_t label_count = 0;  // sum of 'l' counters of its labels (loop iterations)

  // The last stage of this kind, or nullptr.
  const Stage* stage(StageKind kind) const;
  // Executions of the trace's code: entries plus passes through its labels.
  std::uint64_t executions() const { return entry_count + label_count; }
  // The trace's own source position: its first depth-0 merge point (opt stage first).
  const MergePoint* source() const;
};

struct Counter {
  char type;  // 'e' entry (trace id), 'b' bridge (guard descr), 'l' label (TargetToken)
  std::uint64_t number;
  std::int64_t count;
  bool matched = false;  // credited to a known trace
};

struct Redirect {  // REDIRECT_ASSEMBLER
  std::uint64_t old_token;
  std::uint64_t new_token;
  std::uint64_t target;  // x86: new block start address; other backends: trace id
  std::optional<std::uint64_t> target_trace;
};

struct TmpCallback {  // TMP_CALLBACK
  std::uint64_t token;
  std::int64_t number;
};

struct SourceLine {
  std::uint8_t indent;
  std::string text;
};

struct Header {
  std::uint16_t version = 0;
  unsigned word_size = 8;
  std::string machine;
  std::unordered_map<std::uint16_t, std::string> op_names;
  unsigned header_count = 0;  // _jitlog.enable() called twice writes two headers
};

struct ForestText;  // the bytes an Operation's views point into

struct Forest {
  std::shared_ptr<const ForestText> text;
  Header header;
  std::vector<Trace> traces;  // in START_TRACE order
  std::vector<Counter> counters;
  std::vector<Redirect> redirects;
  std::vector<TmpCallback> tmp_callbacks;
  std::map<std::string, std::map<std::uint32_t, SourceLine>> source_code;  // SOURCE_CODE records
  std::uint64_t bytes_read = 0;
  std::uint64_t records = 0;
  std::vector<Diagnostic> warnings;  // e.g. truncation: everything before it is kept
  std::optional<Diagnostic> error;   // malformed input: reading stopped there
  std::set<std::string> merge_point_files;  // every co_filename a merge point names

  // Addresses are named by jitlog::TraceResolver (jitlog/resolver.h).
  const Trace* find(std::uint64_t id) const;

  // Filled by finish(): id -> index into traces.
  std::unordered_map<std::uint64_t, std::size_t> index_by_id;
};

// For each op of `stage` (a stage of `trace`), the merge point its code comes
// from, or nullptr. The asm stage has no merge points of its own: its ops are
// aligned with the opt stage's (same name and descr, in order), and the few
// the backend added or lowered inherit the position of the op before them.
std::vector<const MergePoint*> op_sources(const Trace& trace, const Stage& stage);

// What changed between two stages of a trace (noopt -> opt, opt -> asm): op
// counts by name, so that removed allocations, folded ops and added or merged
// guards show.
struct StageDiff {
  std::size_t ops_before = 0, ops_after = 0;
  std::size_t guards_before = 0, guards_after = 0;
  std::map<std::string, std::size_t> removed;  // name -> how many fewer
  std::map<std::string, std::size_t> added;    // name -> how many more
};
StageDiff diff_stages(const Stage& before, const Stage& after);

// A whole jitlog already in memory (a bundle's JLOG section).
Forest parse_jitlog(std::span<const std::uint8_t> bytes);
// Reads a file, gzip-compressed or not. Throws binio::InputError on I/O failure.
Forest read_jitlog(const std::filesystem::path& path);

// Incremental reader: feed bytes as they arrive (a file, a pipe), then finish.
// How much of each trace a reader keeps. Outline: the traces and their
// stages without ops, machine code or merge points (merge_point_files is still
// filled), for a recording that only needs trace counts and source files
// while the log grows.
enum class Detail { Full, Outline };

class JitlogReader {
 public:
  explicit JitlogReader(Detail detail = Detail::Full);
  ~JitlogReader();

  // Returns false once the reader stopped at malformed input.
  bool feed(std::span<const std::uint8_t> bytes);
  // Traces started so far (for progress while a log is still being written).
  std::size_t traces_so_far() const;
  // Reports an incomplete final record, then resolves links and counters.
  Forest finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace jitprof::jitlog
