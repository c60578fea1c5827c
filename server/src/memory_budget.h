// The memory that bundles being read may take at once, all requests
// together: uploads being checked and indexed, vmprof runs' files, the
// bundles queries keep loaded. A request that would go past it is refused
// (503, to be retried) instead of taking the server's memory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <stdexcept>

#include "bundle/bundle.h"

namespace jitprof::server {

// The server has no room for this request now: HTTP 503 with Retry-After.
class ServerBusy : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class MemoryBudget {
 public:
  explicit MemoryBudget(std::uint64_t bytes) : capacity_(bytes) {}
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  std::uint64_t capacity() const { return capacity_; }

  // Bytes taken from the budget by one reader, given back when it ends.
  class Lease {
   public:
    explicit Lease(MemoryBudget& budget) : budget_(budget) {}
    ~Lease() { budget_.give_back(bytes_); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

    // Takes `bytes` more, or throws ServerBusy when the budget has not that much left.
    void take(std::uint64_t bytes);
    std::uint64_t bytes() const { return bytes_; }

   private:
    MemoryBudget& budget_;
    std::uint64_t bytes_ = 0;
  };

 private:
  void give_back(std::uint64_t bytes);

  const std::uint64_t capacity_;
  std::mutex mutex_;
  std::uint64_t used_ = 0;
};

// A stored or received bundle, each frame's inflated bytes taken from `lease`
// before they are allocated, at most `max_inflated` of them.
bundle::Bundle read_bundle_within(const std::filesystem::path& path, std::uint64_t max_inflated,
                                  MemoryBudget::Lease& lease);

}  // namespace jitprof::server
