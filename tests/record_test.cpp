// End-to-end: `jitprof record` runs real pypy3 programs and writes bundles
// that `jitprof info`, `jitlog` and `profile` read back.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "bundle/bundle.h"
#include "bundle/samples.h"
#include "bundle/sections.h"
#include "jitlog/jitlog.h"
#include "jitlog/resolver.h"
#include "test_process.h"

namespace fs = std::filesystem;
using jitprof::testing::Result;
using nlohmann::json;

namespace {

class Record : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("jitprof-record-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  Result run(const std::vector<std::string>& argv) const { return jitprof::testing::run_command(argv, dir_); }

  std::string program(const std::string& name, const std::string& text) const {
    std::ofstream(path(name)) << text;
    return path(name);
  }

  Result record(const std::string& bundle, std::vector<std::string> command) const {
    std::vector<std::string> argv = {JITPROF_BIN, "record", "-q", "-o", bundle, "--"};
    argv.insert(argv.end(), command.begin(), command.end());
    return run(argv);
  }

  json info(const std::string& bundle) const {
    const Result result = run({JITPROF_BIN, "info", "--json", bundle});
    EXPECT_EQ(result.status, 0) << result.err;
    return json::parse(result.out);
  }

  fs::path dir_;
};

const std::string kHotLoop = std::string(JITPROF_SOURCE_DIR) + "/tests/programs/hotloop.py";

TEST_F(Record, HotLoopBundleHoldsBothLogsAndNamesF) {
  const Result plain = run({JITPROF_PYPY, kHotLoop, "6000000"});
  const std::string bundle = path("hot.jprof");
  const Result recorded = record(bundle, {JITPROF_PYPY, kHotLoop, "6000000"});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  EXPECT_EQ(recorded.out, plain.out);  // the program's output is untouched
  EXPECT_EQ(recorded.err, plain.err);

  const json summary = info(bundle);
  EXPECT_EQ(summary["manifest"]["state"], "complete");
  EXPECT_EQ(summary["manifest"]["exit"]["code"], 0);
  EXPECT_EQ(summary["manifest"]["command"][1], kHotLoop);
  EXPECT_NE(summary["manifest"]["pypy_version"].get<std::string>().find("PyPy"), std::string::npos);
  EXPECT_TRUE(summary["warnings"].empty());
  EXPECT_TRUE(summary["jitlog"]["present"].get<bool>());
  EXPECT_GE(summary["jitlog"]["loops"].get<int>(), 1);
  EXPECT_GE(summary["jitlog"]["bridges"].get<int>(), 1);
  // vmprof names the code objects; the Python stacks are read at each perf sample.
  EXPECT_EQ(summary["manifest"]["python_stacks"]["source"], "shadow stack");
  EXPECT_GT(summary["vmprof"]["code_objects"].get<int>(), 100);
  EXPECT_EQ(summary["manifest"]["sections"]["jitlog_bytes"].get<std::uint64_t>() > 0, true);

  const Result jitlog = run({JITPROF_BIN, "jitlog", "--json", bundle});
  ASSERT_EQ(jitlog.status, 0) << jitlog.err;
  const json hottest = json::parse(jitlog.out)["hottest"][0];
  EXPECT_EQ(hottest["source"]["function"], "f");
  EXPECT_EQ(hottest["source"]["line"], 12);

  const Result report = run({JITPROF_BIN, "report", "--json", bundle});
  ASSERT_EQ(report.status, 0) << report.err;
  EXPECT_EQ(json::parse(report.out)["functions"][0]["name"], "f");
}

TEST_F(Record, JitRangesNamesTheHotLoopFromPyPysLogWithoutAJitlog) {
  const std::string bundle = path("ranges.jprof");
  const Result recorded =
      run({JITPROF_BIN, "record", "-q", "--jit", "ranges", "-o", bundle, "--", JITPROF_PYPY, kHotLoop, "20000000"});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  const json summary = info(bundle);
  EXPECT_EQ(summary["manifest"]["jit"], "ranges");
  EXPECT_EQ(summary["manifest"]["sections"]["jitlog_bytes"].get<std::uint64_t>(), 0u);

  const Result report = run({JITPROF_BIN, "report", "--json", bundle});
  ASSERT_EQ(report.status, 0) << report.err;
  const json profile = json::parse(report.out);
  EXPECT_EQ(profile["functions"][0]["name"], "f");
  // The hot loop's samples land in the loop PyPy's log named: f at the line of its loop.
  const json& jit = profile["jit"];
  EXPECT_GT(jit["samples"].get<double>(), 0.5 * profile["samples"].get<double>());
  EXPECT_GT(jit["in_traces"].get<double>(), 0.9 * jit["samples"].get<double>());
  EXPECT_EQ(jit["on_ops"], 0);
  EXPECT_NE(jit["names_from"].get<std::string>().find("no IR"), std::string::npos);
  const json& hottest = profile["traces"][0];
  EXPECT_EQ(hottest["type"], "loop");
  EXPECT_EQ(hottest["source"]["function"], "f");
  EXPECT_EQ(hottest["source"]["line"], 12);
  EXPECT_NE(hottest["source"]["file"].get<std::string>().find("hotloop.py"), std::string::npos);

  const Result text = run({JITPROF_BIN, "report", bundle});
  EXPECT_NE(text.out.find("JIT code named from PyPy's log (record --jit ranges)"), std::string::npos) << text.out;
  EXPECT_EQ(text.out.find("label passes"), std::string::npos) << "no counters without a jitlog:\n" << text.out;
}

TEST_F(Record, JitRangesWithoutPyPysLogIsAClearError) {
  const Result recorded = run({JITPROF_BIN, "record", "-q", "--jit", "ranges", "--no-phases", "-o",
                               path("no.jprof"), "--", JITPROF_PYPY, kHotLoop, "1000"});
  EXPECT_NE(recorded.status, 0);
  EXPECT_NE(recorded.err.find("--jit ranges reads the JIT code's names from PyPy's log"), std::string::npos)
      << recorded.err;
}

// Where each address of a recording lies: a file from the MAPS section or JIT code.
class Places {
 public:
  explicit Places(const jitprof::bundle::Bundle& read) {
    for (const auto& mapping : jitprof::bundle::read_mappings(read))
      ranges_.push_back({mapping.start, mapping.start + mapping.length, mapping.path});
  }
  std::string at(std::uint64_t address) const {
    for (const auto& range : ranges_)
      if (address >= range.start && address < range.end) return range.path;
    return "?";
  }
  // The start of the mapping that holds `address`, or 0.
  std::uint64_t mapping_start(std::uint64_t address) const {
    for (const auto& range : ranges_)
      if (address >= range.start && address < range.end) return range.start;
    return 0;
  }

