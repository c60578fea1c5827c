// views::profile_diff_json on small hand-built profiles: traces matched by
// what they are (not their ids), new and vanished entries, ordering by the
// size of the change, shares and seconds, and the merged flame tree.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "views/views.h"

namespace {

using jitprof::correlate::Category;
using jitprof::correlate::Frame;
using jitprof::correlate::Profile;
using jitprof::jitlog::TraceKind;
using nlohmann::json;

// A profile whose frames are Python functions (by name, in app.py) and traces
// (by id), built up one stack of samples at a time.
class ProfileBuilder {
 public:
  explicit ProfileBuilder(double seconds_per_sample) { profile_.seconds_per_sample = seconds_per_sample; }

  // A trace of the jitlog: its kind and first merge point, function at `line` of app.py.
  ProfileBuilder& trace(std::uint64_t id, TraceKind kind, const std::string& function, std::int64_t line) {
    jitprof::jitlog::Trace trace;
    trace.id = id;
    trace.kind = kind;
    jitprof::jitlog::Stage stage;
    stage.kind = jitprof::jitlog::StageKind::Opt;
    stage.merge_points.push_back({0, 0, "/src/app.py", line, function, 0, "FOR_ITER"});
    trace.stages.push_back(std::move(stage));
    profile_.forest.index_by_id[id] = profile_.forest.traces.size();
    profile_.forest.traces.push_back(std::move(trace));
    return *this;
  }

  // `count` samples of the stack `functions` (outermost first) running in trace `trace`.
  ProfileBuilder& samples(std::size_t count, const std::vector<std::string>& functions, std::uint64_t trace) {
    std::vector<std::uint32_t> stack;
    for (const std::string& name : functions) {
      Frame python;
      python.category = Category::Python;
      python.name = name;
      python.file = "/src/app.py";
      stack.push_back(frame(python));
    }
    Frame jit;
    jit.category = Category::JitTrace;
    jit.name = "trace " + std::to_string(trace) + " (loop)";
    jit.trace = trace;
    stack.push_back(frame(jit));
    profile_.stacks.push_back(stack);
    for (std::size_t i = 0; i < count; ++i) {
      jitprof::correlate::Sample sample;
      sample.category = Category::JitTrace;
      sample.stack = static_cast<std::uint32_t>(profile_.stacks.size() - 1);
      sample.trace = trace;
      profile_.samples.push_back(sample);
    }
    return *this;
  }

  Profile build() { return std::move(profile_); }

 private:
  std::uint32_t frame(const Frame& frame) {
    for (std::size_t i = 0; i < profile_.frames.size(); ++i)
      if (profile_.frames[i].name == frame.name && profile_.frames[i].category == frame.category)
        return static_cast<std::uint32_t>(i);
    profile_.frames.push_back(frame);
    return static_cast<std::uint32_t>(profile_.frames.size() - 1);
  }
  Profile profile_;
};

// Old: 100 samples, f's loop (trace 1) 60, g's bridge (trace 2) 40.
// New: 50 samples, f's loop (now trace 7) 20, h's loop (trace 8, new) 30.
class ProfileDiff : public ::testing::Test {
 protected:
  ProfileDiff()
      : old_profile_(ProfileBuilder(0.001)
                         .trace(1, TraceKind::Loop, "f", 10)
                         .trace(2, TraceKind::Bridge, "g", 20)
                         .samples(60, {"main", "f"}, 1)
                         .samples(40, {"main", "g"}, 2)
                         .build()),
        new_profile_(ProfileBuilder(0.001)
                         .trace(7, TraceKind::Loop, "f", 10)
                         .trace(8, TraceKind::Loop, "h", 30)
                         .samples(20, {"main", "f"}, 7)
                         .samples(30, {"main", "h"}, 8)
                         .build()) {}

  json diff(std::size_t top = 10) const {
    return jitprof::views::profile_diff_json({bundle_, old_profile_}, {bundle_, new_profile_}, top);
  }

