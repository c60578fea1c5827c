// End-to-end: what a profiled program (or a crafted file) can put into names
// and bytes must neither break jitprof nor reach a terminal as control codes.
// The inputs are made here, by real pypy3 runs and code, not stored binaries.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <memory>
#include <utility>
#include <string>
#include <vector>

#include "bundle/bundle.h"
#include "jitlog/jitlog.h"
#include "support/jitlog_writer.h"
#include "test_process.h"

namespace fs = std::filesystem;
using jitprof::testing::Result;
using nlohmann::json;

namespace {

// A hot function whose name holds an OSC title write, BEL, a screen erase, a
// C1 CSI and a lone surrogate (not UTF-8 once encoded), in a file whose name
// holds another erase.
constexpr const char* kHostileProgram = R"PY(import sys
src = '''
def hot(n):
    s = 0
    for i in range(n):
        s += i % 7
    return s
hot.__code__ = hot.__code__.replace(co_name="hot\\x1b]0;pwned\\x07\\x1b[2J\\u009b31m\\udcff")
print(hot(20000000))
'''
exec(compile(src, "evil\x1b[2J.py", "exec"))
)PY";

class Hostile : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("jitprof-hostile-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "evil.py") << kHostileProgram;
    const Result recorded = run({JITPROF_BIN, "record", "-q", "-o", bundle(), "--", JITPROF_PYPY, (dir_ / "evil.py").string()});
    ASSERT_EQ(recorded.status, 0) << recorded.err;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static std::string bundle() { return (dir_ / "evil.jprof").string(); }
  // Uploads `file` with curl to a `jitprof serve` started for this test; the answer's status and body.
  static std::pair<int, std::string> upload(jitprof::testing::ServeProcess& server, const std::string& file) {
    const std::string body = (dir_ / "upload.out").string();
    const Result posted = run({"curl", "-s", "-o", body, "-w", "%{http_code}", "--data-binary", "@" + file, "-H",
                               "Content-Type: application/octet-stream", server.url() + "/api/upload"});
    return {std::atoi(posted.out.c_str()), jitprof::testing::slurp(body)};
  }
  static std::unique_ptr<jitprof::testing::ServeProcess> serve(const std::string& name) {
    auto server = std::make_unique<jitprof::testing::ServeProcess>(JITPROF_BIN, dir_ / ("data-" + name), dir_, name);
    EXPECT_FALSE(server->url().empty()) << server->process().err();
    return server;
  }
  static std::uint64_t jitlog_first_id(const jitprof::bundle::Bundle& read) {
    return jitprof::jitlog::parse_jitlog(read.stream(jitprof::bundle::sections::kJitlog)).traces.front().id;
  }
  static Result run(const std::vector<std::string>& argv) { return jitprof::testing::run_command(argv, dir_); }

  // What a terminal receives from a command run on a pseudo-terminal (util-linux script).
  static std::string on_terminal(const std::vector<std::string>& argv) {
    std::string command = "NO_COLOR=1";
    for (const std::string& word : argv) command += " " + jitprof::testing::shell_quote(word);
    const Result result = run({"script", "-qfec", command, "/dev/null"});
    EXPECT_EQ(result.status, 0) << command << "\n" << result.out << result.err;
    return result.out;
  }

  static inline fs::path dir_;
};

TEST_F(Hostile, NamesWithEscapeSequencesReachTheTerminalEscaped) {
  const Result report = run({JITPROF_BIN, "report", "--json", bundle()});
  ASSERT_EQ(report.status, 0) << report.err;
  const json summary = json::parse(report.out);
  std::string trace;
  for (const auto& each : summary["traces"])
    if (each["source"]["file"] == "evil\x1b[2J.py") trace = std::to_string(each["id"].get<std::uint64_t>());
  ASSERT_FALSE(trace.empty()) << "the hot loop's trace";
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"report", bundle()}, {"top", bundle()}, {"query", bundle(), "methods"},
        {"query", bundle(), "traces"}, {"info", bundle()}, {"jitlog", bundle()}, {"trace", bundle(), trace},
        {"trace", bundle(), trace, "--stage", "asm", "--asm"}, {"profile", bundle()}, {"report", "--json", bundle()}}) {
    std::vector<std::string> argv = {JITPROF_BIN};
    argv.insert(argv.end(), command.begin(), command.end());
    const std::string shown = on_terminal(argv);
    const std::string name = command[0] + (command.size() > 2 ? " " + command[1] : "");
    EXPECT_EQ(shown.find('\x1b'), std::string::npos) << name;
    EXPECT_EQ(shown.find('\x07'), std::string::npos) << name;
    EXPECT_EQ(shown.find("\xc2\x9b"), std::string::npos) << name;
    // `profile` lists vmprof's samples: none while jitprof reads the Python stacks itself.
    if (command[0] != "info" && command[0] != "profile") {
      EXPECT_TRUE(shown.find("\\x1b") != std::string::npos || shown.find("\\u001b") != std::string::npos)
          << name << ": the name is shown, escaped";
    }
  }
}