 private:
  struct Range {
    std::uint64_t start, end;
    std::string path;
  };
  std::vector<Range> ranges_;
};

TEST_F(Record, PerfSamplesFollowCpuTimeAndJitSamplesLandInsideTraces) {
  const std::string bundle = path("perf.jprof");
  ASSERT_EQ(record(bundle, {JITPROF_PYPY, kHotLoop, "20000000"}).status, 0);
  const json summary = info(bundle);
  const json& perf = summary["manifest"]["perf"];
  ASSERT_TRUE(perf.is_object()) << summary.dump();
  EXPECT_EQ(perf["rate_hz"], 1000);
  EXPECT_EQ(perf["lost"], 0);
  // cpu-clock fires per CPU-nanosecond of the target: rate x CPU time, within 10%.
  const double expected = 1000 * summary["manifest"]["target_cpu_s"].get<double>();
  const auto samples = summary["samples"]["count"].get<double>();
  EXPECT_NEAR(samples, expected, 0.1 * expected);
  EXPECT_EQ(samples, perf["samples"].get<double>());
  // What recording cost jitprof itself: some CPU, and at least its rings in memory.
  EXPECT_GT(summary["manifest"]["recorder_cpu_s"].get<double>(), 0.0);
  EXPECT_GT(summary["manifest"]["recorder_peak_rss_kib"].get<std::uint64_t>(), 1024u);

  // The hot loop runs in JIT code: those samples carry their exact IP, and each
  // lies inside the machine code of a trace the jitlog describes, except in
  // PyPy's assembler helpers (slow paths built when the JIT starts, before any
  // trace and never logged), which a hot loop reaches rarely.
  const auto in_jit = summary["samples"]["in_jit_code"].get<double>();
  EXPECT_GT(in_jit, 0.5 * samples);
  EXPECT_GE(summary["samples"]["in_jitlog_traces"].get<double>(), 0.99 * in_jit);

  // Checked again here from the sections themselves, with the hot loop's trace.
  const auto read = jitprof::bundle::read_bundle(bundle);
  const auto forest = jitprof::jitlog::parse_jitlog(read.stream(jitprof::bundle::sections::kJitlog));
  const auto table = jitprof::bundle::decode_samples(read.stream(jitprof::bundle::sections::kSamples));
  ASSERT_FALSE(table.error);
  const Places places(read);
  const jitprof::jitlog::TraceResolver resolver(forest);
  const jitprof::jitlog::Trace* first_compiled = nullptr;
  for (const auto& trace : forest.traces)
    if (trace.code && !first_compiled) first_compiled = &trace;
  ASSERT_NE(first_compiled, nullptr);
  std::size_t in_f_loop = 0, in_helpers = 0;
  for (const auto& row : table.rows) {
    if (row.user_stack == jitprof::bundle::SampleTable::kNoStack) continue;
    const std::uint64_t ip = table.stacks[row.user_stack].front();
    const auto* trace = resolver.find(ip).trace;
    in_f_loop += trace && trace->source() && trace->source()->function == "f";
    if (trace || places.at(ip) != "//anon") continue;
    ++in_helpers;
    EXPECT_EQ(places.mapping_start(ip), places.mapping_start(first_compiled->code->start));
    EXPECT_LT(ip, first_compiled->code->start) << "a JIT sample outside every trace and outside the helpers";
  }
  EXPECT_EQ(double(in_helpers), in_jit - summary["samples"]["in_jitlog_traces"].get<double>());
  EXPECT_GT(in_f_loop, table.rows.size() / 2);
}

TEST_F(Record, StacksUnwindThroughJitFramesIntoTheInterpreterAndMain) {
  const std::string bundle = path("unwind.jprof");
  ASSERT_EQ(record(bundle, {JITPROF_PYPY, kHotLoop, "20000000"}).status, 0);
  const auto read = jitprof::bundle::read_bundle(bundle);
  const auto table = jitprof::bundle::decode_samples(read.stream(jitprof::bundle::sections::kSamples));
  ASSERT_FALSE(table.error);
  const Places places(read);
  std::size_t jit_leaf = 0, jit_leaf_complete = 0, through_interpreter_to_main = 0;
  for (const auto& row : table.rows) {
    if (row.user_stack == jitprof::bundle::SampleTable::kNoStack) continue;
    const auto& frames = table.stacks[row.user_stack];
    if (places.at(frames.front()) != "//anon") continue;
    ++jit_leaf;
    if (row.unwind_stop != jitprof::bundle::UnwindStop::Complete) continue;
    ++jit_leaf_complete;
    // Leaf in JIT code, then frames of libpypy (the interpreter calling the
    // loop), and the outermost frames in libc's start-up code and pypy3 itself.
    bool interpreter = false;
    for (std::size_t i = 1; i < frames.size(); ++i) interpreter |= places.at(frames[i]).ends_with("libpypy3.9-c.so");
    const bool reaches_start = places.at(frames.back()).ends_with("pypy3.9") ||
                               places.at(frames[frames.size() - 2]).ends_with("libc.so.6");
    through_interpreter_to_main += interpreter && reaches_start && frames.size() > 10;
  }
  ASSERT_GT(jit_leaf, 50u);
  EXPECT_GT(jit_leaf_complete, jit_leaf * 9 / 10);
  EXPECT_EQ(through_interpreter_to_main, jit_leaf_complete);

  // Every native address of every stack is named in the bundle, with the
  // file's build id, so that the bundle reads on another machine.
  std::map<std::uint64_t, jitprof::bundle::SymbolRecord> symbols;
  for (auto& symbol : jitprof::bundle::read_symbols(read)) symbols[symbol.address] = std::move(symbol);
  std::size_t user_addresses = 0, kernel_addresses = 0;
  for (const auto& row : table.rows) {
    if (row.user_stack != jitprof::bundle::SampleTable::kNoStack)
      for (std::uint64_t address : table.stacks[row.user_stack]) {
        const std::string where = places.at(address);
        if (where == "//anon" || where == "?" || where == "[vdso]") continue;
        ++user_addresses;
        ASSERT_TRUE(symbols.count(address)) << std::hex << address << " in " << where;
        EXPECT_EQ(symbols[address].path, where);
        EXPECT_EQ(symbols[address].build_id.size(), 40u) << where;
      }
    if (row.kernel_stack != jitprof::bundle::SampleTable::kNoStack)
      for (std::uint64_t address : table.stacks[row.kernel_stack]) {
        ++kernel_addresses;
        ASSERT_TRUE(symbols.count(address)) << std::hex << address;
        EXPECT_EQ(symbols[address].path, "[kernel.kallsyms]");
        EXPECT_FALSE(symbols[address].name.empty());
      }
  }
  EXPECT_GT(user_addresses, 1000u);
  if (kernel_addresses == 0) std::cout << "note: no sample of this run hit the kernel\n";
}

// libpypy is stripped: RPython's records name its functions and their
// component. With a cold cache the names are computed while the program runs
// and the libpypy addresses named when sampling ends.
TEST_F(Record, LibpypyFramesAreNamedWithTheirComponent) {
  const fs::path cache = dir_ / "cache";
  const char* saved = std::getenv("XDG_CACHE_HOME");
  const std::optional<std::string> saved_cache = saved ? std::optional<std::string>(saved) : std::nullopt;
  ::setenv("XDG_CACHE_HOME", cache.c_str(), 1);
  const std::string bundle = path("allocations.jprof");
  const Result recorded =
      record(bundle, {JITPROF_PYPY, std::string(JITPROF_SOURCE_DIR) + "/tests/programs/allocations.py", "200000"});
  if (saved_cache) ::setenv("XDG_CACHE_HOME", saved_cache->c_str(), 1);
  else ::unsetenv("XDG_CACHE_HOME");
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  const fs::path cache_file = cache / "jitprof" / "libpypy-names";
  EXPECT_NE(recorded.err.find("naming libpypy's functions (once per build; cached in " + cache_file.string()),
            std::string::npos)
      << recorded.err;
  EXPECT_FALSE(fs::is_empty(cache_file));

  const auto read = jitprof::bundle::read_bundle(bundle);
  const auto table = jitprof::bundle::decode_samples(read.stream(jitprof::bundle::sections::kSamples));
  ASSERT_FALSE(table.error);
  const Places places(read);
  std::map<std::uint64_t, jitprof::bundle::SymbolRecord> symbols;
  for (auto& symbol : jitprof::bundle::read_symbols(read)) symbols[symbol.address] = std::move(symbol);
  std::size_t in_libpypy = 0, unnamed = 0;
  std::map<std::string, std::size_t> components;
  for (const auto& row : table.rows) {
    if (row.user_stack == jitprof::bundle::SampleTable::kNoStack) continue;
    const std::uint64_t leaf = table.stacks[row.user_stack].front();
    if (!places.at(leaf).ends_with("libpypy3.9-c.so")) continue;
    ++in_libpypy;
    ASSERT_TRUE(symbols.count(leaf)) << std::hex << leaf;
    unnamed += symbols[leaf].name.empty();
    ++components[symbols[leaf].component];
  }
  std::cout << in_libpypy << " of " << table.rows.size() << " samples innermost in libpypy, " << unnamed
            << " unnamed (" << (in_libpypy ? 100.0 * double(unnamed) / double(in_libpypy) : 0.0) << "%); by component:";
  for (const auto& [component, count] : components) std::cout << " " << (component.empty() ? "(none)" : component) << " " << count;
  std::cout << "\n";
  ASSERT_GT(in_libpypy, 100u);
  EXPECT_LE(unnamed, in_libpypy / 10);
  EXPECT_GT(components["gc"], 0u);
}

// PyPy's JIT code calls assembler helpers (allocation and write-barrier slow
// paths) that are not trace frames; stacks must cross them to the interpreter
// and main, on one thread and on two that allocate and contend for the GIL.
TEST_F(Record, StacksCrossPyPysAssemblerHelpers) {
  for (const auto& [name, argv] :
       std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"demo", {JITPROF_PYPY, std::string(JITPROF_SOURCE_DIR) + "/examples/demo.py"}},
           {"threads_alloc", {JITPROF_PYPY, std::string(JITPROF_SOURCE_DIR) + "/tests/programs/threads_alloc.py"}}}) {
    const std::string bundle = path(name + ".jprof");
    ASSERT_EQ(record(bundle, argv).status, 0) << name;
    const json samples = info(bundle)["samples"];
    const double count = samples["count"].get<double>();
    const double complete = samples["unwind_stops"].value("complete", 0.0);
    std::cout << name << ": " << complete << " of " << count << " stacks complete; ended: " << samples["unwind_stops"]
              << "\n";
    ASSERT_GT(count, 200) << name;
    EXPECT_GE(complete / count, 0.98) << name << ": " << samples["unwind_stops"];
    EXPECT_LE(samples["unwind_stops"].value("jit frame", 0.0), 0.01 * count) << name;
  }
  // The helpers' samples go to the traces that called them: the allocating
  // loop's trace, not an anonymous "JIT helper" frame.
  const Result report = run({JITPROF_BIN, "report", "--json", path("threads_alloc.jprof")});
  ASSERT_EQ(report.status, 0) << report.err;
  const json summary = json::parse(report.out);
  const auto leaf = summary["leaf_categories"];
  EXPECT_LE(leaf.value("jit-helper", 0.0), 0.01 * summary["samples"].get<double>()) << leaf;
  ASSERT_FALSE(summary["traces"].empty());
  EXPECT_EQ(summary["traces"][0]["source"]["function"], "work");
}

