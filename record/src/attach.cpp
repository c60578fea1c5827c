// `jitprof attach PID`: the bundle of `record`, for a PyPy process that is
// already running. Nothing stops the target: perf events are opened on its
// threads and removed by the kernel when jitprof exits, however it exits.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include "bundle/bundle.h"
#include "jitlog/jitlog.h"
#include "record/record.h"
#include "sample_collector.h"
#include "sampler/sampler.h"
#include "session.h"
#include "sources.h"

namespace jitprof::record {
namespace {

using Clock = std::chrono::steady_clock;

// Whole small /proc files (cmdline, environ, comm, status). Nullopt when
// unreadable, with the cause in `error`: some files open but refuse reading.
std::optional<std::string> read_proc(int pid, const char* name, int* error = nullptr) {
  const int fd = ::open(fmt::format("/proc/{}/{}", pid, name).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (error) *error = errno;
    return std::nullopt;
  }
  std::string text;
  std::array<char, 4096> buffer;
  ssize_t got = 0;
  while ((got = ::read(fd, buffer.data(), buffer.size())) > 0) text.append(buffer.data(), std::size_t(got));
  if (got < 0 && error) *error = errno;
  ::close(fd);
  if (got < 0) return std::nullopt;
  return text;
}

std::vector<std::string> split_nul(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    if (c != '\0') {
      word += c;
    } else {
      words.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

std::string user_name(uid_t uid) {
  const passwd* entry = ::getpwuid(uid);
  return entry ? entry->pw_name : std::to_string(uid);
}

int ptrace_scope() {
  std::ifstream in("/proc/sys/kernel/yama/ptrace_scope");
  int scope = 0;
  return in >> scope ? scope : 0;
}

struct Target {
  int pid = 0;
  std::string comm;
  std::vector<std::string> command;
  std::string exe;  // the interpreter's file, when readable
  uid_t uid = 0;
};

// The checks a user gets one clear line for: no such process, not ours to
// inspect, not PyPy.
Target inspect(int pid) {
  if (pid <= 0) fail(fmt::format("{} is not a process id", pid));
  Target target;
  target.pid = pid;
  const auto status = read_proc(pid, "status");
  if (!status) fail(fmt::format("no process with PID {}", pid));
  target.comm = read_proc(pid, "comm").value_or("?");
  while (!target.comm.empty() && target.comm.back() == '\n') target.comm.pop_back();
  std::istringstream lines(*status);
  for (std::string line; std::getline(lines, line);)
    if (line.starts_with("Uid:")) target.uid = static_cast<uid_t>(std::stoul(line.substr(4)));

  int error = 0;
  const auto maps = read_proc(pid, "maps", &error);
  if (!maps) {
    if (error == ENOENT || error == ESRCH) fail(fmt::format("no process with PID {}", pid));
    fail(fmt::format("cannot inspect process {} ({}) of user {}: {}. Fix: attach as user {} or as root (in a "
                     "container: with CAP_SYS_PTRACE and CAP_PERFMON)",
                     pid, target.comm, user_name(target.uid), std::strerror(error), user_name(target.uid)));
  }
  if (maps->empty()) fail(fmt::format("process {} ({}) has no address space: a kernel thread or a zombie", pid, target.comm));
  if (maps->find("libpypy") == std::string::npos && !target.comm.starts_with("pypy"))
    fail(fmt::format("process {} ({}) is not PyPy: no libpypy is loaded in it. jitprof attach profiles PyPy "
                     "processes; for others use 'perf record -p {}'",
                     pid, target.comm, pid));
  target.command = split_nul(read_proc(pid, "cmdline").value_or(""));
  std::error_code unreadable;
  target.exe = std::filesystem::read_symlink(fmt::format("/proc/{}/exe", pid), unreadable).string();
  return target;
}

// The CPU time the target has used, from /proc/PID/stat (utime + stime).
double cpu_seconds(int pid) {
  const auto stat = read_proc(pid, "stat");
  if (!stat) return 0;
  // "pid (comm) state ppid ...": comm may hold spaces, so fields count from the last ')'.
  std::istringstream fields(stat->substr(stat->rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int index = 3; fields >> field && index <= 15; ++index)
    if (index == 14 || index == 15) ticks += std::stod(field);
  return ticks / double(::sysconf(_SC_CLK_TCK));
}

// (a): a process started with JITLOG=path writes its jitlog there from its
// start. PyPy unsets the variable after opening the file, but the process's
// initial environment (/proc/PID/environ) keeps it, and the file stays open.
struct LiveJitlog {
  int fd = -1;
  std::string path;
};

std::optional<LiveJitlog> find_live_jitlog(int pid) {
  std::string value;
  for (const std::string& entry : split_nul(read_proc(pid, "environ").value_or("")))
    if (entry.starts_with("JITLOG=")) value = entry.substr(7);
  if (value.empty()) return std::nullopt;
  // The file as the process holds it open: the same file even if it was renamed since.
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid), error)) {
    std::error_code link_error;
    const std::filesystem::path target = std::filesystem::read_symlink(entry.path(), link_error);
    if (link_error) continue;
    const std::string held = target.string();
    const bool same = value.starts_with('/') ? held == value : held.ends_with("/" + value);
    if (!same) continue;
    const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) return LiveJitlog{fd, held};
  }
  return std::nullopt;
}

volatile sig_atomic_t stop_requested = 0;
void request_stop(int) { stop_requested = 1; }

// Ctrl-C, SIGTERM and SIGHUP end the attachment (the bundle is finished);
// they never reach the target.
class StopSignals {
 public:
  StopSignals() {
    stop_requested = 0;
    struct sigaction action {};
    action.sa_handler = request_stop;
    for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &action, &old_[i]);
  }
  ~StopSignals() {
    for (int i = 0; i < 3; ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  static constexpr int kSignals[3] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction old_[3] {};
};

class Attacher {
 public:
  explicit Attacher(const AttachOptions& options) : options_(options) {}

  AttachOutcome run() {
    const Target target = inspect(options_.pid);
    const int pid = target.pid;
    // Exit of the target wakes poll() through a pidfd.
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd_ < 0) fail(fmt::format("cannot watch process {}: {}", pid, errno_text()));
    sampler::Settings settings;
    settings.rate_hz = options_.rate_hz;
    try {
      sampler_ = sampler::Sampler::for_running_process(pid, settings);
    } catch (const sampler::SamplerError& error) {
      fail(error.what());
    }
    // Only once sampling is possible: a refusal leaves no empty bundle behind.
    writer_.emplace(options_.output);

    const double start_unix = unix_now();
    const std::uint64_t start_monotonic = monotonic_ns();
    const double start_cpu = cpu_seconds(pid);
    live_ = find_live_jitlog(pid);
    outcome_.jit_names = live_ ? JitNames::LiveJitlog : JitNames::AnonymousCode;
    if (live_) outcome_.jitlog_path = live_->path;
    manifest_ = {{"jitprof_version", JITPROF_VERSION},
                 {"mode", "attach"},
                 {"command", target.command},
                 {"pid", pid},
                 {"start_time", start_unix},
                 {"host", host_json()},
                 {"pypy_logs", false},
                 {"pypy_version", target.exe.empty() ? std::string() : interpreter_version(target.exe)},
                 {"clock", {{"monotonic_ns", start_monotonic}, {"unix_s", start_unix}}},
                 {"attach", attach_json()},
                 {"state", "recording"}};
    writer_->append(bundle::sections::kManifest, manifest_.dump());
    collector_.emplace(pid, false);
    sampler_->start(*collector_);
    manifest_["perf"] = {{"event", "cpu-clock"}, {"rate_hz", options_.rate_hz}, {"kernel_frames", sampler_->kernel_frames()}};
    if (options_.notice) options_.notice(describe_start(target));

    const auto started = Clock::now();
    {
      StopSignals signals;
      pump(started);
    }
    sampler_->stop();
    const std::size_t kernel_named = collector_->name_kernel_addresses();
    if (!live_ && !outcome_.target_exited) read_jit_code(pid);
    read_jitlog();  // what the target wrote until the end, or until it exited
    flush();
    if (live_)
      if (const std::string sources = source_files(live_traces_.finish()); !sources.empty())
        writer_->append(bundle::sections::kSources, sources);

    outcome_.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    const sampler::Stats stats = sampler_->stats();
    outcome_.samples = collector_->kept();
    outcome_.lost = stats.lost;
    outcome_.threads = collector_->threads_sampled();
    const double cpu = outcome_.target_exited ? 0.0 : cpu_seconds(pid) - start_cpu;
    manifest_["state"] = "complete";
    manifest_["end_time"] = unix_now();
    manifest_["duration_s"] = outcome_.seconds;
    manifest_["target_exited"] = outcome_.target_exited;
    if (!outcome_.target_exited) manifest_["target_cpu_s"] = cpu;
    manifest_["attach"] = attach_json();
    manifest_["sections"] = {{"jitlog_bytes", outcome_.jitlog_bytes}, {"jit_code_bytes", outcome_.jit_code_bytes}};
    manifest_["perf"]["samples"] = outcome_.samples;
    manifest_["perf"]["samples_all_processes"] = stats.samples;
    manifest_["perf"]["lost"] = stats.lost;
    manifest_["perf"]["throttled"] = stats.throttled;
    manifest_["perf"]["kernel_symbols_named"] = kernel_named;
    manifest_["perf"]["threads"] = outcome_.threads;
    if (cpu > 0) manifest_["perf"]["achieved_hz"] = double(outcome_.samples) / cpu;
    writer_->append(bundle::sections::kManifest, manifest_.dump());
    writer_->sync();
    if (options_.progress) std::cerr << "\r\033[K";
    return outcome_;
  }

  ~Attacher() {
    if (pidfd_ >= 0) ::close(pidfd_);
    if (live_) ::close(live_->fd);
  }
  Attacher(const Attacher&) = delete;
  Attacher& operator=(const Attacher&) = delete;

 private:
  nlohmann::json attach_json() const {
    if (live_)
      return {{"jit_names", "live jitlog"},
              {"jitlog_path", live_->path},
              {"explanation", "the process writes a jitlog (JITLOG); read as it grew, every trace since its start"}};
    return {{"jit_names", "anonymous code"},
            {"explanation",
             "the process writes no jitlog: hot JIT code was read from its memory and is shown disassembled, "
             "without trace names, IR or Python lines (start PyPy with JITLOG=path to get them)"},
            {"jit_code_bytes", outcome_.jit_code_bytes}};
  }

  std::string describe_start(const Target& target) const {
    std::string command;
    for (const auto& word : target.command) command += (command.empty() ? "" : " ") + word;
    const std::string names = live_ ? "JIT code named by its jitlog " + live_->path
                                    : "it writes no jitlog (JITLOG unset): JIT code will be shown as "
                                      "anonymous disassembled regions";
    const std::string until = options_.duration_s > 0 ? fmt::format("for {:g} s", options_.duration_s)
                                                      : std::string("until Ctrl-C or its exit");
    return fmt::format("attached to {} ({}) {}; {}", target.pid, command.empty() ? target.comm : command, until, names);
  }

  void pump(Clock::time_point started) {
    auto last_flush = Clock::now();
    while (!stop_requested) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
      if (options_.duration_s > 0 && elapsed >= options_.duration_s) break;
      pollfd exited{pidfd_, POLLIN, 0};
      const int ready = ::poll(&exited, 1, 100);
      if (ready > 0 && (exited.revents & POLLIN)) {
        outcome_.target_exited = true;
        break;
      }
      read_jitlog();
      if (Clock::now() - last_flush > std::chrono::milliseconds(500)) {
        flush();
        last_flush = Clock::now();
      }
      if (options_.progress) show_progress(elapsed);
    }
  }

