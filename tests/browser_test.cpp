// End-to-end in a browser: `jitprof serve` on loopback, `jitprof record --web`
// of real PyPy programs, then headless Chromium (tests/js/browser-test.mjs,
// playwright-core) opens the printed link like a user. Screenshots of every
// page land in the build tree (tests/browser-screenshots).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>

#include "test_process.h"

namespace fs = std::filesystem;
using jitprof::testing::Result;

namespace {

TEST(Browser, TheLinkRecordPrintsShowsTheFlameGraphTheHotLoopAndItsBridgeAndTwoRunsCompare) {
  const fs::path dir = fs::temp_directory_path() / ("jitprof-browser-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  jitprof::testing::ServeProcess server(JITPROF_BIN, dir / "data", dir, "server");
  ASSERT_FALSE(server.url().empty()) << server.process().err();
  const std::string programs = std::string(JITPROF_SOURCE_DIR) + "/tests/programs/";
  int recordings = 0;
  auto record_web = [&](const std::vector<std::string>& program, int status = 0) {
    const std::string output = (dir / ("recording-" + std::to_string(++recordings) + ".jprof")).string();
    std::vector<std::string> argv = {JITPROF_BIN, "record", "-q", "--web", server.url(), "-o", output, "--", JITPROF_PYPY};
    argv.insert(argv.end(), program.begin(), program.end());
    const Result recorded = jitprof::testing::run_command(argv, dir);
    EXPECT_EQ(recorded.status, status) << recorded.err;
    std::smatch link;
    EXPECT_TRUE(std::regex_search(recorded.out, link, std::regex("/p/([0-9a-f]{64})\n$"))) << recorded.out;
    return link.size() > 1 ? link[1].str() : std::string();
  };
  // f's hot loop with a rarely taken branch: a guard with a bridge.
  const std::string hotloop = record_web({programs + "hotloop.py", "20000000"});
  // More than 1,000 traces: the trace page must stay fast.
  const std::string many = record_web({programs + "many_traces.py", "1200"});
  ASSERT_FALSE(hotloop.empty());
  ASSERT_FALSE(many.empty());
  // A hot loop that a SIGSEGV from outside kills: the fault hits its machine code.
  std::ofstream(dir / "forever.py") << "import os, subprocess\n"
                                        "subprocess.Popen(['sh', '-c', 'sleep 1.5; kill -SEGV %d' % os.getpid()])\n"
                                        "def spin():\n"
                                        "    i = s = 0\n"
                                        "    while True:\n"
                                        "        i += 1\n"
                                        "        s += i % 5\n"
                                        "spin()\n";
  const std::string crashed = record_web({(dir / "forever.py").string()}, 128 + 11);
  ASSERT_FALSE(crashed.empty());
  // Threads named by the program, one of them renamed.
  const std::string threads = record_web({programs + "named_threads.py", "40000000"});
  ASSERT_FALSE(threads.empty());
  // The query page must answer what `jitprof query` answers on the same bundle.
  const std::string queried = record_web({programs + "query_targets.py"});
  const std::string query = "traces.contains('call_assembler').hasbridge('*my_func*')";
  const Result cli = jitprof::testing::run_command(
      {JITPROF_BIN, "query", "--json", (dir / ("recording-" + std::to_string(recordings) + ".jprof")).string(), query}, dir);
  ASSERT_EQ(cli.status, 0) << cli.err;
  std::string expected;
  const nlohmann::json answer = nlohmann::json::parse(cli.out);
  for (const auto& row : answer["rows"])
    expected += (expected.empty() ? "" : ",") + std::to_string(row["id"].get<std::uint64_t>());
  ASSERT_FALSE(expected.empty());

  // Two runs of one program, the second with optimized() doing a tenth of its work.
  const std::string slow = record_web({programs + "two_costs.py", "100000000", "slow"});
  const std::string fast = record_web({programs + "two_costs.py", "100000000", "fast"});
  ASSERT_FALSE(slow.empty());
  ASSERT_FALSE(fast.empty());

  // vmprof-python's four calls (vmshare/service.py) with the files of a real hotloop.py run.
  const auto post = [&](const std::string& path, const std::vector<std::string>& body) {
    std::vector<std::string> argv = {"curl", "-s", "-f", "-X", "POST"};
    argv.insert(argv.end(), body.begin(), body.end());
    argv.push_back(server.url() + path);
    const Result posted = jitprof::testing::run_command(argv, dir);
    EXPECT_EQ(posted.status, 0) << path << ": " << posted.out << posted.err;
    return nlohmann::json::parse(posted.out, nullptr, false);
  };
  const std::string fixtures = JITPROF_FIXTURES;
  const std::string rid =
      post("/api/runtime/new", {"-H", "Content-Type: application/json", "--data", R"({"argv": "hotloop.py", "VM": "PyPy"})"})
          .value("runtime_id", "");
  ASSERT_FALSE(rid.empty());
  post("/api/runtime/upload/cpu/" + rid + "/add", {"--data-binary", "@" + fixtures + "/hotloop.prof.gz"});
  post("/api/runtime/upload/jit/" + rid + "/add", {"--data-binary", "@" + fixtures + "/hotloop.jitlog.gz"});
  const std::string run_bundle = post("/api/runtime/" + rid + "/freeze/", {}).value("bundle", "");
  ASSERT_FALSE(run_bundle.empty());

  const fs::path screenshots = fs::path(JITPROF_BINARY_DIR) / "browser-screenshots";
  fs::create_directories(screenshots);
  const Result browsed = jitprof::testing::run_command(
      {"node", std::string(JITPROF_SOURCE_DIR) + "/tests/js/browser-test.mjs", "--server", server.url(), "--bundle",
       hotloop, "--function", "f", "--big-bundle", many, "--crash-bundle", crashed, "--crash-thread", "MainThread",
       "--threads-bundle", threads, "--threads", "MainThread,cruncher,hasher-1", "--query-bundle", queried, "--query",
       query, "--query-expect", expected, "--query-error", "traces.contains('x').hasbrige('*f*')", "--query-error-column",
       "22", "--diff-old", slow, "--diff-new", fast, "--diff-function", "optimized", "--runtime", rid, "--runtime-bundle", run_bundle,
       "--runtime-function", "f", "--out", screenshots.string()},
      dir);
  std::cout << browsed.out << browsed.err;
  EXPECT_EQ(browsed.status, 0) << "(tests/js needs 'npm ci --prefix tests/js' and /usr/bin/chromium)";
  EXPECT_EQ(browsed.out.find("FAIL"), std::string::npos);
  std::smatch timing;
  ASSERT_TRUE(std::regex_search(browsed.out, timing, std::regex(R"(trace page of bundle with (\d+) traces loaded in)")));
  EXPECT_GE(std::stoi(timing[1]), 1000);
  EXPECT_NE(browsed.out.find("ok query '" + query + "' in the viewer returns the CLI's"), std::string::npos);
  EXPECT_NE(browsed.out.find("ok ticking two uploads in the list offers /diff/" + slow + "/" + fast), std::string::npos);
  EXPECT_NE(browsed.out.find("ok differential flame graph colours optimized as shrunk"), std::string::npos);
  EXPECT_NE(browsed.out.find("ok the table of changed functions shows optimized's drop"), std::string::npos);
  EXPECT_NE(browsed.out.find("/traces opens the run's traces"), std::string::npos);
  EXPECT_NE(browsed.out.find("ok the crash names the thread that crashed: MainThread (tid "), std::string::npos);
  for (const char* name : {"MainThread", "cruncher", "hasher-1"})
    EXPECT_NE(browsed.out.find(std::string("ok threads card shows ") + name + " (tid "), std::string::npos) << name;
  for (const char* page : {"list.png", "profile.png", "trace.png", "bridge.png", "big-trace.png", "crash.png", "threads.png",
                           "query.png", "diff.png", "runtime-traces.png"})
    EXPECT_TRUE(fs::exists(screenshots / page)) << page;
  fs::remove_all(dir);
}

}  // namespace
