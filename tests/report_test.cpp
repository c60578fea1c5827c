// End-to-end: `jitprof record` of a known workload, then `jitprof report` and
// `jitprof trace` on the bundle, as a user would read them.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <tuple>

#include "test_process.h"

namespace fs = std::filesystem;
using jitprof::testing::Result;
using nlohmann::json;

namespace {

class Report : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("jitprof-report-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    // f's loop calls g, which the JIT inlines; g's arithmetic is most of the work.
    const Result recorded =
        run({JITPROF_BIN, "record", "-q", "-o", bundle(), "--", JITPROF_PYPY,
             std::string(JITPROF_SOURCE_DIR) + "/tests/programs/inlined.py", "150000000"});
    ASSERT_EQ(recorded.status, 0) << recorded.err;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static std::string bundle() { return (dir_ / "inlined.jprof").string(); }
  static Result run(const std::vector<std::string>& argv) { return jitprof::testing::run_command(argv, dir_); }
  static json jitprof_json(std::vector<std::string> args) {
    args.insert(args.begin(), JITPROF_BIN);
    args.push_back("--json");
    const Result result = run(args);
    EXPECT_EQ(result.status, 0) << result.err;
    return json::parse(result.out);
  }

  static inline fs::path dir_;
};

TEST_F(Report, RanksFAndGFirstAndNamesTheLoopTraceWithItsSource) {
  const json report = jitprof_json({"report", bundle()});
  ASSERT_GE(report["functions"].size(), 2u);
  const std::set<std::string> top_two = {report["functions"][0]["name"], report["functions"][1]["name"]};
  EXPECT_EQ(top_two, (std::set<std::string>{"f", "g"}));
  for (int i = 0; i < 2; ++i)
    EXPECT_TRUE(report["functions"][i]["file"].get<std::string>().ends_with("tests/programs/inlined.py"));

  const json& hottest = report["traces"][0];
  EXPECT_EQ(hottest["type"], "loop");
  EXPECT_EQ(hottest["source"]["function"], "f");
  EXPECT_TRUE(hottest["source"]["file"].get<std::string>().ends_with("tests/programs/inlined.py"));
  EXPECT_EQ(hottest["source"]["line"], 12);  // for i in range(n):
  EXPECT_GT(hottest["share"].get<double>(), 0.5);

  const double jit = report["jit"]["samples"], on_ops = report["jit"]["on_ops"];
  ASSERT_GT(jit, 100);
  std::cout << "JIT samples attributed to an IR op: " << on_ops << " of " << jit << " (" << 100 * on_ops / jit
            << "%)\n";
  EXPECT_GE(on_ops / jit, 0.95);
}

TEST_F(Report, TraceHeatPerOpSumsToTheTracesSamples) {
  const json report = jitprof_json({"report", bundle()});
  const auto id = report["traces"][0]["id"].get<std::uint64_t>();
  const json trace = jitprof_json({"trace", bundle(), std::to_string(id), "--asm"});
  std::uint64_t per_op = 0, g_ops = 0;
  for (const auto& op : trace["ops"]) {
    const std::uint64_t samples = op.value("samples", std::uint64_t{0});
    per_op += samples;
    if (op["source"].is_object() && op["source"]["function"] == "g") g_ops += samples;
    if (!op.contains("instructions")) continue;
    std::uint64_t per_instruction = 0;
    for (const auto& insn : op["instructions"]) per_instruction += insn["samples"].get<std::uint64_t>();
    EXPECT_EQ(per_instruction, samples) << "op " << op["index"];
  }
  EXPECT_EQ(per_op + trace["entry_code_samples"].get<std::uint64_t>(), trace["samples"].get<std::uint64_t>());
  EXPECT_EQ(trace["samples"], report["traces"][0]["samples"]);
  // g's own ops carry heat: inlining keeps its source position.
  EXPECT_GT(g_ops, 0u);
}

TEST_F(Report, DiffShowsTheAllocationsTheOptimizerRemoved) {
  // f's loop boxes integers in the recorded trace (new_with_vtable for
  // W_IntObject); the optimizer makes them virtual and removes them.
  const json report = jitprof_json({"report", bundle()});
  const auto id = report["traces"][0]["id"].get<std::uint64_t>();
  const json trace = jitprof_json({"trace", bundle(), std::to_string(id)});
  ASSERT_EQ(trace["stage_diffs"].size(), 2u);
  const json& optimizer = trace["stage_diffs"][0];
  EXPECT_EQ(optimizer["from"], "noopt");
  EXPECT_EQ(optimizer["to"], "opt");
  EXPECT_GT(optimizer["removed"].value("new_with_vtable", 0), 0);
  const json& backend = trace["stage_diffs"][1];
  EXPECT_GT(backend["added"].value("increment_debug_counter", 0), 0);  // counters the jitlog asks for
  const Result text = run({JITPROF_BIN, "trace", bundle(), std::to_string(id), "--diff"});
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("noopt -> opt:"), std::string::npos);
  EXPECT_NE(text.out.find("new_with_vtable x"), std::string::npos);
}

