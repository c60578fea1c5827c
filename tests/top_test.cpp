// End-to-end: `jitprof top --pid` on a running PyPy service
// (tests/programs/service_no_jitlog.py, whose time goes to hot_function), as
// a user would check it: in a pipe, on a pseudo-terminal, with -o, and on a
// process that does not exist.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bundle/bundle.h"
#include "live/top.h"
#include "test_process.h"

namespace fs = std::filesystem;
using jitprof::testing::Background;
using jitprof::testing::Result;
using nlohmann::json;

namespace {

const std::string kService = std::string(JITPROF_SOURCE_DIR) + "/tests/programs/service_no_jitlog.py";
const std::string kHeader = "=== jitprof top: PID ";

// The snapshots of a plain-text output, each from its header line on.
std::vector<std::string> snapshots_of(const std::string& out) {
  std::vector<std::string> snapshots;
  for (std::size_t at = out.find(kHeader); at != std::string::npos;) {
    const std::size_t next = out.find(kHeader, at + 1);
    snapshots.push_back(out.substr(at, next == std::string::npos ? std::string::npos : next - at));
    at = next;
  }
  return snapshots;
}

// A snapshot's seconds since sampling started, from its header.
double elapsed_of(const std::string& snapshot) {
  std::smatch match;
  if (!std::regex_search(snapshot, match, std::regex(R"(, ([0-9.]+) s elapsed ===)"))) return -1;
  return std::stod(match[1]);
}

// %Own and %Total of a function's row in a snapshot; -1 when it has none.
std::pair<double, double> shares_of(const std::string& snapshot, const std::string& function) {
  std::smatch match;
  const std::regex row(R"(\n +([0-9.]+)% +([0-9.]+)% +[0-9.]+s +[0-9.]+s  )" + function + R"( \()");
  if (!std::regex_search(snapshot, match, row)) return {-1, -1};
  return {std::stod(match[1]), std::stod(match[2])};
}

class Top : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("jitprof-top-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  Result run(const std::vector<std::string>& argv) const { return jitprof::testing::run_command(argv, dir_); }
  std::unique_ptr<Background> start_service() {
    auto service = std::make_unique<Background>(std::vector<std::string>{JITPROF_PYPY, kService, "60"}, dir_, "service");
    EXPECT_TRUE(service->wait_for_output("ready\n")) << service->err();
    return service;
  }

  fs::path dir_;
};

TEST_F(Top, WithoutATerminalPrintsOneSnapshotPerSecondNamingTheHotFunction) {
  auto service = start_service();
  const Result top = run({JITPROF_BIN, "top", "--pid", std::to_string(service->pid()), "--duration", "3"});
  ASSERT_EQ(top.status, 0) << top.err;
  const std::vector<std::string> snapshots = snapshots_of(top.out);
  ASSERT_EQ(snapshots.size(), 3u) << top.out;
  for (std::size_t i = 0; i < snapshots.size(); ++i)
    EXPECT_NEAR(elapsed_of(snapshots[i]), double(i + 1), 0.3) << snapshots[i];
  // Within the 3 seconds (its code object is named by a scan of the
  // process's memory that runs beside the view): hot_function takes most
  // samples of its second, under its callers.
  const auto named = std::find_if(snapshots.begin(), snapshots.end(), [](const std::string& snapshot) {
    return shares_of(snapshot, "hot_function").first >= 0;
  });
  ASSERT_NE(named, snapshots.end()) << top.out;
  const std::string& snapshot = *named;
  const auto [own, total] = shares_of(snapshot, "hot_function");
  EXPECT_GE(own, 60.0) << snapshot;
  EXPECT_GE(total, 90.0) << snapshot;
  EXPECT_GE(shares_of(snapshot, "serve_forever").second, 90.0) << snapshot;
  EXPECT_NE(snapshot.find("[jit] code of hot_function (service_no_jitlog.py)"), std::string::npos) << snapshot;
  EXPECT_NE(snapshot.find("where the time goes (last / all): JIT code "), std::string::npos) << snapshot;
  EXPECT_NE(snapshot.find(std::to_string(service->pid()) + " pypy"), std::string::npos) << snapshot;
  EXPECT_TRUE(service->running()) << "the target keeps running after jitprof ends";
  EXPECT_EQ(top.err.find("bundle written"), std::string::npos) << top.err;
}

// jitprof on the slave side of a pseudo-terminal; what it draws is read from the master side.
class OnTerminal {
 public:
  explicit OnTerminal(const std::vector<std::string>& argv) {
    winsize size{};
    size.ws_row = 40;
    size.ws_col = 120;
    pid_ = ::forkpty(&master_, nullptr, nullptr, &size);
    if (pid_ != 0) return;
    std::vector<char*> words;
    for (const auto& word : argv) words.push_back(const_cast<char*>(word.c_str()));
    words.push_back(nullptr);
    ::execv(words[0], words.data());
    ::_exit(127);
  }
  ~OnTerminal() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
    ::close(master_);
  }