TEST_F(Record, EveryThreadIsSampled) {
  const std::string script = program("threads.py",
                                     "import threading\n"
                                     "def spin(n):\n"
                                     "    s = 0\n"
                                     "    for i in range(n):\n"
                                     "        s += i % 7\n"
                                     "    return s\n"
                                     "threads = [threading.Thread(target=spin, args=(40000000,)) for _ in range(4)]\n"
                                     "for t in threads: t.start()\n"
                                     "for t in threads: t.join()\n"
                                     "print('done')\n");
  const std::string bundle = path("threads.jprof");
  ASSERT_EQ(record(bundle, {JITPROF_PYPY, script}).status, 0);
  const auto read = jitprof::bundle::read_bundle(bundle);
  const auto table = jitprof::bundle::decode_samples(read.stream(jitprof::bundle::sections::kSamples));
  ASSERT_FALSE(table.error);
  std::map<std::uint32_t, std::size_t> per_thread;
  for (const auto& row : table.rows) ++per_thread[row.tid];
  // The main thread and the four workers (PyPy's GIL makes them take turns).
  std::size_t busy = 0;
  for (const auto& [tid, count] : per_thread) busy += count >= 10;
  EXPECT_GE(busy, 4u) << per_thread.size() << " threads seen";
  const json summary = info(bundle);
  const double expected = 1000 * summary["manifest"]["target_cpu_s"].get<double>();
  EXPECT_NEAR(double(table.rows.size()), expected, 0.1 * expected);
}