TEST_F(Report, CallTreeRunsFromFThroughInlinedGIntoTheTrace) {
  const json tree = jitprof_json({"top", bundle(), "--depth", "30", "--min", "0"});
  // Depth-first search for f -> g -> [jit] trace.
  std::uint64_t through_g = 0, root_total = 0;
  std::function<void(const json&, const std::string&)> walk = [&](const json& nodes, const std::string& parent) {
    for (const auto& node : nodes) {
      const std::string frame = node["frame"];
      if (parent == "g (inlined.py)" && frame.starts_with("[jit] trace")) through_g += node["total"].get<std::uint64_t>();
      if (frame == "g (inlined.py)") {
        EXPECT_EQ(parent, "f (inlined.py)");
      }
      EXPECT_LE(node["self"].get<std::uint64_t>(), node["total"].get<std::uint64_t>());
      walk(node["children"], frame);
    }
  };
  walk(tree["children"], "");
  for (const auto& node : tree["children"]) root_total += node["total"].get<std::uint64_t>();
  EXPECT_EQ(root_total, tree["samples"].get<std::uint64_t>());
  EXPECT_GT(through_g, 0u);
}

TEST_F(Report, TextViewsShowTheSameNumbers) {
  const Result report = run({JITPROF_BIN, "report", bundle()});
  ASSERT_EQ(report.status, 0) << report.err;
  EXPECT_NE(report.out.find("Hot traces"), std::string::npos);
  EXPECT_NE(report.out.find("inlined.py:12"), std::string::npos);
  EXPECT_EQ(report.out.find("\033["), std::string::npos) << "no color codes when stdout is not a terminal";
}

TEST_F(Report, CollapsedStacksCountEverySampleOnce) {
  const json report = jitprof_json({"report", bundle()});
  const Result collapsed = run({JITPROF_BIN, "export", bundle(), "--format", "collapsed"});
  ASSERT_EQ(collapsed.status, 0) << collapsed.err;
  std::istringstream lines(collapsed.out);
  std::uint64_t total = 0, through_g = 0;
  std::set<std::string> stacks;
  for (std::string line; std::getline(lines, line);) {
    const std::size_t space = line.rfind(' ');
    ASSERT_NE(space, std::string::npos) << line;
    const std::uint64_t count = std::stoull(line.substr(space + 1));
    total += count;
    if (line.find("f (inlined.py);g (inlined.py);[jit] trace") != std::string::npos) through_g += count;
    // One line per stack text: the flame graph tools would draw repeats apart.
    EXPECT_TRUE(stacks.insert(line.substr(0, space)).second) << "repeated: " << line;
  }
  EXPECT_EQ(total, report["samples"].get<std::uint64_t>());
  EXPECT_GT(through_g, 0u) << "g inlined into f's loop trace";
  // Every leaf outside Python and JIT code has a library to be counted under.
  for (const auto& [library, count] : report["native_libraries"].items()) EXPECT_FALSE(library.empty()) << count;
}