  // Appends what the target added to its jitlog since the last read.
  void read_jitlog() {
    if (!live_) return;
    std::vector<std::uint8_t> chunk(1 << 20);
    while (true) {
      const ssize_t got = ::pread(live_->fd, chunk.data(), chunk.size(), static_cast<off_t>(outcome_.jitlog_bytes));
      if (got <= 0) return;
      // Arrival times: the part that existed at attach time counts as known from the start.
      jitlog_clock_ += nlohmann::json{{"offset", outcome_.jitlog_bytes}, {"t", monotonic_ns()}}.dump() + "\n";
      jitlog_pending_.insert(jitlog_pending_.end(), chunk.begin(), chunk.begin() + got);
      outcome_.jitlog_bytes += static_cast<std::uint64_t>(got);
      live_traces_.feed(std::span(chunk).first(static_cast<std::size_t>(got)));
    }
  }

  // (c): the hottest JIT addresses, with some code around each, read from the
  // target's memory so that the report can disassemble them later.
  void read_jit_code(int pid) {
    constexpr std::size_t kHottest = 64;
    constexpr std::uint64_t kAround = 128;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> hot;  // (count, address)
    for (const auto& [key, count] : collector_->jit_leaves())
      if (key.first == static_cast<std::uint32_t>(pid)) hot.emplace_back(count, key.second);
    std::sort(hot.rbegin(), hot.rend());
    if (hot.size() > kHottest) hot.resize(kHottest);
    // Windows around each address, merged where they overlap.
    std::map<std::uint64_t, std::uint64_t> windows;  // start -> end
    for (const auto& [count, address] : hot) {
      std::uint64_t start = address > kAround ? address - kAround : 0, end = address + kAround;
      auto after = windows.upper_bound(start);
      if (after != windows.begin() && std::prev(after)->second >= start) {
        --after;
        start = after->first;
        end = std::max(end, after->second);
        after = windows.erase(after);
      }
      while (after != windows.end() && after->first <= end) {
        end = std::max(end, after->second);
        after = windows.erase(after);
      }
      windows[start] = end;
    }
    std::string lines;
    for (const auto& [start, end] : windows) {
      std::vector<std::uint8_t> bytes(end - start);
      iovec local{bytes.data(), bytes.size()};
      iovec remote{reinterpret_cast<void*>(start), bytes.size()};
      const ssize_t got = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
      if (got <= 0) {
        if (options_.notice && (errno == EPERM || errno == EACCES)) {
          options_.notice(fmt::format("cannot read the JIT code of process {}: {} (kernel.yama.ptrace_scope = {}). Fix: "
                                      "attach as root, or allow it: sudo sysctl kernel.yama.ptrace_scope=0",
                                      pid, errno_text(), ptrace_scope()));
          return;
        }
        continue;  // freed meanwhile, or partly unmapped: skip this window
      }
      std::string hex;
      hex.reserve(std::size_t(got) * 2);
      for (ssize_t i = 0; i < got; ++i) hex += fmt::format("{:02x}", bytes[std::size_t(i)]);
      lines += nlohmann::json{{"pid", pid}, {"address", start}, {"hex", hex}}.dump() + "\n";
      outcome_.jit_code_bytes += std::uint64_t(got);
    }
    if (!lines.empty()) writer_->append(bundle::sections::kJitCode, lines);
  }

