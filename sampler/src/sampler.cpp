#include "sampler/sampler.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

#include "events.h"
#include "python_stack_join.h"
#include "python_stack_program.h"
#include "record_parser.h"
#include "record_sorter.h"
#include "ring.h"

namespace jitprof::sampler {

namespace {

template <class... Handlers>
struct Overloaded : Handlers... {
  using Handlers::operator()...;
};
// Clang 14 does not deduce aggregate template arguments by itself.
template <class... Handlers>
Overloaded(Handlers...) -> Overloaded<Handlers...>;

// The user IP of the interrupted context, as the BPF program records it.
std::uint64_t user_ip(const Sample& sample) {
  if (!sample.in_kernel) return sample.ip;
  return sample.has_user_registers ? sample.user_registers[arch::kRip] : 0;
}

// A record is dated a few microseconds from its sample: half a sampling
// period (at most 5 ms) tells it from the records of the thread's other samples.
std::uint64_t join_window_ns(const Settings& settings) {
  return std::min<std::uint64_t>(5'000'000, 500'000'000ull / settings.rate_hz);
}

}  // namespace

// The BPF program, when asked for and loaded, or why it is not running.
struct Sampler::PythonStacks {
  std::unique_ptr<PythonStackProgram> program;
  std::optional<std::string> unavailable;

