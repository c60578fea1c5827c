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

namespace jitprof::record {

struct Options {
  std::vector<std::string> command;  // program and its arguments
  std::filesystem::path output;
  unsigned rate_hz = 1000;           // vmprof sampling rate
  std::optional<bool> pypy;          // enable PyPy's logs; by default when the program is pypy/pypy3
  bool progress = false;             // a one-line status on stderr while recording
  bool perf = true;                  // sample with perf_event_open (else PyPy's vmprof only)
  bool children = false;             // keep samples of child processes too
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

bool looks_like_pypy(const std::string& program);

// Runs the target to completion and writes the bundle. The target keeps the
// terminal, its stdin/stdout/stderr, argv and exit status.
Outcome record(const Options& options);

}  // namespace jitprof::record
