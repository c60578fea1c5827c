// End-to-end: what `jitprof record` says of PyPy's runtime (GC, JIT warm-up,
// libpypy's functions) checked against PyPy's own log of the same run, read
// by the test itself.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "test_process.h"

namespace fs = std::filesystem;
using jitprof::testing::Result;
using nlohmann::json;

namespace {

const std::string kPrograms = std::string(JITPROF_SOURCE_DIR) + "/tests/programs/";
const std::string kSections = "gc-minor,gc-collect-step,gc-collect-done,jit-tracing,jit-optimize,jit-backend";

// Seconds in each kind of phase, from PyPy's log text: a sample belongs to
// the innermost open section, so each moment counts for that one only.
struct LogShares {
  double gc_s = 0, jit_s = 0;
};

LogShares innermost_seconds(const std::string& log_path, double ns_per_tick, double first_tick, double last_tick) {
  std::ifstream log(log_path);
  const std::regex section(R"(\[([0-9a-f]+)\] (\{)?([a-z-]+)(\})?)");
  struct Open {
    std::string name;
    unsigned long long last;  // since when it is the innermost
  };
  std::vector<Open> open;
  LogShares shares;
  // Only the part of [from, to) inside the program's own run.
  auto credit = [&](const std::string& name, unsigned long long from, unsigned long long to) {
    const double ticks = std::max(0.0, std::min(double(to), last_tick) - std::max(double(from), first_tick));
    if (name == "gc-minor" || name == "gc-collect-step" || name == "gc-collect-done") shares.gc_s += ticks * ns_per_tick / 1e9;
    else if (name == "jit-tracing" || name == "jit-optimize" || name == "jit-backend") shares.jit_s += ticks * ns_per_tick / 1e9;
  };
  const auto counted = [](const std::string& name) {
    return name == "gc-minor" || name == "gc-collect-step" || name == "gc-collect-done" || name == "jit-tracing" ||
           name == "jit-optimize" || name == "jit-backend";
  };
  std::string line;
  std::smatch match;
  while (std::getline(log, line)) {
    if (!std::regex_match(line, match, section)) continue;
    const unsigned long long tick = std::stoull(match[1], nullptr, 16);
    const std::string name = match[3];
    if (!counted(name)) continue;  // gc-minor-walkroots, jit-backend-dump, ...: inside a counted one
    if (match[2].matched) {
      if (!open.empty()) credit(open.back().name, open.back().last, tick);
      open.push_back({name, tick});
    } else if (!open.empty() && open.back().name == name) {
      credit(name, open.back().last, tick);
      open.pop_back();
      if (!open.empty()) open.back().last = tick;
    }
  }
  return shares;
}

class RuntimePhases : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("jitprof-phases-" + std::to_string(::getpid()));
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

  struct Run {
    json report;
    LogShares log;
    double seconds = 0;  // the program's own run
  };
  // Records `program` with the user's own PYPYLOG (jitprof leaves it and
  // reads it at the end); the test reads the same log itself and counts the
  // sections' time within the program's own run. The report's shares also
  // count PyPy's start-up (about 0.25 s of CPU, little GC or JIT), so the
  // programs run for seconds to keep that under a few points.
  Run record_with_own_log(const std::string& name, std::vector<std::string> program) {
    const std::string log = path(name + ".log"), bundle = path(name + ".jprof");
    std::vector<std::string> argv = {"/usr/bin/env", "PYPYLOG=" + kSections + ":" + log, JITPROF_BIN, "record", "-o",
                                     bundle, "--", JITPROF_PYPY, kPrograms + "tsc_clock.py"};
    argv.insert(argv.end(), program.begin(), program.end());
    const Result recorded = run(argv);
    EXPECT_EQ(recorded.status, 0) << recorded.err;
    EXPECT_NE(recorded.err.find("PYPYLOG is set: it is left as it is"), std::string::npos) << recorded.err;
    Run out;
    // The counter's rate over the program's run, read by the program itself.
    std::smatch clock;
    EXPECT_TRUE(std::regex_search(recorded.err, clock, std::regex(R"(tsc-clock (\d+) (\d+) (\d+) (\d+))"))) << recorded.err;
    const double ticks = std::stod(clock[3]) - std::stod(clock[1]), ns = std::stod(clock[4]) - std::stod(clock[2]);
    out.log = innermost_seconds(log, ns / ticks, std::stod(clock[1]), std::stod(clock[3]));
    out.seconds = ns / 1e9;
    out.report = report(bundle);
    EXPECT_EQ(out.report["runtime"]["phases_source"], "user pypylog");
    return out;
  }

  static double share(const json& report, std::initializer_list<const char*> categories) {
    double n = 0;
    for (const char* category : categories) n += report["leaf_categories"].value(category, 0.0);
    return n / report["samples"].get<double>();
  }

  // Samples whose innermost frame is in libpypy and has no name.
  static double unnamed_libpypy_share(const std::string& collapsed_path) {
    std::ifstream collapsed(collapsed_path);
    double all = 0, unnamed = 0;
    std::string line;
    while (std::getline(collapsed, line)) {
      const std::size_t space = line.rfind(' ');
      const double count = std::stod(line.substr(space + 1));
      const std::string stack = line.substr(0, space);
      const std::string leaf = stack.substr(stack.rfind(';') + 1);
      all += count;
      if (leaf == "[libpypy3.9-c.so]") unnamed += count;
    }
    return all > 0 ? unnamed / all : 1.0;
  }

