// The sampler's BPF program on the real kernel, without PyPy: a C program
// (programs/shadow_stack_threads.c) keeps PyPy-shaped thread-local blocks in
// a shared library (global-dynamic TLS: a DTV slot, as libpypy's) with known
// shadow stacks on threads that spin, and says what each thread's record must
// be. Every sample of a watched process must carry exactly that stack.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sampler/sampler.h"
#include "test_process.h"

namespace {

using namespace jitprof::sampler;
using jitprof::testing::Background;

struct Expected {
  std::string name;
  std::uint32_t tid;
  PythonStackStatus status;
  std::vector<PythonFrameEntry> entries;
};

PythonStackStatus status_named(const std::string& name) {
  if (name == "Complete") return PythonStackStatus::Complete;
  if (name == "Truncated") return PythonStackStatus::Truncated;
  if (name == "NotReady") return PythonStackStatus::NotReady;
  if (name == "NoThreadBlock") return PythonStackStatus::NoThreadBlock;
  if (name == "Unreadable") return PythonStackStatus::Unreadable;
  ADD_FAILURE() << "unknown status " << name;
  return PythonStackStatus::Lost;
}

// "layout <slot> <ready> <ident> <stack>" of the program's output.
ShadowStackLayout layout_of(const std::string& out) {
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string word, slot;
    ShadowStackLayout layout{};
    if (!(words >> word) || word != "layout") continue;
    words >> slot >> layout.ready_offset >> layout.ident_offset >> layout.stack_offset;
    layout.dtpmod_slot_address = std::stoull(slot, nullptr, 16);
    layout.check_ident = true;
    return layout;
  }
  ADD_FAILURE() << "no layout in " << out;
  return {};
}

// "stack <name> <tid> <status> <depth> <kind>:<value>:<return address>..." lines.
std::map<std::string, Expected> stacks_of(const std::string& out) {
  std::map<std::string, Expected> stacks;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string word, status;
    Expected expected;
    std::size_t depth = 0;
    if (!(words >> word) || word != "stack") continue;
    words >> expected.name >> expected.tid >> status >> depth;
    expected.status = status_named(status);
    for (std::size_t i = 0; i < depth; ++i) {
      words >> word;
      const auto colon = word.find(':'), second = word.find(':', colon + 1);
      expected.entries.push_back({static_cast<std::uint8_t>(std::stoul(word.substr(0, colon))),
                                  std::stoull(word.substr(colon + 1, second - colon - 1), nullptr, 16),
                                  std::stoull(word.substr(second + 1), nullptr, 16)});
    }
    stacks[expected.name] = std::move(expected);
  }
  return stacks;
}

struct ThreadSamples {
  std::size_t samples = 0;
  std::vector<std::optional<PythonStack>> stacks;
  std::vector<bool> in_kernel;
  std::vector<std::uint64_t> times;
};

// Keeps every sample's stack per thread; watches child processes of the
// fixture as the fork is told of, from the reader thread.
class Collector : public Listener {
 public:
  Collector(pid_t fixture, const ShadowStackLayout& layout) : fixture_(fixture), layout_(layout) {}
  void on_sample(const Sample& sample) override {
    ThreadSamples& thread = threads[sample.tid];
    ++thread.samples;
    thread.stacks.push_back(sample.python_stack);
    thread.in_kernel.push_back(sample.in_kernel);
    thread.times.push_back(sample.time_ns);
  }
  void on_mapping(const Mapping&) override {}
  void on_task(const TaskEvent& event) override {
    // A fork of the fixture: same address space layout, so the same stack layout.
    if (event.kind == TaskEvent::Kind::Fork && event.pid == event.tid && event.parent_pid == std::uint32_t(fixture_) &&
        event.pid != event.parent_pid) {
      sampler->watch_python_stacks(static_cast<pid_t>(event.pid), layout_);
      child = event.pid;
    }
  }
  Sampler* sampler = nullptr;
  std::uint32_t child = 0;
  std::map<std::uint32_t, ThreadSamples> threads;  // written on the reader thread until stop()

 private:
  pid_t fixture_;
  ShadowStackLayout layout_;
};

