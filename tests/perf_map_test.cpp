// End-to-end with Linux perf: `perf record` of a PyPy run sees JIT code as
// anonymous memory; `jitprof export --format perf-map` from the jitlog PyPy
// wrote in the same run lets `perf report` name it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "test_process.h"

namespace fs = std::filesystem;
using jitprof::testing::Result;

namespace {

struct Line {
  double share;
  std::string object, symbol;
};

// "    86.58%  [JIT] tid 453         [.] pypy:loop 1 f inlined.py:12"
std::vector<Line> report_lines(const std::string& text) {
  std::vector<Line> lines;
  const std::regex pattern(R"(^\s*([0-9.]+)%\s+(\[JIT\] tid \d+|\S+)\s+\[.\]\s+(.*)$)");
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::smatch match;
    if (std::regex_match(line, match, pattern)) lines.push_back({std::stod(match[1]), match[2], match[3]});
  }
  return lines;
}

TEST(PerfMap, PerfReportNamesTheHotLoopWithJitprofsTraceNames) {
  const fs::path dir = fs::temp_directory_path() / ("jitprof-perf-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto run = [&](const std::vector<std::string>& argv) { return jitprof::testing::run_command(argv, dir); };
  const std::string data = (dir / "perf.data").string(), jitlog = (dir / "run.jitlog").string();
  const Result recorded = run({"env", "JITLOG=" + jitlog, "perf", "record", "-e", "cpu-clock", "-F", "999", "-o", data,
                               "--", JITPROF_PYPY, std::string(JITPROF_SOURCE_DIR) + "/tests/programs/inlined.py",
                               "100000000"});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  const Result pids = run({"perf", "script", "-i", data, "-F", "pid"});
  ASSERT_EQ(pids.status, 0) << pids.err;
  const std::string pid = std::to_string(std::stoul(pids.out));

  auto report = [&] {
    const Result result = run({"perf", "report", "-i", data, "--stdio", "--sort", "dso,sym"});
    EXPECT_EQ(result.status, 0) << result.err;
    return report_lines(result.out);
  };
  auto unnamed_jit_share = [](const std::vector<Line>& lines) {
    double share = 0;
    for (const auto& line : lines)
      if (line.object.starts_with("[JIT]") && line.symbol.starts_with("0x")) share += line.share;
    return share;
  };
  // Without a map, perf knows nothing about the hot loop.
  EXPECT_GT(unnamed_jit_share(report()), 50.0);

  const fs::path map = "/tmp/perf-" + pid + ".map";
  const Result exported = run({JITPROF_BIN, "export", jitlog, "--format", "perf-map", "-o", map.string()});
  ASSERT_EQ(exported.status, 0) << exported.err;
  const auto named = report();
  fs::remove(map);
  fs::remove_all(dir);

  ASSERT_FALSE(named.empty());
  EXPECT_TRUE(named.front().object.starts_with("[JIT]"));
  EXPECT_TRUE(std::regex_match(named.front().symbol, std::regex(R"(pypy:loop \d+ f inlined\.py:12)")))
      << named.front().symbol;
  EXPECT_GT(named.front().share, 50.0);
  // What stays unnamed is PyPy's JIT helper code, which no jitlog describes.
  EXPECT_LT(unnamed_jit_share(named), 2.0);
}

TEST(Jitdump, PerfInjectTurnsTheJitdumpIntoNamedCode) {
  const fs::path dir = fs::temp_directory_path() / ("jitprof-jitdump-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto run = [&](const std::vector<std::string>& argv) { return jitprof::testing::run_command(argv, dir); };
  const std::string data = (dir / "perf.data").string(), injected = (dir / "perf.jit.data").string();
  const Result recorded = run({"env", "JITPROF_PERF_DIR=" + dir.string(), "perf", "record", "-k", "mono", "-e",
                               "cpu-clock", "-F", "999", "-o", data, "--", JITPROF_PYPY,
                               std::string(JITPROF_SOURCE_DIR) + "/scripts/pypy-perf.py",
                               std::string(JITPROF_SOURCE_DIR) + "/tests/programs/inlined.py", "100000000"});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  const Result pids = run({"perf", "script", "-i", data, "-F", "pid"});
  ASSERT_EQ(pids.status, 0) << pids.err;
  const std::string pid = std::to_string(std::stoul(pids.out));
  const std::string base = (dir / ("jit-" + pid)).string();
  const Result exported =
      run({JITPROF_BIN, "export", base + ".jitlog", "--format", "jitdump", "--pid", pid, "-o", base + ".dump"});
  ASSERT_EQ(exported.status, 0) << exported.err;
  const Result inject = run({"perf", "inject", "--jit", "-i", data, "-o", injected});
  ASSERT_EQ(inject.status, 0) << inject.err;
  const Result report = run({"perf", "report", "-i", injected, "--stdio", "--sort", "dso,sym"});
  ASSERT_EQ(report.status, 0) << report.err;
  fs::remove_all(dir);

  // perf made an ELF image per trace ("jitted-PID-N.so") named after it.
  double named = 0;
  for (const auto& line : report_lines(report.out))
    if (line.object.starts_with("jitted-" + pid + "-") && line.symbol.starts_with("pypy:loop"))
      named += line.share;
  EXPECT_GT(named, 20.0) << report.out;
  EXPECT_NE(report.out.find(" f inlined.py:12"), std::string::npos) << report.out;
}

}  // namespace
