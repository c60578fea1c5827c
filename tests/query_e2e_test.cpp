// End-to-end: `jitprof query` on a real recording of tests/programs/query_targets.py,
// checked against what the bundle's own jitlog says.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <regex>
#include <set>

#include "bundle/bundle.h"
#include "jitlog/jitlog.h"
#include "test_process.h"

namespace fs = std::filesystem;
using jitprof::testing::Result;
using nlohmann::json;

namespace {

class QueryCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("jitprof-query-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    const Result recorded = run({JITPROF_BIN, "record", "-q", "-o", bundle(), "--", JITPROF_PYPY,
                                 std::string(JITPROF_SOURCE_DIR) + "/tests/programs/query_targets.py"});
    ASSERT_EQ(recorded.status, 0) << recorded.err;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string bundle() { return (dir_ / "query.jprof").string(); }
  static Result run(const std::vector<std::string>& argv) { return jitprof::testing::run_command(argv, dir_); }
  static json query(const std::string& text) {
    const Result result = run({JITPROF_BIN, "query", "--json", bundle(), text});
    EXPECT_EQ(result.status, 0) << text << ": " << result.err;
    return json::parse(result.out);
  }
  static std::set<std::uint64_t> ids(const json& result) {
    std::set<std::uint64_t> found;
    for (const auto& row : result["rows"]) found.insert(row["id"].get<std::uint64_t>());
    return found;
  }
  static jitprof::jitlog::Forest forest() {
    const auto read = jitprof::bundle::read_bundle(bundle());
    return jitprof::jitlog::parse_jitlog(read.stream(jitprof::bundle::sections::kJitlog));
  }

  static inline fs::path dir_;
};

bool calls_assembler(const jitprof::jitlog::Trace& trace) {
  for (const auto& stage : trace.stages)
    for (const auto& op : stage.ops)
      if (op.is_call_assembler()) return true;
  return false;
}

// Traces with a call_assembler op and a bridge leaving one of their guards in a function named like `prefix`.
std::set<std::uint64_t> with_call_and_bridge_in(const jitprof::jitlog::Forest& forest, const std::string& prefix) {
  std::set<std::uint64_t> expected;
  for (const auto& trace : forest.traces) {
    if (!calls_assembler(trace)) continue;
    for (const auto& bridge : forest.traces)
      if (bridge.parent_guard && bridge.parent_guard->trace_id == trace.id && bridge.source() &&
          bridge.source()->function.starts_with(prefix))
        expected.insert(trace.id);
  }
  return expected;
}

TEST_F(QueryCli, TheSeedsTraceQueryReturnsExactlyTheCallAssemblerTracesWithAMyFuncBridge) {
  const json result = query("traces.contains('call_assembler').hasbridge('*my_func*')");
  EXPECT_EQ(result["collection"], "traces");
  const auto log = forest();
  const auto expected = with_call_and_bridge_in(log, "my_func");
  ASSERT_FALSE(expected.empty()) << "query_targets.py should compile such a trace";
  EXPECT_EQ(ids(result), expected);
  for (const auto& row : result["rows"]) EXPECT_EQ(row["function"], "my_func_fib");
  // The bridge filter is what leaves out other_fib's trace of the same shape.
  const auto others = with_call_and_bridge_in(log, "other_");
  ASSERT_FALSE(others.empty());
  EXPECT_EQ(ids(query("traces.contains('call_assembler').hasbridge('other_*')")), others);
}

TEST_F(QueryCli, MethodsCalledFromMoreThanFiveSitesAreExactlyTarget) {
  // Of the program's own functions, exactly target. With exact Python stacks
  // PyPy's start-up code is seen too: importlib's __import__ is called from
  // more than five lines of the modules it loads (when its samples fall after
  // jitprof began reading the stacks).
  const json result = query("methods.callsites() > 5 and methods.file('*query_targets.py')");
  ASSERT_EQ(result["total"], 1) << result.dump(1);
  EXPECT_EQ(result["rows"][0]["name"], "target");
  EXPECT_EQ(result["rows"][0]["callsites"], 7);  // its seven lines in calls()
  for (const auto& row : query("methods.callsites() > 5")["rows"])
    EXPECT_TRUE(row["name"] == "target" || !row["file"].get<std::string>().ends_with("query_targets.py")) << row.dump();
  const json helper = query("methods.name('helper')");
  ASSERT_EQ(helper["total"], 1);
  EXPECT_EQ(helper["rows"][0]["callsites"], 2);
}

TEST_F(QueryCli, AllocationsTheOptimizerRemovedAreQueryableAndShownByTraceDiff) {
  const json result = query("traces.removed('new_with_vtable') > 0 and traces.function('make_points')");
  ASSERT_EQ(result["total"], 1) << result.dump(1);
  const auto id = result["rows"][0]["id"].get<std::uint64_t>();
  // The Point allocations are in the traced ops and gone from the optimized ones.
  const json allocations = query("ops.name('new_with_vtable').in(traces.function('make_points'))");
  std::set<std::string> stages;
  for (const auto& row : allocations["rows"]) stages.insert(row["stage"]);
  EXPECT_EQ(stages, std::set<std::string>{"noopt"});
  const Result diff = run({JITPROF_BIN, "trace", bundle(), std::to_string(id), "--diff"});
  ASSERT_EQ(diff.status, 0) << diff.err;
  EXPECT_TRUE(std::regex_search(diff.out, std::regex("allocations removed \\(virtuals\\): [^\n]*new_with_vtable x[0-9]+")))
      << diff.out;
}

TEST_F(QueryCli, MalformedQueriesFailWithTheirColumnAndACaret) {
  const Result result = run({JITPROF_BIN, "query", bundle(), "traces.contains('call_assembler').hasbrige('*f*')"});
  EXPECT_EQ(result.status, 2);
  EXPECT_NE(result.err.find("jitprof: error: query: column 35: traces have no step 'hasbrige'"), std::string::npos)
      << result.err;
  EXPECT_NE(result.err.find("\n  " + std::string(34, ' ') + "^\n"), std::string::npos) << result.err;
}

TEST_F(QueryCli, TextTablesShowTheSameRows) {
  const Result result = run({JITPROF_BIN, "query", bundle(), "methods.callsites() > 5"});
  ASSERT_EQ(result.status, 0) << result.err;
  const Result rows = run({JITPROF_BIN, "query", "--json", bundle(), "methods.callsites() > 5"});
  const std::size_t count = json::parse(rows.out)["rows"].size();
  ASSERT_GE(count, 1u) << rows.out;
  EXPECT_NE(result.out.find("methods: " + std::to_string(count) + (count == 1 ? " match\n" : " matches\n")),
            std::string::npos)
      << result.out;
  for (const auto& row : json::parse(rows.out)["rows"])
    EXPECT_NE(result.out.find(row["name"].get<std::string>()), std::string::npos) << row.dump();
  EXPECT_NE(result.out.find("target"), std::string::npos);
}

}  // namespace
