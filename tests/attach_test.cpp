// End-to-end: `jitprof attach` to a PyPy process that is already running
// (tests/programs/service.py), as a user would check the bundle and the target.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "test_process.h"

namespace fs = std::filesystem;
using jitprof::testing::Background;
using jitprof::testing::Result;
using nlohmann::json;

namespace {

const std::string kService = std::string(JITPROF_SOURCE_DIR) + "/tests/programs/service.py";

// The line of service.py that holds `marker`.
std::int64_t service_line(const std::string& marker) {
  std::istringstream source(jitprof::testing::slurp(kService));
  std::string line;
  for (std::int64_t number = 1; std::getline(source, line); ++number)
    if (line.find(marker) != std::string::npos) return number;
  return 0;
}

std::set<int> threads_of(pid_t pid) {
  std::set<int> tids;
  for (const auto& entry : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task"))
    tids.insert(std::stoi(entry.path().filename().string()));
  return tids;
}

class Attach : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("jitprof-attach-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  Result run(const std::vector<std::string>& argv) const { return jitprof::testing::run_command(argv, dir_); }
  json report(const std::string& bundle) const {
    const Result result = run({JITPROF_BIN, "report", "--json", bundle});
    EXPECT_EQ(result.status, 0) << result.err;
    return json::parse(result.out);
  }
  // service.py: `seconds` of hot loop, one more thread after `delay`.
  std::unique_ptr<Background> start_service(double seconds, double delay, std::vector<std::string> environment = {}) {
    auto service = std::make_unique<Background>(
        std::vector<std::string>{JITPROF_PYPY, kService, std::to_string(seconds), std::to_string(delay)}, dir_,
        "service", environment);
    EXPECT_TRUE(service->wait_for_output("ready\n")) << service->err();
    return service;
  }

  fs::path dir_;
};

TEST_F(Attach, NamesTheHotLoopFromTheProcesssOwnJitlogAndLeavesItUnharmed) {
  auto service = start_service(6, 1.5, {"JITLOG=" + path("service.jitlog")});
  const std::set<int> threads_before = threads_of(service->pid());
  const std::string bundle = path("live.jprof");
  const Result attached =
      run({JITPROF_BIN, "attach", std::to_string(service->pid()), "--duration", "3", "-o", bundle});
  ASSERT_EQ(attached.status, 0) << attached.err;
  EXPECT_NE(attached.err.find("JIT code named by its jitlog"), std::string::npos) << attached.err;
  EXPECT_TRUE(service->running()) << "the target keeps running after jitprof ends";

  const json summary = report(bundle);
  EXPECT_EQ(summary["attach"]["jit_names"], "live jitlog");
  EXPECT_EQ(summary["attach"]["pid"], service->pid());
  const Result info = run({JITPROF_BIN, "info", "--json", bundle});
  EXPECT_NE(json::parse(info.out)["manifest"]["pypy_version"].get<std::string>().find("PyPy 7."), std::string::npos);
  ASSERT_GE(summary["functions"].size(), 2u);
  const std::set<std::string> top_two = {summary["functions"][0]["name"], summary["functions"][1]["name"]};
  EXPECT_EQ(top_two, (std::set<std::string>{"f", "g"}));
  const json& hottest = summary["traces"][0];
  EXPECT_EQ(hottest["type"], "loop");
  EXPECT_EQ(hottest["source"]["function"], "f");
  EXPECT_EQ(hottest["source"]["file"], kService);
  EXPECT_EQ(hottest["source"]["line"], service_line("f: the hot loop"));
  EXPECT_GE(summary["jit"]["on_ops"].get<double>(), 0.95 * summary["jit"]["samples"].get<double>());

  // The thread started while jitprof was attached was sampled too.
  std::size_t late_samples = 0;
  for (const auto& thread : summary["threads"])
    if (!threads_before.count(thread["tid"].get<int>())) late_samples += thread["samples"].get<std::size_t>();
  EXPECT_GT(late_samples, 20u) << summary["threads"].dump();

  // Output and exit status are the program's own.
  EXPECT_EQ(service->wait(), 3);
  EXPECT_EQ(service->out(), "ready\nlate thread True\ndone True\n");
  EXPECT_EQ(service->err(), "");
}

TEST_F(Attach, KillingJitprofWithSigkillLeavesTheTargetRunning) {
  auto service = start_service(4, 1, {"JITLOG=" + path("service.jitlog")});
  Background jitprof({JITPROF_BIN, "attach", std::to_string(service->pid()), "-o", path("killed.jprof")}, dir_,
                     "jitprof");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ASSERT_TRUE(jitprof.running()) << jitprof.err();
  ::kill(jitprof.pid(), SIGKILL);
  EXPECT_EQ(jitprof.wait(), 128 + SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(service->running());
  EXPECT_EQ(service->wait(), 3);
  EXPECT_EQ(service->out(), "ready\nlate thread True\ndone True\n");
  // What jitprof had written by then is a readable bundle: frames go out twice a second.
  const Result info = run({JITPROF_BIN, "info", "--json", path("killed.jprof")});
  EXPECT_EQ(info.status, 0) << info.err;
  EXPECT_GT(json::parse(info.out)["samples"]["count"].get<int>(), 0);
}

TEST_F(Attach, CtrlCAndSigtermEndTheAttachmentWithACompleteBundle) {
  auto service = start_service(15, 60, {"JITLOG=" + path("service.jitlog")});
  for (int signal : {SIGINT, SIGTERM}) {
    const std::string bundle = path("signal" + std::to_string(signal) + ".jprof");
    Background jitprof({JITPROF_BIN, "attach", std::to_string(service->pid()), "-o", bundle}, dir_, "jitprof");
    // One second of sampling from when jitprof says it is attached.
    for (int i = 0; i < 200 && jitprof.err().find("attached to") == std::string::npos; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    ::kill(jitprof.pid(), signal);
    EXPECT_EQ(jitprof.wait(), 0) << jitprof.err();
    EXPECT_NE(jitprof.err().find("bundle written to"), std::string::npos) << jitprof.err();
    const Result info = run({JITPROF_BIN, "info", "--json", bundle});
    ASSERT_EQ(info.status, 0) << info.err;
    const json manifest = json::parse(info.out)["manifest"];
    EXPECT_EQ(manifest["state"], "complete");
    EXPECT_EQ(manifest["target_exited"], false);
    // Timed from before the notice, so at least the second the test waited; a busy machine may add to it.
    EXPECT_GE(manifest["duration_s"].get<double>(), 1.0);
    EXPECT_LT(manifest["duration_s"].get<double>(), 3.0);
    EXPECT_TRUE(service->running()) << "signal " << signal << " stays with jitprof";
  }
}

TEST_F(Attach, EndsWhenTheTargetExitsWithItsWholeJitlog) {
  auto service = start_service(2, 60, {"JITLOG=" + path("service.jitlog")});
  const std::string bundle = path("exited.jprof");
  const Result attached = run({JITPROF_BIN, "attach", std::to_string(service->pid()), "-o", bundle});
  ASSERT_EQ(attached.status, 0) << attached.err;
  EXPECT_NE(attached.err.find("the process exited"), std::string::npos) << attached.err;
  EXPECT_EQ(service->wait(), 3);
  const json manifest = json::parse(run({JITPROF_BIN, "info", "--json", bundle}).out)["manifest"];
  EXPECT_EQ(manifest["target_exited"], true);
  // Everything PyPy wrote, including the counters it adds at exit.
  EXPECT_EQ(manifest["sections"]["jitlog_bytes"].get<std::uintmax_t>(), fs::file_size(path("service.jitlog")));
}

TEST_F(Attach, WithoutAJitlogTheHotJitCodeIsReadAndDisassembled) {
  auto service = start_service(5, 60);
  const std::string bundle = path("anonymous.jprof");
  const Result attached = run({JITPROF_BIN, "attach", std::to_string(service->pid()), "-d", "2", "-o", bundle});
  ASSERT_EQ(attached.status, 0) << attached.err;
  EXPECT_NE(attached.err.find("writes no jitlog"), std::string::npos) << attached.err;

  const json summary = report(bundle);
  EXPECT_EQ(summary["attach"]["jit_names"], "anonymous code");
  const double jit = summary["jit"]["samples"];
  ASSERT_GT(jit, 500);
  ASSERT_FALSE(summary["anonymous_jit_code"].empty());
  const json& region = summary["anonymous_jit_code"][0];
  EXPECT_GT(region["samples"].get<double>(), 0.9 * jit);
  // The hot region is g inlined into f's loop: g's modulus 1000003 (0xf4243)
  // is an immediate of its code, and the sampled instructions are in it.
  std::size_t sampled_instructions = 0;
  bool modulus = false;
  for (const auto& instruction : region["instructions"]) {
    sampled_instructions += instruction["samples"].get<std::size_t>() > 0;
    modulus |= instruction["text"].get<std::string>().find("0xf4243") != std::string::npos;
    const auto address = instruction["address"].get<std::uint64_t>();
    EXPECT_GE(address, region["start"].get<std::uint64_t>());
    EXPECT_LT(address, region["end"].get<std::uint64_t>());
  }
  EXPECT_GT(sampled_instructions, 3u);
  EXPECT_TRUE(modulus) << region["instructions"].dump();

  // PyPy's log cannot be switched on in a running process: the phases come
  // from libpypy's function names, and the report says so.
  EXPECT_EQ(summary["runtime"]["phases_source"], "names");
  EXPECT_FALSE(summary["runtime"]["timed"].get<bool>());

  const Result text = run({JITPROF_BIN, "report", bundle});
  EXPECT_NE(text.out.find("JIT code without a jitlog"), std::string::npos);
  EXPECT_NE(text.out.find("JIT code: anonymous code"), std::string::npos);
  EXPECT_NE(text.out.find("PyPy runtime (phases told by libpypy's function names only)"), std::string::npos);
  EXPECT_NE(text.out.find("attach cannot time GC and JIT phases"), std::string::npos);
  service.reset();  // ends the service
}

TEST_F(Attach, ANonexistentProcessIsAClearError) {
  const Result result = run({JITPROF_BIN, "attach", "999999999", "-d", "1", "-o", path("none.jprof")});
  EXPECT_NE(result.status, 0);
  EXPECT_EQ(result.err, "jitprof: error: no process with PID 999999999\n");
  EXPECT_FALSE(fs::exists(path("none.jprof")));
}

TEST_F(Attach, AProcessThatIsNotPyPyIsAClearError) {
  Background sleeper({"sleep", "30"}, dir_, "sleep");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const Result result = run({JITPROF_BIN, "attach", std::to_string(sleeper.pid()), "-d", "1", "-o", path("x.jprof")});
  EXPECT_NE(result.status, 0);
  EXPECT_NE(result.err.find("(sleep) is not PyPy"), std::string::npos) << result.err;
  EXPECT_FALSE(fs::exists(path("x.jprof")));
}

TEST_F(Attach, AnotherUsersProcessIsAClearError) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run jitprof as another user (nobody)";
  auto service = start_service(5, 60);
  // jitprof runs as nobody from a directory nobody can read, against root's PyPy.
  const fs::path shared = dir_ / "shared";
  fs::create_directories(shared);
  fs::copy_file(JITPROF_BIN, shared / "jitprof");
  fs::permissions(dir_, fs::perms::all);
  fs::permissions(shared, fs::perms::all);
  const Result result = run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", (shared / "jitprof").string(),
                             "attach", std::to_string(service->pid()), "-d", "1", "-o", (shared / "y.jprof").string()});
  EXPECT_NE(result.status, 0);
  EXPECT_NE(result.err.find("of user root: Permission denied. Fix: attach as user root or as root"), std::string::npos)
      << result.err;
  EXPECT_FALSE(fs::exists(shared / "y.jprof"));
  EXPECT_TRUE(service->running());
}

}  // namespace