  fs::path dir_;
};

TEST_F(RuntimePhases, TheGcShareOfAnAllocatingProgramIsWhatPyPysOwnLogSays) {
  const Run run = record_with_own_log("allocations", {kPrograms + "allocations.py", "900000"});
  const double expected = run.log.gc_s / run.seconds;
  const double reported = share(run.report, {"gc-minor", "gc-major"});
  std::cout << "GC: the log's sections " << run.log.gc_s << " s of " << run.seconds << " s = " << 100 * expected
            << "%; report " << 100 * reported << "% of " << run.report["samples"] << " samples\n";
  EXPECT_GT(expected, 0.2);  // the program is allocation-heavy
  EXPECT_NEAR(reported, expected, 0.05);
  const json& gc = run.report["runtime"]["gc"];
  EXPECT_GT(gc["minor"]["count"].get<int>(), 100);
  EXPECT_GT(gc["major_collections"].get<int>(), 0);
  EXPECT_LE(gc["minor"]["p50_ms"].get<double>(), gc["minor"]["p99_ms"].get<double>());
}

TEST_F(RuntimePhases, TheJitWarmUpShareOfAProgramWithThousandsOfLoopsIsWhatPyPysOwnLogSays) {
  const Run run = record_with_own_log("many_traces", {kPrograms + "many_traces.py", "2000"});
  const double expected = run.log.jit_s / run.seconds;
  const double reported = share(run.report, {"jit-tracing", "jit-optimizer", "jit-backend"});
  std::cout << "JIT warm-up: the log's sections " << run.log.jit_s << " s of " << run.seconds << " s = "
            << 100 * expected << "%; report " << 100 * reported << "% of " << run.report["samples"] << " samples\n";
  EXPECT_GT(expected, 0.1);
  EXPECT_NEAR(reported, expected, 0.05);
  const json& jit = run.report["runtime"]["jit"];
  EXPECT_GE(jit["tracing"]["count"].get<int>(), 2000);
  // Each compilation the log shows is tied to its trace in the jitlog.
  EXPECT_TRUE(jit["traces"]["tied"].get<bool>()) << jit["traces"];
  EXPECT_EQ(jit["traces"]["compilations"], jit["traces"]["jitlog_traces"]);
}

// Without PYPYLOG set, jitprof asks PyPy for the sections itself (a pipe);
// on the demo, an allocation-heavy and a JIT-heavy program libpypy's samples
// are named and few end in an unnamed libpypy frame.
TEST_F(RuntimePhases, ByDefaultPhasesAreTimedAndFewSamplesEndInUnnamedLibpypy) {
  for (const auto& [name, program] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"demo", {std::string(JITPROF_SOURCE_DIR) + "/examples/demo.py"}},
           {"allocations", {kPrograms + "allocations.py", "300000"}},
           {"many_traces", {kPrograms + "many_traces.py", "300"}}}) {
    const std::string bundle = path(name + ".jprof");
    std::vector<std::string> argv = {"/usr/bin/env", "-u", "PYPYLOG", JITPROF_BIN, "record", "-q", "-o", bundle, "--",
                                     JITPROF_PYPY};
    argv.insert(argv.end(), program.begin(), program.end());
    const Result recorded = run(argv);
    ASSERT_EQ(recorded.status, 0) << recorded.err;
    EXPECT_EQ(recorded.err.find("PYPYLOG"), std::string::npos) << recorded.err;
    const json summary = report(bundle);
    EXPECT_EQ(summary["runtime"]["phases_source"], "pypylog") << name;
    EXPECT_TRUE(summary["runtime"]["timed"].get<bool>()) << name;
    ASSERT_EQ(run({JITPROF_BIN, "export", "-f", "collapsed", "-o", path(name + ".txt"), bundle}).status, 0);
    const double unnamed = unnamed_libpypy_share(path(name + ".txt"));
    std::cout << name << ": " << 100 * unnamed << "% of " << summary["samples"]
              << " samples end in an unnamed libpypy frame; GC " << 100 * share(summary, {"gc-minor", "gc-major"})
              << "%, JIT warm-up " << 100 * share(summary, {"jit-tracing", "jit-optimizer", "jit-backend"}) << "%\n";
    EXPECT_LE(unnamed, 0.10) << name;
    if (name == "allocations") EXPECT_GT(share(summary, {"gc-minor", "gc-major"}), 0.2);
    if (name == "many_traces") EXPECT_GT(share(summary, {"jit-tracing", "jit-optimizer", "jit-backend"}), 0.1);
    // The phases are frames of the flame graph too.
    std::ifstream collapsed(path(name + ".txt"));
    const std::string text((std::istreambuf_iterator<char>(collapsed)), {});
    if (name != "demo") EXPECT_NE(text.find(name == "allocations" ? "[GC minor]" : "[JIT tracing]"), std::string::npos);
  }
}

}  // namespace
