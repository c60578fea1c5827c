#include "record/record.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>

#include "arch/x86_64.h"
#include "bundle/manifest.h"
#include "bundle/pypy_log.h"
#include "bundle/sections.h"
#include "crash_watcher.h"
#include "sampler/sampler.h"
#include "session.h"

namespace jitprof::record {
namespace {

using Clock = std::chrono::steady_clock;

// Imported by PyPy at start-up (PYTHONPATH points at it): switches vmprof on
// (for code names only when jitprof reads the Python stacks at each sample)
// and the jitlog before the program's first line, hides itself, then runs the
// user's own sitecustomize if there is one. (PyPy's JITLOG variable would stay
// visible in os.environ, which the program would then see.)
constexpr const char* kSiteCustomize = R"PY(# Written by jitprof record; removed when the recording ends.
import os
import sys


def _jitprof_start():
    env = os.environ
    jitlog_fd = env.pop("JITPROF_JITLOG_FD", None)  # none with record --jit ranges
    jitlog_fd = None if jitlog_fd is None else int(jitlog_fd)
    vmprof_fd = int(env.pop("JITPROF_VMPROF_FD"))
    period = float(env.pop("JITPROF_VMPROF_PERIOD"))
    # Off when jitprof reads the Python stacks itself: vmprof then only names code objects.
    sampling = env.pop("JITPROF_VMPROF_SAMPLING") == "1"
    native = int(env.pop("JITPROF_VMPROF_NATIVE"))
    threads_fd = int(env.pop("JITPROF_THREADS_FD"))
    # PyPy opened its debug log (PYPYLOG, GC and JIT sections) at start-up;
    # the programs this one starts must not write into jitprof's pipe.
    pypylog_fd = env.pop("JITPROF_PYPYLOG_FD", None)
    if pypylog_fd is not None:
        env.pop("PYPYLOG", None)
        os.set_inheritable(int(pypylog_fd), False)
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
    def jitlog_on():
        if jitlog_fd is not None:
            _jitlog.enable(jitlog_fd)  # PyPy flushes the trace counters into it at exit
    jitlog_on()
    def vmprof_on():
        _vmprof.enable(vmprof_fd, period, 0, 0, native, 0)
        if not sampling:
            _vmprof.stop_sampling()
    vmprof_on()
    # A program this one execs gets none of the pipes.
    if jitlog_fd is not None:
        os.set_inheritable(jitlog_fd, False)
    os.set_inheritable(vmprof_fd, False)
    os.set_inheritable(threads_fd, False)
    _jitprof_tell_thread_names(threads_fd)

    def stop():
        try:
            _vmprof.disable()
        finally:
            os.close(vmprof_fd)
    atexit.register(stop)

    # vmprof's SIGPROF timer outlives execve, and its signal would kill the
    # new program: the logs stop before an exec, and start again if it fails.
    def logs_off_around(exec_function):
        def exec_without_logs(*args, **kwargs):
            _vmprof.disable()
            if jitlog_fd is not None:
                _jitlog.disable()
            try:
                return exec_function(*args, **kwargs)
            except BaseException:
                jitlog_on()
                vmprof_on()
                raise
        return exec_without_logs
    # os.execl, execlp, execvp and execvpe all end in these two.
    os.execv = logs_off_around(os.execv)
    os.execve = logs_off_around(os.execve)
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


# Python threads are known by their threading.Thread names, which the OS
# never sees: each thread's name goes to jitprof with its native id when it
# starts and when it is renamed. threading is not imported for this (the
# program may never import it, or patch it first): its start_new_thread is
# wrapped, and threading's Thread is hooked when it starts its first thread.
def _jitprof_tell_thread_names(fd):
    import _thread
    import atexit

    def tell(native_id, name):
        raw = str(name).encode("utf-8", "backslashreplace")[:1024]
        try:  # one write: names told by several threads at once do not interleave
            os.write(fd, os.getpid().to_bytes(4, "little") + native_id.to_bytes(4, "little") +
                     len(raw).to_bytes(2, "little") + raw)
        except OSError:  # jitprof is gone: the program runs on
            pass

