#include "record/record.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <sys/resource.h>

#include "bundle/bundle.h"
#include "bundle/samples.h"
#include "crash_watcher.h"
#include "sample_collector.h"
#include "session.h"
#include "sources.h"
#include "jitlog/jitlog.h"
#include "sampler/sampler.h"
#include "unwind/unwinder.h"

namespace jitprof::record {
namespace {

using Clock = std::chrono::steady_clock;

// Imported by PyPy at start-up (PYTHONPATH points at it): switches vmprof on
// and the jitlog before the program's first line, hides itself, then runs the
// user's own sitecustomize if there is one. (PyPy's JITLOG variable would stay
// visible in os.environ, which the program would then see.)
constexpr const char* kSiteCustomize = R"PY(# Written by jitprof record; removed when the recording ends.
import os
import sys


def _jitprof_start():
    env = os.environ
    jitlog_fd = int(env.pop("JITPROF_JITLOG_FD"))
    vmprof_fd = int(env.pop("JITPROF_VMPROF_FD"))
    period = float(env.pop("JITPROF_VMPROF_PERIOD"))
    native = int(env.pop("JITPROF_VMPROF_NATIVE"))
    here = env.pop("JITPROF_SITE_DIR")
    original = env.pop("JITPROF_ORIGINAL_PYTHONPATH", None)
    if original is None:
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = original
    while here in sys.path:
        sys.path.remove(here)
    import _jitlog
    import _vmprof
    import atexit
    _jitlog.enable(jitlog_fd)  # PyPy flushes the trace counters into it at exit
    _vmprof.enable(vmprof_fd, period, 0, 0, native, 0)

    def stop():
        try:
            _vmprof.disable()
        finally:
            os.close(vmprof_fd)
    atexit.register(stop)
    # Run the user's own sitecustomize, if any, and let it stand as the
    # module. importlib is loaded only then: it costs the target start-up time.
    if any(os.path.exists(os.path.join(d or ".", "sitecustomize.py")) or
           os.path.isdir(os.path.join(d or ".", "sitecustomize")) for d in sys.path):
        from importlib.machinery import PathFinder
        from importlib.util import module_from_spec
        spec = PathFinder.find_spec("sitecustomize", sys.path)
        if spec is not None:
            module = module_from_spec(spec)
            sys.modules["sitecustomize"] = module
            spec.loader.exec_module(module)


_jitprof_start()
del _jitprof_start
)PY";

class Pipe {
 public:
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) fail("cannot create a pipe: " + errno_text());
    read_end = fds[0];
    write_end = fds[1];
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  void close_read() {
    if (read_end >= 0) ::close(read_end);
    read_end = -1;
  }
  void close_write() {
    if (write_end >= 0) ::close(write_end);
    write_end = -1;
  }
  int read_end = -1;
  int write_end = -1;
};

// A directory that holds the sitecustomize module for the target's lifetime.
class SiteDir {
 public:
  SiteDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "jitprof-site-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) fail("cannot create a temporary directory: " + errno_text());
    path = pattern;
    std::ofstream(path / "sitecustomize.py") << kSiteCustomize;
  }
  ~SiteDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  SiteDir(const SiteDir&) = delete;
  SiteDir& operator=(const SiteDir&) = delete;
  std::filesystem::path path;
};

// One PyPy log arriving through a pipe, cut into bundle frames.
struct Stream {
  explicit Stream(bundle::SectionType type) : section(type) {}
  bundle::SectionType section;
  Pipe pipe;
  std::vector<std::uint8_t> pending;
  std::uint64_t total = 0;
  bool open = true;
};

// vmprof's native mode needs libunwind.so; without it PyPy prints a warning
// into the target's stderr, so it is only asked for when it will load.
bool libunwind_loads() {
  void* handle = ::dlopen("libunwind.so", RTLD_LAZY | RTLD_LOCAL);
  if (handle == nullptr) return false;
  ::dlclose(handle);
  return true;
}

std::string signal_name(int signal) {
  const char* abbrev = ::sigabbrev_np(signal);
  return abbrev ? std::string("SIG") + abbrev : fmt::format("signal {}", signal);
}

volatile sig_atomic_t forwarded_pid = 0;

void forward_signal(int signal) {
  if (forwarded_pid > 0) ::kill(forwarded_pid, signal);
}