TEST_F(Report, SpeedscopeFileHoldsEverySampleWithValidFrameIndices) {
  const std::string out = (dir_ / "profile.speedscope.json").string();
  ASSERT_EQ(run({JITPROF_BIN, "export", bundle(), "-f", "speedscope", "-o", out}).status, 0);
  const json document = json::parse(jitprof::testing::slurp(out));
  EXPECT_EQ(document["$schema"], "https://www.speedscope.app/file-format-schema.json");
  const auto frames = document["shared"]["frames"].size();
  std::size_t samples = 0;
  for (const auto& profile : document["profiles"]) {
    EXPECT_EQ(profile["type"], "sampled");
    EXPECT_EQ(profile["unit"], "seconds");
    ASSERT_EQ(profile["samples"].size(), profile["weights"].size());
    double weight = 0;
    for (const auto& w : profile["weights"]) weight += w.get<double>();
    EXPECT_NEAR(weight, profile["endValue"].get<double>() - profile["startValue"].get<double>(), 1e-6);
    for (const auto& stack : profile["samples"])
      for (const auto& index : stack) EXPECT_LT(index.get<std::size_t>(), frames);
    samples += profile["samples"].size();
  }
  EXPECT_EQ(samples, jitprof_json({"report", bundle()})["samples"].get<std::size_t>());
  std::set<std::string> names;
  for (const auto& frame : document["shared"]["frames"]) names.insert(frame["name"]);
  EXPECT_TRUE(names.count("g (inlined.py)"));

  // And it passes the JSON schema speedscope itself publishes (tests/js, set up by scripts/test).
  const std::string validator = std::string(JITPROF_SOURCE_DIR) + "/tests/js/validate-speedscope.mjs";
  const Result valid = run({"node", validator, out});
  EXPECT_EQ(valid.status, 0) << valid.out << valid.err << "(tests/js needs 'npm ci --prefix tests/js')";
  EXPECT_EQ(valid.out, "valid\n");
}

TEST_F(Report, FirefoxProfileHoldsEverySampleWithCategoriesAndPassesTheLoadersRules) {
  const std::string out = (dir_ / "profile.firefox.json").string();
  ASSERT_EQ(run({JITPROF_BIN, "export", bundle(), "-f", "firefox", "-o", out}).status, 0);
  const json document = json::parse(jitprof::testing::slurp(out));
  std::map<std::string, std::size_t> category_index;
  for (std::size_t i = 0; i < document["meta"]["categories"].size(); ++i)
    category_index[document["meta"]["categories"][i]["name"]] = i;
  ASSERT_TRUE(category_index.count("JIT") && category_index.count("Python"));
  const json& jit_subcategories = document["meta"]["categories"][category_index["JIT"]]["subcategories"];

  std::size_t samples = 0;
  std::set<std::string> jit_frames;  // "location / subcategory"
  for (const auto& thread : document["threads"]) {
    samples += thread["samples"]["data"].size();
    const auto& strings = thread["stringTable"];
    for (const auto& frame : thread["frameTable"]["data"]) {
      if (frame[6] != category_index["JIT"]) continue;
      jit_frames.insert(strings[frame[0].get<std::size_t>()].get<std::string>() + " / " +
                        jit_subcategories[frame[7].get<std::size_t>()].get<std::string>());
    }
  }
  EXPECT_EQ(samples, jitprof_json({"report", bundle()})["samples"].get<std::size_t>());
  // g inlined into f's loop: a script function with its file, in the JIT's
  // "Inlined Python" subcategory; the trace itself a labelled JIT frame.
  const std::string g_location = "g (" + std::string(JITPROF_SOURCE_DIR) + "/tests/programs/inlined.py:";
  EXPECT_TRUE(std::any_of(jit_frames.begin(), jit_frames.end(), [&](const std::string& frame) {
    return frame.starts_with(g_location) && frame.ends_with(" / Inlined Python");
  })) << ::testing::PrintToString(jit_frames);
  EXPECT_TRUE(std::any_of(jit_frames.begin(), jit_frames.end(), [](const std::string& frame) {
    return frame.starts_with("[jit] trace ") && frame.ends_with("(loop) / Trace");
  })) << ::testing::PrintToString(jit_frames);

  // The Firefox Profiler publishes no schema or loader package: tests/js has a
  // checker built from its loader's source (docs/firefox-format.md).
  const std::string validator = std::string(JITPROF_SOURCE_DIR) + "/tests/js/validate-firefox.mjs";
  const Result valid = run({"node", validator, "--strict", out});
  EXPECT_EQ(valid.status, 0) << valid.out << valid.err;
  EXPECT_TRUE(valid.out.starts_with("valid\n")) << valid.out;
}

