// GCC 12 warns (in the standard headers' code) that swapping a sample moves a disengaged optional's
// (Sample::python_stack) uninitialized bytes: its known false positive (GCC bug 80635).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "record_sorter.h"

#include <algorithm>
#include <iterator>

namespace jitprof::sampler {

std::uint64_t time_of(const TimedRecord& record) {
  if (const auto* decoded = std::get_if<DecodedSample>(&record)) return decoded->sample.time_ns;
  if (const auto* mapping = std::get_if<Mapping>(&record)) return mapping->time_ns;
  return std::get<TaskEvent>(record).time_ns;
}

namespace {

bool earlier(const TimedRecord& a, const TimedRecord& b) {
  const std::uint64_t a_time = time_of(a), b_time = time_of(b);
  if (a_time != b_time) return a_time < b_time;
  return !std::holds_alternative<DecodedSample>(a) && std::holds_alternative<DecodedSample>(b);
}

}  // namespace

RecordSorter::RecordSorter(std::size_t rings) : last_read_(rings, 0) {}

void RecordSorter::add(TimedRecord record) { pending_.push_back(std::move(record)); }

void RecordSorter::ring_read_at(std::size_t ring, std::uint64_t time) { last_read_.at(ring) = time; }

std::vector<TimedRecord> RecordSorter::take_ready() {
  std::uint64_t horizon = UINT64_MAX;
  for (std::uint64_t time : last_read_) horizon = std::min(horizon, time);
  return take_until(horizon);
}

std::vector<TimedRecord> RecordSorter::take_all() { return take_until(UINT64_MAX); }

std::vector<TimedRecord> RecordSorter::take_until(std::uint64_t horizon) {
  std::stable_sort(pending_.begin(), pending_.end(), earlier);
  const auto end = std::partition_point(pending_.begin(), pending_.end(),
                                        [horizon](const TimedRecord& record) { return time_of(record) <= horizon; });
  std::vector<TimedRecord> ready(std::make_move_iterator(pending_.begin()), std::make_move_iterator(end));
  pending_.erase(pending_.begin(), end);
  return ready;
}

}  // namespace jitprof::sampler
