// End-to-end: real pypy3 runs write a jitlog and a vmprof profile, and the
// real jitprof binary reads them. Asserts what a user would look for.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "test_process.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using jitprof::testing::Result;
using jitprof::testing::slurp;

class EndToEnd : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    workdir_ = fs::temp_directory_path() / ("jitprof-e2e-" + std::to_string(::getpid()));
    fs::create_directories(workdir_);
    // One real PyPy run of the hot-loop program serves every test below.
    const Result capture = run({JITPROF_PYPY, std::string(JITPROF_SOURCE_DIR) + "/scripts/pypy-capture.py", "--jitlog",
                             path("hot.jitlog"), "--profile", path("hot.prof"), "--period", "0.0005",
                             // Native mode makes vmprof place JIT samples by the signal's PC;
                             // without it PyPy uses a stale return address (reference §3.5).
                             "--native", std::string(JITPROF_SOURCE_DIR) + "/tests/programs/hotloop.py",
                             std::to_string(kIterations)});
    ASSERT_EQ(capture.status, 0) << capture.err;
    // sum over i < n of (3i+1 if i % 7 == 0 else -1), as the program prints it.
    long long expected = 0;
    for (long long i = 0; i < kIterations; ++i) expected += i % 7 == 0 ? 3 * i + 1 : -1;
    ASSERT_EQ(capture.out, std::to_string(expected) + "\n");
  }
  static void TearDownTestSuite() { fs::remove_all(workdir_); }

  static std::string path(const std::string& name) { return (workdir_ / name).string(); }

  static Result run(const std::vector<std::string>& argv) { return jitprof::testing::run_command(argv, workdir_); }

  static Result jitprof(std::vector<std::string> args) {
    args.insert(args.begin(), JITPROF_BIN);
    return run(args);
  }

  static json jitprof_json(std::vector<std::string> args) {
    args.push_back("--json");
    const Result result = jitprof(args);
    EXPECT_EQ(result.status, 0) << result.err;
    return json::parse(result.out);
  }

  static constexpr long long kIterations = 10'000'000;
  static inline fs::path workdir_;
};

TEST_F(EndToEnd, JitlogSummaryNamesTheHotLoopOfF) {
  const json summary = jitprof_json({"jitlog", path("hot.jitlog")});
  EXPECT_EQ(summary["version"], 4);
  EXPECT_EQ(summary["machine"], "x86_64");
  EXPECT_GE(summary["loops"].get<int>(), 1);
  EXPECT_GE(summary["bridges"].get<int>(), 1);
  EXPECT_EQ(summary["counters_credited"], summary["counters"]);
  EXPECT_TRUE(summary["warnings"].empty());
  EXPECT_TRUE(summary["error"].is_null());

  const json& hottest = summary["hottest"][0];
  EXPECT_EQ(hottest["type"], "loop");
  EXPECT_EQ(hottest["source"]["function"], "f");
  EXPECT_TRUE(hottest["source"]["file"].get<std::string>().ends_with("tests/programs/hotloop.py"));
  EXPECT_EQ(hottest["source"]["line"], 12);  // `for i in range(n):`
  // 21 calls of f with n = 10,000,000: the loop body runs about 210 M times.
  EXPECT_GT(hottest["label_passes"].get<std::uint64_t>(), 200'000'000u);
}

TEST_F(EndToEnd, TraceShowsTheBridgeOfTheRareBranchWithInlinedG) {
  const json summary = jitprof_json({"jitlog", path("hot.jitlog")});
  const auto loop_id = summary["hottest"][0]["id"].get<std::uint64_t>();
  const json loop = jitprof_json({"trace", path("hot.jitlog"), std::to_string(loop_id), "--stage", "asm"});

  // A guard of the loop leads to a bridge for `if i % 7 == 0`, entered once every 7 iterations.
  std::optional<std::uint64_t> bridge_id;
  for (const auto& op : loop["ops"])
    if (!op["bridge"].is_null() && op["counter"].get<std::uint64_t>() > 1'000'000) bridge_id = op["bridge"];
  ASSERT_TRUE(bridge_id.has_value());

  const json bridge = jitprof_json({"trace", path("hot.jitlog"), std::to_string(*bridge_id), "--stage", "opt"});
  EXPECT_EQ(bridge["type"], "bridge");
  EXPECT_EQ(bridge["parent"]["trace"], loop_id);
  bool g_inlined = false;
  for (const auto& point : bridge["merge_points"])
    g_inlined |= point["function"] == "g" && point["line"] == 7 && point["inline_depth"] == 1;
  EXPECT_TRUE(g_inlined) << "g's `return x * 3 + 1` should be inlined into the bridge";
}

TEST_F(EndToEnd, DisassemblyCoversEachOpsMachineCodeAtItsAddress) {
  const json summary = jitprof_json({"jitlog", path("hot.jitlog")});
  const auto loop_id = summary["hottest"][0]["id"].get<std::uint64_t>();
  const json trace = jitprof_json({"trace", path("hot.jitlog"), std::to_string(loop_id), "--asm"});
  const auto start = trace["code"]["start"].get<std::uint64_t>();
  const auto end = trace["code"]["end"].get<std::uint64_t>();
  std::size_t disassembled_ops = 0;
  for (const auto& op : trace["ops"]) {
    if (!op.contains("instructions")) continue;
    ++disassembled_ops;
    std::uint64_t next = op["address"];
    for (const auto& insn : op["instructions"]) {
      EXPECT_EQ(insn["address"].get<std::uint64_t>(), next);
      next += insn["size"].get<std::uint64_t>();
    }
    EXPECT_EQ(next, op["address"].get<std::uint64_t>() + op["code_size"].get<std::uint64_t>());
    EXPECT_GE(op["address"].get<std::uint64_t>(), start);
    EXPECT_LE(next, end);
  }
  EXPECT_GT(disassembled_ops, 20u);
}