TEST_F(Report, PprofDecodesWithProtocAndCountsEverySample) {
  const std::string out = (dir_ / "profile.pb.gz").string();
  ASSERT_EQ(run({JITPROF_BIN, "export", bundle(), "-f", "pprof", "-o", out}).status, 0);
  // protoc checks every field against profile.proto's types while decoding.
  const std::string proto_dir = std::string(JITPROF_SOURCE_DIR) + "/tests/support";
  const Result decoded = run({"sh", "-c", "gzip -dc " + jitprof::testing::shell_quote(out) +
                                              " | protoc --decode=perftools.profiles.Profile --proto_path=" +
                                              jitprof::testing::shell_quote(proto_dir) + " profile.proto"});
  ASSERT_EQ(decoded.status, 0) << decoded.err;
  // Each sample block holds: location ids, then value: count, value: nanoseconds.
  std::istringstream lines(decoded.out);
  std::uint64_t samples = 0, nanoseconds = 0, blocks = 0;
  bool in_sample = false;
  int values = 0;
  std::vector<std::string> strings;
  for (std::string line; std::getline(lines, line);) {
    if (line == "sample {") {
      in_sample = true;
      values = 0;
      ++blocks;
    } else if (line == "}") {
      in_sample = false;
    } else if (in_sample && line.starts_with("  value: ")) {
      (values++ == 0 ? samples : nanoseconds) += std::stoull(line.substr(9));
    } else if (line.starts_with("string_table: ")) {
      strings.push_back(line.substr(14));
    }
  }
  const auto expected = jitprof_json({"report", bundle()})["samples"].get<std::uint64_t>();
  EXPECT_EQ(samples, expected);
  EXPECT_EQ(nanoseconds, expected * 1'000'000);  // 1 kHz: 1 ms of CPU time each
  EXPECT_GT(blocks, 1u);
  ASSERT_FALSE(strings.empty());
  EXPECT_EQ(strings.front(), "\"\"");  // string_table[0] is the empty string
  EXPECT_NE(std::find(strings.begin(), strings.end(), "\"g (inlined.py)\""), strings.end());
}

