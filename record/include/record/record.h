// `jitprof record`: runs a program under PyPy with its jitlog and vmprof
// switched on from the first line, and streams both into one bundle while it
// runs, so that the bundle is complete even if the program crashes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bundle/bundle.h"

namespace jitprof::record {

struct Options {
  std::vector<std::string> command;  // program and its arguments
  std::filesystem::path output;
  unsigned rate_hz = 1000;           // vmprof sampling rate
  std::optional<bool> pypy;          // enable PyPy's logs; by default when the program is pypy/pypy3
  // Shows a one-line status while recording (every 250 ms), and "" at the end; none when empty.
  std::function<void(const std::string&)> progress;
  bool perf = true;                  // sample with perf_event_open (else PyPy's vmprof only)
  bool children = false;             // keep samples of child processes too
  // Read each sample's Python stack from PyPy's shadow stack with a BPF
  // program (vmprof then only names code objects); else vmprof samples too.
  bool python_stacks = true;
  // Time the runtime's phases (GC minor/major, JIT tracing/optimizer/backend)
  // with PyPy's own log sections (PYPYLOG); else only libpypy's function names tell them.
  bool phases = true;
  // PyPy's jitlog (every trace's IR, machine code and counters; PyPy's
  // counters slow hot loops down), or only the names and code ranges of
  // loops and bridges from PyPy's log (section jit-backend-addr), which cost
  // nothing in the loops: for long runs in production. Needs `phases`.
  bool jitlog = true;
  std::function<void(const std::string&)> notice;  // one-line messages for the user
};

struct Outcome {
  int exit_code = 0;                // as a shell reports it: the code, or 128 + signal
  std::optional<int> signal;        // the target died by this signal
  std::uint64_t jitlog_bytes = 0;
  std::uint64_t vmprof_bytes = 0;
  std::uint64_t samples = 0;  // perf samples kept
  std::uint64_t lost = 0;     // perf samples the kernel dropped
  double seconds = 0;
};

class RecordError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `jitprof attach`: samples a PyPy process that is already running, without
// stopping it, until the duration ends, Ctrl-C/SIGTERM, or the process exits.
struct AttachOptions {
  int pid = 0;
  std::filesystem::path output;  // empty: no file (the frames go to on_interval only)
  double duration_s = 0;     // 0: until interrupted or the target exits
  unsigned rate_hz = 1000;
  bool python_stacks = true;  // as Options::python_stacks; names come from the process's memory
  std::function<void(const std::string&)> progress;  // as Options::progress
  std::function<void(const std::string&)> notice;
  // A live view (`top --pid`): every `interval_s`, the code objects and JIT
  // code on the Python stacks seen since the last time are named from the
  // target's memory, and `on_interval` gets the frames written since its last
  // call (the first call: the manifest, mappings and threads too), with the
  // seconds since sampling started. Returning false ends the attachment.
  std::function<bool(const bundle::Bundle& frames, double elapsed_s)> on_interval;
  double interval_s = 1;
};

// How JIT code got its names (the order of preference).
enum class JitNames {
  LiveJitlog,      // (a) the process writes a jitlog (JITLOG=path): read as it grows
  AnonymousCode,   // (c) no jitlog: hot JIT code read from memory and disassembled
};

struct AttachOutcome {
  JitNames jit_names = JitNames::AnonymousCode;
  std::string jitlog_path;   // LiveJitlog: the file the process writes
  bool target_exited = false;
  std::uint64_t samples = 0, lost = 0, jitlog_bytes = 0, jit_code_bytes = 0;
  std::size_t threads = 0;   // threads sampled, including those started while attached
  // Code objects on the Python stacks, and how many of them were found in memory and named.
  std::size_t code_objects = 0, code_objects_named = 0;
  double seconds = 0;
};

AttachOutcome attach(const AttachOptions& options);

bool looks_like_pypy(const std::string& program);

// Runs the target to completion and writes the bundle. The target keeps the
// terminal, its stdin/stdout/stderr, argv and exit status.
Outcome record(const Options& options);

}  // namespace jitprof::record
