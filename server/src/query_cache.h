// Queries and trace views need a bundle's whole model (every op of every
// trace), which the index does not hold: the models of the bundles queried
// last stay in memory, up to a number of bytes (their bundles' inflated size), taken from
// the server's memory budget for as long as they stay.
#pragma once

#include <filesystem>
#include <future>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "bundle/bundle.h"
#include "correlate/profile.h"
#include "memory_budget.h"
#include "query/query.h"
#include "views/views.h"

namespace jitprof::server {

class QueryCache {
 public:
  QueryCache(std::uint64_t capacity_bytes, std::uint64_t max_inflated_bytes, MemoryBudget& budget)
      : capacity_(capacity_bytes), max_inflated_(max_inflated_bytes), budget_(budget) {}

  struct Loaded {
    explicit Loaded(MemoryBudget& budget) : lease(budget) {}
    MemoryBudget::Lease lease;  // the bundle's inflated bytes
    bundle::Bundle bundle;
    correlate::Profile profile;
    std::unique_ptr<query::Model> model;
    std::map<std::uint64_t, views::TraceHeat> heats;  // by trace id
    views::SourceFiles files;
  };
  // The model of the bundle stored at `path` under `id`, loaded on first use
  // (queries asking meanwhile wait for that load). Throws ServerBusy when the
  // memory budget has no room for it now.
  std::shared_ptr<const Loaded> get(const std::string& id, const std::filesystem::path& path);

 private:
  void keep(const std::string& id, const std::shared_ptr<const Loaded>& loaded);

  const std::uint64_t capacity_;
  const std::uint64_t max_inflated_;
  MemoryBudget& budget_;
  std::mutex mutex_;
  std::list<std::pair<std::string, std::shared_ptr<const Loaded>>> recent_;  // most recent first
  std::uint64_t kept_bytes_ = 0;
  std::map<std::string, std::shared_future<std::shared_ptr<const Loaded>>> loading_;  // by the query loading it
};

}  // namespace jitprof::server