TEST_F(Record, ChildProcessesAreSampledOnlyWithChildren) {
  const std::string script = program("parent.py",
                                     "import subprocess, sys\n"
                                     "code = 's = 0\\nfor i in range(400000000): s += i % 3\\nprint(s)'\n"
                                     "subprocess.run([sys.executable, '-c', code], check=True)\n");
  auto pids_in = [&](const std::string& bundle) {
    const auto read = jitprof::bundle::read_bundle(bundle);
    const auto table = jitprof::bundle::decode_samples(read.stream(jitprof::bundle::sections::kSamples));
    std::map<std::uint32_t, std::size_t> pids;
    for (const auto& row : table.rows) ++pids[row.pid];
    return pids;
  };
  ASSERT_EQ(record(path("alone.jprof"), {JITPROF_PYPY, script}).status, 0);
  const auto alone = pids_in(path("alone.jprof"));
  ASSERT_EQ(alone.size(), 1u);
  EXPECT_EQ(alone.begin()->first, info(path("alone.jprof"))["manifest"]["pid"].get<std::uint32_t>());

  const Result with_children = run({JITPROF_BIN, "record", "-q", "--children", "-o", path("family.jprof"), "--",
                                    JITPROF_PYPY, script});
  ASSERT_EQ(with_children.status, 0) << with_children.err;
  const auto family = pids_in(path("family.jprof"));
  ASSERT_EQ(family.size(), 2u);
  // The child does the work: most samples are its own.
  const auto parent = info(path("family.jprof"))["manifest"]["pid"].get<std::uint32_t>();
  std::size_t child_samples = 0;
  for (const auto& [pid, count] : family) child_samples += pid == parent ? 0 : count;
  EXPECT_GT(child_samples, family.at(parent));
}

