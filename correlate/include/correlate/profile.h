// Joins a bundle's sources into one annotated profile.
//
// For each perf sample the correlator builds one stack, root first:
//   Python frames outside JIT code   from vmprof (see below)
//   Python frames inside a trace     from the trace's merge points at the sampled op
//                                    (inlined calls included)
//   the trace itself                 "trace N", with the IR op hit
//   native frames above it           helpers the trace called, libraries, libpypy
//   kernel frames
// JIT addresses are resolved at the sample's own time: machine code is freed
// and reused, so an address belongs to the newest trace that covered it when
// the sample was taken (jitlog arrival times are in the bundle).
//
// Python frames outside JIT code, exact: when the bundle holds the Python
// stack read from PyPy's shadow stack at each sample (`record`/`attach` with
// the BPF sampler), interpreted calls are its CODE entries, named from the
// bundle's code names (PYCN, else vmprof's), "code #UID" when unnamed; each
// JITTED entry is JIT code entered at that level, named by the address in its
// code: the sampled JIT frame for the innermost; each outer level is making a
// call, and the return address of that call (the word below its stack
// pointer) says where; a trace there brings its merge-point
// frames (the functions inlined into it) or, without a jitlog, PyPy's JIT
// codemap read at attach (PYJC) brings the same functions; the CODE entry
// just outside that repeats the level's own function is the same call, kept once.
//
// Fallback, for bundles without Python stacks. vmprof samples carry no
// timestamps and no thread ids on PyPy, so they are matched statistically:
//  - a JIT sample takes the callers that vmprof saw most often below the
//    trace's own function (the outermost Python frame of the trace);
//  - any other sample takes the stack of the vmprof sample nearest in time,
//    vmprof samples being spread evenly over the profile's duration (they are
//    driven by CPU time, so this holds best for CPU-bound single threads).
// Limits: with several busy threads, or a program that sleeps, the Python
// callers of interpreter samples are an estimate; the frames from the jitlog
// (inside traces) and from perf (native, kernel) are exact.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bundle/bundle.h"
#include "bundle/pypy_log.h"
#include "bundle/sections.h"
#include "jitlog/jitlog.h"
#include "jitlog/resolver.h"