// Threads by their Python names (threading.Thread's, a rename included) in
// report, top and the exports, their OS name kept beside.
TEST_F(Report, ThreadsAreShownByTheirPythonNames) {
  const std::string threads = (dir_ / "named_threads.jprof").string();
  const Result recorded = run({JITPROF_BIN, "record", "-q", "-o", threads, "--", JITPROF_PYPY,
                               std::string(JITPROF_SOURCE_DIR) + "/tests/programs/named_threads.py", "40000000"});
  ASSERT_EQ(recorded.status, 0) << recorded.err;

  const json report = jitprof_json({"report", threads});
  std::map<std::string, json> by_name;
  for (const auto& thread : report["threads"])
    if (thread["name"].is_string()) by_name[thread["name"].get<std::string>()] = thread;
  for (const char* name : {"MainThread", "cruncher", "hasher-1"}) {
    ASSERT_TRUE(by_name.count(name)) << name << " in " << report["threads"].dump(1);
    const json& thread = by_name[name];
    EXPECT_EQ(thread["python_name"], name);
    EXPECT_GT(thread["samples"].get<std::uint64_t>(), 10u) << name;
    EXPECT_FALSE(thread["os_name"].get<std::string>().empty()) << name;
    EXPECT_NE(thread["os_name"], name) << "the OS never sees a Python thread's name";
    EXPECT_EQ(thread["label"], std::string(name) + " (tid " + std::to_string(thread["tid"].get<std::uint32_t>()) + ")");
  }
  EXPECT_FALSE(by_name.count("hasher-0")) << "a renamed thread goes by its latest name";
  EXPECT_EQ(by_name["MainThread"]["tid"], by_name["MainThread"]["pid"]);
  const std::string cruncher = by_name["cruncher"]["label"], hasher = by_name["hasher-1"]["label"],
                    main = by_name["MainThread"]["label"];

  const Result text = run({JITPROF_BIN, "report", threads});
  ASSERT_EQ(text.status, 0) << text.err;
  for (const std::string& label : {main, cruncher, hasher})
    EXPECT_NE(text.out.find("  " + label + "  mostly in spin"), std::string::npos) << label << "\n" << text.out;
  const Result top = run({JITPROF_BIN, "top", threads});
  ASSERT_EQ(top.status, 0) << top.err;
  std::smatch threads_line;
  ASSERT_TRUE(std::regex_search(top.out, threads_line, std::regex("\nthreads: [^\n]+"))) << top.out;
  for (const std::string& label : {main, cruncher, hasher})
    EXPECT_NE(threads_line.str().find(label + " "), std::string::npos) << threads_line.str();

  // Firefox Profiler: non-main threads named, the main thread's name in its process track's name.
  const std::string firefox = (dir_ / "named_threads.firefox.json").string();
  ASSERT_EQ(run({JITPROF_BIN, "export", threads, "-f", "firefox", "-o", firefox}).status, 0);
  std::set<std::string> tracks;
  const json firefox_document = json::parse(jitprof::testing::slurp(firefox));
  for (const auto& thread : firefox_document["threads"]) {
    tracks.insert(thread["name"].get<std::string>());
    if (thread["name"] == "GeckoMain") {
      EXPECT_TRUE(thread["processName"].get<std::string>().ends_with("): MainThread")) << thread["processName"];
    }
  }
  EXPECT_TRUE(tracks.count("GeckoMain") && tracks.count(cruncher) && tracks.count(hasher)) << ::testing::PrintToString(tracks);
  const Result firefox_valid =
      run({"node", std::string(JITPROF_SOURCE_DIR) + "/tests/js/validate-firefox.mjs", "--strict", firefox});
  EXPECT_EQ(firefox_valid.status, 0) << firefox_valid.out << firefox_valid.err;
  EXPECT_TRUE(firefox_valid.out.starts_with("valid\n")) << firefox_valid.out;

  // speedscope: one profile per thread, named by it.
  const std::string speedscope = (dir_ / "named_threads.speedscope.json").string();
  ASSERT_EQ(run({JITPROF_BIN, "export", threads, "-f", "speedscope", "-o", speedscope}).status, 0);
  std::set<std::string> profiles;
  const json speedscope_document = json::parse(jitprof::testing::slurp(speedscope));
  for (const auto& profile : speedscope_document["profiles"])
    profiles.insert(profile["name"].get<std::string>());
  EXPECT_TRUE(profiles.count(main) && profiles.count(cruncher) && profiles.count(hasher)) << ::testing::PrintToString(profiles);
  const Result speedscope_valid =
      run({"node", std::string(JITPROF_SOURCE_DIR) + "/tests/js/validate-speedscope.mjs", speedscope});
  EXPECT_EQ(speedscope_valid.out, "valid\n") << speedscope_valid.err;

  // pprof: every sample labelled with its thread.
  const std::string pprof = (dir_ / "named_threads.pb.gz").string();
  ASSERT_EQ(run({JITPROF_BIN, "export", threads, "-f", "pprof", "-o", pprof}).status, 0);
  const Result decoded = run({"sh", "-c", "gzip -dc " + jitprof::testing::shell_quote(pprof) +
                                              " | protoc --decode=perftools.profiles.Profile --proto_path=" +
                                              jitprof::testing::shell_quote(std::string(JITPROF_SOURCE_DIR) + "/tests/support") +
                                              " profile.proto"});
  ASSERT_EQ(decoded.status, 0) << decoded.err;
  // Each sample: location ids, value: count, value: nanoseconds, label { key: K str: S } (string table indexes).
  std::vector<std::string> strings;
  std::vector<std::tuple<std::uint64_t, std::size_t, std::size_t>> samples;  // (count, key, str)
  std::istringstream lines(decoded.out);
  for (std::string line; std::getline(lines, line);) {
    if (line == "sample {") samples.emplace_back(0, 0, 0);
    else if (line.starts_with("  value: ") && std::get<0>(samples.back()) == 0) std::get<0>(samples.back()) = std::stoull(line.substr(9));
    else if (line.starts_with("    key: ")) std::get<1>(samples.back()) = std::stoull(line.substr(9));
    else if (line.starts_with("    str: ")) std::get<2>(samples.back()) = std::stoull(line.substr(9));
    else if (line.starts_with("string_table: ")) strings.push_back(json::parse(line.substr(14)).get<std::string>());
  }
  std::map<std::string, std::uint64_t> by_label;
  for (const auto& [count, key, str] : samples) {
    ASSERT_LT(std::max(key, str), strings.size());
    EXPECT_EQ(strings[key], "thread");
    by_label[strings[str]] += count;
  }
  for (const char* name : {"MainThread", "cruncher", "hasher-1"})
    EXPECT_EQ(by_label[by_name[name]["label"]], by_name[name]["samples"].get<std::uint64_t>()) << name;
}

TEST_F(Report, PerfMapNamesEveryTraceAtItsAddress) {
  const json summary = jitprof_json({"jitlog", bundle(), "--top", "100000"});
  const Result map = run({JITPROF_BIN, "export", bundle(), "-f", "perf-map"});
  ASSERT_EQ(map.status, 0) << map.err;
  std::map<std::uint64_t, std::pair<std::uint64_t, std::string>> lines;
  std::istringstream in(map.out);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::uint64_t start = 0, size = 0;
    fields >> std::hex >> start >> size;
    std::string name;
    std::getline(fields >> std::ws, name);
    lines[start] = {size, name};
  }
  std::size_t with_code = 0;
  for (const auto& trace : summary["hottest"]) {
    if (trace["code"].is_null()) continue;
    ++with_code;
    const auto start = trace["code"]["start"].get<std::uint64_t>();
    ASSERT_TRUE(lines.count(start)) << "trace " << trace["id"];
    EXPECT_EQ(lines[start].first, trace["code"]["end"].get<std::uint64_t>() - start);
    EXPECT_TRUE(lines[start].second.starts_with("pypy:" + trace["type"].get<std::string>() + " " +
                                                std::to_string(trace["id"].get<std::uint64_t>())));
  }
  EXPECT_EQ(lines.size(), with_code);
}