    hooked = []

    def hook_threading():
        threading = sys.modules.get("threading")
        if hooked or threading is None:
            return
        hooked.append(True)
        Thread = threading.Thread
        set_native_id = Thread._set_native_id
        name_property = Thread.name

        def set_native_id_and_tell(self):  # on the new thread, before its target runs
            set_native_id(self)
            tell(self._native_id, self._name)

        def set_name_and_tell(self, name):
            name_property.fset(self, name)
            if self._native_id is not None:
                tell(self._native_id, self._name)
        Thread._set_native_id = set_native_id_and_tell
        Thread.name = property(name_property.fget, set_name_and_tell, name_property.fdel, name_property.__doc__)
        for thread in threading.enumerate():  # the main thread may have been renamed already
            if thread._native_id is not None:
                tell(thread._native_id, thread._name)

    start_new_thread = _thread.start_new_thread

    def start_new_thread_hooking(function, args, *kwargs):
        hook_threading()
        return start_new_thread(function, args, *kwargs)
    _thread.start_new_thread = start_new_thread_hooking

    # The name threading gives the main thread; a program that renames it
    # and starts no thread is told at its exit.
    tell(_thread.get_native_id(), "MainThread")

    def tell_main_thread():
        threading = sys.modules.get("threading")
        if threading is not None:
            main = threading.main_thread()
            tell(main._native_id, main._name)
    atexit.register(tell_main_thread)


_jitprof_start()
del _jitprof_start, _jitprof_tell_thread_names
)PY";

class Pipe {
 public:
  static constexpr int kPreferredPipeBytes = 16 << 20, kFallbackPipeBytes = 1 << 20;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) fail("cannot create a pipe: " + errno_text());
    read_end = fds[0];
    write_end = fds[1];
    // PyPy blocks when a log's pipe is full: a large pipe lets it write
    // through bursts (compiling hundreds of traces) while jitprof catches up.
    // Root may exceed the system's pipe-max-size; others get what it allows.
    for (int size : {kPreferredPipeBytes, kFallbackPipeBytes})
      if (::fcntl(write_end, F_SETPIPE_SZ, size) >= 0) break;
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

// One of PyPy's logs arriving through a pipe.
struct LogPipe {
  Pipe pipe;
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

// The byte that lets the child exec: whether vmprof samples, or only names code objects.
constexpr char kGoVmprofSampling = 1, kGoVmprofNamesOnly = 2;

class Recorder {
 public:
  explicit Recorder(const Options& options)
      : options_(options), session_(options.output, std::nullopt, options.command) {}

