// Runs a command under jitprof's own perf events (sampler/src: the same event
// setup and ring reading as `jitprof record`) and writes the raw records of
// every ring, untouched, for the sampler's decoding and ordering tests:
//
//   capture_perf_records OUTPUT COMMAND [ARGS...]
//
// The container is described in tests/support/perf_records.h. The user stack
// copy is 512 bytes instead of jitprof's 16 KiB, so that the fixture stays small.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>

#include "events.h"
#include "support/perf_records.h"

namespace {

using jitprof::sampler::Events;
using jitprof::testing::RecordedRun;

constexpr std::uint32_t kUserStackBytes = 512;

struct Followed {
  pid_t pid;
  Events events;
};

// Forks `argv`, which execs once the events that follow it are open.
Followed start_followed(char** argv, const jitprof::sampler::Settings& settings) {
  int go[2];
  if (::pipe2(go, O_CLOEXEC) != 0) throw std::runtime_error("cannot make a pipe");
  const pid_t child = ::fork();
  if (child < 0) throw std::runtime_error("cannot fork");
  if (child == 0) {
    char byte = 0;
    if (::read(go[0], &byte, 1) != 1) ::_exit(127);  // the events could not be opened
    ::execvp(argv[0], argv);
    ::_exit(127);
  }
  ::close(go[0]);
  Followed followed{child, jitprof::sampler::open_at_exec(child, settings)};
  const char byte = 1;
  if (::write(go[1], &byte, 1) != 1) throw std::runtime_error("cannot start the command");
  ::close(go[1]);
  return followed;
}

void read_rings(Events& events, RecordedRun& run) {
  for (std::size_t i = 0; i < events.rings.size(); ++i)
    events.rings[i]->read([&](std::span<const std::uint8_t> record) {
      run.rings[i].bytes.insert(run.rings[i].bytes.end(), record.begin(), record.end());
    });
}

const char* type_name(std::uint32_t type) {
  switch (type) {
    case PERF_RECORD_SAMPLE: return "samples";
    case PERF_RECORD_MMAP2: return "mmap2";
    case PERF_RECORD_COMM: return "comm";
    case PERF_RECORD_FORK: return "fork";
    case PERF_RECORD_EXIT: return "exit";
    case PERF_RECORD_LOST: return "lost";
    default: return "other";
  }
}

// Counted from the record headers alone: what the tests expect decoded.
void print_summary(const RecordedRun& run) {
  std::map<std::string, std::size_t> by_type;
  std::size_t bytes = 0;
  for (const auto& ring : run.rings) {
    bytes += ring.bytes.size();
    for (const auto record : jitprof::testing::split_records(ring.bytes))
      ++by_type[type_name(jitprof::testing::header_of(record).type)];
  }
  std::printf("%zu rings, %zu bytes of records:", run.rings.size(), bytes);
  for (const auto& [type, count] : by_type) std::printf(" %zu %s", count, type.c_str());
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s OUTPUT COMMAND [ARGS...]\n", argv[0]);
    return 2;
  }
  try {
    jitprof::sampler::Settings settings;
    settings.user_stack_bytes = kUserStackBytes;
    jitprof::sampler::check_settings(settings);
    auto [child, events] = start_followed(argv + 2, settings);
    RecordedRun run{static_cast<std::uint32_t>(child), kUserStackBytes, {}};
    for (const auto& ring : events.rings) run.rings.push_back({static_cast<std::uint32_t>(ring->cpu()), {}});
    int status = 0;
    while (::waitpid(child, &status, WNOHANG) == 0) {
      read_rings(events, run);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    read_rings(events, run);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("the command failed");
    const auto bytes = jitprof::testing::serialize(run);
    std::ofstream out(argv[1], std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) throw std::runtime_error(std::string("cannot write ") + argv[1]);
    print_summary(run);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "capture_perf_records: %s\n", error.what());
    return 1;
  }
}
