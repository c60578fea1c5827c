#include "session.h"

#include <sys/resource.h>
#include <sys/utsname.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdio>

#include "arch/x86_64.h"
#include "sources.h"

namespace jitprof::record {
namespace {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One moment on the timestamp counter (PyPy's log clock) and on the samples' clock.
bundle::TimestampPair timestamp_pair() {
  const std::uint64_t before = arch::timestamp_counter();
  const std::uint64_t now = monotonic_ns();
  const std::uint64_t after = arch::timestamp_counter();
  return {before + (after - before) / 2, now};
}

bundle::Manifest::Host this_host() {
  utsname names{};
  ::uname(&names);
  return {names.nodename, names.sysname, names.release, names.machine};
}

}  // namespace

void check_rate(unsigned rate_hz) {
  if (rate_hz < 2 || rate_hz > 1'000'000) fail("--rate must be between 2 and 1000000 Hz");
}

std::string interpreter_version(const std::string& program) {
  if (program.find('\'') != std::string::npos) return "";  // not worth quoting for a version string
  const std::string command = "'" + program + "' --version 2>&1";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::string text;
  char buffer[256];
  while (std::fgets(buffer, sizeof buffer, pipe)) text += buffer;
  ::pclose(pipe);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  for (char& c : text)
    if (c == '\n') c = ' ';
  return text;
}

Session::Session(const std::optional<std::filesystem::path>& output, bundle::BundleWriter::FrameSink live,
                 std::optional<std::string> mode, std::vector<std::string> command)
    : writer_(output ? bundle::BundleWriter(*output) : bundle::BundleWriter(live)) {
  if (output && live) writer_.tap(std::move(live));
  start_manifest(std::move(mode), std::move(command));
}

Session::Session(const std::filesystem::path& output, std::optional<std::string> mode, std::vector<std::string> command)
    : writer_(output) {
  start_manifest(std::move(mode), std::move(command));
}

void Session::start_manifest(std::optional<std::string> mode, std::vector<std::string> command) {
  const double start = unix_now();
  manifest_.jitprof_version = JITPROF_VERSION;
  manifest_.mode = std::move(mode);
  manifest_.command = std::move(command);
  manifest_.start_time = start;
  manifest_.host = this_host();
  // Sample times are CLOCK_MONOTONIC; vmprof's are wall-clock.
  manifest_.clock = bundle::Manifest::Clock{monotonic_ns(), start};
  manifest_.state = "recording";
}

void Session::write_manifest() { writer_.append(bundle::sections::kManifest, bundle::encode(manifest_)); }

void Session::start_sampling(std::unique_ptr<sampler::Sampler> sampler, pid_t target, bool children, unsigned rate_hz,
                             bool python_stacks, std::function<void(const std::string&)> notice) {
  sampler_ = std::move(sampler);
  python_stacks_asked_ = python_stacks;
  notice_ = std::move(notice);
  SampleCollector::WatchPythonStacks watch;
  if (reads_python_stacks())
    watch = [sampler = sampler_.get()](pid_t pid, const sampler::ShadowStackLayout& layout) {
      sampler->watch_python_stacks(pid, layout);
    };
  collector_.emplace(target, children, std::move(watch));
  sampler_->start(*collector_);
  manifest_.perf = bundle::Manifest::Perf{};
  manifest_.perf->event = "cpu-clock";
  manifest_.perf->rate_hz = rate_hz;
  manifest_.perf->kernel_frames = sampler_->kernel_frames();
}

void Session::without_sampling(const std::optional<std::string>& refused) {
  manifest_.perf = bundle::Manifest::Perf{};
  manifest_.perf->state = refused ? bundle::Manifest::Perf::State::Refused : bundle::Manifest::Perf::State::Off;
  if (refused) manifest_.perf->refused = *refused;
}

void Session::stop_sampling() {
  if (!sampler_) return;
  sampler_->stop();
  kernel_symbols_named_ = collector_->name_kernel_addresses();
  pass_on_notices({});
  collector_->name_libpypy_addresses();
}

void Session::pass_on_notices(const std::function<void(const std::string&)>& progress) {
  const std::vector<std::string> lines = collector_->take_notices();
  if (lines.empty() || !notice_) return;
  if (progress) progress("");  // a line of its own, not after the status line
  for (const std::string& line : lines) notice_(line);
}

void Session::add_jitlog(std::span<const std::uint8_t> bytes) {
  // JIT code ranges are reused after frees: when each part of the jitlog
  // arrived tells which trace owned an address at a sample's time. PyPy writes
  // a few hundred bytes at a time; one arrival a millisecond is exact enough
  // (the parts after it count as arrived then) and keeps JLTM small.
  const std::uint64_t now = monotonic_ns();
  if (jitlog_bytes_ == 0 || now - last_jitlog_arrival_ns_ >= kJitlogArrivalStepNs) {
    jitlog_arrivals_.add({jitlog_bytes_, now});
    last_jitlog_arrival_ns_ = now;
  }
  jitlog_pending_.insert(jitlog_pending_.end(), bytes.begin(), bytes.end());
  jitlog_bytes_ += bytes.size();
  live_jitlog_.feed(bytes);
  if (jitlog_pending_.size() >= kMaxPendingJitlogBytes) flush();
}

void Session::date_pypy_log() {
  dating_pypy_log_ = true;
  pypy_log_pending_.add(timestamp_pair());
}

void Session::add_pypy_log(std::span<const std::uint8_t> bytes) {
  pypy_log_.feed(bytes, [this](const pypy::DebugLogReader::Section& section) {
    if (section.name == "jit-backend-addr") {
      if (const auto code = pypy::parse_backend_address(section.text))
        pypy_log_pending_.add(bundle::PypyLogJitCode{
            code->bridge ? bundle::PypyLogJitCode::Kind::Bridge : bundle::PypyLogJitCode::Kind::Loop, code->number,
            code->start, code->end, section.end, code->name});
      return;
    }
    const auto name = bundle::pypy_log_name_of(section.name);
    if (!name) return;  // jit-backend-dump and the like
    pypy_log_pending_.add(bundle::PypyLogSection{*name, section.start, section.end});
    ++pypy_log_sections_;
  });
}

void Session::add_python_thread_names(std::span<const std::uint8_t> bytes) {
  const std::uint64_t now = monotonic_ns();
  python_thread_names_in_.append(bytes);
  python_thread_names_in_.drain([&](binio::ByteCursor& in) {
    bundle::TaskRecord name{bundle::TaskRecord::Kind::PythonName, now, 0, 0, 0, 0, ""};
    name.pid = in.u32le();
    name.tid = in.u32le();
    name.comm = in.string(in.u16le());
    python_thread_names_.add(name);
  });
}

void Session::add_vmprof(std::span<const std::uint8_t> bytes) {
  vmprof_pending_.insert(vmprof_pending_.end(), bytes.begin(), bytes.end());
  vmprof_bytes_ += bytes.size();
}

void Session::tick(const std::function<void(const std::string&)>& progress, const char* verb) {
  const auto now = Clock::now();
  if (now - last_flush_ > std::chrono::milliseconds(500)) {
    flush();
    last_flush_ = now;
  }
  if (collector_) pass_on_notices(progress);
  if (!progress || now - last_progress_ < std::chrono::milliseconds(250)) return;
  last_progress_ = now;
  const double elapsed = std::chrono::duration<double>(now - started_).count();
  std::string logs = fmt::format("{} traces compiled, jitlog {} KiB", live_jitlog_.traces_so_far(), jitlog_bytes_ / 1024);
  if (jitlog_bytes_ == 0 && vmprof_bytes_ == 0) logs = "no jitlog";
  if (vmprof_bytes_ > 0) logs += fmt::format(", vmprof {} KiB", vmprof_bytes_ / 1024);
  progress(fmt::format("jitprof: {} {:.1f} s, {} samples ({:.0f}/s), {}", verb, elapsed, samples(),
                       elapsed > 0 ? double(samples()) / elapsed : 0.0, logs));
}

void Session::flush() {
  if (collector_) collector_->flush_into(writer_);
  jitlog_arrivals_.flush_into(writer_);
  if (dating_pypy_log_) pypy_log_pending_.add(timestamp_pair());
  pypy_log_pending_.flush_into(writer_);
  python_thread_names_.flush_into(writer_);
  for (auto [section, pending] : {std::pair{bundle::sections::kJitlog, &jitlog_pending_},
                                  std::pair{bundle::sections::kVmprof, &vmprof_pending_}}) {
    if (pending->empty()) continue;
    writer_.append(section, *pending);
    pending->clear();
  }
}

bool Session::reads_python_stacks() const { return !python_stacks_unavailable(); }

std::optional<std::string> Session::python_stacks_unavailable() const {
  if (!sampler_) return "perf sampling is off";
  if (!python_stacks_asked_) return "switched off (--no-bpf)";
  return sampler_->python_stacks_unavailable();
}

void Session::note_python_stacks() {
  bundle::Manifest::PythonStacks stacks;
  if (reads_python_stacks()) {
    stacks.source = "shadow stack";
    stacks.processes = collector_->python_processes();
    const sampler::Stats stats = sampler_->stats();
    stacks.samples = stats.python_stacks;
    stacks.lost = stats.python_stacks_lost;
    stacks.dropped = stats.python_stacks_dropped;
    if (stats.python_program_runs > 0) {
      stacks.program_runs = stats.python_program_runs;
      stacks.program_ns = stats.python_program_ns;
    }
    const std::vector<std::string> problems = collector_->python_stack_problems();
    if (!problems.empty()) stacks.unavailable = fmt::format("{}", fmt::join(problems, "; "));
  } else {
    stacks.source = "vmprof";
    stacks.unavailable = python_stacks_unavailable();
  }
  manifest_.python_stacks = std::move(stacks);
}

void Session::finish(std::optional<double> target_cpu_s) {
  flush();
  if (jitlog_bytes_ > 0) {
    bundle::SectionBuffer<bundle::SourceFileRecord> sources;
    for (const auto& file : source_files(live_jitlog_.finish())) sources.add(file);
    sources.flush_into(writer_);
  }
  manifest_.state = "complete";
  manifest_.end_time = unix_now();
  manifest_.target_cpu_s = target_cpu_s;
  if (rusage self{}; ::getrusage(RUSAGE_SELF, &self) == 0) {
    const auto seconds = [](const timeval& time) { return double(time.tv_sec) + double(time.tv_usec) / 1e6; };
    manifest_.recorder_cpu_s = seconds(self.ru_utime) + seconds(self.ru_stime);
    manifest_.recorder_peak_rss_kib = static_cast<std::uint64_t>(self.ru_maxrss);
  }
  if (sampler_) {
    const sampler::Stats stats = sampler_->stats();
    bundle::Manifest::Perf& perf = *manifest_.perf;
    perf.samples = collector_->kept();
    perf.samples_all_processes = stats.samples;
    perf.lost = stats.lost;
    perf.throttled = stats.throttled;
    perf.kernel_symbols_named = kernel_symbols_named_;
    if (target_cpu_s) perf.achieved_hz = *target_cpu_s > 0 ? double(collector_->kept()) / *target_cpu_s : 0.0;
  }
  note_python_stacks();
  write_manifest();
  writer_.sync();
}

}  // namespace jitprof::record
