#include "query_cache.h"

namespace jitprof::server {

std::shared_ptr<const QueryCache::Loaded> QueryCache::get(const std::string& id, const std::filesystem::path& path) {
  {
    std::lock_guard lock(mutex_);
    for (auto it = recent_.begin(); it != recent_.end(); ++it) {
      if (it->first != id) continue;
      recent_.splice(recent_.begin(), recent_, it);
      return recent_.front().second;
    }
  }
  // Loaded outside the lock: other bundles' queries need not wait.
  auto loaded = std::make_shared<Loaded>();
  loaded->bundle = bundle::read_bundle(path, max_inflated_);
  loaded->profile = correlate::correlate(loaded->bundle);
  loaded->model = std::make_unique<query::Model>(loaded->profile, loaded->bundle);
  std::lock_guard lock(mutex_);
  recent_.emplace_front(id, loaded);
  if (recent_.size() > capacity_) recent_.pop_back();
  return loaded;
}

}  // namespace jitprof::server
