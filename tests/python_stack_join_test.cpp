// Joining the BPF program's shadow-stack records to perf samples, without a
// kernel: each record is dated a few microseconds from its sample (after it on
// kernel 6.18, before it on older ones), records arrive in the order CPUs
// committed them, and either side may be lost.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>

#include "python_stack_join.h"

namespace {

using namespace jitprof::sampler;

constexpr std::uint64_t kWindow = 500'000;  // half a period at 1 kHz
constexpr std::uint32_t kPid = 100, kThreadA = 100, kThreadB = 101;
constexpr std::uint64_t kIp = 0x401000;

// A record whose stack names `id`, dated `time`.
PythonStackRecord record(std::uint32_t tid, std::uint64_t time, std::uint64_t id, std::uint64_t ip = kIp) {
  return {time, kPid, tid, ip, PythonStack{PythonStackStatus::Complete, {{PythonFrameEntry::kCode, id, 0}}}};
}

// The id the joined stack names, or 0 when the record is Lost.
std::uint64_t id_of(const std::optional<PythonStack>& stack) {
  EXPECT_TRUE(stack.has_value());
  if (!stack || stack->status == PythonStackStatus::Lost) return 0;
  return stack->entries.at(0).value;
}

TEST(PythonStackJoin, EachSampleGetsTheRecordReadJustBeforeIt) {
  PythonStackJoin join(kWindow);
  join.watch(kPid, 0);
  join.add(record(kThreadA, 1'000'000, 1));
  join.add(record(kThreadA, 2'000'000, 2));
  EXPECT_EQ(id_of(join.take(kPid, kThreadA, 1'000'004, kIp)), 1u);
  EXPECT_EQ(id_of(join.take(kPid, kThreadA, 2'000'003, kIp)), 2u);
  EXPECT_EQ(join.pending(), 0u);
}

TEST(PythonStackJoin, ARecordDatedAfterItsSampleMatchesItAndNotTheNext) {
  PythonStackJoin join(kWindow);
  join.watch(kPid, 0);
  // Kernel 6.18 dates the sample, then runs the program: 0.3 to 8 us later.
  join.add(record(kThreadA, 1'000'007, 1));
  join.add(record(kThreadA, 2'000'001, 2));
  join.add(record(kThreadA, 3'000'008, 3));
  EXPECT_EQ(id_of(join.take(kPid, kThreadA, 1'000'000, kIp)), 1u);
  // The record of the sample at 2'000'000 was dropped: the one dated after the next sample is not its.
  EXPECT_EQ(join.take(kPid, kThreadA, 2'000'000 + kWindow + 2, kIp)->status, PythonStackStatus::Lost);
  EXPECT_EQ(id_of(join.take(kPid, kThreadA, 3'000'000, kIp)), 3u);
  EXPECT_EQ(join.pending(), 0u);
}

TEST(PythonStackJoin, ASampleBetweenTwoRecordsTakesTheNearest) {
  PythonStackJoin join(kWindow);
  join.watch(kPid, 0);
  join.add(record(kThreadA, 1'000'000 - 100, 1));
  join.add(record(kThreadA, 1'000'000 + 5, 2));
  EXPECT_EQ(id_of(join.take(kPid, kThreadA, 1'000'000, kIp)), 2u);
  EXPECT_EQ(join.pending(), 0u);
}

TEST(PythonStackJoin, RecordsCommittedOutOfOrderByTwoCpusStillMatch) {
  PythonStackJoin join(kWindow);
  join.watch(kPid, 0);
  // The thread migrated: CPU 1 committed the later record first.
  join.add(record(kThreadA, 2'000'000, 2));
  join.add(record(kThreadB, 1'500'000, 20));
  join.add(record(kThreadA, 1'000'000, 1));
  EXPECT_EQ(id_of(join.take(kPid, kThreadA, 1'000'005, kIp)), 1u);
  EXPECT_EQ(id_of(join.take(kPid, kThreadB, 1'500'005, kIp)), 20u);
  EXPECT_EQ(id_of(join.take(kPid, kThreadA, 2'000'005, kIp)), 2u);
}

TEST(PythonStackJoin, ARecordWhoseSampleWasLostIsNeverGivenToTheNextSample) {
  PythonStackJoin join(kWindow);
  join.watch(kPid, 0);
  join.add(record(kThreadA, 1'000'000, 1));  // its perf sample was lost
  join.add(record(kThreadA, 2'000'000, 2));
  EXPECT_EQ(id_of(join.take(kPid, kThreadA, 2'000'004, kIp)), 2u);
  EXPECT_EQ(join.pending(), 0u) << "the older record is discarded";
}

TEST(PythonStackJoin, ASampleWhoseRecordWasLostIsLostNotGivenAnOlderRecord) {
  PythonStackJoin join(kWindow);
  join.watch(kPid, 0);
  join.add(record(kThreadA, 1'000'000, 1));  // its perf sample was lost too
  // The record of the sample at 2'000'004 was dropped (the BPF ring was full).
  const auto stack = join.take(kPid, kThreadA, 2'000'004, kIp);
  ASSERT_TRUE(stack);
  EXPECT_EQ(stack->status, PythonStackStatus::Lost);
  EXPECT_TRUE(stack->entries.empty());
  // Without any record of the thread.
  EXPECT_EQ(join.take(kPid, kThreadB, 2'000'004, kIp)->status, PythonStackStatus::Lost);
}

TEST(PythonStackJoin, TheIpMustBeTheSamples) {
  PythonStackJoin join(kWindow);
  join.watch(kPid, 0);
  join.add(record(kThreadA, 1'000'000, 1, kIp + 4));
  EXPECT_EQ(join.take(kPid, kThreadA, 1'000'004, kIp)->status, PythonStackStatus::Lost);
}

TEST(PythonStackJoin, TwoThreadsInterleavedEachGetTheirOwn) {
  PythonStackJoin join(kWindow);
  join.watch(kPid, 0);
  for (std::uint64_t i = 1; i <= 100; ++i) {
    join.add(record(kThreadA, i * 1'000'000, i));
    join.add(record(kThreadB, i * 1'000'000 + 10, 1000 + i));
  }
  for (std::uint64_t i = 1; i <= 100; ++i) {
    // Thread B's sample is dated before thread A's record of the same moment.
    EXPECT_EQ(id_of(join.take(kPid, kThreadB, i * 1'000'000 + 12, kIp)), 1000 + i);
    EXPECT_EQ(id_of(join.take(kPid, kThreadA, i * 1'000'000 + 15, kIp)), i);
  }
}

TEST(PythonStackJoin, OnlyWatchedProcessesFromTheWatchOnHaveStacks) {
  PythonStackJoin join(kWindow);
  join.add(record(kThreadA, 1'000'000, 1));
  EXPECT_FALSE(join.take(kPid, kThreadA, 1'000'004, kIp)) << "not watched";
  join.watch(kPid, 1'500'000);
  join.add(record(kThreadA, 1'400'000, 2));
  EXPECT_FALSE(join.take(kPid, kThreadA, 1'400'004, kIp)) << "before the watch";
  join.add(record(kThreadA, 2'000'000, 3));
  EXPECT_EQ(id_of(join.take(kPid, kThreadA, 2'000'004, kIp)), 3u);
  EXPECT_FALSE(join.forget(kPid, 1'000'000)) << "an exec before the watch leaves it";
  EXPECT_TRUE(join.forget(kPid, 3'000'000));
  EXPECT_FALSE(join.take(kPid, kThreadA, 3'000'004, kIp));
}

TEST(PythonStackJoin, ARecordOutsideTheWindowIsNotJoined) {
  PythonStackJoin join(kWindow);
  join.watch(kPid, 0);
  join.add(record(kThreadA, 1'000'000, 1));
  join.add(record(kThreadA, 3'000'000 + kWindow + 1, 2));
  EXPECT_EQ(join.take(kPid, kThreadA, 1'000'000 + kWindow + 1, kIp)->status, PythonStackStatus::Lost);
  EXPECT_EQ(join.take(kPid, kThreadA, 3'000'000, kIp)->status, PythonStackStatus::Lost);
  EXPECT_EQ(join.pending(), 1u) << "the later record waits for its own sample";
}

TEST(PythonStackJoin, RecordsNoSampleCanTakeAnyMoreAreDiscarded) {
  PythonStackJoin join(kWindow);
  join.watch(kPid, 0);
  join.add(record(kThreadA, 1'000'000, 1));  // the thread exited; its sample was lost
  join.add(record(kThreadB, 5'000'000, 2));  // its sample is not handed out yet
  join.discard_before(1'000'000 + kWindow);
  EXPECT_EQ(join.pending(), 2u) << "a sample up to the window's end may still come";
  join.discard_before(1'000'000 + kWindow + 1);
  EXPECT_EQ(join.pending(), 1u);
  EXPECT_EQ(id_of(join.take(kPid, kThreadB, 5'000'004, kIp)), 2u);
}

}  // namespace