  // Reads what was drawn until `done(output)` or `seconds` pass (or the end).
  template <class Done>
  void read_until(Done done, double seconds) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (!done(output_) && std::chrono::steady_clock::now() < until) {
      pollfd ready{master_, POLLIN, 0};
      if (::poll(&ready, 1, 100) <= 0) continue;
      char buffer[4096];
      const ssize_t got = ::read(master_, buffer, sizeof buffer);
      if (got <= 0) return;  // the slave side closed: jitprof ended
      output_.append(buffer, static_cast<std::size_t>(got));
    }
  }
  int wait() {
    if (!status_) {
      int raw = 0;
      ::waitpid(pid_, &raw, 0);
      status_ = jitprof::testing::shell_status(raw);
    }
    return *status_;
  }
  pid_t pid() const { return pid_; }
  int master() const { return master_; }
  const std::string& output() const { return output_; }

 private:
  int master_ = -1;
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string output_;
};

std::size_t count_of(const std::string& text, const std::string& part) {
  std::size_t count = 0;
  for (std::size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++count;
  return count;
}

TEST_F(Top, OnATerminalRedrawsEverySecondAndRestoresTheTerminalAfterCtrlC) {
  auto service = start_service();
  OnTerminal top({JITPROF_BIN, "top", "--pid", std::to_string(service->pid())});
  const std::string enter = "\x1b[?1049h\x1b[?25l", leave = "\x1b[?25h\x1b[?1049l", redraw = "\x1b[H" + kHeader;
  const std::string hot = "hot_function (service_no_jitlog.py:";
  top.read_until([&](const std::string& out) {
    return count_of(out, redraw) >= 2 && out.find(hot, out.rfind(redraw)) != std::string::npos;
  }, 30);
  ASSERT_GE(count_of(top.output(), redraw), 2u) << top.output();
  ASSERT_NE(top.output().find(enter), std::string::npos);
  EXPECT_LT(top.output().find(enter), top.output().find(redraw));
  EXPECT_NE(top.output().find(hot, top.output().rfind(redraw)), std::string::npos) << top.output();
  // While it runs, keys are read one by one without echo.
  termios modes{};
  ASSERT_EQ(::tcgetattr(top.master(), &modes), 0);
  EXPECT_EQ(modes.c_lflag & (ICANON | ECHO), 0u);

  ::kill(top.pid(), SIGINT);
  top.read_until([](const std::string&) { return false; }, 20);
  EXPECT_EQ(top.wait(), 0) << top.output();
  // The cursor comes back and the alternate screen is left after the last redraw, the modes are the user's again.
  const std::size_t left = top.output().rfind(leave);
  ASSERT_NE(left, std::string::npos) << top.output();
  EXPECT_GT(left, top.output().rfind(redraw));
  ASSERT_EQ(::tcgetattr(top.master(), &modes), 0);
  EXPECT_EQ(modes.c_lflag & (ICANON | ECHO), tcflag_t(ICANON | ECHO));
  EXPECT_NE(top.output().find("jitprof: sampled ", left), std::string::npos) << top.output();
  EXPECT_TRUE(service->running());
}

TEST_F(Top, WritesTheWholeSessionsBundleAfterCtrlC) {
  auto service = start_service();
  const std::string bundle = path("top.jprof");
  Background top({JITPROF_BIN, "top", "--pid", std::to_string(service->pid()), "-o", bundle}, dir_, "top");
  ASSERT_TRUE(top.wait_for_output(kHeader, 30)) << top.err();
  ASSERT_TRUE(top.wait_for_output("hot_function", 10)) << top.out();
  ::kill(top.pid(), SIGINT);
  ASSERT_EQ(top.wait(), 0) << top.err();
  EXPECT_NE(top.err().find("bundle written to " + bundle), std::string::npos) << top.err();
  EXPECT_TRUE(service->running());

  const Result info = run({JITPROF_BIN, "info", "--json", bundle});
  ASSERT_EQ(info.status, 0) << info.err;
  const json read = json::parse(info.out);
  EXPECT_EQ(read["manifest"]["state"], "complete");
  EXPECT_EQ(read["manifest"]["pid"], service->pid());
  EXPECT_GT(read["samples"]["count"].get<int>(), 500);
  const Result report = run({JITPROF_BIN, "report", "--json", bundle});
  ASSERT_EQ(report.status, 0) << report.err;
  const json summary = json::parse(report.out);
  ASSERT_FALSE(summary["functions"].empty());
  EXPECT_EQ(summary["functions"][0]["name"], "hot_function");
  EXPECT_EQ(summary["functions"][0]["file"], kService);
  EXPECT_GE(summary["functions"][0]["self"].get<double>(), 0.6 * read["samples"]["count"].get<double>());
  EXPECT_EQ(summary["python_stacks"]["unnamed_code_objects"], 0);

  // Counted in two batches as the live view counts, the bundle gives what report counts from it whole.
  const jitprof::bundle::Bundle whole = jitprof::bundle::read_bundle(bundle);
  jitprof::bundle::Bundle first, second;
  std::size_t sample_frames = 0, seen = 0;
  for (const auto& frame : whole.frames) sample_frames += frame.type == jitprof::bundle::sections::kSamples;
  ASSERT_GE(sample_frames, 2u);
  for (const auto& frame : whole.frames) {
    const bool sample = frame.type == jitprof::bundle::sections::kSamples;
    (sample && seen++ >= sample_frames / 2 ? second : first).frames.push_back(frame);
  }
  jitprof::live::Top counts;
  counts.add(first, 1);
  counts.add(second, 2);
  const jitprof::live::Snapshot snapshot = counts.snapshot(1000);
  EXPECT_EQ(snapshot.samples.all, read["samples"]["count"].get<std::uint64_t>());
  for (const auto& function : summary["functions"]) {
    const auto row = std::find_if(snapshot.functions.begin(), snapshot.functions.end(), [&](const auto& counted) {
      return counted.name == function["name"] && counted.file == function["file"];
    });
    ASSERT_NE(row, snapshot.functions.end()) << function.dump();
    EXPECT_EQ(row->self.all, function["self"].get<std::uint64_t>()) << function.dump();
    EXPECT_EQ(row->total.all, function["total"].get<std::uint64_t>()) << function.dump();
  }
}

TEST_F(Top, RefusesAProcessThatDoesNotExistOrIsNotPyPy) {
  // A process id nobody has: a child's, once it has been reaped.
  const pid_t gone = ::fork();
  if (gone == 0) ::_exit(0);
  ::waitpid(gone, nullptr, 0);
  const Result missing = run({JITPROF_BIN, "top", "--pid", std::to_string(gone)});
  EXPECT_EQ(missing.status, 1);
  EXPECT_EQ(missing.err, "jitprof: error: no process with PID " + std::to_string(gone) + "\n");
  EXPECT_EQ(missing.out, "");

  Background sleeper({"sleep", "30"}, dir_, "sleep");
  const Result not_pypy = run({JITPROF_BIN, "top", "--pid", std::to_string(sleeper.pid())});
  EXPECT_EQ(not_pypy.status, 1);
  EXPECT_NE(not_pypy.err.find("is not PyPy: no libpypy is loaded in it"), std::string::npos) << not_pypy.err;
  EXPECT_TRUE(sleeper.running());
}

}  // namespace
