// What `record` and `attach` share: one bundle written while a target runs.
// The session owns the writer and the manifest, samples the target through a
// sampler and its collector, takes PyPy's logs as they arrive (the jitlog
// with its arrival times), flushes frames at least twice a second so that a
// crash loses at most half a second, draws the progress line, and writes the
// final counts. The two commands differ only in how the target is found and
// started, and where its logs come from.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <chrono>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "binio/binio.h"
#include "bundle/bundle.h"
#include "bundle/manifest.h"
#include "bundle/pypy_log.h"
#include "bundle/sections.h"
#include "jitlog/jitlog.h"
#include "pypy/debug_log.h"
#include "record/record.h"
#include "sample_collector.h"
#include "sampler/sampler.h"

namespace jitprof::record {

[[noreturn]] inline void fail(const std::string& message) { throw RecordError(message); }
inline std::string errno_text() { return std::strerror(errno); }

inline std::uint64_t monotonic_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return std::uint64_t(now.tv_sec) * 1'000'000'000u + std::uint64_t(now.tv_nsec);
}

// --rate, as both commands accept it.
void check_rate(unsigned rate_hz);
// "Python 3.9.16 (...) [PyPy 7.3.11 with GCC 12.2.0]", as the interpreter tells it; empty when it does not.
std::string interpreter_version(const std::string& program);

class Session {
 public:
  // Creates the bundle; the manifest starts with jitprof's version, the host,
  // both clocks and state "recording", and `mode`/`command` as given.
  Session(const std::filesystem::path& output, std::optional<std::string> mode, std::vector<std::string> command);
  // A session whose frames go to `live` only (no file), or to `output` too.
  Session(const std::optional<std::filesystem::path>& output, bundle::BundleWriter::FrameSink live,
          std::optional<std::string> mode, std::vector<std::string> command);

  bundle::Manifest& manifest() { return manifest_; }
  void write_manifest();
  bundle::BundleWriter& writer() { return writer_; }

  // Samples the target from now on (and, with `children`, the processes it
  // starts); `python_stacks`: the sampler was asked to read Python stacks.
  // `notice` gets the collector's messages (from the command's thread).
  void start_sampling(std::unique_ptr<sampler::Sampler> sampler, pid_t target, bool children, unsigned rate_hz,
                      bool python_stacks, std::function<void(const std::string&)> notice);
  // Samples nothing: perf was switched off, or refused with `why`.
  void without_sampling(const std::optional<std::string>& refused);
  bool sampling() const { return sampler_ != nullptr; }
  // Whether the sampler reads each sample's Python stack from PyPy's shadow
  // stack (its BPF program runs); else why not, with the fix.
  bool reads_python_stacks() const;
  std::optional<std::string> python_stacks_unavailable() const;
  SampleCollector& collector() { return *collector_; }
  // Stops the sampler, draining what the kernel still holds, and names the
  // kernel addresses seen and the libpypy addresses (waiting for libpypy's names).
  void stop_sampling();

  // Bytes of PyPy's logs as they arrive; the jitlog's arrival time is kept.
  void add_jitlog(std::span<const std::uint8_t> bytes);
  void add_vmprof(std::span<const std::uint8_t> bytes);
  // PyPy's debug log (PYPYLOG): its GC and JIT sections are kept with their
  // raw timestamps; from date_pypy_log() on, every flush also stores a
  // (timestamp counter, CLOCK_MONOTONIC) pair to date them.
  void date_pypy_log();
  void add_pypy_log(std::span<const std::uint8_t> bytes);
  std::uint64_t pypy_log_sections() const { return pypy_log_sections_; }
  // The names record's sitecustomize sends as Python threads start or are
  // renamed, each as a record: pid and native thread id (u32 each), the
  // name's length (u16) and its UTF-8 bytes, little-endian. Kept in TASK as
  // PythonName records, dated when they arrive.
  void add_python_thread_names(std::span<const std::uint8_t> bytes);
  std::uint64_t jitlog_bytes() const { return jitlog_bytes_; }
  std::uint64_t vmprof_bytes() const { return vmprof_bytes_; }

  // From the command's loop: flushes every 500 ms, and hands `progress` a
  // status line (`verb`: "recording", "attached") every 250 ms.
  void tick(const std::function<void(const std::string&)>& progress, const char* verb);
  void flush();

  // Appends the Python sources of the jitlog's traces (SRCS), the perf
  // counts (achieved rate per `target_cpu_s`), the complete manifest; fsyncs.
  void finish(std::optional<double> target_cpu_s);
  std::uint64_t samples() const { return collector_ ? collector_->kept() : 0; }
  std::uint64_t lost() const { return sampler_ ? sampler_->stats().lost : 0; }

 private:
  using Clock = std::chrono::steady_clock;
  void start_manifest(std::optional<std::string> mode, std::vector<std::string> command);
  void note_python_stacks();  // the manifest's python_stacks
  void pass_on_notices(const std::function<void(const std::string&)>& progress);
  bundle::BundleWriter writer_;
  bundle::Manifest manifest_;
  std::unique_ptr<sampler::Sampler> sampler_;
  bool python_stacks_asked_ = false;
  std::function<void(const std::string&)> notice_;
  std::optional<SampleCollector> collector_;
  std::size_t kernel_symbols_named_ = 0;
  // Outlined as it comes (no ops kept): traces for the progress line, their files at the end.
  jitlog::JitlogReader live_jitlog_{jitlog::Detail::Outline};
  std::vector<std::uint8_t> jitlog_pending_, vmprof_pending_;
  bundle::SectionBuffer<bundle::JitlogArrival> jitlog_arrivals_;
  static constexpr std::uint64_t kJitlogArrivalStepNs = 1'000'000;
  // A JIT-heavy program writes MiBs of jitlog a second: written out at this
  // much rather than every half second, it holds jitprof's memory down.
  static constexpr std::size_t kMaxPendingJitlogBytes = 1 << 20;
  std::uint64_t last_jitlog_arrival_ns_ = 0;
  // jit-backend-addr's text names JIT code when there is no jitlog (record --jit ranges).
  pypy::DebugLogReader pypy_log_{{"jit-backend-addr"}};
  bundle::PypyLogBuffer pypy_log_pending_;
  bool dating_pypy_log_ = false;
  binio::RecordBuffer python_thread_names_in_;
  bundle::SectionBuffer<bundle::TaskRecord> python_thread_names_;
  std::uint64_t pypy_log_sections_ = 0;
  std::uint64_t jitlog_bytes_ = 0, vmprof_bytes_ = 0;
  const Clock::time_point started_ = Clock::now();
  Clock::time_point last_flush_ = started_, last_progress_{};
};

}  // namespace jitprof::record
