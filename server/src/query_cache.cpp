#include "query_cache.h"

namespace jitprof::server {

std::shared_ptr<const QueryCache::Loaded> QueryCache::get(const std::string& id, const std::filesystem::path& path) {
  std::promise<std::shared_ptr<const Loaded>> loading;
  std::shared_future<std::shared_ptr<const Loaded>> loaded_elsewhere;
  {
    std::lock_guard lock(mutex_);
    for (auto it = recent_.begin(); it != recent_.end(); ++it) {
      if (it->first != id) continue;
      recent_.splice(recent_.begin(), recent_, it);
      return recent_.front().second;
    }
    // A bundle is loaded once however many queries ask for it meanwhile.
    if (const auto pending = loading_.find(id); pending != loading_.end())
      loaded_elsewhere = pending->second;
    else
      loading_.emplace(id, loading.get_future().share());
  }
  if (loaded_elsewhere.valid()) return loaded_elsewhere.get();
  // Loaded outside the lock: other bundles' queries need not wait.
  try {
    auto loaded = std::make_shared<Loaded>(budget_);
    loaded->bundle = read_bundle_within(path, max_inflated_, loaded->lease);
    loaded->profile = correlate::correlate(loaded->bundle);
    loaded->model = std::make_unique<query::Model>(loaded->profile, loaded->bundle);
    loaded->heats = views::heat_of_traces(loaded->profile);
    loaded->files = views::source_files(loaded->bundle, loaded->profile.forest);
    keep(id, loaded);
    loading.set_value(loaded);
    return loaded;
  } catch (...) {
    {
      std::lock_guard lock(mutex_);
      loading_.erase(id);
    }
    loading.set_exception(std::current_exception());
    throw;
  }
}

// The newest first; the least recently queried leave until the rest fit.
// A bundle larger than the whole cache answers its queries and is not kept.
void QueryCache::keep(const std::string& id, const std::shared_ptr<const Loaded>& loaded) {
  std::lock_guard lock(mutex_);
  loading_.erase(id);
  const std::uint64_t bytes = loaded->lease.bytes();
  if (bytes > capacity_) return;
  recent_.emplace_front(id, loaded);
  kept_bytes_ += bytes;
  while (kept_bytes_ > capacity_) {
    kept_bytes_ -= recent_.back().second->lease.bytes();
    recent_.pop_back();
  }
}

}  // namespace jitprof::server
