#include <fmt/format.h>

#include <algorithm>

#include "correlate/profile.h"

namespace jitprof::correlate {

ThreadNames thread_names(std::vector<bundle::TaskRecord> tasks) {
  // Python names are dated when jitprof read them, after the thread started.
  std::stable_sort(tasks.begin(), tasks.end(),
                   [](const bundle::TaskRecord& a, const bundle::TaskRecord& b) { return a.time_ns < b.time_ns; });
  ThreadNames names;
  for (const bundle::TaskRecord& task : tasks) {
    const std::pair key{task.pid, task.tid};
    switch (task.kind) {
      case bundle::TaskRecord::Kind::Fork: {
        const auto parent = names.find({task.parent_pid, task.parent_tid});
        names[key] = ThreadName{"", parent == names.end() ? "" : parent->second.os};
        break;
      }
      case bundle::TaskRecord::Kind::Exec:
        for (auto it = names.lower_bound({task.pid, 0}); it != names.end() && it->first.first == task.pid; ++it)
          it->second.python.clear();
        names[key].os = task.comm;
        break;
      case bundle::TaskRecord::Kind::Comm: names[key].os = task.comm; break;
      case bundle::TaskRecord::Kind::PythonName: names[key].python = task.comm; break;
      case bundle::TaskRecord::Kind::Exit: break;
    }
  }
  return names;
}

std::string thread_label(const ThreadName* name, std::uint32_t tid) {
  if (name == nullptr || name->shown().empty()) return fmt::format("tid {}", tid);
  return fmt::format("{} (tid {})", name->shown(), tid);
}

const ThreadName* Profile::thread(std::uint32_t pid, std::uint32_t tid) const {
  const auto found = threads.find({pid, tid});
  return found == threads.end() ? nullptr : &found->second;
}

}  // namespace jitprof::correlate
