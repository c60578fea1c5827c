// The query language without a bundle: syntax errors with their columns,
// glob matching, and the bounds that keep any input cheap.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "query/query.h"

namespace {

using jitprof::query::QueryError;

class Query : public ::testing::Test {
 protected:
  // A model of nothing: enough for the parser and the evaluator's checks.
  jitprof::correlate::Profile profile_;
  jitprof::bundle::Bundle bundle_;
  jitprof::query::Model model_{profile_, bundle_};

  // The column and message a query fails with.
  std::pair<std::size_t, std::string> error(const std::string& text, const jitprof::query::Limits& limits = {}) {
    try {
      jitprof::query::run(model_, text, limits);
    } catch (const QueryError& failure) {
      return {failure.column(), failure.what()};
    }
    ADD_FAILURE() << "no error for: " << text;
    return {0, ""};
  }
};

TEST_F(Query, ErrorsNameTheColumnTheyAreAbout) {
  EXPECT_EQ(error("tracez.contains('x')").first, 1u);
  EXPECT_EQ(error("traces.contains('call_assembler').hasbrige('*f*')").first, 35u);
  EXPECT_EQ(error("traces.samples() >").first, 19u);
  EXPECT_EQ(error("traces.contains('x'").first, 20u);
  EXPECT_EQ(error("traces.contains('x)").first, 17u);  // the string that never ends
  EXPECT_EQ(error("traces and guards").first, 8u);
  EXPECT_EQ(error("traces.samples()").first, 8u);        // a number needs a comparison
  EXPECT_EQ(error("traces.hasbridge() > 3").first, 20u); // a filter takes none
  EXPECT_EQ(error("traces.contains(3)").first, 17u);
  EXPECT_EQ(error("traces.sort(bogus)").first, 13u);
  EXPECT_EQ(error("traces = 3").first, 8u);
  EXPECT_EQ(error("guards.in(methods)").first, 11u);
  EXPECT_EQ(error("traces.limit(1.5)").first, 14u);
  EXPECT_NE(error("traces.contains('call_assembler').hasbrige('*f*')").second.find("hasbridge([function glob])"),
            std::string::npos);
}

TEST_F(Query, UnknownStepsListEveryStepOfTheirCollection) {
  const std::pair<const char*, const char*> cases[] = {
      {"traces.bogus()",
       "column 8: traces have no step 'bogus' (filters: contains(op glob), hasbridge([function glob]), function(glob), "
       "file(glob), inlines(glob), in(traces query); numbers: samples(), entries(), executions(), ops(), guards(), "
       "bridges(), failures(), removed(op glob), added(op glob), line(), id())"},
      {"guards.bogus()",
       "column 8: guards have no step 'bogus' (filters: name(glob), function(glob), hasbridge([function glob]), "
       "in(traces query); numbers: failures(), samples(), trace(), index())"},
      {"methods.bogus()",
       "column 9: methods have no step 'bogus' (filters: name(glob), file(glob), in(traces query); numbers: "
       "callsites(), self(), total(), samples(), traces(), line())"},
      {"ops.bogus()",
       "column 5: ops have no step 'bogus' (filters: name(glob), stage('noopt'|'opt'|'asm'), function(glob), "
       "in(traces query); numbers: samples(), index(), trace())"},
      {"samples.bogus()",
       "column 9: samples have no step 'bogus' (filters: in(traces query), function(glob), leaf(glob), "
       "category(name); numbers: tid(), time())"},
      {"samples.sort(leaf)", "column 14: samples cannot be sorted by 'leaf' (metrics: tid(), time())"},
      {"traces.sort(removed)", "column 13: removed(...) takes 1 argument, not 0"},
      {"ops.stage(jit)", "column 11: the stages are noopt, opt and asm"},
      {"samples.category(jit)", "column 18: category(...) takes a category in quotes, e.g. category('jit')"},
      {"traces.hasbridge('a', 'b')", "column 8: hasbridge(...) takes 0 to 1 argument, not 2"},
  };
  for (const auto& [text, message] : cases) EXPECT_EQ(error(text).second, message) << text;
}

TEST_F(Query, AnEmptyModelAnswersWithNoRows) {
  const auto result = jitprof::query::run(model_, "traces.contains('call_assembler').hasbridge('*my_func*')");
  EXPECT_EQ(result.collection, "traces");
  EXPECT_EQ(result.total, 0u);
  EXPECT_EQ(jitprof::query::run(model_, "not methods.callsites() > 5").collection, "methods");
}

TEST(Glob, MatchesWholeNamesWithStarAndQuestionMark) {
  using jitprof::query::glob_match;
  EXPECT_TRUE(glob_match("*my_func*", "my_func_fib"));
  EXPECT_TRUE(glob_match("my_func?fib", "my_func_fib"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_FALSE(glob_match("my_func", "my_func_fib"));
  EXPECT_FALSE(glob_match("*fib?", "my_func_fib"));
  EXPECT_TRUE(jitprof::query::op_name_match("call_assembler", "call_assembler_r"));
  EXPECT_FALSE(jitprof::query::op_name_match("call", "call_assembler_r"));
  EXPECT_FALSE(jitprof::query::op_name_match("call_assembler_r*x", "call_assembler_r"));
}

TEST(Glob, APathologicalPatternFinishes) {
  // A backtracking matcher takes exponential time on this (ctest's timeout
  // would catch a hang); the two-cursor matcher answers at once.
  const std::string pattern = std::string(200, '*') + "a*a*a*a*a*a*a*a*a*b";
  EXPECT_FALSE(jitprof::query::glob_match(pattern, std::string(20000, 'a')));
  EXPECT_TRUE(jitprof::query::glob_match(pattern, std::string(20000, 'a') + "b"));
}

TEST_F(Query, QueriesOverTheirLimitsAreRefused) {
  EXPECT_NE(error(std::string(5000, ' ') + "traces").second.find("limited to 4096 characters"), std::string::npos);
  const std::string deep = std::string(40, '(') + "traces" + std::string(40, ')');
  EXPECT_NE(error(deep).second.find("nests deeper than 32 levels"), std::string::npos);
  std::string nots;
  for (int i = 0; i < 40; ++i) nots += "not ";
  EXPECT_NE(error(nots + "traces").second.find("nests deeper"), std::string::npos);
  std::string ins = "traces";
  for (int i = 0; i < 40; ++i) ins = "traces.in(" + ins + ")";
  EXPECT_NE(error(ins).second.find("nests deeper"), std::string::npos);
  EXPECT_NE(error("traces.function('" + std::string(300, '*') + "')").second.find("limited to 256 characters"),
            std::string::npos);
}

TEST(QueryTime, AQueryStopsAtItsTimeLimit) {
  // 100,000 samples and no time at all: the evaluator gives up with a message.
  jitprof::correlate::Profile profile;
  profile.frames.push_back({jitprof::correlate::Category::Python, "f", "app.py", 1, std::nullopt, "", ""});
  profile.stacks.push_back({0});
  profile.samples.resize(100000);
  const jitprof::bundle::Bundle bundle;
  const jitprof::query::Model model(profile, bundle);
  jitprof::query::Limits limits;
  limits.max_time = std::chrono::milliseconds(0);
  try {
    jitprof::query::run(model, "samples.function('f*')", limits);
    ADD_FAILURE() << "no time limit";
  } catch (const QueryError& error) {
    EXPECT_NE(std::string(error.what()).find("took longer than 0 ms"), std::string::npos) << error.what();
  }
  limits.max_time = std::chrono::milliseconds(60000);
  EXPECT_EQ(jitprof::query::run(model, "samples.function('f*')", limits).total, 100000u);
}

}  // namespace
