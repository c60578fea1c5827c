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

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "bundle/manifest.h"
#include "bundle/sections.h"
#include "pypy/code_objects.h"
#include "pypy/jit_codemap.h"
#include "pypy/thread_locals.h"
#include "record/record.h"
#include "sampler/sampler.h"
#include "session.h"

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

// Windows of `around` bytes on both sides of each address, merged where they overlap: start -> end.
std::map<std::uint64_t, std::uint64_t> merged_windows(const std::vector<std::pair<std::uint64_t, std::uint64_t>>& hot,
                                                      std::uint64_t around) {
  std::map<std::uint64_t, std::uint64_t> windows;
  for (const auto& [count, address] : hot) {
    std::uint64_t start = address > around ? address - around : 0, end = address + around;
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
  return windows;
}

class Attacher {
 public:
  explicit Attacher(const AttachOptions& options) : options_(options) {}

  AttachOutcome run() {
    const Target target = inspect(options_.pid);
    const int pid = target.pid;
    // Exit of the target wakes poll() through a pidfd.
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd_ < 0) fail(fmt::format("cannot watch process {}: {}", pid, errno_text()));
    // Asked before sampling starts: it runs the interpreter, and samples taken
    // before the Python stacks are watched have none.
    const std::string pypy_version = target.exe.empty() ? std::string() : interpreter_version(target.exe);
    sampler::Settings settings;
    settings.rate_hz = options_.rate_hz;
    settings.python_stacks = options_.python_stacks;
    std::unique_ptr<sampler::Sampler> sampler;
    try {
      sampler = sampler::Sampler::for_running_process(pid, settings);
    } catch (const sampler::SamplerError& error) {
      fail(error.what());
    }
    // Only once sampling is possible: a refusal leaves no empty bundle behind.
    bundle::BundleWriter::FrameSink live;
    if (options_.on_interval)
      live = [this](bundle::SectionType type, std::span<const std::uint8_t> data) {
        fresh_frames_.frames.push_back({type, 0, {data.begin(), data.end()}});
      };
    session_.emplace(options_.output.empty() ? std::nullopt : std::optional(options_.output), std::move(live), "attach",
                     target.command);
    const double start_cpu = cpu_seconds(pid);
    live_ = find_live_jitlog(pid);
    outcome_.jit_names = live_ ? JitNames::LiveJitlog : JitNames::AnonymousCode;
    if (live_) outcome_.jitlog_path = live_->path;
    bundle::Manifest& manifest = session_->manifest();
    manifest.pid = pid;
    manifest.pypy_logs = false;
    manifest.pypy_version = pypy_version;
    manifest.attach = attach_details();
    // PyPy's log can only be switched on when PyPy starts.
    manifest.phases = bundle::Manifest::Phases{
        "names",
        "attach cannot time GC and JIT phases (PyPy's log is chosen when PyPy starts): they are told by the libpypy "
        "function each sample is in; minor and major collections are not told apart",
        std::nullopt, std::nullopt, std::nullopt};
    session_->start_sampling(std::move(sampler), pid, false, options_.rate_hz, settings.python_stacks, options_.notice);
    session_->write_manifest();  // with the sampling rate, which a live view needs from its first interval
    // Timed and stoppable from before the notice: whoever reacts to "attached to"
    // gets a bundle that covers at least the time since.
    const auto started = Clock::now();
    {
      StopSignals signals;
      if (options_.notice) {
        options_.notice(describe_start(target));
        if (options_.python_stacks)
          if (const auto why = session_->python_stacks_unavailable())
            options_.notice(*why);
      }
      pump(started);
    }
    outcome_.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    session_->stop_sampling();
    // What only the bundle shows (a live view without a file has drawn its last view).
    const bool keeps_bundle = !options_.output.empty();
    if (keeps_bundle && !live_ && !outcome_.target_exited) read_jit_code(pid);
    if (keeps_bundle && session_->reads_python_stacks() && !outcome_.target_exited) name_python_code(pid, true);
    read_jitlog();  // what the target wrote until the end, or until it exited
    if (options_.progress) options_.progress("");

    outcome_.samples = session_->samples();
    outcome_.lost = session_->lost();
    outcome_.threads = session_->collector().threads_sampled();
    outcome_.jitlog_bytes = session_->jitlog_bytes();
    manifest.duration_s = outcome_.seconds;
    manifest.target_exited = outcome_.target_exited;
    manifest.attach = attach_details();
    manifest.sections = bundle::Manifest::SectionBytes{outcome_.jitlog_bytes, std::nullopt, outcome_.jit_code_bytes};
    manifest.perf->threads = outcome_.threads;
    session_->finish(outcome_.target_exited ? std::nullopt : std::optional(cpu_seconds(pid) - start_cpu));
    return outcome_;
  }

  ~Attacher() {
    if (pidfd_ >= 0) ::close(pidfd_);
    if (live_) ::close(live_->fd);
  }
  Attacher(const Attacher&) = delete;
  Attacher& operator=(const Attacher&) = delete;

 private:
  bundle::Manifest::Attach attach_details() const {
    if (live_)
      return {"live jitlog", "the process writes a jitlog (JITLOG); read as it grew, every trace since its start",
              live_->path, std::nullopt};
    return {"anonymous code",
            "the process writes no jitlog: hot JIT code was read from its memory and is shown disassembled, "
            "without trace names, IR or the functions inlined into it (start PyPy with JITLOG=path to get them)",
            std::nullopt, outcome_.jit_code_bytes};
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
    double next_interval = options_.interval_s;
    while (!stop_requested) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
      // The interval that ends with the duration is handed over too.
      if (options_.on_interval && elapsed >= next_interval) {
        while (next_interval <= elapsed) next_interval += options_.interval_s;  // late: skip, never bunch up
        if (!hand_over_interval(elapsed)) break;
      }
      if (options_.duration_s > 0 && elapsed >= options_.duration_s) break;
      // Waits at most until the next interval: a live view is drawn on time.
      const double wait_s = options_.on_interval ? std::clamp(next_interval - elapsed, 0.001, 0.1) : 0.1;
      pollfd exited{pidfd_, POLLIN, 0};
      const int ready = ::poll(&exited, 1, static_cast<int>(std::ceil(wait_s * 1000)));
      if (ready > 0 && (exited.revents & POLLIN)) {
        outcome_.target_exited = true;
        break;
      }
      read_jitlog();
      session_->tick(options_.progress, "attached");
    }
  }

  // A live view's interval: names what the new stacks show, writes every
  // pending frame and hands them over; whether to go on.
  bool hand_over_interval(double elapsed_s) {
    if (session_->reads_python_stacks()) name_python_code(options_.pid, false);
    session_->flush();
    const bool go_on = options_.on_interval(fresh_frames_, elapsed_s);
    fresh_frames_.frames.clear();
    return go_on;
  }

  // Appends what the target added to its jitlog since the last read (the part
  // that existed at attach time counts as known from the start).
  void read_jitlog() {
    if (!live_) return;
    std::vector<std::uint8_t> chunk(1 << 20);
    while (true) {
      const ssize_t got =
          ::pread(live_->fd, chunk.data(), chunk.size(), static_cast<off_t>(session_->jitlog_bytes()));
      if (got <= 0) return;
      session_->add_jitlog(std::span(chunk).first(static_cast<std::size_t>(got)));
    }
  }

  // (c): the hottest JIT addresses, with some code around each, read from the
  // target's memory so that the report can disassemble them later.
  void read_jit_code(int pid) {
    constexpr std::size_t kHottest = 64;
    constexpr std::uint64_t kAround = 128;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> hot;  // (count, address)
    for (const auto& [key, count] : session_->collector().jit_leaves())
      if (key.first == static_cast<std::uint32_t>(pid)) hot.emplace_back(count, key.second);
    std::sort(hot.rbegin(), hot.rend());
    if (hot.size() > kHottest) hot.resize(kHottest);
    bundle::SectionBuffer<bundle::JitCodeRecord> code;
    for (const auto& [start, end] : merged_windows(hot, kAround)) {
      bundle::JitCodeRecord record{static_cast<std::uint32_t>(pid), start, std::vector<std::uint8_t>(end - start)};
      iovec local{record.bytes.data(), record.bytes.size()};
      iovec remote{reinterpret_cast<void*>(start), record.bytes.size()};
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
      record.bytes.resize(static_cast<std::size_t>(got));
      outcome_.jit_code_bytes += record.bytes.size();
      code.add(record);
    }
    code.flush_into(session_->writer());
  }

  // The code objects on the Python stacks, named from the target's memory:
  // nothing runs in it to ask (PYCN). Without a jitlog, PyPy's JIT codemap
  // names the functions of the JIT code the stacks went through (PYJC).
  // Each id and address is named once. A live view calls this every
  // interval: a scan of the target's memory for code objects then runs on a
  // thread of its own (it takes seconds on a large heap; the view keeps its
  // pace, and its names arrive with a later interval), started when an id
  // is new, and an id it did not find is looked for again only at the end
  // (`last`), when the missing ones are counted.
  void name_python_code(int pid, bool last) {
    if (naming_failed_ && !last) return;
    const auto own_pid = static_cast<std::uint32_t>(pid);
    const auto code_ids = session_->collector().code_ids();
    std::set<std::uint64_t> wanted;
    if (const auto own = code_ids.find(own_pid); own != code_ids.end())
      for (const std::uint64_t id : own->second)
        if (!code_names_.contains(id) && (last || !code_ids_missing_.contains(id))) wanted.insert(id);
    try {
      if (!live_) read_jit_codemap(pid, wanted);
      if (scan_.valid() && (last || scan_.wait_for(std::chrono::seconds(0)) == std::future_status::ready))
        take_scan(scan_.get());
      bundle::SectionBuffer<bundle::CodeNameRecord> names;
      name_scanned(own_pid, wanted, names);
      if (!wanted.empty() && last) {
        const auto progress = [this](std::uint64_t done, std::uint64_t total) {
          if (options_.progress)
            options_.progress(fmt::format("jitprof: naming Python functions: {} of {} MiB of memory read", done >> 20,
                                          total >> 20));
        };
        take_scan(pypy::scan_code_objects(pid, {}, progress));
        name_scanned(own_pid, wanted, names);
      } else if (!wanted.empty() && !scan_.valid()) {
        scan_asked_ = wanted;
        // Only the ids asked for, the way a view needs them soon: a scan for
        // every code object (as at the end) takes seconds more.
        scan_ = std::async(std::launch::async, [pid, ids = std::vector(wanted.begin(), wanted.end())] {
          return pypy::scan_code_objects(pid, ids);
        });
      }
      names.flush_into(session_->writer());
    } catch (const std::exception& error) {
      if (options_.notice && !naming_failed_)
        options_.notice(fmt::format("cannot name Python functions of process {}: {}", pid, error.what()));
      naming_failed_ = true;
      return;
    }
    if (!last) return;
    code_ids_missing_.insert(wanted.begin(), wanted.end());
    outcome_.code_objects = code_names_.size() + code_ids_missing_.size();
    outcome_.code_objects_named = code_names_.size();
    if (options_.notice && outcome_.code_objects_named < outcome_.code_objects)
      options_.notice(fmt::format("{} of {} Python code objects on the stacks were not found in memory (freed, or moved "
                                  "by the GC): shown as \"code #ID\"",
                                  outcome_.code_objects - outcome_.code_objects_named, outcome_.code_objects));
  }

  // A scan's names kept (it names every code object in memory); the ids it
  // was started for and did not find are missing.
  void take_scan(pypy::CodeScan scan) {
    for (pypy::CodeName& code : scan.names) scanned_names_.insert_or_assign(code.unique_id, std::move(code));
    for (const std::uint64_t id : scan_asked_)
      if (!scanned_names_.contains(id)) code_ids_missing_.insert(id);
    scan_asked_.clear();
  }

  // Names the ids of `wanted` that a scan found, and takes them out of it.
  void name_scanned(std::uint32_t pid, std::set<std::uint64_t>& wanted, bundle::SectionBuffer<bundle::CodeNameRecord>& names) {
    std::erase_if(wanted, [&](std::uint64_t id) {
      const auto known = scanned_names_.find(id);
      if (known == scanned_names_.end()) return false;
      names.add({pid, id, known->second.name, known->second.file, known->second.first_line});
      code_names_.insert(id);
      code_ids_missing_.erase(id);
      return true;
    });
  }

  // The code objects at each JIT address the stacks went through that was
  // not looked up yet; adds their ids, unless named already, to `wanted`.
  void read_jit_codemap(int pid, std::set<std::uint64_t>& wanted) {
    const auto addresses = session_->collector().python_jit_addresses();
    const auto own = addresses.find(static_cast<std::uint32_t>(pid));
    if (own == addresses.end()) return;
    std::vector<std::uint64_t> fresh;
    for (const std::uint64_t address : own->second)
      if (!jit_addresses_looked_up_.contains(address)) fresh.push_back(address);
    const auto libpypy = fresh.empty() ? std::nullopt : pypy::find_libpypy(pid);
    if (!libpypy) return;
    const auto codemap = pypy::JitCodemap::read(pid, libpypy->path, libpypy->load_bias);
    if (!codemap) return;  // no JIT code yet: looked up again next time
    bundle::SectionBuffer<bundle::JitCodemapRecord> records;
    for (const std::uint64_t address : fresh) {
      jit_addresses_looked_up_.insert(address);
      std::vector<std::uint64_t> ids = codemap->unique_ids_at(address);
      std::erase(ids, 0u);  // names nothing
      if (ids.empty()) continue;
      for (const std::uint64_t id : ids)
        if (!code_names_.contains(id)) wanted.insert(id);
      records.add({static_cast<std::uint32_t>(pid), address, std::move(ids)});
    }
    records.flush_into(session_->writer());
  }

  const AttachOptions& options_;
  std::optional<Session> session_;
  std::optional<LiveJitlog> live_;
  AttachOutcome outcome_;
  int pidfd_ = -1;
  // Frames written since the last interval, for on_interval.
  bundle::Bundle fresh_frames_;
  // What name_python_code did so far: code ids named (PYCN written), looked
  // for and not found, every code object the scans found, JIT addresses
  // looked up in the codemap.
  std::set<std::uint64_t> code_names_, code_ids_missing_;
  std::map<std::uint64_t, pypy::CodeName> scanned_names_;
  std::future<pypy::CodeScan> scan_;  // running beside a live view
  std::set<std::uint64_t> scan_asked_;  // the ids it was started for
  std::set<std::uint64_t> jit_addresses_looked_up_;
  bool naming_failed_ = false;
};

}  // namespace

AttachOutcome attach(const AttachOptions& options) {
  check_rate(options.rate_hz);
  if (options.duration_s < 0) fail("--duration must not be negative");
  if (options.on_interval && options.interval_s <= 0) fail("the interval of a live view must be positive");
  Attacher attacher(options);
  return attacher.run();
}

}  // namespace jitprof::record