TEST_F(EndToEnd, ProfileRanksFFirstAndSeesJitCode) {
  const json profile = jitprof_json({"profile", path("hot.prof")});
  EXPECT_EQ(profile["interpreter"], "pypy");
  EXPECT_EQ(profile["period_usec"], 500);
  EXPECT_TRUE(profile["has_trailer"].get<bool>());
  EXPECT_GT(profile["samples"].get<int>(), 20);
  EXPECT_EQ(profile["functions"][0]["name"], "f");
  EXPECT_TRUE(profile["functions"][0]["file"].get<std::string>().ends_with("hotloop.py"));
  EXPECT_GT(profile["leaf"]["jit"].get<int>(), 0);
}

TEST_F(EndToEnd, CutJitlogIsReadUpToTheLastCompleteRecordWithAWarning) {
  const std::string bytes = slurp(path("hot.jitlog"));
  const std::string cut = path("cut.jitlog");
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() * 2 / 3);
  const Result result = jitprof({"jitlog", "--json", cut});
  EXPECT_EQ(result.status, 0) << result.err;
  const json summary = json::parse(result.out);
  ASSERT_EQ(summary["warnings"].size(), 1u);
  EXPECT_NE(summary["warnings"][0]["message"].get<std::string>().find("truncated"), std::string::npos);
  EXPECT_LT(summary["warnings"][0]["offset"].get<std::uint64_t>(), bytes.size() * 2 / 3);
  EXPECT_GE(summary["traces"].get<int>(), 1);
  EXPECT_NE(result.err.find("truncated"), std::string::npos);
}

TEST_F(EndToEnd, CrashedPypyLeavesAJitlogThatReads) {
  // JITLOG= writes each record with one write(2), so a process killed by
  // SIGSEGV leaves every record compiled before the crash.
  const std::string program = path("crash.py");
  std::ofstream(program) << "import ctypes\n"
                            "def work(n):\n"
                            "    s = 0\n"
                            "    for i in range(n):\n"
                            "        s += i % 3\n"
                            "    return s\n"
                            "print(work(2000000))\n"
                            "ctypes.memset(0, 1, 8)\n";
  const std::string log = path("crash.jitlog");
  const Result crash = run({"env", "JITLOG=" + log, JITPROF_PYPY, program});
  EXPECT_EQ(crash.status, 128 + SIGSEGV) << crash.err;
  const json summary = jitprof_json({"jitlog", "--top", "100000", log});
  EXPECT_TRUE(summary["error"].is_null());
  EXPECT_EQ(summary["counters"], 0);  // counters are flushed only at a clean exit
  bool found_work = false;
  for (const auto& trace : summary["hottest"])
    found_work |= trace["source"].is_object() && trace["source"]["function"] == "work";
  EXPECT_TRUE(found_work);
}

TEST_F(EndToEnd, GarbageIsAnErrorNamingTheOffset) {
  const std::string garbage = path("garbage.bin");
  std::ofstream(garbage, std::ios::binary) << "this is not a jitlog";
  const Result jitlog = jitprof({"jitlog", garbage});
  EXPECT_EQ(jitlog.status, 1);
  EXPECT_NE(jitlog.err.find("byte offset 0"), std::string::npos) << jitlog.err;
  const Result profile = jitprof({"profile", garbage});
  EXPECT_EQ(profile.status, 1);
  EXPECT_NE(profile.err.find("byte offset"), std::string::npos) << profile.err;
}

TEST_F(EndToEnd, UnknownTraceIdListsTheHottestOnes) {
  const Result result = jitprof({"trace", path("hot.jitlog"), "999999"});
  EXPECT_EQ(result.status, 1);
  EXPECT_NE(result.err.find("has no trace 999999"), std::string::npos) << result.err;
}

TEST_F(EndToEnd, EveryCommandHasHelp) {
  const std::vector<std::string> commands = {"jitlog", "trace", "profile", "info", "report", "export", "record"};
  for (const auto& command : commands) {
    const Result result = jitprof({command, "--help"});
    EXPECT_EQ(result.status, 0) << command;
    EXPECT_NE(result.out.find("Usage: "), std::string::npos) << result.out;
    EXPECT_NE(result.out.find(" " + command + " "), std::string::npos) << result.out;
    // The views print JSON for scripts; record and export write files.
    if (command != "record" && command != "export") {
      EXPECT_NE(result.out.find("--json"), std::string::npos) << command;
    }
  }
  const Result top = jitprof({"--help"});
  EXPECT_EQ(top.status, 0);
  for (const auto& command : commands) EXPECT_NE(top.out.find(command), std::string::npos) << command;
}

TEST_F(EndToEnd, MissingFileIsAClearError) {
  const Result result = jitprof({"jitlog", path("does-not-exist.jitlog")});
  EXPECT_NE(result.status, 0);
  EXPECT_NE(result.err.find("does-not-exist.jitlog"), std::string::npos) << result.err;
}

}  // namespace
