// Throughput of the jitlog and vmprof readers on large inputs built from the
// real fixtures, printed as a ratio to a baseline run in the same process: a
// plain pass over the same bytes (the cost of touching the input at all), in
// CPU time.
// Jitlog files given on the command line (real recordings, e.g. PyPy run with
// JITLOG=FILE) are read as `jitprof jitlog` reads them, and the peak memory of
// a process that only reads one is printed as a ratio to the file's size.
//
//   build/bench/readers_bench [MEGABYTES] [JITLOG_FILE...]
#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ctime>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "jitlog/jitlog.h"
#include "vmprof/profile.h"

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes load(const std::string& name) {
  Bytes bytes;
  jitprof::binio::read_file_chunks(std::string(JITPROF_FIXTURES) + "/" + name,
                                   [&](std::span<const std::uint8_t> chunk) {
                                     bytes.insert(bytes.end(), chunk.begin(), chunk.end());
                                   });
  return bytes;
}

// The jitlog header is one record: marker, version, word flag, machine, op table.
std::size_t jitlog_header_size(const Bytes& log) {
  jitprof::binio::ByteCursor in(log, 0);
  in.bytes(4);
  in.bytes(in.u32le());
  in.bytes(1);
  const std::uint16_t count = in.u16le();
  for (std::uint16_t i = 0; i < count; ++i) {
    in.u16le();
    in.bytes(in.u32le());
  }
  return in.position();
}

// The header once, then the traces of a real log repeated up to `target` bytes.
Bytes big_jitlog(std::size_t target) {
  const Bytes log = load("recursion.jitlog.gz");
  const std::size_t header = jitlog_header_size(log);
  Bytes big(log.begin(), log.begin() + static_cast<std::ptrdiff_t>(header));
  while (big.size() < target) big.insert(big.end(), log.begin() + static_cast<std::ptrdiff_t>(header), log.end());
  return big;
}

// A real profile's records, with its samples repeated up to `target` bytes.
Bytes big_profile(std::size_t target) {
  const Bytes profile = load("hotloop_native_mem.prof.gz");
  const auto parsed = jitprof::vmprof::parse_profile(profile);
  Bytes big(profile.begin(), profile.begin() + static_cast<std::ptrdiff_t>(parsed.samples.front().file_offset));
  const std::size_t first = parsed.samples.front().file_offset;
  const std::size_t last_end = parsed.samples.back().file_offset + 1 + 8 * (2 + parsed.samples.back().depth * 2 + 2);
  while (big.size() < target)
    big.insert(big.end(), profile.begin() + static_cast<std::ptrdiff_t>(first),
               profile.begin() + static_cast<std::ptrdiff_t>(last_end));
  return big;
}

template <class Work>
double best_seconds(Work&& work, int repeats = 5) {
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    // CPU time: the machine may be shared, and waiting is not the reader's cost.
    const std::clock_t start = std::clock();
    work();
    best = std::min(best, double(std::clock() - start) / CLOCKS_PER_SEC);
  }
  return best;
}

void report(const char* name, const Bytes& input, double baseline, double parse, const std::string& detail) {
  const double megabytes = double(input.size()) / 1e6;
  fmt::print("{:<8} {:8.1f} MB  baseline {:8.1f} MB/s  reader {:8.1f} MB/s  reader/baseline time {:6.1f}x  ({})\n",
             name, megabytes, megabytes / baseline, megabytes / parse, parse / baseline, detail);
}

// Fed in 1 MiB chunks, as a pipe delivers a log.
template <class Reader>
auto read_in_chunks(const Bytes& input) {
  Reader reader;
  for (std::size_t at = 0; at < input.size(); at += 1 << 20)
    reader.feed(std::span(input).subspan(at, std::min<std::size_t>(1 << 20, input.size() - at)));
  return reader.finish();
}

constexpr std::string_view kReadOnly = "--read-only";

// Peak resident memory, in bytes, of a fresh process that reads `file` and exits.
std::uint64_t peak_memory_of_reading(const std::string& file) {
  const pid_t child = fork();
  if (child == 0) {
    execl("/proc/self/exe", "readers_bench", kReadOnly.data(), file.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  rusage usage{};
  if (child < 0 || wait4(child, &status, 0, &usage) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return 0;
  return std::uint64_t(usage.ru_maxrss) * 1024;
}

// A recorded jitlog, read from its file as `jitprof jitlog` does.
void measure_file(const std::string& file) {
  volatile std::uint64_t sink = 0;
  const double baseline = best_seconds([&] {
    std::uint64_t sum = 0;
    jitprof::binio::read_file_chunks(file, [&](std::span<const std::uint8_t> chunk) {
      sum = std::accumulate(chunk.begin(), chunk.end(), sum);
    });
    sink = sink + sum;
  });
  std::size_t traces = 0;
  const double parse = best_seconds([&] { traces = jitprof::jitlog::read_jitlog(file).traces.size(); });
  const double megabytes = double(std::filesystem::file_size(file)) / 1e6;
  const std::uint64_t peak = peak_memory_of_reading(file);
  fmt::print("{}\n  {:8.1f} MB  baseline {:8.1f} MB/s  reader {:8.1f} MB/s  reader/baseline time {:6.1f}x  "
             "peak memory {:.2f}x the file  ({} traces)\n",
             file, megabytes, megabytes / baseline, megabytes / parse, parse / baseline, double(peak) / 1e6 / megabytes,
             traces);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && argv[1] == kReadOnly) return jitprof::jitlog::read_jitlog(argv[2]).error ? 1 : 0;
  std::size_t megabytes = 64;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    char* end = nullptr;
    const std::size_t number = std::strtoull(argv[i], &end, 10);
    if (*end == '\0' && end != argv[i]) {
      megabytes = number;
    } else {
      files.emplace_back(argv[i]);
    }
  }
  for (const std::string& file : files) measure_file(file);
  const std::size_t target = megabytes << 20;
  volatile std::uint64_t sink = 0;
  auto baseline = [&](const Bytes& input) {
    return best_seconds([&] { sink = sink + std::accumulate(input.begin(), input.end(), std::uint64_t{0}); });
  };

  const Bytes log = big_jitlog(target);
  std::size_t traces = 0;
  const double log_parse = best_seconds([&] { traces = read_in_chunks<jitprof::jitlog::JitlogReader>(log).traces.size(); });
  report("jitlog", log, baseline(log), log_parse, fmt::format("{} traces", traces));

  const Bytes profile = big_profile(target);
  std::size_t samples = 0;
  const double profile_parse =
      best_seconds([&] { samples = read_in_chunks<jitprof::vmprof::ProfileReader>(profile).samples.size(); });
  report("vmprof", profile, baseline(profile), profile_parse, fmt::format("{} samples", samples));
  return 0;
}