TEST_F(Report, WithoutPerfPyPysOwnSamplesStandIn) {
  const std::string bundle = (dir_ / "noperf.jprof").string();
  ASSERT_EQ(run({JITPROF_BIN, "record", "-q", "--no-perf", "-o", bundle, "--", JITPROF_PYPY,
                 std::string(JITPROF_SOURCE_DIR) + "/tests/programs/inlined.py", "150000000"})
                .status,
            0);
  const Result result = run({JITPROF_BIN, "report", "--json", bundle});
  ASSERT_EQ(result.status, 0) << result.err;
  EXPECT_NE(result.err.find("showing PyPy's own samples"), std::string::npos) << result.err;
  const json report = json::parse(result.out);
  EXPECT_EQ(report["sample_source"], "vmprof");
  ASSERT_GE(report["functions"].size(), 2u);
  const std::set<std::string> top_two = {report["functions"][0]["name"], report["functions"][1]["name"]};
  EXPECT_EQ(top_two, (std::set<std::string>{"f", "g"}));
  EXPECT_EQ(report["traces"][0]["source"]["function"], "f");
  EXPECT_EQ(report["traces"][0]["source"]["line"], 12);
  EXPECT_EQ(report["jit"]["on_ops"], 0);  // vmprof knows the block, not the instruction
}

// The line of tests/programs/native_hot.c that holds `marker`.
std::int64_t native_hot_line(const std::string& marker) {
  std::istringstream source(jitprof::testing::slurp(std::string(JITPROF_SOURCE_DIR) + "/tests/programs/native_hot.c"));
  std::string line;
  for (std::int64_t number = 1; std::getline(source, line); ++number)
    if (line.find(marker) != std::string::npos) return number;
  return 0;
}

TEST_F(Report, NativeFramesWithDebugInformationHaveLinesAndInlinedFunctions) {
  // PyPy calls a C library built with -g through ctypes; mix is inlined into spin.
  const std::string bundle = (dir_ / "native.jprof").string();
  const Result recorded = run({JITPROF_BIN, "record", "-q", "-o", bundle, "--", JITPROF_PYPY,
                               std::string(JITPROF_SOURCE_DIR) + "/tests/programs/native_hot.py", NATIVE_HOT_LIBRARY});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  const json report = jitprof_json({"report", bundle});
  ASSERT_FALSE(report["native_functions"].empty());
  const json& hottest = report["native_functions"][0];
  EXPECT_EQ(hottest["name"], "mix");
  EXPECT_EQ(hottest["library"], NATIVE_HOT_LIBRARY);
  EXPECT_GT(hottest["self"].get<double>(), 0.5 * report["samples"].get<double>());
  ASSERT_FALSE(hottest["lines"].empty());
  EXPECT_TRUE(hottest["lines"][0]["file"].get<std::string>().ends_with("tests/programs/native_hot.c"));
  EXPECT_EQ(hottest["lines"][0]["line"], native_hot_line("mix: hot line"));

  // The inlined function appears under the function it was inlined into.
  const Result collapsed = run({JITPROF_BIN, "export", bundle, "-f", "collapsed"});
  ASSERT_EQ(collapsed.status, 0) << collapsed.err;
  EXPECT_NE(collapsed.out.find("_call_funcptr (function.py);"), std::string::npos);
  EXPECT_NE(collapsed.out.find(";spin [libnative_hot.so];mix [libnative_hot.so] "), std::string::npos)
      << collapsed.out.substr(0, 2000);
}

TEST_F(Report, ABundleWithNoSamplesAtAllIsAClearError) {
  const std::string none = (dir_ / "none.jprof").string();
  // Not PyPy, and no perf: nothing samples it.
  ASSERT_EQ(run({JITPROF_BIN, "record", "-q", "--no-perf", "-o", none, "--", "true"}).status, 0);
  const Result report = run({JITPROF_BIN, "report", none});
  EXPECT_EQ(report.status, 1);
  EXPECT_NE(report.err.find("has no samples"), std::string::npos) << report.err;
}

}  // namespace
