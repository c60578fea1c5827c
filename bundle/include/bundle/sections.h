// The contents of a bundle's sections, typed, each with its one codec: the
// only place that knows how a section's bytes look. Writers build a frame with
// SectionBuffer (or encode() for document sections); readers call read_*().
//
// Line sections (MAPS, TASK, SYMS, JCOD, SRCS, PYCN, PYJC) hold one JSON object a
// line; a reader skips lines that are not JSON objects and takes absent or
// mistyped fields as their defaults, so a bundle cut anywhere still reads.
// The jitlog's arrival times (JLTM) are binary, as below; the samples (SMPL)
// have their own dense codec in bundle/samples.h, the manifest (MANI) in
// bundle/manifest.h; JLOG and VMPF hold PyPy's own bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bundle/bundle.h"

namespace jitprof::bundle {

// MAPS: an executable mapping as perf reported it (or /proc, at attach).
struct MappingRecord {
  static constexpr SectionType kSection = sections::kMaps;
  std::uint64_t time_ns = 0;
  std::uint32_t pid = 0, tid = 0;
  std::uint64_t start = 0, length = 0, file_offset = 0;
  std::uint32_t prot = 0, flags = 0, major = 0, minor = 0;
  std::uint64_t inode = 0;
  std::string path;  // "//anon", "[vdso]", "/usr/lib/..."
  friend bool operator==(const MappingRecord&, const MappingRecord&) = default;
};

// TASK: a process or thread started, ended, renamed itself or exec'ed (as
// perf or /proc tell), or a Python thread said its name (PythonName: the
// name of its threading.Thread, when it started or was renamed; `record`
// only). Readers skip kinds they do not know, so older jitprofs read newer
// bundles.
struct TaskRecord {
  static constexpr SectionType kSection = sections::kTasks;
  enum class Kind : std::uint8_t { Fork, Exit, Comm, Exec, PythonName };
  Kind kind = Kind::Comm;
  std::uint64_t time_ns = 0;
  std::uint32_t pid = 0, tid = 0, parent_pid = 0, parent_tid = 0;
  std::string comm;  // the thread's name: the OS name (Comm, Exec) or the Python name (PythonName)
  friend bool operator==(const TaskRecord&, const TaskRecord&) = default;
};

// JLTM: when the jitlog stream had reached `offset` bytes (CLOCK_MONOTONIC).
struct JitlogArrival {
  static constexpr SectionType kSection = sections::kJitlogClock;
  std::uint64_t offset = 0;
  std::uint64_t time_ns = 0;
  friend bool operator==(const JitlogArrival&, const JitlogArrival&) = default;
};

// A function and line in a native binary's source (DWARF).
struct SourceLocation {
  std::string function, file;
  std::int64_t line = 0;
  friend bool operator==(const SourceLocation&, const SourceLocation&) = default;
};

// SYMS: a sampled native address, named once (pid 0: a kernel address).
struct SymbolRecord {
  static constexpr SectionType kSection = sections::kSymbols;
  std::uint32_t pid = 0;
  std::uint64_t address = 0;
  std::string path, build_id, name;  // name empty when the binary does not say
  std::uint64_t offset = 0;          // from the symbol, or from the file's load address
  std::vector<SourceLocation> source;  // the function and what is inlined into it, outermost first
  std::string component;  // libpypy: the part of PyPy ("gc", "jit-backend", ...); empty elsewhere and in older bundles
  friend bool operator==(const SymbolRecord&, const SymbolRecord&) = default;
};

// JCOD: machine code read from a running process's JIT memory (attach without a jitlog).
struct JitCodeRecord {
  static constexpr SectionType kSection = sections::kJitCode;
  std::uint32_t pid = 0;
  std::uint64_t address = 0;
  std::vector<std::uint8_t> bytes;
  friend bool operator==(const JitCodeRecord&, const JitCodeRecord&) = default;
};

// SRCS: a Python file the jitlog's traces come from.
struct SourceFileRecord {
  static constexpr SectionType kSection = sections::kSources;
  std::string file, text;
  friend bool operator==(const SourceFileRecord&, const SourceFileRecord&) = default;
};

// PYCN: a Python code object of process `pid`, by its vmprof unique id (the
// ids on the samples' Python stacks).
struct CodeNameRecord {
  static constexpr SectionType kSection = sections::kCodeNames;
  std::uint32_t pid = 0;
  std::uint64_t unique_id = 0;
  std::string name, file;
  std::int64_t line = 0;  // the function's first line
  friend bool operator==(const CodeNameRecord&, const CodeNameRecord&) = default;
};

// PYJC: what PyPy's JIT codemap says of a JIT address of process `pid`: the
// unique ids of the code objects there, outermost first (the function whose
// loop the code is, then each function inlined into it).
struct JitCodemapRecord {
  static constexpr SectionType kSection = sections::kJitCodemap;
  std::uint32_t pid = 0;
  std::uint64_t address = 0;
  std::vector<std::uint64_t> unique_ids;
  friend bool operator==(const JitCodemapRecord&, const JitCodemapRecord&) = default;
};

// CRSH: the fault the target died of, and the faulting thread's stack.
struct CrashFrame {
  std::uint64_t address = 0;  // the faulting IP, then return addresses
  bool jit = false;           // in JIT memory
  std::optional<SymbolRecord> symbol;  // native frames (path, name, offset, source)
  friend bool operator==(const CrashFrame&, const CrashFrame&) = default;
};
struct CrashRecord {
  static constexpr SectionType kSection = sections::kCrash;
  int signal = 0;
  std::string signal_name;
  int code = 0;  // siginfo si_code
  std::uint64_t fault_address = 0;
  std::uint32_t tid = 0;
  std::vector<std::pair<std::string, std::uint64_t>> registers;  // ("rip", value), in the writer's order
  std::vector<CrashFrame> frames;
  friend bool operator==(const CrashRecord&, const CrashRecord&) = default;
};

// One line of a line section (appended to `frame`, newline included).
void encode(const MappingRecord& record, std::string& frame);
void encode(const TaskRecord& record, std::string& frame);
void encode(const SymbolRecord& record, std::string& frame);
void encode(const JitCodeRecord& record, std::string& frame);
void encode(const SourceFileRecord& record, std::string& frame);
void encode(const CodeNameRecord& record, std::string& frame);
void encode(const JitCodemapRecord& record, std::string& frame);
// The crash document.
std::string encode(const CrashRecord& record);

std::vector<MappingRecord> read_mappings(const Bundle& bundle);
std::vector<TaskRecord> read_tasks(const Bundle& bundle);
// Frames of format 1 (JSON lines) read too.
std::vector<JitlogArrival> read_jitlog_arrivals(const Bundle& bundle);
std::vector<SymbolRecord> read_symbols(const Bundle& bundle);
std::vector<JitCodeRecord> read_jit_code(const Bundle& bundle);
std::vector<SourceFileRecord> read_source_files(const Bundle& bundle);
std::vector<CodeNameRecord> read_code_names(const Bundle& bundle);
std::vector<JitCodemapRecord> read_jit_codemap(const Bundle& bundle);
// Nullopt when the bundle has no crash record or it is not a JSON object.
std::optional<CrashRecord> read_crash(const Bundle& bundle);

const char* task_kind_name(TaskRecord::Kind kind);  // "fork", "exit", "comm", "exec", "python-name"

// Records of one line section collected between two frames.
template <class Record>
class SectionBuffer {
 public:
  void add(const Record& record) { encode(record, pending_); }
  bool empty() const { return pending_.empty(); }
  // Appends what was added since the last call as one frame; nothing when empty.
  void flush_into(BundleWriter& writer) {
    if (pending_.empty()) return;
    writer.append(Record::kSection, pending_);
    pending_.clear();
  }

 private:
  std::string pending_;
};

// A JLTM frame: a format byte, then for each arrival two varints, its offset
// and time less the arrival's before (the first's less zero). The jitlog is
// read a pipe buffer at a time, so there are many arrivals, close together.
std::vector<std::uint8_t> encode_jitlog_arrivals(std::span<const JitlogArrival> arrivals);
// One JLTM frame, binary or JSON lines (format 1); a frame cut short gives the
// arrivals before the cut, a frame of an unknown format none.
std::vector<JitlogArrival> decode_jitlog_arrivals(std::span<const std::uint8_t> frame);

template <>
class SectionBuffer<JitlogArrival> {
 public:
  void add(const JitlogArrival& arrival) { pending_.push_back(arrival); }
  bool empty() const { return pending_.empty(); }
  void flush_into(BundleWriter& writer) {
    if (pending_.empty()) return;
    writer.append(JitlogArrival::kSection, encode_jitlog_arrivals(pending_));
    pending_.clear();
  }

 private:
  std::vector<JitlogArrival> pending_;
};

}  // namespace jitprof::bundle