TEST_F(Record, NoPerfKeepsPyPysOwnSamplingOnly) {
  const std::string bundle = path("noperf.jprof");
  const Result recorded = run({JITPROF_BIN, "record", "-q", "--no-perf", "-o", bundle, "--", JITPROF_PYPY, kHotLoop,
                               "3000000"});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  const json summary = info(bundle);
  EXPECT_TRUE(summary["manifest"]["perf"].is_null());
  EXPECT_EQ(summary["samples"]["count"], 0);
  EXPECT_GT(summary["vmprof"]["samples"].get<int>(), 0);
}

TEST_F(Record, ArgvEnvironmentAndExitStatusAreTheProgramsOwn) {
  const std::string script = program("argv.py",
                                     "import os, sys\n"
                                     "print(sys.argv[1:])\n"
                                     "print(sorted(k for k in os.environ if 'JIT' in k or 'PYTHONPATH' in k))\n"
                                     "print([p for p in sys.path if 'jitprof-site' in p])\n"
                                     "sys.stderr.write('to stderr\\n')\n"
                                     "sys.exit(3)\n");
  const Result plain = run({JITPROF_PYPY, script, "a b", "--flag", ""});
  const Result recorded = record(path("argv.jprof"), {JITPROF_PYPY, script, "a b", "--flag", ""});
  EXPECT_EQ(plain.status, 3);
  EXPECT_EQ(recorded.status, 3);
  EXPECT_EQ(recorded.out, plain.out);
  EXPECT_EQ(recorded.out, "['a b', '--flag', '']\n[]\n[]\n");
  EXPECT_EQ(recorded.err, "to stderr\n");
  EXPECT_EQ(info(path("argv.jprof"))["manifest"]["exit"]["code"], 3);
}