  void flush() {
    collector_->flush_into(*writer_);
    if (!jitlog_clock_.empty()) writer_->append(bundle::sections::kJitlogClock, jitlog_clock_);
    if (!jitlog_pending_.empty()) writer_->append(bundle::sections::kJitlog, jitlog_pending_);
    jitlog_clock_.clear();
    jitlog_pending_.clear();
  }

  void show_progress(double elapsed) {
    const auto now = Clock::now();
    if (now - last_progress_ < std::chrono::milliseconds(250)) return;
    last_progress_ = now;
    std::string jit = live_ ? fmt::format(", {} traces in its jitlog ({} KiB)", live_traces_.traces_so_far(),
                                          outcome_.jitlog_bytes / 1024)
                            : std::string(", no jitlog");
    std::cerr << fmt::format("\r\033[Kjitprof: attached {:.1f} s, {} samples{}", elapsed, collector_->kept(), jit)
              << std::flush;
  }

  const AttachOptions& options_;
  std::optional<bundle::BundleWriter> writer_;
  std::unique_ptr<sampler::Sampler> sampler_;
  std::optional<SampleCollector> collector_;
  std::optional<LiveJitlog> live_;
  jitlog::JitlogReader live_traces_;
  std::vector<std::uint8_t> jitlog_pending_;
  std::string jitlog_clock_;
  nlohmann::json manifest_;
  AttachOutcome outcome_;
  int pidfd_ = -1;
  Clock::time_point last_progress_{};
};

}  // namespace

AttachOutcome attach(const AttachOptions& options) {
  if (options.rate_hz < 2 || options.rate_hz > 1'000'000) fail("--rate must be between 2 and 1000000 Hz");
  if (options.duration_s < 0) fail("--duration must not be negative");
  Attacher attacher(options);
  return attacher.run();
}

}  // namespace jitprof::record
