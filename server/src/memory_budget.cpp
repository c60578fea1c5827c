#include "memory_budget.h"

#include <fmt/format.h>

namespace jitprof::server {

void MemoryBudget::Lease::take(std::uint64_t bytes) {
  {
    std::lock_guard lock(budget_.mutex_);
    if (bytes > budget_.capacity_ - budget_.used_)
      throw ServerBusy(fmt::format("the server is reading other large uploads (its memory budget is {} MiB); "
                                   "retry later",
                                   budget_.capacity_ >> 20));
    budget_.used_ += bytes;
  }
  bytes_ += bytes;
}

void MemoryBudget::give_back(std::uint64_t bytes) {
  std::lock_guard lock(mutex_);
  used_ -= bytes;
}

bundle::Bundle read_bundle_within(const std::filesystem::path& path, std::uint64_t max_inflated,
                                  MemoryBudget::Lease& lease) {
  return bundle::read_bundle(path, max_inflated, [&](std::uint64_t bytes) { lease.take(bytes); });
}

}  // namespace jitprof::server