// vmprof's SIGPROF timer survives execve: an exec'd program must not die of it.
TEST_F(Record, AProgramTheTargetExecsKeepsRunningAndIsSampled) {
  const std::string script = program("execs.py",
                                     "import os\n"
                                     "s = 0\n"
                                     "for i in range(3000000):\n"
                                     "    s += i % 3\n"
                                     "try:\n"
                                     "    os.execv('/nonexistent/program', ['x'])\n"
                                     "except OSError:\n"
                                     "    print('exec failed, still here', flush=True)\n"
                                     "for i in range(3000000):\n"
                                     "    s += i % 3\n"
                                     "os.execv('/bin/sh', ['sh', '-c', 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; "
                                     "echo after exec; exit 4'])\n");
  const Result plain = run({JITPROF_PYPY, script});
  const std::string bundle = path("execs.jprof");
  const Result recorded = record(bundle, {JITPROF_PYPY, script});
  EXPECT_EQ(plain.status, 4) << plain.err;
  EXPECT_EQ(recorded.status, 4) << recorded.err;
  EXPECT_EQ(recorded.out, "exec failed, still here\nafter exec\n");
  EXPECT_EQ(recorded.out, plain.out);
  // The exec'd shell keeps the target's pid and is sampled on.
  const auto read = jitprof::bundle::read_bundle(bundle);
  std::optional<std::uint64_t> exec_time;
  for (const auto& task : jitprof::bundle::read_tasks(read))
    if (task.kind == jitprof::bundle::TaskRecord::Kind::Exec && task.comm == "sh") exec_time = task.time_ns;
  ASSERT_TRUE(exec_time);
  const auto table = jitprof::bundle::decode_samples(read.stream(jitprof::bundle::sections::kSamples));
  const auto after = std::count_if(table.rows.begin(), table.rows.end(), [&](const auto& row) { return row.time_ns > *exec_time; });
  EXPECT_GT(after, 10) << "samples of the exec'd program";
  // PyPy's own logs covered the time before the exec, including the failed one.
  const json summary = info(bundle);
  EXPECT_GE(summary["jitlog"]["loops"].get<int>(), 1);
  EXPECT_GT(summary["vmprof"]["code_objects"].get<int>(), 0);
}

TEST_F(Record, TheUsersOwnSitecustomizeStillRuns) {
  const fs::path site = dir_ / "site";
  fs::create_directories(site);
  std::ofstream(site / "sitecustomize.py") << "import builtins\nbuiltins.SITE_RAN = 'yes'\n";
  const std::string script = program("site.py",
                                     "import os, sys, sitecustomize\n"
                                     "print(SITE_RAN, os.environ['PYTHONPATH'], sitecustomize.__file__)\n");
  const std::string path_value = site.string();
  const Result plain = run({"env", "PYTHONPATH=" + path_value, JITPROF_PYPY, script});
  const Result recorded = run({"env", "PYTHONPATH=" + path_value, JITPROF_BIN, "record", "-q", "-o",
                               path("site.jprof"), "--", JITPROF_PYPY, script});
  ASSERT_EQ(plain.status, 0) << plain.err;
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  EXPECT_EQ(recorded.out, plain.out);
  EXPECT_EQ(recorded.out, "yes " + path_value + " " + (site / "sitecustomize.py").string() + "\n");
}

