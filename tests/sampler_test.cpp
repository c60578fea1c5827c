// The sampler's record parser and sorter on the perf records of a real pypy3
// run (fixtures/perf_records.bin.gz: tests/programs/two_threads.py under
// jitprof's own events, captured by tools/capture_perf_records), without a
// kernel: what a user checks of a recording, on the bytes the kernel wrote.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <span>
#include <vector>

#include "arch/x86_64.h"
#include "binio/binio.h"
#include "record_parser.h"
#include "record_sorter.h"
#include "support/perf_records.h"

namespace {

// The parser's and sorter's types, as the sampler itself names them.
using namespace jitprof::sampler;
using jitprof::testing::RecordedRun;
using jitprof::testing::split_records;
using Bytes = std::vector<std::uint8_t>;

// What the committed fixture holds, counted from the record headers alone
// (scripts/make-fixtures prints the counts when it captures a new one).
constexpr std::size_t kSamples = 242;
constexpr std::size_t kMappings = 15;
constexpr std::size_t kComms = 1;
constexpr std::size_t kForks = 1;
constexpr std::size_t kExits = 2;

const RecordedRun& run() {
  static const RecordedRun recorded = [] {
    Bytes bytes;
    jitprof::binio::read_file_chunks(JITPROF_FIXTURES "/perf_records.bin.gz", [&](std::span<const std::uint8_t> chunk) {
      bytes.insert(bytes.end(), chunk.begin(), chunk.end());
    });
    return jitprof::testing::deserialize(bytes);
  }();
  return recorded;
}

// Every ring's records, decoded, in ring order.
std::vector<std::vector<DecodedRecord>> decoded_rings() {
  std::vector<std::vector<DecodedRecord>> rings;
  for (const auto& ring : run().rings) {
    auto& decoded = rings.emplace_back();
    for (const auto record : split_records(ring.bytes)) decoded.push_back(parse_record(record));
  }
  return rings;
}

template <class Kind>
std::vector<Kind> all_of() {
  std::vector<Kind> found;
  for (const auto& ring : decoded_rings())
    for (const DecodedRecord& record : ring)
      if (const auto* kind = std::get_if<Kind>(&record)) found.push_back(*kind);
  return found;
}

std::vector<TaskEvent> tasks_of_kind(TaskEvent::Kind kind) {
  std::vector<TaskEvent> tasks = all_of<TaskEvent>();
  std::erase_if(tasks, [kind](const TaskEvent& task) { return task.kind != kind; });
  return tasks;
}

// The first record of `type` in the fixture, as its bytes.
Bytes first_record_of_type(std::uint32_t type) {
  for (const auto& ring : run().rings)
    for (const auto record : split_records(ring.bytes))
      if (jitprof::testing::header_of(record).type == type) return {record.begin(), record.end()};
  ADD_FAILURE() << "no record of type " << type;
  return {};
}

TEST(SamplerDecoding, EveryRecordOfTheRunDecodesToTheKindItsHeaderNames) {
  ASSERT_EQ(run().rings.size(), 2u) << "one ring per CPU of the 2-CPU machine that recorded it";
  EXPECT_EQ(all_of<DecodedSample>().size(), kSamples);
  EXPECT_EQ(all_of<Mapping>().size(), kMappings);
  EXPECT_EQ(tasks_of_kind(TaskEvent::Kind::Comm).size() + tasks_of_kind(TaskEvent::Kind::Exec).size(), kComms);
  EXPECT_EQ(tasks_of_kind(TaskEvent::Kind::Fork).size(), kForks);
  EXPECT_EQ(tasks_of_kind(TaskEvent::Kind::Exit).size(), kExits);
  EXPECT_TRUE(all_of<Malformed>().empty());
  EXPECT_TRUE(all_of<Ignored>().empty());
  EXPECT_TRUE(all_of<Lost>().empty()) << "the rings were read often enough to lose nothing";
}

TEST(SamplerDecoding, SamplesAreOfTheRecordedProcessOnBothItsThreads) {
  const std::uint32_t pid = run().pid;
  std::set<std::uint32_t> threads = {pid};
  for (const TaskEvent& fork : tasks_of_kind(TaskEvent::Kind::Fork)) {
    EXPECT_EQ(fork.pid, pid) << "the program starts a thread, no process";
    EXPECT_EQ(fork.parent_pid, pid);
    threads.insert(fork.tid);
  }
  ASSERT_EQ(threads.size(), 2u) << "the main thread and the one it starts";
  std::set<std::uint32_t> sampled;
  for (const DecodedSample& decoded : all_of<DecodedSample>()) {
    EXPECT_EQ(decoded.sample.pid, pid);
    EXPECT_TRUE(threads.contains(decoded.sample.tid)) << decoded.sample.tid;
    sampled.insert(decoded.sample.tid);
  }
  EXPECT_EQ(sampled, threads) << "both threads run a hot loop";
}

TEST(SamplerDecoding, AMappingNamesLibpypysExecutableCodeAndSamplesHitIt) {
  const std::vector<Mapping> mappings = all_of<Mapping>();
  const auto libpypy = std::find_if(mappings.begin(), mappings.end(), [](const Mapping& mapping) {
    return mapping.path.find("libpypy") != std::string::npos && (mapping.prot & PROT_EXEC);
  });
  ASSERT_NE(libpypy, mappings.end());
  EXPECT_EQ(libpypy->pid, run().pid);
  EXPECT_GT(libpypy->length, 0u);
  EXPECT_GT(libpypy->inode, 0u);
  const std::vector<DecodedSample> samples = all_of<DecodedSample>();
  EXPECT_TRUE(std::any_of(samples.begin(), samples.end(), [&](const DecodedSample& decoded) {
    return decoded.sample.ip - libpypy->start < libpypy->length;
  })) << "the interpreter runs before the JIT compiles the loop";
}

TEST(SamplerDecoding, TheExecNamesPypy3) {
  const std::vector<TaskEvent> execs = tasks_of_kind(TaskEvent::Kind::Exec);
  ASSERT_EQ(execs.size(), 1u);
  EXPECT_EQ(execs[0].comm, "pypy3");
  EXPECT_EQ(execs[0].pid, run().pid);
  EXPECT_EQ(execs[0].tid, run().pid);
}

TEST(SamplerDecoding, SamplesOfOneRingAreOfItsCpuAndNeverGoBackInTime) {
  const auto rings = decoded_rings();
  for (std::size_t i = 0; i < rings.size(); ++i) {
    std::uint64_t last = 0;
    for (const DecodedRecord& record : rings[i]) {
      const auto* decoded = std::get_if<DecodedSample>(&record);
      if (!decoded) continue;
      EXPECT_EQ(decoded->sample.cpu, run().rings[i].cpu);
      EXPECT_GE(decoded->sample.time_ns, last) << "ring " << i;
      last = decoded->sample.time_ns;
    }
  }
}

TEST(SamplerDecoding, SamplesCarryTheUserRegistersAndTheStackCopyAsConfigured) {
  for (const DecodedSample& decoded : all_of<DecodedSample>()) {
    const auto& sample = decoded.sample;
    ASSERT_TRUE(sample.has_user_registers);
    EXPECT_NE(sample.user_registers[jitprof::arch::kRsp], 0u);
    EXPECT_TRUE(sample.user_stack.empty()) << "pointed at the copy only when handed out";
    if (sample.in_kernel) {
      EXPECT_FALSE(sample.kernel_callchain.empty());
      // The kernel may fail to copy the user stack (the page is not there):
      // the record still reserves the bytes, and says how many are valid.
      EXPECT_LE(decoded.user_stack.size(), run().user_stack_bytes);
    } else {
      EXPECT_EQ(sample.user_registers[jitprof::arch::kRip], sample.ip) << "registers in perf's order";
      EXPECT_TRUE(sample.kernel_callchain.empty());
      EXPECT_EQ(decoded.user_stack.size(), run().user_stack_bytes);
    }
  }
}

TEST(SamplerDecoding, ARecordCutShortIsMalformedNotReadPast) {
  for (std::uint32_t type : {PERF_RECORD_SAMPLE, PERF_RECORD_MMAP2, PERF_RECORD_COMM, PERF_RECORD_FORK}) {
    const Bytes whole = first_record_of_type(type);
    ASSERT_FALSE(std::holds_alternative<Malformed>(parse_record(whole)));
    for (std::size_t size = 0; size < whole.size(); ++size) {
      // An allocation of exactly the bytes left, so that a sanitizer build sees any read past them.
      const Bytes cut(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(size));
      const DecodedRecord decoded = parse_record(cut);
      ASSERT_TRUE(std::holds_alternative<Malformed>(decoded)) << "type " << type << " cut to " << size;
      if (size >= sizeof(perf_event_header)) {
        EXPECT_EQ(std::get<Malformed>(decoded).type, type);
      }
    }
  }
}

TEST(SamplerDecoding, ASampleWhoseHeaderAdmitsFewerBytesThanItsFieldsIsMalformed) {
  const Bytes whole = first_record_of_type(PERF_RECORD_SAMPLE);
  for (std::size_t size = sizeof(perf_event_header); size < whole.size(); size += 8) {
    Bytes cut(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(size));
    const auto header_size = static_cast<std::uint16_t>(size);
    std::memcpy(cut.data() + offsetof(perf_event_header, size), &header_size, sizeof header_size);
    const DecodedRecord decoded = parse_record(cut);
    ASSERT_TRUE(std::holds_alternative<Malformed>(decoded)) << "cut to " << size;
    EXPECT_EQ(std::get<Malformed>(decoded).type, PERF_RECORD_SAMPLE);
  }
}

// Each ring's samples, mappings and task records, in ring order.
std::vector<std::vector<TimedRecord>> timed_rings() {
  std::vector<std::vector<TimedRecord>> rings;
  for (auto& ring : decoded_rings()) {
    auto& timed = rings.emplace_back();
    for (DecodedRecord& record : ring) {
      if (auto* sample = std::get_if<DecodedSample>(&record)) timed.emplace_back(std::move(*sample));
      if (auto* mapping = std::get_if<Mapping>(&record)) timed.emplace_back(std::move(*mapping));
      if (auto* task = std::get_if<TaskEvent>(&record)) timed.emplace_back(std::move(*task));
    }
  }
  return rings;
}

// The ordering rule, restated: by time, and at equal times samples last.
bool earlier(const TimedRecord& a, const TimedRecord& b) {
  if (time_of(a) != time_of(b)) return time_of(a) < time_of(b);
  return !std::holds_alternative<DecodedSample>(a) && std::holds_alternative<DecodedSample>(b);
}

TEST(SamplerOrdering, RingsReadInRoundsComeOutInTimeOrderNeverPastTheHorizon) {
  std::vector<std::vector<TimedRecord>> rings = timed_rings();
  ASSERT_EQ(rings.size(), 2u);
  std::uint64_t first = UINT64_MAX, last = 0;
  std::size_t total = 0;
  for (const auto& ring : rings) {
    for (const TimedRecord& record : ring) {
      first = std::min(first, time_of(record));
      last = std::max(last, time_of(record));
    }
    total += ring.size();
  }
  constexpr std::uint64_t kRoundNs = 10'000'000;
  RecordSorter sorter(rings.size());
  std::vector<std::size_t> next(rings.size(), 0);
  std::vector<TimedRecord> handed;
  std::vector<std::uint64_t> added;  // the times of the records given to the sorter
  bool held_back = false;
  for (std::uint64_t horizon = first; horizon <= last; horizon += kRoundNs) {
    // Ring 0 is read at the horizon, ring 1 half a round later: it brings
    // records that ring 0 may still precede.
    for (std::size_t r = 0; r < rings.size(); ++r) {
      const std::uint64_t read_at = horizon + r * kRoundNs / 2;
      sorter.ring_read_at(r, read_at);
      for (; next[r] < rings[r].size() && time_of(rings[r][next[r]]) <= read_at; ++next[r]) {
        added.push_back(time_of(rings[r][next[r]]));
        sorter.add(std::move(rings[r][next[r]]));
      }
    }
    const std::vector<TimedRecord> ready = sorter.take_ready();
    for (const TimedRecord& record : ready) EXPECT_LE(time_of(record), horizon) << "handed out past the horizon";
    handed.insert(handed.end(), ready.begin(), ready.end());
    const auto up_to_horizon = std::count_if(added.begin(), added.end(), [&](auto time) { return time <= horizon; });
    EXPECT_EQ(handed.size(), static_cast<std::size_t>(up_to_horizon)) << "all up to the horizon is handed out";
    held_back = held_back || added.size() > handed.size();
  }
  EXPECT_TRUE(held_back) << "the horizon kept records waiting";
  // The final round: whatever is left in the rings, and everything goes.
  for (std::size_t r = 0; r < rings.size(); ++r)
    for (; next[r] < rings[r].size(); ++next[r]) sorter.add(std::move(rings[r][next[r]]));
  const std::vector<TimedRecord> rest = sorter.take_all();
  handed.insert(handed.end(), rest.begin(), rest.end());
  EXPECT_EQ(handed.size(), total);
  EXPECT_TRUE(std::is_sorted(handed.begin(), handed.end(), earlier));
}

TEST(SamplerOrdering, NothingIsHandedOutBeforeEveryRingWasRead) {
  std::vector<std::vector<TimedRecord>> rings = timed_rings();
  RecordSorter sorter(rings.size());
  for (TimedRecord& record : rings[0]) sorter.add(std::move(record));
  sorter.ring_read_at(0, UINT64_MAX);
  EXPECT_TRUE(sorter.take_ready().empty()) << "ring 1, never read, may hold anything";
  EXPECT_EQ(sorter.take_all().size(), rings[0].size());
}

TEST(SamplerOrdering, EveryThreadIsAnnouncedBeforeItsFirstSample) {
  RecordSorter sorter(2);
  // Ring 1 (the second thread's samples) before ring 0 (its fork).
  std::vector<std::vector<TimedRecord>> rings = timed_rings();
  for (auto ring = rings.rbegin(); ring != rings.rend(); ++ring)
    for (TimedRecord& record : *ring) sorter.add(std::move(record));
  std::set<std::uint32_t> announced;
  std::size_t samples = 0;
  for (const TimedRecord& record : sorter.take_all()) {
    if (const auto* task = std::get_if<TaskEvent>(&record)) announced.insert(task->tid);
    if (const auto* decoded = std::get_if<DecodedSample>(&record)) {
      EXPECT_TRUE(announced.contains(decoded->sample.tid)) << "sample of thread " << decoded->sample.tid;
      ++samples;
    }
  }
  EXPECT_EQ(samples, kSamples);
}

TEST(SamplerOrdering, AtEqualTimesMappingsAndTasksComeBeforeSamplesWhichKeepTheirOrder) {
  const std::vector<DecodedSample> samples = all_of<DecodedSample>();
  ASSERT_NE(samples[0].sample.user_registers, samples[1].sample.user_registers);
  DecodedSample first = samples[0], second = samples[1];
  Mapping mapping = all_of<Mapping>().front();
  TaskEvent fork = tasks_of_kind(TaskEvent::Kind::Fork).front();
  const std::uint64_t time = first.sample.time_ns;
  second.sample.time_ns = mapping.time_ns = fork.time_ns = time;
  RecordSorter sorter(1);
  sorter.add(first);
  sorter.add(mapping);
  sorter.add(second);
  sorter.add(fork);
  sorter.ring_read_at(0, time);
  const std::vector<TimedRecord> out = sorter.take_ready();
  ASSERT_EQ(out.size(), 4u);
  EXPECT_TRUE(std::holds_alternative<Mapping>(out[0]));
  EXPECT_TRUE(std::holds_alternative<TaskEvent>(out[1]));
  EXPECT_EQ(std::get<DecodedSample>(out[2]).sample.user_registers, first.sample.user_registers);
  EXPECT_EQ(std::get<DecodedSample>(out[3]).sample.user_registers, second.sample.user_registers);
}

}  // namespace