// Empty: a previous run's output would pass for the fixture's.
std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("jitprof-python-stack-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

TEST(PythonStacks, EverySampleOfEveryThreadCarriesExactlyTheStackItBuilt) {
  Background fixture({SHADOW_STACK_THREADS}, scratch_dir("exact"), "fixture");
  ASSERT_TRUE(fixture.wait_for_output("ready\n")) << fixture.err();
  const ShadowStackLayout layout = layout_of(fixture.out());

  Settings settings;
  settings.python_stacks = true;
  settings.user_stack_bytes = 512;
  std::unique_ptr<Sampler> sampler = Sampler::for_running_process(fixture.pid(), settings);
  if (const auto why = sampler->python_stacks_unavailable()) {
    if (::geteuid() != 0) GTEST_SKIP() << *why;
    FAIL() << *why;
  }
  Collector collector(fixture.pid(), layout);
  collector.sampler = sampler.get();
  sampler->watch_python_stacks(fixture.pid(), layout);
  sampler->start(collector);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  // A thread and a process started while sampling: their events, inherited, run the program too.
  ::kill(fixture.pid(), SIGUSR1);
  ASSERT_TRUE(fixture.wait_for_output("stack late"));
  ::kill(fixture.pid(), SIGUSR2);
  ASSERT_TRUE(fixture.wait_for_output("stack child"));
  std::this_thread::sleep_for(std::chrono::seconds(3));
  sampler->stop();
  const Stats stats = sampler->stats();

  const std::map<std::string, Expected> expected = stacks_of(fixture.out());
  ASSERT_EQ(expected.size(), 8u) << fixture.out();
  ASSERT_NE(collector.child, 0u) << "the fork was told of";
  EXPECT_EQ(expected.at("child").tid, collector.child);
  std::size_t joined = 0, lost = 0;
  for (const auto& [name, thread] : expected) {
    SCOPED_TRACE(name);
    const ThreadSamples& samples = collector.threads[thread.tid];
    std::size_t i = 0, before_watch = 0, before_set_up = 0, watched = 0, exact = 0, exact_in_kernel = 0,
                thread_lost = 0;
    // The samples before the watch began have no stack; a thread started
    // while sampling is NotReady until it has set its block up.
    for (; i < samples.stacks.size() && !samples.stacks[i]; ++i) ++before_watch;
    if (name == "late")
      for (; i < samples.stacks.size() && samples.stacks[i]->status == PythonStackStatus::NotReady; ++i)
        ++before_set_up;
    for (; i < samples.stacks.size(); ++i) {
      const auto& stack = samples.stacks[i];
      ASSERT_TRUE(stack) << "sample " << i << ": every sample after the watch has a stack";
      ++watched;
      if (stack->status == PythonStackStatus::Lost) {
        ++thread_lost;
        continue;
      }
      if (stack->status != thread.status || stack->entries != thread.entries) {
        std::printf("  %s sample %zu at %lu%s: status %d, %zu entries\n", name.c_str(), i,
                    (unsigned long)samples.times[i], samples.in_kernel[i] ? " in the kernel" : "",
                    int(stack->status), stack->entries.size());
        continue;
      }
      ++exact;
      exact_in_kernel += samples.in_kernel[i];
    }
    joined += watched - thread_lost;
    lost += thread_lost;
    std::printf("%-9s tid %u: %zu samples, %zu before the watch, %zu before the set-up, %zu watched: %zu exact "
                "(%zu of them in the kernel), %zu lost\n",
                name.c_str(), thread.tid, samples.samples, before_watch, before_set_up, watched, exact,
                exact_in_kernel, thread_lost);
    EXPECT_GE(watched, 50u) << "the thread spins for seconds at 1 kHz";
    EXPECT_LE(before_set_up, 3u);
    if (name != "child") {
      // Watched right after the events were opened: a few milliseconds at most, however busy the machine.
      EXPECT_LE(before_watch * 100, samples.samples) << "at most 1% of a thread's samples come before the watch";
    }
    EXPECT_GE(exact * 100, watched * 99) << "at least 99% carry exactly the stack the thread built";
  }
  std::printf("stats: %lu samples, %lu joined, %lu lost, %lu dropped, %lu perf records lost\n",
              (unsigned long)stats.samples, (unsigned long)stats.python_stacks,
              (unsigned long)stats.python_stacks_lost, (unsigned long)stats.python_stacks_dropped,
              (unsigned long)stats.lost);
  EXPECT_GE(stats.python_stacks, joined) << "the main thread's samples count too";
  EXPECT_GE(stats.python_stacks_lost, lost);
  EXPECT_EQ(stats.python_stacks_dropped, 0u);
}

TEST(PythonStacks, SamplesOfProcessesNotWatchedOrWithoutTheSettingHaveNone) {
  Background fixture({SHADOW_STACK_THREADS}, scratch_dir("off"), "fixture");
  ASSERT_TRUE(fixture.wait_for_output("ready\n")) << fixture.err();
  for (const bool python_stacks : {false, true}) {
    SCOPED_TRACE(python_stacks);
    Settings settings;
    settings.python_stacks = python_stacks;
    settings.user_stack_bytes = 512;
    std::unique_ptr<Sampler> sampler = Sampler::for_running_process(fixture.pid(), settings);
    if (!python_stacks) {
      EXPECT_FALSE(sampler->python_stacks_unavailable()) << "not asked for: nothing to explain";
      sampler->watch_python_stacks(fixture.pid(), layout_of(fixture.out()));
    }
    Collector collector(fixture.pid(), {});
    sampler->start(collector);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    sampler->stop();
    std::size_t samples = 0;
    for (const auto& [tid, thread] : collector.threads) {
      samples += thread.samples;
      for (const auto& stack : thread.stacks) EXPECT_FALSE(stack.has_value());
    }
    EXPECT_GT(samples, 50u);
    EXPECT_EQ(sampler->stats().python_stacks + sampler->stats().python_stacks_lost, 0u);
  }
}

}  // namespace
