// The manifest (section MANI): what a recording was and how it went, as one
// JSON document. The recorder appends it when it starts and again when it
// ends; readers take the newest. Every field has one name and one type here;
// decoding refuses a document whose fields have the wrong type (a server must
// not index what it cannot read back) and skips fields it does not know.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bundle/bundle.h"

namespace jitprof::bundle {

// The parts of the manifest, at namespace scope: clang cannot default-construct a
// nested struct with member initializers inside std::optional of its enclosing struct.
struct ManifestHost {
  std::string name, system, release, machine;
};
// One moment on both clocks: sample times are CLOCK_MONOTONIC, vmprof's wall-clock.
struct ManifestClock {
  std::uint64_t monotonic_ns = 0;
  double unix_s = 0;
};
struct ManifestVmprof {
  unsigned rate_hz = 0;
  bool native_frames = false;
  // False: enabled only for its code names, its sampling stopped at once
  // (the Python stacks are read from PyPy's shadow stack instead).
  bool sampling = true;
};
// How the samples' Python stacks were read: "shadow stack" (a BPF program
// on the perf event reads PyPy's shadow stack at each sample) or "vmprof"
// (joined afterwards with PyPy's own samples).
struct ManifestPythonStacks {
  std::string source;
  std::optional<std::string> unavailable;  // "vmprof": why the shadow stack was not read, and the fix
  std::optional<std::uint64_t> processes;  // "shadow stack": PyPy processes whose stacks were read
  // "shadow stack": samples that got their stack, that lost it, records the
  // BPF program dropped (its ring was full); its runs and their nanoseconds
  // when the kernel's BPF statistics were on (kernel.bpf_stats_enabled).
  std::optional<std::uint64_t> samples, lost, dropped, program_runs, program_ns;
};
// Where the runtime's phases (GC, JIT warm-up) come from: "pypylog" (PyPy's
// own log sections, in section PYLG, timed exactly), "user pypylog" (the same,
// read from the file the user's own PYPYLOG named) or "names" (only the
// libpypy function a sample is in tells it, e.g. at attach).
struct ManifestPhases {
  std::string source;
  std::optional<std::string> note;  // why not "pypylog", for the report
  std::optional<std::string> log_path;  // "user pypylog"
  std::optional<std::int64_t> pid;   // the process the log is from
  std::optional<std::uint64_t> sections;  // sections stored
};
struct ManifestPerf {
  enum class State : std::uint8_t { Off, Refused, On };
  State state = State::On;
  std::string refused;  // Refused: the kernel's answer and the fix
  // On: the event, then (when the recording ended) its counts.
  std::string event;
  unsigned rate_hz = 0;
  bool kernel_frames = false;
  std::optional<bool> children;  // record: child processes sampled too
  std::optional<std::uint64_t> samples, samples_all_processes, lost, throttled, kernel_symbols_named, threads;
  std::optional<double> achieved_hz;
};
struct ManifestCrashCapture {
  bool ptrace = false;
  std::optional<std::string> reason;  // why ptrace was refused
};
struct ManifestExit {
  int code = 0;  // as a shell reports it: the code, or 128 + signal
  std::optional<int> signal;
  std::optional<std::string> signal_name;
  std::optional<std::uint32_t> crash_thread;
};
struct ManifestSectionBytes {
  std::optional<std::uint64_t> jitlog_bytes, vmprof_bytes, jit_code_bytes;
};
// attach: how JIT code got its names.
struct ManifestAttach {
  std::string jit_names;    // "live jitlog" or "anonymous code"
  std::string explanation;  // for the report
  std::optional<std::string> jitlog_path;
  std::optional<std::uint64_t> jit_code_bytes;
};

struct Manifest {
  using Host = ManifestHost;
  using Clock = ManifestClock;
  using Vmprof = ManifestVmprof;
  using Perf = ManifestPerf;
  using CrashCapture = ManifestCrashCapture;
  using Exit = ManifestExit;
  using SectionBytes = ManifestSectionBytes;
  using Attach = ManifestAttach;
  using PythonStacks = ManifestPythonStacks;
  using Phases = ManifestPhases;

  std::string jitprof_version;
  std::optional<std::string> mode;  // absent for `record`; "attach"; "vmprof upload"
  std::vector<std::string> command;
  std::optional<std::int64_t> pid;
  std::optional<double> start_time, end_time, duration_s, target_cpu_s;  // unix seconds; seconds
  // What recording cost jitprof itself: CPU seconds (all its threads) and its
  // peak resident memory, rings included.
  std::optional<double> recorder_cpu_s;
  std::optional<std::uint64_t> recorder_peak_rss_kib;
  std::optional<Host> host;
  std::optional<bool> pypy_logs;
  std::optional<std::string> pypy_version;
  std::optional<std::string> vm;  // vmprof upload: the interpreter the client named
  // "ranges": recorded with --jit ranges, JIT code named from PyPy's log
  // (PYLG) without a jitlog; absent: the jitlog, when PyPy wrote one.
  std::optional<std::string> jit;
  std::optional<Clock> clock;
  std::string state;  // "recording", then "complete"
  std::optional<Vmprof> vmprof;
  std::optional<Perf> perf;  // absent: the bundle does not say
  std::optional<CrashCapture> crash_capture;
  std::optional<Exit> exit;
  std::optional<SectionBytes> sections;
  std::optional<bool> target_exited;
  std::optional<Attach> attach;
  std::optional<PythonStacks> python_stacks;
  std::optional<Phases> phases;

  bool complete() const { return state == "complete"; }
};

class ManifestError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Text that is not UTF-8 (an argument, a path): as a bundle stores it, every
// byte kept ({"hex": ...}), or as shown to people and tools (plain strings,
// which JSON output turns into U+FFFD where they are not UTF-8).
enum class ManifestText : std::uint8_t { Stored, Shown };
nlohmann::json to_json(const Manifest& manifest, ManifestText text = ManifestText::Shown);
std::string encode(const Manifest& manifest);
// Throws ManifestError naming the field that is not what it must be.
Manifest manifest_from_json(const nlohmann::json& document);

// The newest manifest frame of a bundle, decoded.
struct ManifestRead {
  std::optional<Manifest> manifest;
  std::string error;  // why there is none: missing, not JSON, or a field of the wrong type
};
ManifestRead read_manifest(const Bundle& bundle);

}  // namespace jitprof::bundle
