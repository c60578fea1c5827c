// The rule that names a thread: its Python name over its OS name, the OS
// name for threads without a Python name, a renamed thread's latest name.
#include <gtest/gtest.h>

#include "bundle/sections.h"
#include "correlate/profile.h"

namespace {

using jitprof::bundle::TaskRecord;
using Kind = TaskRecord::Kind;
namespace correlate = jitprof::correlate;

// pypy3 (pid 100) started a Python thread (101) and a native one (102); perf
// and /proc told the OS names, record's sitecustomize the Python names (dated
// when they arrived, after the perf events).
std::vector<TaskRecord> recorded_tasks() {
  return {
      {Kind::Exec, 10, 100, 100, 0, 0, "pypy3"},
      {Kind::PythonName, 12, 100, 100, 0, 0, "MainThread"},
      {Kind::Fork, 20, 100, 101, 100, 100, ""},
      {Kind::Fork, 30, 100, 102, 100, 100, ""},
      {Kind::Comm, 31, 100, 102, 0, 0, "zstd-worker"},
      {Kind::PythonName, 25, 100, 101, 0, 0, "worker-1"},
      {Kind::PythonName, 40, 100, 101, 0, 0, "worker-1 (draining)"},
      {Kind::Exit, 50, 100, 101, 100, 100, ""},
  };
}

TEST(ThreadNames, PythonNameOverOsNameAndTheLatestRename) {
  const correlate::ThreadNames names = correlate::thread_names(recorded_tasks());
  ASSERT_EQ(names.size(), 3u);
  const correlate::ThreadName& main = names.at({100, 100});
  EXPECT_EQ(main.shown(), "MainThread");
  EXPECT_EQ(main.os, "pypy3");
  const correlate::ThreadName& worker = names.at({100, 101});
  EXPECT_EQ(worker.shown(), "worker-1 (draining)");
  EXPECT_EQ(worker.os, "pypy3") << "a new thread has its creator's OS name until it sets one";
  const correlate::ThreadName& native = names.at({100, 102});
  EXPECT_EQ(native.python, "");
  EXPECT_EQ(native.shown(), "zstd-worker");
  EXPECT_EQ(correlate::thread_label(&worker, 101), "worker-1 (draining) (tid 101)");
  EXPECT_EQ(correlate::thread_label(&native, 102), "zstd-worker (tid 102)");
  EXPECT_EQ(correlate::thread_label(nullptr, 103), "tid 103");
}

TEST(ThreadNames, RecordsAreTakenInTimeOrderWhateverTheirOrderInTheSection) {
  // A Python name read before a later comm still wins; a comm after the rename does not undo it.
  const correlate::ThreadNames names = correlate::thread_names({
      {Kind::PythonName, 40, 7, 8, 0, 0, "late-name"},
      {Kind::PythonName, 30, 7, 8, 0, 0, "early-name"},
      {Kind::Comm, 45, 7, 8, 0, 0, "pypy3"},
  });
  EXPECT_EQ(names.at({7, 8}).shown(), "late-name");
  EXPECT_EQ(names.at({7, 8}).os, "pypy3");
}

TEST(ThreadNames, AnExecForgetsTheOldProgramsPythonNames) {
  // The Python program exec'd a shell: its main thread is "sh" from then on.
  std::vector<TaskRecord> tasks = recorded_tasks();
  tasks.push_back({Kind::Exec, 60, 100, 100, 0, 0, "sh"});
  const correlate::ThreadNames names = correlate::thread_names(tasks);
  EXPECT_EQ(names.at({100, 100}).shown(), "sh");
}

TEST(ThreadNames, AttachKnowsOnlyOsNames) {
  // attach: /proc's comm for each thread at the start, a thread that renamed itself later.
  const correlate::ThreadNames names = correlate::thread_names({
      {Kind::Comm, 5, 300, 300, 0, 0, "pypy3"},
      {Kind::Comm, 5, 300, 301, 0, 0, "pypy3"},
      {Kind::Comm, 9, 300, 301, 0, 0, "io-loop"},
  });
  EXPECT_EQ(names.at({300, 300}).shown(), "pypy3");
  EXPECT_EQ(names.at({300, 301}).shown(), "io-loop");
}

}  // namespace
