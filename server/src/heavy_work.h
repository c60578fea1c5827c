// Requests that read whole bundles (checking and indexing uploads, queries)
// run on a small pool of their own, so that however many of them arrive the
// threads answering light requests (lists, stored views, the viewer) stay
// free; each client may have only a few of them queued or running.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace jitprof::server {

class HeavyWork {
 public:
  HeavyWork(unsigned threads, unsigned per_client);
  ~HeavyWork() { stop(); }
  HeavyWork(const HeavyWork&) = delete;
  HeavyWork& operator=(const HeavyWork&) = delete;

  // Queues `job`; false, queuing nothing, when `client` already has its
  // limit of jobs queued or running.
  bool try_post(const std::string& client, std::function<void()> job);
  // Drops the jobs not started (in this thread) and waits for the running ones.
  void stop();

 private:
  struct Job {
    std::string client;
    std::function<void()> run;
  };
  void work();

  const unsigned per_client_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  std::map<std::string, unsigned> pending_;  // per client: queued or running
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace jitprof::server
