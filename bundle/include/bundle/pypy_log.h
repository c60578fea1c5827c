// PYLG: the sections of PyPy's own debug log (PYPYLOG) that say when the
// runtime collected garbage or compiled, with their raw timestamps (PyPy's
// log writes the CPU's timestamp counter), and pairs of (timestamp counter,
// CLOCK_MONOTONIC) that jitprof read together to date them on the samples'
// clock; and, for `record --jit ranges`, the machine code PyPy's log named.
// Binary: each record is a tag byte and varints, with absolute values,
// so frames concatenate and a bundle cut after any frame still reads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bundle/bundle.h"

namespace jitprof::bundle {

namespace sections {
inline constexpr SectionType kPypyLog = SectionType::from("PYLG");
}

// The sections jitprof asks PyPy to log; the prefix each is logged under.
enum class PypyLogName : std::uint8_t {
  GcMinor = 1,        // gc-minor: a minor collection (nursery)
  GcCollectStep,      // gc-collect-step: one step of an incremental major collection
  GcCollectDone,      // gc-collect-done: a major collection ended (inside its last step)
  JitTracing,         // jit-tracing: tracing a loop or bridge (holds the two below)
  JitOptimize,        // jit-optimize: the trace optimizer
  JitBackend,         // jit-backend: assembling machine code
};
inline constexpr PypyLogName kLastPypyLogName = PypyLogName::JitBackend;
const char* pypy_log_name(PypyLogName name);  // "gc-minor", ...
std::optional<PypyLogName> pypy_log_name_of(std::string_view text);
// The PYPYLOG prefixes that select exactly these sections (jit-backend also
// selects jit-backend-dump and the like, which a reader skips).
std::string_view pypy_log_prefixes();

struct PypyLogSection {
  PypyLogName name = PypyLogName::GcMinor;
  std::uint64_t start_tsc = 0, end_tsc = 0;
  friend bool operator==(const PypyLogSection&, const PypyLogSection&) = default;
};

// Machine code PyPy's log named (section jit-backend-addr): a loop, "Loop N
// (function;file:first-current~#index OPCODE)", or a bridge out of a guard.
struct PypyLogJitCode {
  enum class Kind : std::uint8_t { Loop = 1, Bridge = 2 };
  Kind kind = Kind::Loop;
  std::uint64_t number = 0;  // the loop's number, or the bridge's guard descr address
  std::uint64_t start = 0, end = 0;  // all its code, from its gc table to its end
  std::uint64_t logged_tsc = 0;      // when PyPy logged it (the section's end)
  std::string name;                  // loops: "function;file:first-current~#index OPCODE"
  friend bool operator==(const PypyLogJitCode&, const PypyLogJitCode&) = default;
};

// One moment on both clocks.
struct TimestampPair {
  std::uint64_t tsc = 0, monotonic_ns = 0;
  friend bool operator==(const TimestampPair&, const TimestampPair&) = default;
};

// Records collected between two frames.
class PypyLogBuffer {
 public:
  void add(const PypyLogSection& section);
  void add(const TimestampPair& pair);
  void add(const PypyLogJitCode& code);
  bool empty() const { return pending_.empty(); }
  void flush_into(BundleWriter& writer);

 private:
  std::vector<std::uint8_t> pending_;
};

struct PypyLog {
  std::vector<PypyLogSection> sections;  // in the order they closed
  std::vector<TimestampPair> clock;
  std::vector<PypyLogJitCode> jit_code;  // in the order PyPy logged it
  std::optional<binio::Diagnostic> error;  // a malformed record: reading stopped there
};
PypyLog decode_pypy_log(std::span<const std::uint8_t> stream);
PypyLog read_pypy_log(const Bundle& bundle);

}  // namespace jitprof::bundle
