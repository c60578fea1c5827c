// End-to-end: Python stacks read from PyPy's shadow stack at every sample by
// the BPF sampler (`record`, `attach`), checked per thread and per sample on
// real pypy3 programs; and the vmprof path that --no-bpf keeps.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "bundle/bundle.h"
#include "correlate/profile.h"
#include "test_process.h"

namespace fs = std::filesystem;
using jitprof::correlate::Category;
using jitprof::correlate::Profile;
using jitprof::testing::Background;
using jitprof::testing::Result;
using nlohmann::json;

namespace {

std::string program(const std::string& name) { return std::string(JITPROF_SOURCE_DIR) + "/tests/programs/" + name; }

// The Python functions of each sample of a thread, root first.
std::vector<std::vector<std::string>> python_stacks_of(const Profile& profile, std::uint32_t tid) {
  std::vector<std::vector<std::string>> stacks;
  for (const auto& sample : profile.samples) {
    if (sample.tid != tid) continue;
    std::vector<std::string> names;
    for (const std::uint32_t id : profile.stacks[sample.stack]) {
      const auto& frame = profile.frames[id];
      if (frame.category == Category::Python || frame.category == Category::JitInlined) names.push_back(frame.name);
    }
    stacks.push_back(std::move(names));
  }
  return stacks;
}

bool has(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::size_t count_with(const std::vector<std::vector<std::string>>& stacks, std::initializer_list<const char*> any_of) {
  return std::count_if(stacks.begin(), stacks.end(), [&](const auto& names) {
    return std::any_of(any_of.begin(), any_of.end(), [&](const char* name) { return has(names, name); });
  });
}

// The most common stacks that hold none of `functions`, for failure messages.
std::string others_of(const std::vector<std::vector<std::string>>& stacks, std::initializer_list<const char*> functions) {
  std::map<std::string, std::size_t> counts;
  for (const auto& names : stacks) {
    if (std::any_of(functions.begin(), functions.end(), [&](const char* name) { return has(names, name); })) continue;
    std::string line;
    for (const auto& name : names) line += name + ";";
    ++counts[line];
  }
  std::vector<std::pair<std::size_t, std::string>> sorted;
  for (const auto& [line, count] : counts) sorted.emplace_back(count, line);
  std::sort(sorted.rbegin(), sorted.rend());
  std::string text;
  for (std::size_t i = 0; i < std::min<std::size_t>(5, sorted.size()); ++i)
    text += std::to_string(sorted[i].first) + "  " + sorted[i].second + "\n";
  return text;
}

// "alpha 1234\nbeta 1235\n" -> {alpha: 1234, beta: 1235}
std::map<std::string, std::uint32_t> thread_ids(const std::string& out) {
  std::map<std::string, std::uint32_t> ids;
  std::istringstream lines(out);
  std::string name;
  std::uint32_t tid;
  while (lines >> name >> tid) ids[name] = tid;
  return ids;
}

class PythonStacks : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("jitprof-pystacks-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  Result run(const std::vector<std::string>& argv) const { return jitprof::testing::run_command(argv, dir_); }

  Result record(const std::string& bundle, std::vector<std::string> options, std::vector<std::string> command) const {
    std::vector<std::string> argv = {JITPROF_BIN, "record", "-q", "-o", bundle};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back("--");
    argv.insert(argv.end(), command.begin(), command.end());
    return run(argv);
  }

  json view(const std::string& command, const std::string& bundle) const {
    const Result result = run({JITPROF_BIN, command, "--json", bundle});
    EXPECT_EQ(result.status, 0) << result.err;
    return json::parse(result.out);
  }

  fs::path dir_;
};

TEST_F(PythonStacks, EachWorkerThreadIsChargedItsOwnFunctionAndTheJoiningMainThreadNeither) {
  const std::string bundle = path("workers.jprof");
  const Result recorded = record(bundle, {}, {JITPROF_PYPY, program("two_workers.py"), "2.5"});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  const auto ids = thread_ids(recorded.out);
  ASSERT_TRUE(ids.contains("alpha") && ids.contains("beta")) << recorded.out;

  const json info = view("info", bundle);
  EXPECT_EQ(info["manifest"]["python_stacks"]["source"], "shadow stack") << info["manifest"].dump();
  EXPECT_EQ(info["manifest"]["python_stacks"]["processes"], 1);
  // vmprof only named the code objects: none of its samples ran.
  EXPECT_EQ(info["manifest"]["vmprof"]["sampling"], false);
  EXPECT_EQ(info["vmprof"]["samples"], 0);
  EXPECT_GT(info["vmprof"]["code_objects"].get<int>(), 100);

  const Profile profile = jitprof::correlate::correlate(jitprof::bundle::read_bundle(bundle));
  // vmprof names every code object (some whose names were still in its buffers at exit may miss).
  EXPECT_LE(double(profile.stats.samples_with_unnamed_code), 0.01 * double(profile.stats.samples));
  struct Worker {
    const char* name;
    std::initializer_list<const char*> own, other;
  };
  for (const Worker& worker : {Worker{"alpha", {"worker_alpha"}, {"worker_beta", "beta_step"}},
                               Worker{"beta", {"worker_beta"}, {"worker_alpha", "alpha_step"}}}) {
    const auto stacks = python_stacks_of(profile, ids.at(worker.name));
    ASSERT_GT(stacks.size(), 500u) << worker.name;
    const std::size_t own = count_with(stacks, worker.own), other = count_with(stacks, worker.other);
    std::printf("%s: %zu samples, %zu with its own function, %zu with the other's\n", worker.name, stacks.size(), own,
                other);
    EXPECT_GE(double(own), 0.98 * double(stacks.size())) << worker.name << ": the others look like\n"
                                                          << others_of(stacks, worker.own);
    EXPECT_LE(double(other), 0.01 * double(stacks.size())) << worker.name;
  }
  // The main thread only joins: its own path, never a worker's function.
  const auto main_stacks = python_stacks_of(profile, static_cast<std::uint32_t>(info["manifest"]["pid"].get<int>()));
  EXPECT_EQ(count_with(main_stacks, {"worker_alpha", "alpha_step", "worker_beta", "beta_step"}), 0u);

  // The report and info say where the Python frames came from.
  const json report = view("report", bundle);
  EXPECT_GE(report["python_stacks"]["exact"].get<double>(), 0.95 * report["samples"].get<double>());
  EXPECT_EQ(report["python_stacks"]["from_vmprof_by_time"], 0);
  const Result text = run({JITPROF_BIN, "report", bundle});
  EXPECT_NE(text.out.find("Python stacks: exact (read from PyPy's shadow stack at each sample)"), std::string::npos)
      << text.out;
}

TEST_F(PythonStacks, AChildProcessStartedWithChildrenHasItsOwnExactStacks) {
  const std::string bundle = path("children.jprof");
  const Result recorded = record(bundle, {"--children"}, {JITPROF_PYPY, program("child_processes.py")});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  const auto ids = thread_ids(recorded.out);
  ASSERT_TRUE(ids.contains("parent") && ids.contains("child")) << recorded.out;
  const json info = view("info", bundle);
  EXPECT_EQ(info["manifest"]["python_stacks"]["processes"], 2);
  const Profile profile = jitprof::correlate::correlate(jitprof::bundle::read_bundle(bundle));
  auto parent = python_stacks_of(profile, ids.at("parent"));  // the main thread's tid is the pid
  std::erase_if(parent, [](const auto& names) { return !has(names, "spin"); });
  ASSERT_GT(parent.size(), 300u);
  EXPECT_GE(double(count_with(parent, {"parent_work"})), 0.98 * double(parent.size())) << others_of(parent, {"parent_work"});
  EXPECT_EQ(count_with(parent, {"child_work"}), 0u);
  // The child's stacks are read as exactly, but its code objects have no
  // names: vmprof runs in the target only, and the child is gone when the
  // recording ends. Its ids are its own, never named after the parent's.
  std::size_t child_samples = 0, child_exact = 0;
  for (const auto& sample : profile.samples) {
    if (sample.pid != ids.at("child")) continue;
    ++child_samples;
    std::size_t unnamed = 0, named = 0;
    for (const std::uint32_t id : profile.stacks[sample.stack]) {
      const auto& frame = profile.frames[id];
      if (frame.category != Category::Python) continue;
      ++(frame.name.starts_with("code #") ? unnamed : named);
    }
    EXPECT_EQ(named, 0u);
    child_exact += unnamed >= 3;
  }
  // (Less its start-up, before jitprof had read where its stacks are.)
  EXPECT_GT(child_samples, 500u);
  EXPECT_GE(double(child_exact), 0.6 * double(child_samples));
  EXPECT_GT(profile.stats.unnamed_code_objects, 3u);
}

TEST_F(PythonStacks, WithoutBpfVmprofSamplesAndTheStacksAreJoinedFromThem) {
  const std::string bundle = path("vmprof.jprof");
  const Result recorded = record(bundle, {"--no-bpf"}, {JITPROF_PYPY, program("two_workers.py"), "1"});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  const json info = view("info", bundle);
  EXPECT_EQ(info["manifest"]["python_stacks"]["source"], "vmprof");
  EXPECT_EQ(info["manifest"]["vmprof"]["sampling"], true);
  EXPECT_GT(info["vmprof"]["samples"].get<int>(), 100);
  const json report = view("report", bundle);
  EXPECT_EQ(report["python_stacks"]["exact"], 0);
  EXPECT_GT(report["python_stacks"]["from_vmprof_by_time"].get<int>() + report["python_stacks"]["from_jitlog"].get<int>(),
            100);
}

// descend() called `depth` times, then spin(): the samples in spin.
std::vector<std::vector<std::string>> spin_stacks(const Profile& profile, std::uint32_t pid) {
  auto stacks = python_stacks_of(profile, pid);
  std::erase_if(stacks, [](const auto& names) { return !has(names, "spin"); });
  return stacks;
}

TEST_F(PythonStacks, ARecursionOf40CallsShowsEveryCall) {
  const std::string bundle = path("deep40.jprof");
  const Result recorded = record(bundle, {}, {JITPROF_PYPY, program("deep_stacks.py"), "40"});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  const Profile profile = jitprof::correlate::correlate(jitprof::bundle::read_bundle(bundle));
  const json info = view("info", bundle);
  const auto stacks = spin_stacks(profile, static_cast<std::uint32_t>(info["manifest"]["pid"].get<int>()));
  ASSERT_GT(stacks.size(), 500u);
  const std::size_t exact = std::count_if(stacks.begin(), stacks.end(), [](const auto& names) {
    // PyPy's own start-up frames (app_main.py) come first, then the program's.
    const auto module = std::find(names.begin(), names.end(), "<module>");
    return std::count(names.begin(), names.end(), "descend") == 40 && module != names.end() &&
           std::next(module) != names.end() && *std::next(module) == "main" && names.back() == "spin";
  });
  EXPECT_GE(double(exact), 0.98 * double(stacks.size())) << others_of(stacks, {"main"});
  EXPECT_EQ(profile.stats.python_stack_status[1], 0u) << "none truncated";
}

TEST_F(PythonStacks, AStackOf320CallsKeepsItsInnermostFramesAndIsMarkedTruncated) {
  const std::string bundle = path("deep320.jprof");
  const Result recorded = record(bundle, {}, {JITPROF_PYPY, program("deep_stacks.py"), "320"});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  const Profile profile = jitprof::correlate::correlate(jitprof::bundle::read_bundle(bundle));
  const json info = view("info", bundle);
  const auto stacks = spin_stacks(profile, static_cast<std::uint32_t>(info["manifest"]["pid"].get<int>()));
  ASSERT_GT(stacks.size(), 500u);
  const std::size_t truncated = std::count_if(stacks.begin(), stacks.end(), [](const auto& names) {
    const auto calls = std::count(names.begin(), names.end(), "descend");
    return names.front() == "[outer Python frames not read]" && calls >= 250 && calls < 320 && names.back() == "spin";
  });
  EXPECT_GE(double(truncated), 0.98 * double(stacks.size()));
  const json report = view("report", bundle);
  EXPECT_GE(report["python_stacks"]["read_status"]["truncated"].get<double>(), double(stacks.size()));
}

TEST_F(PythonStacks, AttachWithoutAJitlogNamesTheHotFunctionAndItsCallers) {
  Background service({JITPROF_PYPY, program("service_no_jitlog.py"), "30"}, dir_, "service");
  ASSERT_TRUE(service.wait_for_output("ready\n")) << service.err();
  // Warmed up: the hot loops are compiled (code freed and replaced while
  // attached is gone from the codemap read at the end).
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const std::string bundle = path("attached.jprof");
  const Result attached = run({JITPROF_BIN, "attach", std::to_string(service.pid()), "--duration", "3", "-o", bundle});
  ASSERT_EQ(attached.status, 0) << attached.err;
  EXPECT_NE(attached.err.find("Python functions on the stacks named"), std::string::npos) << attached.err;
  EXPECT_TRUE(service.running());

  const Profile profile = jitprof::correlate::correlate(jitprof::bundle::read_bundle(bundle));
  const auto stacks = python_stacks_of(profile, static_cast<std::uint32_t>(service.pid()));
  ASSERT_GT(stacks.size(), 1000u);
  const std::size_t with_callers = std::count_if(stacks.begin(), stacks.end(), [](const auto& names) {
    const auto at = [&](const char* name) { return std::find(names.begin(), names.end(), name) - names.begin(); };
    return has(names, "hot_function") && at("serve_forever") < at("handle_request") &&
           at("handle_request") < at("hot_function");
  });
  std::printf("attach: %zu samples, %zu with hot_function under its callers\n", stacks.size(), with_callers);
  EXPECT_GE(double(with_callers), 0.90 * double(stacks.size()));
  // JIT samples carry their Python function.
  std::size_t jit = 0, jit_named = 0;
  for (const auto& sample : profile.samples) {
    const auto& ids = profile.stacks[sample.stack];
    if (sample.tid != static_cast<std::uint32_t>(service.pid()) || ids.empty() ||
        profile.frames[ids.back()].category != Category::JitAnonymous)
      continue;
    ++jit;
    jit_named += std::any_of(ids.begin(), ids.end(), [&](std::uint32_t id) { return profile.frames[id].name == "hot_function"; });
  }
  std::printf("attach: %zu JIT samples, %zu with hot_function\n", jit, jit_named);
  EXPECT_GT(jit, 500u);
  EXPECT_GE(double(jit_named), 0.90 * double(jit));

  const json report = view("report", bundle);
  ASSERT_FALSE(report["functions"].empty());
  EXPECT_EQ(report["functions"][0]["name"], "hot_function");
  EXPECT_EQ(report["functions"][0]["file"], program("service_no_jitlog.py"));
  EXPECT_EQ(report["python_stacks"]["unnamed_code_objects"], 0);

  // The viewer shows the same: the profile page's summary from the server.
  jitprof::testing::ServeProcess server(JITPROF_BIN, dir_ / "data", dir_, "serve");
  ASSERT_FALSE(server.url().empty()) << server.process().err();
  const Result uploaded = run({JITPROF_BIN, "upload", bundle, "--server", server.url()});
  ASSERT_EQ(uploaded.status, 0) << uploaded.err;
  const std::string link = uploaded.out.substr(uploaded.out.rfind("/p/") + 3);
  const std::string id = link.substr(0, link.find_first_of("\n "));
  const Result summary = run({"curl", "-s", server.url() + "/api/p/" + id});
  const json viewed = json::parse(summary.out, nullptr, false);
  ASSERT_TRUE(viewed.is_object()) << summary.out;
  EXPECT_EQ(viewed["functions"][0]["name"], "hot_function");
  EXPECT_EQ(viewed["python_stacks"]["exact"], report["python_stacks"]["exact"]);
}

}  // namespace
