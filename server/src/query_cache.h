// Queries need a bundle's whole model (every op of every trace), which the
// index does not hold: the models of the bundles queried last stay in memory.
#pragma once

#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <string>

#include "bundle/bundle.h"
#include "correlate/profile.h"
#include "query/query.h"

namespace jitprof::server {

class QueryCache {
 public:
  explicit QueryCache(std::size_t capacity, std::uint64_t max_inflated_bytes)
      : capacity_(capacity), max_inflated_(max_inflated_bytes) {}

  struct Loaded {
    bundle::Bundle bundle;
    correlate::Profile profile;
    std::unique_ptr<query::Model> model;
  };
  // The model of the bundle stored at `path` under `id`, loaded on first use.
  std::shared_ptr<const Loaded> get(const std::string& id, const std::filesystem::path& path);

 private:
  std::size_t capacity_;
  std::uint64_t max_inflated_;
  std::mutex mutex_;
  std::list<std::pair<std::string, std::shared_ptr<const Loaded>>> recent_;  // most recent first
};

}  // namespace jitprof::server