  jitprof::bundle::Bundle bundle_;
  Profile old_profile_, new_profile_;
};

const json& entry(const json& list, const std::string& key, const std::string& name) {
  for (const json& item : list)
    if (item[key] == name) return item;
  ADD_FAILURE() << "no entry " << name << " in " << list.dump();
  static const json none;
  return none;
}

TEST_F(ProfileDiff, EachRunsSamplesAndCpuTimeHead) {
  const json out = diff();
  EXPECT_EQ(out["old"]["samples"], 100);
  EXPECT_EQ(out["new"]["samples"], 50);
  EXPECT_DOUBLE_EQ(out["old"]["cpu_seconds"].get<double>(), 0.1);
  EXPECT_DOUBLE_EQ(out["new"]["cpu_seconds"].get<double>(), 0.05);
  EXPECT_TRUE(out["old"]["duration_s"].is_null());  // no manifest
}

TEST_F(ProfileDiff, TracesMatchByKindFunctionAndLineNotById) {
  const json out = diff();
  ASSERT_EQ(out["traces"].size(), 3u);
  const json& f_loop = entry(out["traces"], "function", "f");
  EXPECT_EQ(f_loop["type"], "loop");
  EXPECT_EQ(f_loop["line"], 10);
  EXPECT_EQ(f_loop["status"], "changed");
  EXPECT_EQ(f_loop["old"]["ids"], json::array({1}));
  EXPECT_EQ(f_loop["new"]["ids"], json::array({7}));
  EXPECT_EQ(f_loop["old"]["samples"], 60);
  EXPECT_EQ(f_loop["new"]["samples"], 20);
  EXPECT_DOUBLE_EQ(f_loop["points"].get<double>(), -20.0);  // 60% -> 40%
  EXPECT_NEAR(f_loop["seconds_change"].get<double>(), -0.040, 1e-9);
}

TEST_F(ProfileDiff, NewAndVanishedEntriesAreMarked) {
  const json out = diff();
  const json& g_bridge = entry(out["traces"], "function", "g");
  EXPECT_EQ(g_bridge["type"], "bridge");
  EXPECT_EQ(g_bridge["status"], "vanished");
  EXPECT_EQ(g_bridge["new"]["samples"], 0);
  EXPECT_EQ(g_bridge["new"]["ids"], json::array());
  const json& h_loop = entry(out["traces"], "function", "h");
  EXPECT_EQ(h_loop["status"], "new");
  EXPECT_EQ(h_loop["old"]["samples"], 0);

  EXPECT_EQ(entry(out["functions"], "name", "g")["status"], "vanished");
  EXPECT_EQ(entry(out["functions"], "name", "h")["status"], "new");
  const json& f = entry(out["functions"], "name", "f");
  EXPECT_EQ(f["status"], "changed");
  EXPECT_EQ(f["old"]["self"], 60);
  EXPECT_EQ(f["new"]["self"], 20);
  EXPECT_DOUBLE_EQ(f["self_points"].get<double>(), -20.0);
  EXPECT_NEAR(f["self_seconds_change"].get<double>(), -0.040, 1e-9);
}

TEST_F(ProfileDiff, LargestChangeFirstAndUnchangedLeftOut) {
  const json out = diff();
  // h +60 points, g -40, f -20; main is 100% of both runs: unchanged, not listed.
  std::vector<std::string> functions, traces;
  for (const json& item : out["functions"]) functions.push_back(item["name"]);
  for (const json& item : out["traces"]) traces.push_back(item["function"]);
  EXPECT_EQ(functions, (std::vector<std::string>{"h", "g", "f"}));
  EXPECT_EQ(traces, (std::vector<std::string>{"h", "g", "f"}));
  EXPECT_EQ(out["functions_changed"], 3);

  const json limited = diff(2);
  EXPECT_EQ(limited["functions"].size(), 2u);
  EXPECT_EQ(limited["functions_changed"], 3);
  EXPECT_EQ(limited["traces"][1]["function"], "g");
}

TEST_F(ProfileDiff, FlameTreeMergesBothRunsAndNamesTracesByWhatTheyAre) {
  const json flame = diff()["flame"];
  EXPECT_EQ(flame["samples"], 50);
  EXPECT_EQ(flame["old_samples"], 100);
  ASSERT_EQ(flame["children"].size(), 1u);
  const json& main = flame["children"][0];
  EXPECT_EQ(main["frame"], "main (app.py)");
  EXPECT_EQ(main["total"], 50);
  EXPECT_EQ(main["old_total"], 100);
  // Largest in the new run first: h (30), f (20), then g (0 now, 40 before).
  ASSERT_EQ(main["children"].size(), 3u);
  EXPECT_EQ(main["children"][0]["frame"], "h (app.py)");
  const json& f = main["children"][1];
  EXPECT_EQ(f["frame"], "f (app.py)");
  ASSERT_EQ(f["children"].size(), 1u);
  // Trace 1 of the old run and trace 7 of the new are one frame.
  EXPECT_EQ(f["children"][0]["frame"], "[jit] loop f (app.py:10)");
  EXPECT_EQ(f["children"][0]["old_total"], 60);
  EXPECT_EQ(f["children"][0]["total"], 20);
  EXPECT_EQ(f["children"][0]["self"], 20);
  EXPECT_EQ(main["children"][2]["frame"], "g (app.py)");
  EXPECT_EQ(main["children"][2]["total"], 0);
  EXPECT_EQ(main["children"][2]["old_total"], 40);
}

}  // namespace