  Outcome run() {
    const bool pypy = options_.pypy.value_or(looks_like_pypy(options_.command.front()));
    bundle::Manifest& manifest = session_.manifest();
    manifest.pypy_logs = pypy;
    std::optional<SiteDir> site;
    if (pypy) {
      choose_phases();
      if (!options_.jitlog) {
        if (!phases_through_pipe_)
          fail("--jit ranges reads the JIT code's names from PyPy's log through jitprof's pipe: drop --no-phases "
               "and unset PYPYLOG, or record with --jit full");
        manifest.jit = "ranges";
      }
      native_ = libunwind_loads();
      manifest.vmprof = bundle::Manifest::Vmprof{options_.rate_hz, native_};
      manifest.pypy_version = interpreter_version(options_.command.front());
      site.emplace();
    }
    session_.write_manifest();

    Pipe exec_errors;  // carries errno from a failed exec; closes on a successful one
    Pipe go;           // the child execs once the sampler follows it
    const auto started = Clock::now();
    const pid_t child = ::fork();
    if (child < 0) fail("cannot fork: " + errno_text());
    if (child == 0) {
      char byte = 0;
      if (::read(go.read_end, &byte, 1) != 1) ::_exit(127);  // jitprof died before the start
      exec_target(pypy, site ? site->path : std::filesystem::path{}, exec_errors.write_end, byte == kGoVmprofSampling);
    }
    exec_errors.close_write();
    go.close_read();
    for (LogPipe& log : logs_) log.pipe.close_write();
    if (!phases_through_pipe_) logs_[kPypyLog].open = false;
    if (!options_.jitlog) logs_[kJitlog].open = false;
    watcher_.emplace(child);
    manifest.pid = child;
    if (manifest.phases && manifest.phases->source != "names") {
      manifest.phases->pid = child;
      session_.date_pypy_log();
    }
    manifest.crash_capture = bundle::Manifest::CrashCapture{watcher_->tracing(), std::nullopt};
    if (!watcher_->tracing()) manifest.crash_capture->reason = watcher_->trace_error();
    start_sampling(child, pypy);
    const bool vmprof_sampling = !session_.reads_python_stacks();
    if (manifest.vmprof) manifest.vmprof->sampling = vmprof_sampling;
    const char byte = vmprof_sampling ? kGoVmprofSampling : kGoVmprofNamesOnly;
    if (::write(go.write_end, &byte, 1) != 1) fail("cannot start the target: " + errno_text());
    go.close_write();
    if (int child_errno = 0; ::read(exec_errors.read_end, &child_errno, sizeof child_errno) == sizeof child_errno) {
      session_.stop_sampling();
      watcher_->wait();
      fail(fmt::format("cannot run {}: {}", options_.command.front(), std::strerror(child_errno)));
    }
    if (!pypy)
      for (LogPipe& log : logs_) log.open = false;

    int status = 0;
    {
      SignalGuard guard(child);
      status = pump();
    }
    Outcome outcome;
    outcome.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (WIFSIGNALED(status)) {
      outcome.signal = WTERMSIG(status);
      outcome.exit_code = 128 + *outcome.signal;
    } else {
      outcome.exit_code = WEXITSTATUS(status);
    }
    finish(outcome, child);
    return outcome;
  }

 private:
  void start_sampling(pid_t child, bool pypy) {
    if (!options_.perf) {
      session_.without_sampling(std::nullopt);
      return;
    }
    sampler::Settings settings;
    settings.rate_hz = options_.rate_hz;
    settings.python_stacks = pypy && options_.python_stacks;
    try {
      session_.start_sampling(sampler::Sampler::for_process_at_exec(child, settings), child, options_.children,
                              options_.rate_hz, settings.python_stacks, options_.notice);
      session_.manifest().perf->children = options_.children;
      if (settings.python_stacks && options_.notice)
        if (const auto why = session_.python_stacks_unavailable())
          options_.notice(*why + "; joining them from PyPy's own sampling (vmprof) instead");
    } catch (const sampler::SamplerError& error) {
      if (options_.notice)
        options_.notice(error.what() + std::string(pypy ? "; recording with PyPy's own sampling (vmprof) only"
                                                        : "; no samples will be recorded"));
      session_.without_sampling(error.what());
    }
  }