TEST_F(Hostile, NamesThatAreNotUtf8SurviveJsonAndExports) {
  const Result report = run({JITPROF_BIN, "report", "--json", bundle()});
  ASSERT_EQ(report.status, 0) << report.err;
  bool hot = false;
  const json summary = json::parse(report.out);
  for (const auto& function : summary["functions"])
    hot |= function["name"].get<std::string>().starts_with("hot\x1b]0;pwned");
  EXPECT_TRUE(hot) << "U+FFFD where the name is not UTF-8, the rest kept";
  for (const std::string format : {"speedscope", "firefox", "collapsed", "pprof"}) {
    const std::string out = (dir_ / ("evil." + format)).string();
    const Result exported = run({JITPROF_BIN, "export", bundle(), "-f", format, "-o", out});
    EXPECT_EQ(exported.status, 0) << format << ": " << exported.err;
    EXPECT_GT(fs::file_size(out), 100u) << format;
  }
  const json speedscope = json::parse(jitprof::testing::slurp(dir_ / "evil.speedscope"));
  EXPECT_FALSE(speedscope["shared"]["frames"].empty());

  // A server takes the bundle (it is well formed: names are bytes) and its views show the name.
  auto server = serve("utf8");
  const auto [status, answer] = upload(*server, bundle());
  ASSERT_EQ(status, 201) << answer;
  const std::string id = json::parse(answer)["id"];
  const Result profile = run({"curl", "-s", "-f", server->url() + "/api/p/" + id});
  ASSERT_EQ(profile.status, 0) << profile.err;
  bool shown = false;
  const json served = json::parse(profile.out);
  for (const auto& function : served["functions"])
    shown |= function["name"].get<std::string>().starts_with("hot\x1b]0;pwned");
  EXPECT_TRUE(shown) << profile.out.substr(0, 2000);
}

TEST_F(Hostile, ArgumentsThatAreNotUtf8AreRecordedByteForByte) {
  const std::string argument = "arg\xff\xfe";
  const std::string out = (dir_ / "echo.jprof").string();
  const Result recorded = run({JITPROF_BIN, "record", "-q", "-o", out, "--", "/bin/echo", argument});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  EXPECT_EQ(recorded.out, argument + "\n") << "the target ran with the argument as given";
  const Result info = run({JITPROF_BIN, "info", "--json", out});
  ASSERT_EQ(info.status, 0) << info.err;
  EXPECT_EQ(json::parse(info.out)["manifest"]["command"][1], "arg\xef\xbf\xbd\xef\xbf\xbd");
  // The bundle itself keeps the bytes.
  const auto read = jitprof::bundle::read_bundle(out);
  const auto* manifest = read.latest(jitprof::bundle::sections::kManifest);
  ASSERT_NE(manifest, nullptr);
  EXPECT_NE(std::string(manifest->data.begin(), manifest->data.end()).find("\"hex\":\"617267fffe\""), std::string::npos);
}

// The hostile-input review's crash: a real bundle plus one JLOG frame that
// opens a trace a second time with only a noopt stage.
TEST_F(Hostile, ATraceOpenedTwiceIsReportedNotACrash) {
  const auto read = jitprof::bundle::read_bundle(bundle());
  const std::string crafted = (dir_ / "twice.jprof").string();
  {
    jitprof::bundle::BundleWriter writer(crafted);
    for (const auto& frame : read.frames) writer.append(frame.type, frame.data);
    const auto jitlog = jitprof::jitlog::parse_jitlog(read.stream(jitprof::bundle::sections::kJitlog));
    ASSERT_FALSE(jitlog.traces.empty());
    jitprof::testing::JitlogWriter again;
    again.start_trace(jitlog.traces.front().id, "loop", 0).trace(jitlog.traces.front().id).input_args("p0");
    writer.append(jitprof::bundle::sections::kJitlog, again.bytes());
  }
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"report", crafted}, {"report", "--json", crafted}, {"top", crafted},
        {"query", crafted, "ops"}, {"info", crafted}, {"export", crafted, "-f", "collapsed"},
        {"trace", crafted, std::to_string(jitlog_first_id(read))}}) {
    std::vector<std::string> argv = {JITPROF_BIN};
    argv.insert(argv.end(), command.begin(), command.end());
    const Result result = run(argv);
    EXPECT_EQ(result.status, 1) << command[0] << ": " << result.err;
    EXPECT_NE(result.err.find("was already started"), std::string::npos) << command[0] << ": " << result.err;
    EXPECT_FALSE(result.out.empty()) << command[0] << ": what came before the bad record is shown";
  }
  // A server refuses it with the reason, stores nothing and keeps serving.
  auto server = serve("twice");
  const auto [status, answer] = upload(*server, crafted);
  EXPECT_EQ(status, 400) << answer;
  EXPECT_NE(answer.find("was already started"), std::string::npos) << answer;
  const Result listed = run({"curl", "-s", "-f", server->url() + "/api/uploads"});
  ASSERT_EQ(listed.status, 0) << "the server is still up: " << server->process().err();
  EXPECT_EQ(json::parse(listed.out)["total"], 0);
}

}  // namespace