// While the target runs, Ctrl-C and Ctrl-\ reach it directly through the
// terminal; jitprof ignores them so that it can finish the bundle. SIGTERM and
// SIGHUP sent to jitprof are passed on.
class SignalGuard {
 public:
  explicit SignalGuard(pid_t child) {
    forwarded_pid = child;
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGINT, &ignore, &old_int_);
    ::sigaction(SIGQUIT, &ignore, &old_quit_);
    struct sigaction forward {};
    forward.sa_handler = forward_signal;
    forward.sa_flags = SA_RESTART;
    ::sigaction(SIGTERM, &forward, &old_term_);
    ::sigaction(SIGHUP, &forward, &old_hup_);
  }
  ~SignalGuard() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGQUIT, &old_quit_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
    ::sigaction(SIGHUP, &old_hup_, nullptr);
    forwarded_pid = 0;
  }
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

 private:
  struct sigaction old_int_ {}, old_quit_ {}, old_term_ {}, old_hup_ {};
};

class Recorder {
 public:
  explicit Recorder(const Options& options) : options_(options), writer_(options.output) {}

  Outcome run() {
    if (options_.command.empty()) fail("no command to record");
    const bool pypy = options_.pypy.value_or(looks_like_pypy(options_.command.front()));
    start_unix_ = unix_now();
    const std::uint64_t start_monotonic = monotonic_ns();
    manifest_ = {{"jitprof_version", JITPROF_VERSION},
                 {"command", options_.command},
                 {"start_time", start_unix_},
                 {"host", host_json()},
                 {"pypy_logs", pypy},
                 // Sample times are CLOCK_MONOTONIC; vmprof's are wall-clock.
                 {"clock", {{"monotonic_ns", start_monotonic}, {"unix_s", start_unix_}}},
                 {"state", "recording"}};
    std::optional<SiteDir> site;
    if (pypy) {
      native_ = libunwind_loads();
      manifest_["vmprof"] = {{"rate_hz", options_.rate_hz}, {"native_frames", native_}};
      manifest_["pypy_version"] = interpreter_version(options_.command.front());
      site.emplace();
    }
    writer_.append(bundle::sections::kManifest, manifest_.dump());

    Pipe exec_errors;  // carries errno from a failed exec; closes on a successful one
    Pipe go;           // the child execs once the sampler follows it
    const auto started = Clock::now();
    const pid_t child = ::fork();
    if (child < 0) fail("cannot fork: " + errno_text());
    if (child == 0) {
      char byte = 0;
      if (::read(go.read_end, &byte, 1) != 1) ::_exit(127);  // jitprof died before the start
      exec_target(pypy, site ? site->path : std::filesystem::path{}, exec_errors.write_end);
    }
    exec_errors.close_write();
    go.close_read();
    for (Stream& stream : streams_) stream.pipe.close_write();
    watcher_.emplace(child);
    target_pid_ = child;
    manifest_["pid"] = child;
    manifest_["crash_capture"] = watcher_->tracing() ? nlohmann::json{{"ptrace", true}}
                                                     : nlohmann::json{{"ptrace", false}, {"reason", watcher_->trace_error()}};
    start_sampler(child, pypy);
    const char byte = 1;
    if (::write(go.write_end, &byte, 1) != 1) fail("cannot start the target: " + errno_text());
    go.close_write();
    if (int child_errno = 0; ::read(exec_errors.read_end, &child_errno, sizeof child_errno) == sizeof child_errno) {
      if (sampler_) sampler_->stop();
      watcher_->wait();
      fail(fmt::format("cannot run {}: {}", options_.command.front(), std::strerror(child_errno)));
    }
    if (!pypy)
      for (Stream& stream : streams_) stream.open = false;

    int status = 0;
    {
      SignalGuard guard(child);
      status = pump(started);
    }
    Outcome outcome;
    outcome.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (WIFSIGNALED(status)) {
      outcome.signal = WTERMSIG(status);
      outcome.exit_code = 128 + *outcome.signal;
    } else {
      outcome.exit_code = WEXITSTATUS(status);
    }
    outcome.jitlog_bytes = streams_[0].total;
    outcome.vmprof_bytes = streams_[1].total;
    finish(outcome);
    return outcome;
  }

 private:
  void start_sampler(pid_t child, bool pypy) {
    if (!options_.perf) {
      manifest_["perf"] = nullptr;
      return;
    }
    sampler::Settings settings;
    settings.rate_hz = options_.rate_hz;
    try {
      sampler_ = sampler::Sampler::for_process_at_exec(child, settings);
    } catch (const sampler::SamplerError& error) {
      if (options_.notice)
        options_.notice(error.what() + std::string(pypy ? "; recording with PyPy's own sampling (vmprof) only"
                                                        : "; no samples will be recorded"));
      manifest_["perf"] = {{"refused", error.what()}};
      return;
    }
    collector_.emplace(child, options_.children);
    sampler_->start(*collector_);
    manifest_["perf"] = {{"event", "cpu-clock"},
                         {"rate_hz", options_.rate_hz},
                         {"kernel_frames", sampler_->kernel_frames()},
                         {"children", options_.children}};
  }

