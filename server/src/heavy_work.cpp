#include "heavy_work.h"

namespace jitprof::server {

HeavyWork::HeavyWork(unsigned threads, unsigned per_client) : per_client_(per_client) {
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

bool HeavyWork::try_post(const std::string& client, std::function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    unsigned& pending = pending_[client];
    if (stopping_ || pending >= per_client_) return false;
    ++pending;
    queue_.push_back({client, std::move(job)});
  }
  wake_.notify_one();
  return true;
}

void HeavyWork::work() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job.run();
    std::lock_guard lock(mutex_);
    if (--pending_[job.client] == 0) pending_.erase(job.client);
  }
}

void HeavyWork::stop() {
  std::deque<Job> dropped;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  wake_.notify_all();
  for (auto& thread : threads_)
    if (thread.joinable()) thread.join();
}

}  // namespace jitprof::server