TEST_F(Record, AbortIsRecordedAsSigabrtAndTheBundleStillReads) {
  const std::string script = program("abort.py",
                                     "import os\n"
                                     "def spin(n):\n"
                                     "    s = 0\n"
                                     "    for i in range(n):\n"
                                     "        s += i & 5\n"
                                     "    return s\n"
                                     "print(spin(3000000))\n"
                                     "os.abort()\n");
  const Result recorded = record(path("abort.jprof"), {JITPROF_PYPY, script});
  EXPECT_EQ(recorded.status, 128 + SIGABRT);
  const json summary = info(path("abort.jprof"));
  EXPECT_EQ(summary["manifest"]["state"], "complete");
  EXPECT_EQ(summary["manifest"]["exit"]["signal"], SIGABRT);
  EXPECT_EQ(summary["manifest"]["exit"]["signal_name"], "SIGABRT");
  EXPECT_GE(summary["jitlog"]["loops"].get<int>(), 1);
  EXPECT_TRUE(summary["jitlog"]["diagnostics"]["error"].is_null());
}

TEST_F(Record, SegfaultKeepsTheTracesCompiledBeforeIt) {
  const std::string script = program("segv.py",
                                     "import ctypes\n"
                                     "def spin(n):\n"
                                     "    s = 0\n"
                                     "    for i in range(n):\n"
                                     "        s += i % 3\n"
                                     "    return s\n"
                                     "print(spin(3000000))\n"
                                     "ctypes.memset(0, 1, 8)\n");
  const Result recorded = record(path("segv.jprof"), {JITPROF_PYPY, script});
  EXPECT_EQ(recorded.status, 128 + SIGSEGV);
  EXPECT_EQ(info(path("segv.jprof"))["manifest"]["exit"]["signal_name"], "SIGSEGV");
  // No counters after a crash: every trace ties, so list them all.
  const Result jitlog = run({JITPROF_BIN, "jitlog", "--json", "--top", "100000", path("segv.jprof")});
  ASSERT_EQ(jitlog.status, 0) << jitlog.err;
  bool found_spin = false;
  const json summary = json::parse(jitlog.out);
  for (const auto& trace : summary["hottest"])
    found_spin |= trace["source"].is_object() && trace["source"]["function"] == "spin";
  EXPECT_TRUE(found_spin);
}

TEST_F(Record, SegfaultRecordsTheFaultingThreadItsRegistersAndStack) {
  const std::string script = program("null.py",
                                     "import ctypes, threading\n"
                                     "def crash():\n"
                                     "    ctypes.memset(0, 1, 8)\n"
                                     "t = threading.Thread(target=crash, name='crasher')\n"
                                     "t.start()\n"
                                     "t.join()\n");
  const std::string bundle = path("null.jprof");
  EXPECT_EQ(record(bundle, {JITPROF_PYPY, script}).status, 128 + SIGSEGV);
  const json summary = info(bundle);
  const json& crash = summary["crash"];
  ASSERT_TRUE(crash.is_object()) << summary.dump(1);
  EXPECT_EQ(crash["signal_name"], "SIGSEGV");
  EXPECT_EQ(crash["fault_address"], 0);  // memset(NULL, ...)
  EXPECT_EQ(summary["manifest"]["exit"]["crash_thread"], crash["tid"]);
  // The thread that faulted is the worker, not the main thread (tid == pid).
  ASSERT_TRUE(summary["manifest"]["pid"].is_number());
  EXPECT_NE(crash["tid"], summary["manifest"]["pid"]);
  // Named as the program knows it, its OS name kept beside.
  EXPECT_EQ(crash["thread"]["name"], "crasher");
  EXPECT_EQ(crash["thread"]["tid"], crash["tid"]);
  EXPECT_EQ(crash["thread"]["pid"], summary["manifest"]["pid"]);
  EXPECT_EQ(crash["thread"]["os_name"], fs::path(JITPROF_PYPY).filename().string());
  const Result text = run({JITPROF_BIN, "info", bundle});
  EXPECT_NE(text.out.find("crash: SIGSEGV in thread crasher (tid " + std::to_string(crash["tid"].get<std::uint32_t>()) + ") at 0x"),
            std::string::npos)
      << text.out;
  const auto& frames = crash["frames"];
  ASSERT_GT(frames.size(), 5u);
  EXPECT_EQ(frames[0]["address"], crash["registers"]["rip"]);
  EXPECT_TRUE(frames[0]["path"].get<std::string>().ends_with("libc.so.6"));
  bool ffi_call = false;
  for (const auto& frame : frames) ffi_call |= frame.value("name", "") == "ffi_call";
  EXPECT_TRUE(ffi_call) << "ctypes calls memset through libffi";
}