  [[noreturn]] void exec_target(bool pypy, const std::filesystem::path& site_dir, int error_fd) {
    if (pypy) {
      const int jitlog_fd = streams_[0].pipe.write_end;
      const int vmprof_fd = streams_[1].pipe.write_end;
      // Only the two write ends cross exec.
      ::fcntl(jitlog_fd, F_SETFD, 0);
      ::fcntl(vmprof_fd, F_SETFD, 0);
      ::setenv("JITPROF_JITLOG_FD", std::to_string(jitlog_fd).c_str(), 1);
      ::setenv("JITPROF_VMPROF_FD", std::to_string(vmprof_fd).c_str(), 1);
      ::setenv("JITPROF_VMPROF_PERIOD", fmt::format("{:.9f}", 1.0 / options_.rate_hz).c_str(), 1);
      ::setenv("JITPROF_VMPROF_NATIVE", native_ ? "1" : "0", 1);
      ::setenv("JITPROF_SITE_DIR", site_dir.c_str(), 1);
      std::string python_path = site_dir.string();
      if (const char* original = std::getenv("PYTHONPATH")) {
        ::setenv("JITPROF_ORIGINAL_PYTHONPATH", original, 1);
        python_path += ":" + std::string(original);
      }
      ::setenv("PYTHONPATH", python_path.c_str(), 1);
    }
    std::vector<char*> argv;
    for (const auto& word : options_.command) argv.push_back(const_cast<char*>(word.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    const int saved = errno;
    [[maybe_unused]] auto ignored = ::write(error_fd, &saved, sizeof saved);
    ::_exit(127);
  }

  // Moves log bytes into the bundle until the target exited and its pipes
  // closed. Returns the target's wait status.
  int pump(Clock::time_point started) {
    std::vector<std::uint8_t> chunk(1 << 20);
    std::optional<int> status;
    std::optional<Clock::time_point> exited_at;
    auto last_flush = Clock::now();
    while (true) {
      std::array<pollfd, 2> fds{};
      nfds_t count = 0;
      std::array<Stream*, 2> polled{};
      for (Stream& stream : streams_) {
        if (!stream.open) continue;
        fds[count] = {stream.pipe.read_end, POLLIN, 0};
        polled[count++] = &stream;
      }
      if (count == 0 && status) break;
      // A descendant may keep a pipe open after the target exited: give it a
      // moment, then stop waiting.
      if (exited_at && Clock::now() - *exited_at > std::chrono::seconds(2)) break;
      const int ready = ::poll(fds.data(), count, 200);
      if (ready < 0 && errno != EINTR) fail("poll failed: " + errno_text());
      for (nfds_t i = 0; ready > 0 && i < count; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t got = ::read(fds[i].fd, chunk.data(), chunk.size());
        if (got > 0) {
          // JIT code ranges are reused after frees: when each part of the
          // jitlog arrived tells which trace owned an address at a sample's time.
          if (polled[i] == &streams_[0])
            jitlog_clock_ += nlohmann::json{{"offset", polled[i]->total}, {"t", monotonic_ns()}}.dump() + "\n";
          polled[i]->pending.insert(polled[i]->pending.end(), chunk.begin(), chunk.begin() + got);
          polled[i]->total += static_cast<std::uint64_t>(got);
          // Parsed as it comes: the status line counts traces, and the end
          // of the recording knows which source files they came from.
          if (polled[i] == &streams_[0]) live_jitlog_.feed(std::span(chunk).first(static_cast<std::size_t>(got)));
        } else if (got == 0 || errno != EINTR) {
          polled[i]->open = false;
        }
      }
      if (!status && watcher_->finished()) {
        status = watcher_->status();
        exited_at = Clock::now();
      }
      // Frames go out at least twice a second, so a crash of jitprof itself
      // loses at most half a second of logs.
      if (Clock::now() - last_flush > std::chrono::milliseconds(500)) {
        flush();
        last_flush = Clock::now();
      }
      if (options_.progress) show_progress(started);
    }
    watcher_->wait();
    status = watcher_->status();
    usage_ = watcher_->usage();
    if (sampler_) {
      sampler_->stop();  // drains what the kernel still holds
      kernel_symbols_named_ = collector_->name_kernel_addresses();
    }
    flush();
    if (options_.progress) std::cerr << "\r\033[K";
    return *status;
  }

  void flush() {
    if (collector_) collector_->flush_into(writer_);
    if (!jitlog_clock_.empty()) writer_.append(bundle::sections::kJitlogClock, jitlog_clock_);
    jitlog_clock_.clear();
    for (Stream& stream : streams_) {
      if (stream.pending.empty()) continue;
      writer_.append(stream.section, stream.pending);
      stream.pending.clear();
    }
  }

  void show_progress(Clock::time_point started) {
    const auto now = Clock::now();
    if (now - last_progress_ < std::chrono::milliseconds(250)) return;
    last_progress_ = now;
    const double elapsed = std::chrono::duration<double>(now - started).count();
    const std::uint64_t samples = collector_ ? collector_->kept() : 0;
    std::cerr << fmt::format("\r\033[Kjitprof: recording {:.1f} s, {} samples ({:.0f}/s), {} traces compiled, "
                             "jitlog {} KiB, vmprof {} KiB",
                             elapsed, samples, elapsed > 0 ? double(samples) / elapsed : 0.0,
                             live_jitlog_.traces_so_far(), streams_[0].total / 1024, streams_[1].total / 1024)
              << std::flush;
  }

  // The faulting thread at the moment of the fault: registers, its stack
  // unwound like a sample, and names for the native frames.
  void write_crash(const Fault& fault) {
    nlohmann::json crash = {{"signal", fault.signal},
                            {"signal_name", signal_name(fault.signal)},
                            {"code", fault.code},
                            {"fault_address", fault.fault_address},
                            {"tid", fault.tid}};
    for (std::size_t i = 0; i < fault.registers.size(); ++i) crash["registers"][arch::kRegisterNames[i]] = fault.registers[i];
    crash["frames"] = nlohmann::json::array();
    const auto frames = collector_ ? collector_->unwind_fault(static_cast<std::uint32_t>(target_pid_), fault)
                                   : std::vector<nlohmann::json>{{{"address", fault.registers[arch::kRip]}}};
    for (const auto& frame : frames) crash["frames"].push_back(frame);
    writer_.append(bundle::sections::kCrash, crash.dump());
  }

  void finish(Outcome& outcome) {
    manifest_["state"] = "complete";
    manifest_["end_time"] = unix_now();
    manifest_["duration_s"] = outcome.seconds;
    manifest_["exit"] = {{"code", outcome.exit_code}};
    if (outcome.signal) {
      manifest_["exit"]["signal"] = *outcome.signal;
      manifest_["exit"]["signal_name"] = signal_name(*outcome.signal);
    }
    if (auto fault = watcher_->fatal_fault()) {
      write_crash(*fault);
      manifest_["exit"]["crash_thread"] = fault->tid;
    }
    manifest_["sections"] = {{"jitlog_bytes", outcome.jitlog_bytes}, {"vmprof_bytes", outcome.vmprof_bytes}};
    if (const std::string sources = source_files(live_jitlog_.finish()); !sources.empty())
      writer_.append(bundle::sections::kSources, sources);
    const double cpu_seconds = double(usage_.ru_utime.tv_sec) + double(usage_.ru_utime.tv_usec) / 1e6 +
                               double(usage_.ru_stime.tv_sec) + double(usage_.ru_stime.tv_usec) / 1e6;
    manifest_["target_cpu_s"] = cpu_seconds;
    if (sampler_) {
      const sampler::Stats stats = sampler_->stats();
      outcome.samples = collector_->kept();
      outcome.lost = stats.lost;
      manifest_["perf"]["samples"] = collector_->kept();
      manifest_["perf"]["samples_all_processes"] = stats.samples;
      manifest_["perf"]["lost"] = stats.lost;
      manifest_["perf"]["throttled"] = stats.throttled;
      manifest_["perf"]["kernel_symbols_named"] = kernel_symbols_named_;
      manifest_["perf"]["achieved_hz"] = cpu_seconds > 0 ? double(collector_->kept()) / cpu_seconds : 0.0;
    }
    writer_.append(bundle::sections::kManifest, manifest_.dump());
    writer_.sync();
  }

  const Options& options_;
  bundle::BundleWriter writer_;
  std::unique_ptr<sampler::Sampler> sampler_;
  std::optional<SampleCollector> collector_;
  std::optional<CrashWatcher> watcher_;
  pid_t target_pid_ = 0;
  std::size_t kernel_symbols_named_ = 0;
  jitlog::JitlogReader live_jitlog_;
  std::string jitlog_clock_;  // JSON lines: stream offset, arrival time
  rusage usage_{};
  std::array<Stream, 2> streams_{Stream{bundle::sections::kJitlog}, Stream{bundle::sections::kVmprof}};
  nlohmann::json manifest_;
  double start_unix_ = 0;
  bool native_ = false;
  Clock::time_point last_progress_{};
};

}  // namespace

bool looks_like_pypy(const std::string& program) {
  const std::string name = std::filesystem::path(program).filename().string();
  return name.starts_with("pypy");
}

Outcome record(const Options& options) {
  if (options.rate_hz < 2 || options.rate_hz > 1'000'000) fail("--rate must be between 2 and 1000000 Hz");
  Recorder recorder(options);
  return recorder.run();
}

}  // namespace jitprof::record