  explicit PythonStacks(const Settings& settings) {
    if (!settings.python_stacks) return;
    auto loaded = PythonStackProgram::load();
    if (auto* error = std::get_if<std::string>(&loaded)) unavailable = std::move(*error);
    else program = std::move(std::get<std::unique_ptr<PythonStackProgram>>(loaded));
  }
  // Attaches the program to each event as it is opened.
  OnEventOpen attacher() {
    return [this](int fd) {
      if (!program) return;
      if (auto error = program->attach(fd)) {
        unavailable = std::move(error);
        program.reset();  // the events it is attached to already see no watched process
      }
    };
  }
};

std::unique_ptr<Sampler> Sampler::for_process_at_exec(pid_t pid, const Settings& settings) {
  check_settings(settings);
  PythonStacks python(settings);
  Events events = open_at_exec(pid, settings, python.attacher());
  return std::unique_ptr<Sampler>(new Sampler(std::move(events), std::move(python), settings));
}

std::unique_ptr<Sampler> Sampler::for_running_process(pid_t pid, const Settings& settings) {
  check_settings(settings);
  PythonStacks python(settings);
  // What existed before the events: dated before any sample they see.
  const std::uint64_t before = monotonic_now_ns();
  Events events = open_on_threads(pid, settings, python.attacher());
  const std::vector<pid_t> threads = events.threads;
  std::unique_ptr<Sampler> sampler(new Sampler(std::move(events), std::move(python), settings));
  // The kernel reports only mappings made from now on; the ones that exist
  // come from /proc, as perf's own synthesized records do.
  for (Mapping& mapping : executable_mappings(pid, before)) {
    sampler->existing_mappings_.push_back(mapping);
    sampler->sorter_->add(std::move(mapping));
  }
  for (TaskEvent& name : thread_names(pid, threads, before)) sampler->sorter_->add(std::move(name));
  return sampler;
}

Sampler::Sampler(Events events, PythonStacks python, const Settings& settings)
    : rings_(std::move(events.rings)),
      sorter_(std::make_unique<RecordSorter>(rings_.size())),
      kernel_frames_(events.kernel_frames),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      python_(std::move(python.program)),
      python_unavailable_(std::move(python.unavailable)),
      join_window_ns_(join_window_ns(settings)),
      join_(std::make_unique<PythonStackJoin>(join_window_ns_)) {}

Sampler::~Sampler() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Sampler::start(Listener& listener) {
  reader_ = std::thread([this, &listener] { run(listener); });
}

void Sampler::stop() {
  if (!reader_.joinable()) return;
  stopping_ = true;
  const std::uint64_t one = 1;
  [[maybe_unused]] auto ignored = ::write(wake_fd_, &one, sizeof one);
  reader_.join();
}

Stats Sampler::stats() const {
  Stats stats;
  stats.samples = samples_;
  stats.lost = lost_;
  stats.throttled = throttled_;
  stats.records = records_;
  stats.python_stacks = python_stacks_;
  stats.python_stacks_lost = python_stacks_lost_;
  if (python_) {
    stats.python_stacks_dropped = python_->dropped();
    const PythonStackProgram::RunStats runs = python_->run_stats();
    stats.python_program_runs = runs.runs;
    stats.python_program_ns = runs.nanoseconds;
  }
  return stats;
}

void Sampler::watch_python_stacks(pid_t pid, const ShadowStackLayout& layout) {
  if (!python_) return;
  python_->watch(pid, layout);
  // From here on every sample of `pid` finds the layout in the program's map.
  const std::lock_guard lock(watch_mutex_);
  new_watches_.emplace_back(static_cast<std::uint32_t>(pid), monotonic_now_ns());
}

void Sampler::run(Listener& listener) {
  std::vector<pollfd> fds;
  for (const auto& ring : rings_) fds.push_back({ring->fd(), POLLIN, 0});
  fds.push_back({wake_fd_, POLLIN, 0});
  if (python_) fds.push_back({python_->epoll_fd(), POLLIN, 0});
  for (const Mapping& mapping : existing_mappings_) listener.on_mapping_read(mapping);
  existing_mappings_.clear();
  while (!stopping_) {
    // The timeout bounds how stale the data is when the watermark is not reached.
    ::poll(fds.data(), fds.size(), 100);
    read_rings(listener);
    hand_out(false, listener);
  }
  read_rings(listener);
  // The records of the samples written while the rings were read.
  drain_python_stacks();
  hand_out(true, listener);
}

void Sampler::read_rings(Listener& listener) {
  // A sample's BPF record is committed before the sample is written (the
  // program runs first, in the same interrupt), but the sample may be dated
  // a little earlier. The rings count as read a join window before the BPF
  // ring was drained: a sample handed out has its record drained.
  const std::uint64_t now = monotonic_now_ns();
  const std::uint64_t read_at = python_ ? now - std::min(now, join_window_ns_) : now;
  drain_python_stacks();
  for (std::size_t i = 0; i < rings_.size(); ++i) {
    sorter_->ring_read_at(i, read_at);
    rings_[i]->read([&](std::span<const std::uint8_t> record) { keep(record, listener); });
  }
}

void Sampler::drain_python_stacks() {
  if (python_) python_->drain([this](PythonStackRecord record) { join_->add(std::move(record)); });
}

void Sampler::hand_out(bool all, Listener& listener) {
  {
    const std::lock_guard lock(watch_mutex_);
    for (const auto& [pid, since] : new_watches_) join_->watch(pid, since);
    new_watches_.clear();
  }
  std::uint64_t horizon = 0;
  std::vector<TimedRecord> records = all ? sorter_->take_all() : sorter_->take_ready();
  for (TimedRecord& record : records) {
    horizon = std::max(horizon, time_of(record));
    std::visit(Overloaded{[&](DecodedSample& decoded) {
                            Sample& sample = decoded.sample;
                            sample.user_stack = decoded.user_stack;
                            sample.python_stack = join_->take(sample.pid, sample.tid, sample.time_ns, user_ip(sample));
                            if (sample.python_stack)
                              ++(sample.python_stack->status == PythonStackStatus::Lost ? python_stacks_lost_
                                                                                         : python_stacks_);
                            listener.on_sample(sample);
                          },
                          [&](const Mapping& mapping) { listener.on_mapping(mapping); },
                          [&](const TaskEvent& task) {
                            // A new program image, or none: the layout no longer holds.
                            const bool process_ends = task.kind == TaskEvent::Kind::Exec ||
                                                      (task.kind == TaskEvent::Kind::Exit && task.pid == task.tid);
                            if (process_ends && join_->forget(task.pid, task.time_ns) && python_)
                              python_->forget(static_cast<pid_t>(task.pid));
                            listener.on_task(task);
                          }},
               record);
  }
  join_->discard_before(all ? UINT64_MAX : horizon);
}

void Sampler::keep(std::span<const std::uint8_t> record, Listener& listener) {
  ++records_;
  DecodedRecord parsed = parse_record(record);
  std::visit(Overloaded{[this](DecodedSample& sample) {
                          ++samples_;
                          sorter_->add(std::move(sample));
                        },
                        [&](Mapping& mapping) {
                          listener.on_mapping_read(mapping);
                          sorter_->add(std::move(mapping));
                        },
                        [this](TaskEvent& task) { sorter_->add(std::move(task)); },
                        [this](const Lost& lost) { lost_ += lost.count; },
                        [this](const Throttle&) { ++throttled_; },
                        [](const Ignored&) {},
                        // Shorter than its type says: skipped, the records after it still count.
                        [](const Malformed&) {}},
             parsed);
}

}  // namespace jitprof::sampler