  [[noreturn]] void exec_target(bool pypy, const std::filesystem::path& site_dir, int error_fd, bool vmprof_sampling) {
    if (pypy) {
      const int jitlog_fd = logs_[kJitlog].pipe.write_end;
      const int vmprof_fd = logs_[kVmprof].pipe.write_end;
      // Only the log pipes' write ends cross exec.
      if (options_.jitlog) {
        ::fcntl(jitlog_fd, F_SETFD, 0);
        ::setenv("JITPROF_JITLOG_FD", std::to_string(jitlog_fd).c_str(), 1);
      }
      ::fcntl(vmprof_fd, F_SETFD, 0);
      ::setenv("JITPROF_VMPROF_FD", std::to_string(vmprof_fd).c_str(), 1);
      const int threads_fd = logs_[kThreadNames].pipe.write_end;
      ::fcntl(threads_fd, F_SETFD, 0);
      ::setenv("JITPROF_THREADS_FD", std::to_string(threads_fd).c_str(), 1);
      ::setenv("JITPROF_VMPROF_PERIOD", fmt::format("{:.9f}", 1.0 / options_.rate_hz).c_str(), 1);
      ::setenv("JITPROF_VMPROF_NATIVE", native_ ? "1" : "0", 1);
      ::setenv("JITPROF_VMPROF_SAMPLING", vmprof_sampling ? "1" : "0", 1);
      ::setenv("JITPROF_SITE_DIR", site_dir.c_str(), 1);
      if (phases_through_pipe_) {
        const int pypylog_fd = logs_[kPypyLog].pipe.write_end;
        ::fcntl(pypylog_fd, F_SETFD, 0);
        ::setenv("JITPROF_PYPYLOG_FD", std::to_string(pypylog_fd).c_str(), 1);
        ::setenv("PYPYLOG", fmt::format("{}:/dev/fd/{}", bundle::pypy_log_prefixes(), pypylog_fd).c_str(), 1);
      }
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
  int pump() {
    std::vector<std::uint8_t> chunk(1 << 20);
    std::optional<Clock::time_point> exited_at;
    while (true) {
      std::array<pollfd, kLogs> fds{};
      std::array<std::size_t, kLogs> polled{};
      nfds_t count = 0;
      for (std::size_t i = 0; i < logs_.size(); ++i) {
        if (!logs_[i].open) continue;
        fds[count] = {logs_[i].pipe.read_end, POLLIN, 0};
        polled[count++] = i;
      }
      if (count == 0 && exited_at) break;
      // A descendant may keep a pipe open after the target exited: give it a
      // moment, then stop waiting.
      if (exited_at && Clock::now() - *exited_at > std::chrono::seconds(2)) break;
      const int ready = ::poll(fds.data(), count, 200);
      if (ready < 0 && errno != EINTR) fail("poll failed: " + errno_text());
      for (nfds_t i = 0; ready > 0 && i < count; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t got = ::read(fds[i].fd, chunk.data(), chunk.size());
        if (got > 0) {
          const auto bytes = std::span(chunk).first(static_cast<std::size_t>(got));
          if (polled[i] == kJitlog) session_.add_jitlog(bytes);
          else if (polled[i] == kVmprof) session_.add_vmprof(bytes);
          else if (polled[i] == kThreadNames) session_.add_python_thread_names(bytes);
          else session_.add_pypy_log(bytes);
        } else if (got == 0 || errno != EINTR) {
          logs_[polled[i]].open = false;
        }
      }
      if (!exited_at && watcher_->finished()) exited_at = Clock::now();
      session_.tick(options_.progress, "recording");
    }
    watcher_->wait();
    session_.stop_sampling();  // drains what the kernel still holds
    session_.flush();
    if (options_.progress) options_.progress("");
    return watcher_->status();
  }

  // The faulting thread at the moment of the fault: registers, its stack
  // unwound like a sample, and names for the native frames.
  void write_crash(const Fault& fault, pid_t target) {
    bundle::CrashRecord crash{fault.signal, signal_name(fault.signal), fault.code, fault.fault_address,
                              static_cast<std::uint32_t>(fault.tid), {}, {}};
    for (std::size_t i = 0; i < fault.registers.size(); ++i)
      crash.registers.emplace_back(arch::kRegisterNames[i], fault.registers[i]);
    crash.frames = session_.sampling() ? session_.collector().unwind_fault(static_cast<std::uint32_t>(target), fault)
                                       : std::vector<bundle::CrashFrame>{{fault.registers[arch::kRip], false, std::nullopt}};
    session_.writer().append(bundle::sections::kCrash, bundle::encode(crash));
  }

  void finish(Outcome& outcome, pid_t target) {
    bundle::Manifest& manifest = session_.manifest();
    manifest.duration_s = outcome.seconds;
    manifest.exit = bundle::Manifest::Exit{outcome.exit_code, std::nullopt, std::nullopt, std::nullopt};
    if (outcome.signal) {
      manifest.exit->signal = *outcome.signal;
      manifest.exit->signal_name = signal_name(*outcome.signal);
    }
    if (auto fault = watcher_->fatal_fault()) {
      write_crash(*fault, target);
      manifest.exit->crash_thread = static_cast<std::uint32_t>(fault->tid);
    }
    if (user_pypy_log_) read_user_pypy_log();
    if (manifest.phases && manifest.phases->source != "names") manifest.phases->sections = session_.pypy_log_sections();
    outcome.jitlog_bytes = session_.jitlog_bytes();
    outcome.vmprof_bytes = session_.vmprof_bytes();
    outcome.samples = session_.samples();
    outcome.lost = session_.lost();
    manifest.sections = bundle::Manifest::SectionBytes{outcome.jitlog_bytes, outcome.vmprof_bytes, std::nullopt};
    const rusage& usage = watcher_->usage();
    session_.finish(double(usage.ru_utime.tv_sec) + double(usage.ru_utime.tv_usec) / 1e6 +
                    double(usage.ru_stime.tv_sec) + double(usage.ru_stime.tv_usec) / 1e6);
  }

  // Where the GC and JIT phases come from: PyPy's own log sections through a
  // pipe; the file of the user's own PYPYLOG, left as it is and read at the
  // end; or, with --no-phases or a PYPYLOG jitprof cannot read, only the
  // names of the libpypy functions samples are in.
  void choose_phases() {
    bundle::Manifest::Phases phases{"names", std::nullopt, std::nullopt, std::nullopt, std::nullopt};
    const char* user = std::getenv("PYPYLOG");
    if (!options_.phases) {
      phases.note = "switched off (--no-phases)";
    } else if (user == nullptr) {
      phases_through_pipe_ = true;
      phases.source = "pypylog";
    } else {
      // PYPYLOG is "prefixes:path" or a bare path (which logs everything).
      const std::string_view value = user;
      const std::size_t colon = value.find(':');
      const std::string path(colon == std::string_view::npos ? value : value.substr(colon + 1));
      if (path.empty() || path == "-" || path.starts_with("/dev/")) {
        phases.note = fmt::format("your PYPYLOG ({}) does not write a file jitprof can read; left as it is", value);
      } else {
        user_pypy_log_ = std::filesystem::absolute(path);
        phases.source = "user pypylog";
        phases.log_path = user_pypy_log_->string();
      }
      if (options_.notice)
        options_.notice(user_pypy_log_
                            ? fmt::format("PYPYLOG is set: it is left as it is, and the GC and JIT sections it logs "
                                          "are read from {} when the program ends",
                                          user_pypy_log_->string())
                            : *phases.note + "; GC and JIT phases will come from function names only");
    }
    session_.manifest().phases = phases;
  }

  // The user's own log, read once the target ended: only its section lines are kept.
  void read_user_pypy_log() {
    const int fd = ::open(user_pypy_log_->c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      session_.manifest().phases->note = fmt::format("cannot read {}: {}", user_pypy_log_->string(), errno_text());
      return;
    }
    std::vector<std::uint8_t> chunk(1 << 20);
    for (ssize_t got; (got = ::read(fd, chunk.data(), chunk.size())) > 0;)
      session_.add_pypy_log(std::span(chunk).first(static_cast<std::size_t>(got)));
    ::close(fd);
    session_.flush();
  }

  // kThreadNames: the names of Python threads, from the sitecustomize.
  static constexpr std::size_t kJitlog = 0, kVmprof = 1, kPypyLog = 2, kThreadNames = 3, kLogs = 4;
  const Options& options_;
  Session session_;
  std::optional<CrashWatcher> watcher_;
  std::array<LogPipe, kLogs> logs_;
  bool native_ = false;
  bool phases_through_pipe_ = false;
  std::optional<std::filesystem::path> user_pypy_log_;
};

}  // namespace

bool looks_like_pypy(const std::string& program) {
  const std::string name = std::filesystem::path(program).filename().string();
  return name.starts_with("pypy");
}

Outcome record(const Options& options) {
  check_rate(options.rate_hz);
  if (options.command.empty()) fail("no command to record");
  Recorder recorder(options);
  return recorder.run();
}

}  // namespace jitprof::record
