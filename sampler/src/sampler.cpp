#include "sampler/sampler.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "events.h"
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

void hand_out(std::vector<TimedRecord> records, Listener& listener) {
  for (TimedRecord& record : records)
    std::visit(Overloaded{[&](DecodedSample& decoded) {
                            decoded.sample.user_stack = decoded.user_stack;
                            listener.on_sample(decoded.sample);
                          },
                          [&](const Mapping& mapping) { listener.on_mapping(mapping); },
                          [&](const TaskEvent& task) { listener.on_task(task); }},
               record);
}

}  // namespace

std::unique_ptr<Sampler> Sampler::for_process_at_exec(pid_t pid, const Settings& settings) {
  check_settings(settings);
  return std::unique_ptr<Sampler>(new Sampler(open_at_exec(pid, settings)));
}

std::unique_ptr<Sampler> Sampler::for_running_process(pid_t pid, const Settings& settings) {
  check_settings(settings);
  // What existed before the events: dated before any sample they see.
  const std::uint64_t before = monotonic_now_ns();
  Events events = open_on_threads(pid, settings);
  const std::vector<pid_t> threads = events.threads;
  std::unique_ptr<Sampler> sampler(new Sampler(std::move(events)));
  // The kernel reports only mappings made from now on; the ones that exist
  // come from /proc, as perf's own synthesized records do.
  for (Mapping& mapping : executable_mappings(pid, before)) sampler->sorter_->add(std::move(mapping));
  for (TaskEvent& name : thread_names(pid, threads, before)) sampler->sorter_->add(std::move(name));
  return sampler;
}

Sampler::Sampler(Events events)
    : rings_(std::move(events.rings)),
      sorter_(std::make_unique<RecordSorter>(rings_.size())),
      kernel_frames_(events.kernel_frames),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

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
  return stats;
}

void Sampler::run(Listener& listener) {
  std::vector<pollfd> fds;
  for (const auto& ring : rings_) fds.push_back({ring->fd(), POLLIN, 0});
  fds.push_back({wake_fd_, POLLIN, 0});
  while (!stopping_) {
    // The timeout bounds how stale the data is when the watermark is not reached.
    ::poll(fds.data(), fds.size(), 100);
    read_rings();
    hand_out(sorter_->take_ready(), listener);
  }
  read_rings();
  hand_out(sorter_->take_all(), listener);
}

void Sampler::read_rings() {
  for (std::size_t i = 0; i < rings_.size(); ++i) {
    sorter_->ring_read_at(i, monotonic_now_ns());
    rings_[i]->read([this](std::span<const std::uint8_t> record) { keep(record); });
  }
}

void Sampler::keep(std::span<const std::uint8_t> record) {
  ++records_;
  DecodedRecord parsed = parse_record(record);
  std::visit(Overloaded{[this](DecodedSample& sample) {
                          ++samples_;
                          sorter_->add(std::move(sample));
                        },
                        [this](Mapping& mapping) { sorter_->add(std::move(mapping)); },
                        [this](TaskEvent& task) { sorter_->add(std::move(task)); },
                        [this](const Lost& lost) { lost_ += lost.count; },
                        [this](const Throttle&) { ++throttled_; },
                        [](const Ignored&) {},
                        // Shorter than its type says: skipped, the records after it still count.
                        [](const Malformed&) {}},
             parsed);
}

}  // namespace jitprof::sampler
