#include "python_stack_join.h"

#include <algorithm>
#include <utility>

namespace jitprof::sampler {

PythonStackJoin::PythonStackJoin(std::uint64_t window_ns) : window_ns_(window_ns) {}

void PythonStackJoin::watch(std::uint32_t pid, std::uint64_t since) { watched_since_[pid] = since; }

bool PythonStackJoin::forget(std::uint32_t pid, std::uint64_t time) {
  const auto found = watched_since_.find(pid);
  if (found == watched_since_.end() || found->second > time) return false;
  watched_since_.erase(found);
  return true;
}

bool PythonStackJoin::watched(std::uint32_t pid, std::uint64_t time) const {
  const auto found = watched_since_.find(pid);
  return found != watched_since_.end() && found->second <= time;
}

void PythonStackJoin::add(PythonStackRecord record) {
  auto& records = by_tid_[record.tid];
  // The ring holds records in the order CPUs committed them: nearly in time order.
  const auto at = std::upper_bound(records.begin(), records.end(), record.time_ns,
                                   [](std::uint64_t time, const PythonStackRecord& r) { return time < r.time_ns; });
  records.insert(at, std::move(record));
}

std::optional<PythonStack> PythonStackJoin::take(std::uint32_t pid, std::uint32_t tid, std::uint64_t time,
                                                 std::uint64_t user_ip) {
  if (!watched(pid, time)) return std::nullopt;
  PythonStack lost{PythonStackStatus::Lost, {}};
  const auto found = by_tid_.find(tid);
  if (found == by_tid_.end()) return lost;
  auto& records = found->second;
  const auto by_time = [](const PythonStackRecord& r, std::uint64_t t) { return r.time_ns < t; };
  // The records within the window, and the one nearest the sample among them.
  const auto first = std::lower_bound(records.begin(), records.end(), time > window_ns_ ? time - window_ns_ : 0, by_time);
  auto nearest = records.end();
  for (auto it = first; it != records.end() && it->time_ns <= time + window_ns_; ++it) {
    const auto distance = [time](const PythonStackRecord& r) { return r.time_ns > time ? r.time_ns - time : time - r.time_ns; };
    if (nearest == records.end() || distance(*it) < distance(*nearest)) nearest = it;
  }
  std::optional<PythonStack> stack;
  auto used = std::upper_bound(records.begin(), records.end(), time,
                               [](std::uint64_t t, const PythonStackRecord& r) { return t < r.time_ns; });
  if (nearest != records.end()) {
    if (nearest->pid == pid && nearest->ip == user_ip) stack = std::move(nearest->stack);
    if (nearest >= used) used = std::next(nearest);
  }
  // Records dated before the sample belong to samples that are gone (lost, or already taken).
  records.erase(records.begin(), used);
  if (records.empty()) by_tid_.erase(found);
  return stack ? std::move(stack) : lost;
}

void PythonStackJoin::discard_before(std::uint64_t horizon) {
  for (auto it = by_tid_.begin(); it != by_tid_.end();) {
    auto& records = it->second;
    while (!records.empty() && records.front().time_ns + window_ns_ < horizon) records.pop_front();
    it = records.empty() ? by_tid_.erase(it) : std::next(it);
  }
}

std::size_t PythonStackJoin::pending() const {
  std::size_t count = 0;
  for (const auto& [tid, records] : by_tid_) count += records.size();
  return count;
}

}  // namespace jitprof::sampler
