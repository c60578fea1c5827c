// End-to-end: two `jitprof record` runs of tests/programs/two_costs.py, the
// second with "fast" (optimized() does a tenth of its work), compared with
// `jitprof diff` as a user would after an optimization.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>

#include "test_process.h"

namespace fs = std::filesystem;
using jitprof::testing::Result;
using nlohmann::json;

namespace {

class Diff : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("jitprof-diff-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    const std::string program = std::string(JITPROF_SOURCE_DIR) + "/tests/programs/two_costs.py";
    for (const auto& [bundle, mode] : {std::pair{path("old.jprof"), "slow"}, std::pair{path("new.jprof"), "fast"}}) {
      const Result recorded = run({JITPROF_BIN, "record", "-q", "-o", bundle, "--", JITPROF_PYPY, program, kN, mode});
      ASSERT_EQ(recorded.status, 0) << recorded.err;
    }
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static std::string path(const std::string& name) { return (dir_ / name).string(); }
  static Result run(const std::vector<std::string>& argv) { return jitprof::testing::run_command(argv, dir_); }

  static const json& function(const json& diff, const std::string& name) {
    for (const json& item : diff["functions"])
      if (item["name"] == name) return item;
    ADD_FAILURE() << "no function " << name << " in the diff";
    static const json none = json::object();
    return none;
  }

  static constexpr const char* kN = "300000000";
  static inline fs::path dir_;
};

TEST_F(Diff, OptimizedFunctionDropsInShareAndTimeTheOtherKeepsItsTime) {
  const Result result = run({JITPROF_BIN, "diff", path("old.jprof"), path("new.jprof"), "--json"});
  ASSERT_EQ(result.status, 0) << result.err;
  const json diff = json::parse(result.out);
  const json& optimized = function(diff, "optimized");
  const json& steady = function(diff, "steady");
  std::cout << "optimized: self " << optimized["old"]["self_share"] << " -> " << optimized["new"]["self_share"] << ", "
            << optimized["old"]["self_seconds"] << " s -> " << optimized["new"]["self_seconds"] << " s; steady: "
            << steady["old"]["self_seconds"] << " s -> " << steady["new"]["self_seconds"] << " s\n";
  // optimized() is 3/4 of the old run's work and about a quarter of the new run's.
  EXPECT_EQ(optimized["status"], "changed");
  EXPECT_LT(optimized["self_points"].get<double>(), -30.0);
  EXPECT_LT(optimized["total_points"].get<double>(), -30.0);
  const double old_seconds = optimized["old"]["self_seconds"], new_seconds = optimized["new"]["self_seconds"];
  EXPECT_LT(new_seconds, old_seconds / 4);
  EXPECT_NEAR(optimized["self_seconds_change"].get<double>(), new_seconds - old_seconds, 1e-9);
  // steady() does the same work in both runs: about the same time, a larger share.
  const double steady_old = steady["old"]["self_seconds"], steady_new = steady["new"]["self_seconds"];
  EXPECT_GT(steady_new, steady_old * 0.6);
  EXPECT_LT(steady_new, steady_old * 1.6);
  EXPECT_GT(steady["self_points"].get<double>(), 15.0);
  // Each run's totals head the diff; the new run has fewer samples.
  EXPECT_LT(diff["new"]["samples"].get<std::uint64_t>(), diff["old"]["samples"].get<std::uint64_t>() * 3 / 4);
  EXPECT_EQ(diff["old"]["file"], path("old.jprof"));

  // optimized()'s loop is matched across runs by what it is: a loop at its `for` line.
  bool matched = false;
  for (const json& trace : diff["traces"]) {
    if (trace["function"] != "optimized" || trace["type"] != "loop") continue;
    matched = true;
    EXPECT_EQ(trace["line"], 15);  // for i in range(...):
    EXPECT_EQ(trace["status"], "changed");
    EXPECT_FALSE(trace["old"]["ids"].empty());
    EXPECT_FALSE(trace["new"]["ids"].empty());
    EXPECT_LT(trace["points"].get<double>(), -30.0);
  }
  EXPECT_TRUE(matched) << diff["traces"].dump();
}

TEST_F(Diff, TextShowsTheSameNumbersAsJson) {
  const Result json_result = run({JITPROF_BIN, "diff", path("old.jprof"), path("new.jprof"), "--json"});
  ASSERT_EQ(json_result.status, 0) << json_result.err;
  const json diff = json::parse(json_result.out);
  const Result text = run({JITPROF_BIN, "diff", path("old.jprof"), path("new.jprof")});
  ASSERT_EQ(text.status, 0) << text.err;
  std::cout << text.out;
  const json& optimized = function(diff, "optimized");
  // The function's row: old and new self share, the change in points and seconds, as JSON has them.
  const auto percent = [](double share) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.1f%%", 100 * share);
    return std::string(buffer);
  };
  const auto signed_number = [](const char* format, double value) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, format, value);
    return std::string(buffer);
  };
  std::string row;
  std::istringstream lines(text.out);
  for (std::string line; std::getline(lines, line);)
    if (line.find("  optimized  ") != std::string::npos) row = line;
  ASSERT_FALSE(row.empty()) << text.out;
  for (const std::string& figure :
       {percent(optimized["old"]["self_share"]), percent(optimized["new"]["self_share"]),
        signed_number("%+.1f", optimized["self_points"]), signed_number("%+.3f", optimized["self_seconds_change"])})
    EXPECT_NE(row.find(figure), std::string::npos) << figure << " not in: " << row;
  EXPECT_NE(text.out.find(" samples ("), std::string::npos);
}

TEST_F(Diff, RefusesFilesWithoutSamplesSayingWhich) {
  const std::string text_file = path("notes.txt");
  run({"sh", "-c", "echo not a bundle > " + text_file});
  const Result result = run({JITPROF_BIN, "diff", path("old.jprof"), text_file});
  EXPECT_EQ(result.status, 1);
  EXPECT_NE(result.err.find(text_file + " is text starting"), std::string::npos) << result.err;
  // A jitlog alone reads, but holds no samples.
  const std::string jitlog = std::string(JITPROF_FIXTURES) + "/hotloop.jitlog.gz";
  const Result no_samples = run({JITPROF_BIN, "diff", jitlog, path("new.jprof")});
  EXPECT_EQ(no_samples.status, 1);
  EXPECT_NE(no_samples.err.find(jitlog + " is a PyPy jitlog, which holds no samples to compare"), std::string::npos) << no_samples.err;
  const Result missing = run({JITPROF_BIN, "diff", path("old.jprof"), path("missing.jprof")});
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.err.find("missing.jprof"), std::string::npos) << missing.err;
}

}  // namespace