namespace jitprof::correlate {

enum class Category : std::uint8_t {
  Python,       // a Python function: interpreted, or the one whose loop a trace compiled
  JitInlined,   // a Python function inlined into a trace
  JitTrace,     // a trace's machine code
  JitHelper,    // PyPy's assembler helpers in JIT memory (not in the jitlog)
  JitAnonymous, // JIT code of a bundle without a jitlog (attach to a process that writes none)
  // libpypy, by the component its function belongs to (symbols::Component),
  // and the runtime's phases (PyPy's log sections) as frames of their own:
  Interpreter,   // PyPy's interpreter and object space; also libpypy code nothing names
  Runtime,       // the rest of RPython's runtime (rlib, rtyper: strings, dicts, I/O)
  Gc,            // a GC function (which collection: the phase says)
  GcMinor,       // phase: a minor collection (gc-minor)
  GcMajor,       // phase: a step of a major collection (gc-collect-step)
  JitTracing,    // phase: tracing a loop or bridge (jit-tracing)
  JitOptimizer,  // the trace optimizer: its functions, and the jit-optimize phase
  JitBackend,    // the assembler: its functions, and the jit-backend phase
  JitMetainterp, // the JIT's tracer, resume and blackhole interpreter (by name)
  GuardFailure,  // a sample in metainterp code outside any tracing phase: a guard failed (resume, blackhole)
  Native,       // other libraries and the executable
  Kernel,
};
const char* category_name(Category category);  // "gc-minor": JSON, the viewer, query's category()
const char* category_label(Category category);  // "GC minor": for people
std::optional<Category> category_named(std::string_view name);
// A runtime phase's own name: "GC minor", "JIT tracing", ...
const char* phase_name(Category phase);
// The phase a section of PyPy's log is (gc-collect-step and -done: GC major).
std::optional<Category> phase_category(bundle::PypyLogName name);

struct Frame {
  Category category;
  std::string name;  // function, "trace 5", symbol, or library when unnamed
  std::string file;  // Python file or library path
  std::int64_t line = 0;  // Python line, or native source line (from DWARF)
  std::optional<std::uint64_t> trace;  // JitTrace, JitInlined
  std::string source_file;  // native frames of binaries with debug information
  std::string component;    // libpypy frames: the part of PyPy ("gc", "jit-backend", ...), from the bundle's names
};

// One frame's name as flat views and formats show it, e.g. "g (inlined.py)",
// "[jit] trace 4 (loop)", "memset [native]", "do_syscall_64 [kernel]".
std::string frame_label(const Frame& frame);
// A runtime phase's frame: stands between the Python frames and the code
// that ran in the phase (category GcMinor ... JitBackend, no file).
bool is_runtime_phase(const Frame& frame);

// Where a sample's time goes, one category per sample: the runtime phase it
// fell in (GC, JIT warm-up: timed by PyPy's log, or told by the libpypy
// functions on its stack), else the category of its innermost frame.
struct Sample {
  std::uint64_t time_ns = 0;
  Category category = Category::Native;
  std::uint32_t pid = 0, tid = 0;
  std::uint32_t stack = 0;  // index into Profile::stacks
  // JIT attribution of the sampled instruction.
  std::optional<std::uint64_t> trace;
  std::optional<std::size_t> op;  // asm-stage op index; none in the trace's entry code
  // The address attributed: the exact IP when the sample hit JIT code, or the
  // last byte of the call instruction when a trace had called a helper.
  std::uint64_t jit_address = 0;
};

struct Stats {
  std::size_t samples = 0;
  std::size_t jit = 0;          // leaf in JIT memory
  std::size_t jit_in_trace = 0;
  std::size_t jit_on_op = 0;    // attributed to an IR op
  // Where the Python frames of samples came from: PyPy's shadow stack read at
  // the sample (exact), the jitlog (JIT samples, with their callers from
  // vmprof), vmprof's stack nearest in time, or nowhere.
  std::size_t python_exact = 0, python_from_jit = 0, python_from_vmprof_time = 0, python_unknown = 0;
  // Samples carrying a shadow-stack read, by bundle::PythonStackStatus.
  std::array<std::size_t, 6> python_stack_status{};
  // Code objects on those stacks that nothing named ("code #UID"), and the samples that show one.
  std::size_t unnamed_code_objects = 0, samples_with_unnamed_code = 0;
};

// A section of PyPy's own log (GC, JIT), on the samples' clock.
struct RuntimePhase {
  bundle::PypyLogName name;
  std::uint64_t start_ns = 0, end_ns = 0;
  std::uint32_t depth = 0;  // 0: not inside another logged section
};

// A thread's names. A PyPy user knows a thread by its Python name (its
// threading.Thread's, which only `record`ed programs tell); the OS name
// (comm) of PyPy's threads is the program's ("pypy3"), but it is all there
// is for native threads and for `attach`.
struct ThreadName {
  std::string python;  // the latest, when the thread was renamed
  std::string os;
  // The Python name, else the OS name; empty when neither is known.
  const std::string& shown() const { return python.empty() ? os : python; }
};
using ThreadNames = std::map<std::pair<std::uint32_t, std::uint32_t>, ThreadName>;  // by (pid, tid)
// The names of each thread from a bundle's TASK records, taken in time
// order: a new thread starts with its creator's OS name and no Python name;
// comm and exec records set the OS name (an exec forgets the old program's
// Python names); Python name records set the Python name.
ThreadNames thread_names(std::vector<bundle::TaskRecord> tasks);
// "worker-1 (tid 1234)", or "tid 1234" for a thread without a name.
std::string thread_label(const ThreadName* name, std::uint32_t tid);

struct Profile {
  std::vector<Frame> frames;
  std::vector<std::vector<std::uint32_t>> stacks;  // frame ids, root first
  std::vector<Sample> samples;
  double seconds_per_sample = 0.001;  // 1 / sampling rate
  // One moment on both clocks (from the manifest): sample times are
  // CLOCK_MONOTONIC, this dates them. Zero when the bundle does not say.
  std::uint64_t clock_monotonic_ns = 0;
  double clock_unix_s = 0;
  Stats stats;
  jitlog::Forest forest;
  // The runtime's phases, in start order, when the bundle holds PyPy's log
  // sections (record); `phases_source` as the manifest says ("pypylog",
  // "user pypylog", "names"; empty for bundles from before phases).
  std::vector<RuntimePhase> phases;
  std::uint32_t phases_pid = 0;
  std::string phases_source, phases_note;
  bool has_perf_samples = false;
  // No perf samples: vmprof's stand in. They know a JIT sample's trace (by
  // its code block) but not the instruction, op or native frames.
  bool samples_from_vmprof = false;

  ThreadNames threads;
  // The thread's names, or null when the bundle names it nowhere.
  const ThreadName* thread(std::uint32_t pid, std::uint32_t tid) const;

  // The innermost Python frame (Python or JitInlined) of a stack, if any.
  std::optional<std::uint32_t> python_leaf(std::uint32_t stack) const;
  // The Python frames of a stack, outermost first, one per function (name
  // and file): what a function's total counts, once per sample even when it recurses.
  std::vector<std::uint32_t> python_functions(std::uint32_t stack) const;
};

Profile correlate(const bundle::Bundle& bundle);

// Correlates a recording while it runs (`jitprof top --pid`), a batch of
// frames at a time, without going over earlier batches again: names
// (symbols, mappings, code names, the JIT codemap) are added as they come (a
// code object shown as "code #ID" gets its name from then on), the jitlog and
// PyPy's log are read again only when they grew, and each batch's samples are
// correlated alone, with the caches of the batches before. The profile's
// frames and stacks accumulate; its samples are the last batch's only; its
// stats count every batch. vmprof's profile is not read (attach writes none).
class LiveCorrelator {
 public:
  LiveCorrelator();
  ~LiveCorrelator();
  LiveCorrelator(const LiveCorrelator&) = delete;
  LiveCorrelator& operator=(const LiveCorrelator&) = delete;

  // `frames`: the frames appended since the last call, in order.
  const Profile& add(const bundle::Bundle& frames);
  // The frames of code objects shown as "code #ID" until the last add named
  // them, with the frames that name them now: (unnamed, named).
  const std::vector<std::pair<Frame, Frame>>& renamed() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The resolver of JIT addresses for a bundle's jitlog, with the times its
// parts arrived (section JLTM).
jitlog::TraceResolver trace_resolver(const bundle::Bundle& bundle, const jitlog::Forest& forest);

}  // namespace jitprof::correlate