TEST_F(Record, FatalSignalInAHotLoopNamesItsTraceAndOp) {
  const std::string script = program("forever.py",
                                     "import os, sys\n"
                                     "def spin():\n"
                                     "    s = 0\n"
                                     "    i = 0\n"
                                     "    while True:\n"
                                     "        i += 1\n"
                                     "        s += i % 5\n"
                                     "        if i == 3000000:\n"
                                     "            with open(sys.argv[1], 'w') as f: f.write(str(os.getpid()))\n"
                                     "spin()\n");
  const std::string bundle = path("forever.jprof"), pid_file = path("forever.pid");
  // Once the loop is hot, SIGSEGV from outside lands in its machine code.
  const std::string command = jitprof::testing::shell_quote(JITPROF_BIN) + " record -q -o " +
                              jitprof::testing::shell_quote(bundle) + " -- " +
                              jitprof::testing::shell_quote(JITPROF_PYPY) + " " +
                              jitprof::testing::shell_quote(script) + " " + jitprof::testing::shell_quote(pid_file) +
                              " & while [ ! -s " + jitprof::testing::shell_quote(pid_file) +
                              " ]; do sleep 0.05; done; sleep 0.3; kill -SEGV $(cat " +
                              jitprof::testing::shell_quote(pid_file) + "); wait $!";
  const Result recorded = run({"sh", "-c", command});
  EXPECT_EQ(recorded.status, 128 + SIGSEGV) << recorded.err;
  const json summary = info(bundle);
  const json& crash = summary["crash"];
  ASSERT_TRUE(crash.is_object()) << summary.dump(1);
  EXPECT_EQ(crash["signal_name"], "SIGSEGV");
  ASSERT_TRUE(crash.contains("trace")) << crash.dump(1);
  EXPECT_EQ(crash["trace"]["type"], "loop");
  EXPECT_TRUE(crash["trace"].contains("op"));
  EXPECT_EQ(crash["trace"]["source"]["function"], "spin");
  // Usually the signal hits the loop's own code; when it hits a helper the
  // loop called, the trace is the innermost JIT frame of the stack.
  const auto index = crash["trace"]["frame_index"].get<std::size_t>();
  EXPECT_TRUE(crash["frames"][index]["jit"].get<bool>());
  for (std::size_t i = 0; i < index; ++i) EXPECT_FALSE(crash["frames"][i]["jit"].get<bool>());
}

TEST_F(Record, MissingProgramIsAClearError) {
  const Result recorded = record(path("none.jprof"), {"no-such-program-xyz"});
  EXPECT_NE(recorded.status, 0);
  EXPECT_NE(recorded.err.find("cannot run no-such-program-xyz"), std::string::npos) << recorded.err;
}

TEST_F(Record, CutBundleReadsUpToItsLastCompleteFrame) {
  const std::string bundle = path("cut.jprof");
  ASSERT_EQ(record(bundle, {JITPROF_PYPY, kHotLoop, "1000000"}).status, 0);
  const std::string bytes = jitprof::testing::slurp(bundle);
  std::ofstream(path("cut2.jprof"), std::ios::binary) << bytes.substr(0, bytes.size() - 10);
  const Result result = run({JITPROF_BIN, "info", "--json", path("cut2.jprof")});
  EXPECT_EQ(result.status, 0) << result.err;
  const json summary = json::parse(result.out);
  ASSERT_EQ(summary["warnings"].size(), 1u);
  EXPECT_NE(summary["warnings"][0]["message"].get<std::string>().find("truncated"), std::string::npos);
  // The last frame, the final manifest, is lost: the first one says the recording had begun.
  EXPECT_EQ(summary["manifest"]["state"], "recording");
}

}  // namespace
