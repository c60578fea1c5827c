// End-to-end: `jitprof serve` on loopback, with the real `jitprof upload`,
// `jitprof record --web`, curl for hand-made requests, and PyPy programs.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "support/hostile_inputs.h"
#include "test_process.h"

namespace fs = std::filesystem;
using jitprof::testing::Background;
using jitprof::testing::Result;
using jitprof::testing::shell_quote;
using nlohmann::json;

namespace {

const std::string kPrograms = std::string(JITPROF_SOURCE_DIR) + "/tests/programs/";
using Clock = std::chrono::steady_clock;

double milliseconds_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// A process's peak resident memory (VmHWM), in MiB.
double peak_rss_mib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.starts_with("VmHWM:")) return std::stod(line.substr(6)) / 1024;
  return -1;
}

// The CPU time a process used so far, user and system, in seconds.
double cpu_seconds(pid_t pid) {
  const std::string stat = jitprof::testing::slurp("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));  // after the command name
  std::string field;
  std::uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {  // fields 14 and 15 (1-based) in proc(5)
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Connections that send the start of a request and never finish its header.
std::vector<int> idle_connections(const std::string& url, int count) {
  const int port = std::stoi(url.substr(url.rfind(':') + 1));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<int> sockets;
  for (int i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) break;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0)
      (void)!::send(fd, "GET / HTTP/1.1\r\n", 16, MSG_NOSIGNAL);
    sockets.push_back(fd);
  }
  return sockets;
}

class Server : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("jitprof-server-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }

  // Starts `jitprof serve` on a free loopback port with `extra` options, on DIR/data.
  void start(const std::vector<std::string>& extra = {}, const std::vector<std::string>& launcher = {}) {
    server_.reset();
    server_ = std::make_unique<jitprof::testing::ServeProcess>(JITPROF_BIN, dir_ / "data", dir_,
                                                                "server-" + std::to_string(++starts_), extra, launcher);
    url_ = server_->url();
    ASSERT_FALSE(url_.empty()) << server_->process().err();
  }

  Result run(const std::vector<std::string>& argv) const { return jitprof::testing::run_command(argv, dir_); }

  struct Http {
    int status = 0;
    std::string body;
  };
  // curl: the status line and the body, for requests a client library would tidy up.
  Http request(const std::string& method, const std::string& path, const std::vector<std::string>& options = {}) const {
    std::vector<std::string> argv = {"curl", "-s", "--path-as-is", "-X", method, "-o", (dir_ / "body.out").string(),
                                     "-w", "%{http_code}"};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back(url_ + path);
    const Result result = run(argv);
    return {std::atoi(result.out.c_str()), jitprof::testing::slurp(dir_ / "body.out")};
  }
  json get_json(const std::string& path) const {
    const Http answer = request("GET", path);
    EXPECT_EQ(answer.status, 200) << path << ": " << answer.body;
    return json::parse(answer.body, nullptr, false);
  }
  Http post_file(const std::string& path, const fs::path& file, std::vector<std::string> options = {}) const {
    options.insert(options.end(), {"--data-binary", "@" + file.string(), "-H", "Content-Type: application/octet-stream"});
    return request("POST", path, options);
  }
  // A real bundle of a small PyPy program, recorded once per test run.
  fs::path bundle() {
    const fs::path path = dir_ / "hotloop.jprof";
    if (!fs::exists(path)) {
      const Result recorded =
          run({JITPROF_BIN, "record", "-q", "-o", path.string(), "--", JITPROF_PYPY, kPrograms + "hotloop.py", "3000000"});
      EXPECT_EQ(recorded.status, 0) << recorded.err;
    }
    return path;
  }
  std::size_t stored() const { return get_json("/api/uploads")["total"].get<std::size_t>(); }
  std::string upload(const fs::path& file) {
    const Result uploaded = run({JITPROF_BIN, "upload", "-q", file.string(), "--server", url_});
    EXPECT_EQ(uploaded.status, 0) << uploaded.err;
    return uploaded.out.substr(uploaded.out.rfind('/') + 1, 64);
  }
  // curl in the background: its body goes to DIR/NAME.body, the status to its stdout.
  std::unique_ptr<Background> request_in_background(const std::string& name, const std::string& path,
                                                    std::vector<std::string> options = {}) const {
    std::vector<std::string> argv = {"curl", "-s", "-o", (dir_ / (name + ".body")).string(), "-w", "%{http_code}"};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back(url_ + path);
    return std::make_unique<Background>(argv, dir_, name);
  }

  fs::path dir_;
  std::string url_;
  std::unique_ptr<jitprof::testing::ServeProcess> server_;
  int starts_ = 0;
};

TEST_F(Server, RecordWebPrintsALinkWhoseViewsNameTheHotLoop) {
  start();
  // f's loop calls g, which the JIT inlines.
  const Result recorded = run({JITPROF_BIN, "record", "-q", "--web", url_, "-o", (dir_ / "inlined.jprof").string(), "--",
                               JITPROF_PYPY, kPrograms + "inlined.py", "60000000"});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  std::smatch link;
  const std::regex pattern(url_ + "/p/([0-9a-f]{64})\n$");
  ASSERT_TRUE(std::regex_search(recorded.out, link, pattern)) << recorded.out;
  const std::string id = link[1];

  const json summary = get_json("/api/p/" + id);
  EXPECT_EQ(summary["id"], id);
  const std::set<std::string> top_two = {summary["functions"][0]["name"], summary["functions"][1]["name"]};
  EXPECT_EQ(top_two, (std::set<std::string>{"f", "g"}));
  const json& hottest = summary["traces"][0];
  EXPECT_EQ(hottest["type"], "loop");
  EXPECT_EQ(hottest["source"]["function"], "f");

  // The trace page's view: asm ops with machine code, heat summing to the trace's samples, source lines.
  const json trace = get_json("/api/p/" + id + "/trace/" + std::to_string(hottest["id"].get<std::uint64_t>()) + "?stage=asm");
  std::uint64_t per_op = 0, instructions = 0;
  for (const auto& op : trace["ops"]) {
    per_op += op.value("samples", std::uint64_t{0});
    instructions += op.contains("instructions") ? op["instructions"].size() : 0;
  }
  EXPECT_EQ(per_op + trace["entry_code_samples"].get<std::uint64_t>(), hottest["samples"].get<std::uint64_t>());
  EXPECT_GT(instructions, 10u);
  EXPECT_EQ(trace["source_lines"][kPrograms + "inlined.py"]["12"], "    for i in range(n):");

  // The list, the flame graph, the paged tables and the page itself.
  const json list = get_json("/api/uploads?q=inlined.py");
  ASSERT_EQ(list["total"], 1);
  EXPECT_EQ(list["uploads"][0]["id"], id);
  const std::string flame = get_json("/api/p/" + id + "/flame").dump();
  EXPECT_NE(flame.find("\"frame\":\"g (inlined.py)\""), std::string::npos);
  EXPECT_EQ(get_json("/api/p/" + id + "/traces?limit=1")["traces"][0]["id"], hottest["id"]);
  const json functions = get_json("/api/p/" + id + "/functions?limit=2");
  EXPECT_EQ((std::set<std::string>{functions["functions"][0]["name"], functions["functions"][1]["name"]}), top_two);
  const json searched = get_json("/api/p/" + id + "/functions?q=app_main.py");
  EXPECT_GE(searched["total"].get<int>(), 1);
  for (const auto& function : searched["functions"])
    EXPECT_NE(function["file"].get<std::string>().find("app_main.py"), std::string::npos);
  const Http page = request("GET", "/p/" + id);
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("src=\"/static/app.js\""), std::string::npos);
  // The stored bundle is the file record wrote, byte for byte.
  const Http download = request("GET", "/api/p/" + id + "/bundle");
  EXPECT_EQ(download.body, jitprof::testing::slurp(dir_ / "inlined.jprof"));
}

TEST_F(Server, QueriesAnswerAsTheCommandLineDoes) {
  start();
  const Result uploaded = run({JITPROF_BIN, "upload", "-q", bundle().string(), "--server", url_});
  ASSERT_EQ(uploaded.status, 0) << uploaded.err;
  const std::string id = uploaded.out.substr(uploaded.out.rfind('/') + 1, 64);
  for (const std::string query : {"traces.contains('guard_true')", "guards.failures() > 0", "methods.name('f')",
                                  "ops.name('int_add*').in(hot).limit(3)"}) {
    const Result cli = run({JITPROF_BIN, "query", "--json", bundle().string(), query});
    ASSERT_EQ(cli.status, 0) << cli.err;
    const json expected = json::parse(cli.out);
    const json served = get_json("/api/p/" + id + "/query?q=" + jitprof::testing::url_encode(query));
    EXPECT_EQ(served["total"], expected["total"]) << query;
    EXPECT_EQ(served["rows"], expected["rows"]) << query;
    EXPECT_GT(served["total"].get<int>(), 0) << query;
  }
  const Http bad = request("GET", "/api/p/" + id + "/query?q=" + jitprof::testing::url_encode("traces.bogus()"));
  EXPECT_EQ(bad.status, 400);
  const json error = json::parse(bad.body);
  EXPECT_EQ(error["column"], 8);
  EXPECT_NE(error["error"].get<std::string>().find("no step 'bogus'"), std::string::npos);
}

TEST_F(Server, InfoAndJitlogViewsAreTheCommandLinesOwn) {
  start();
  const Result uploaded = run({JITPROF_BIN, "upload", "-q", bundle().string(), "--server", url_});
  ASSERT_EQ(uploaded.status, 0) << uploaded.err;
  const std::string id = uploaded.out.substr(uploaded.out.rfind('/') + 1, 64);
  const Result info = run({JITPROF_BIN, "info", "--json", bundle().string()});
  ASSERT_EQ(info.status, 0) << info.err;
  json expected = json::parse(info.out);
  expected.erase("file");
  const json served = get_json("/api/p/" + id + "/info");
  EXPECT_EQ(served, expected);
  EXPECT_EQ(served["manifest"]["command"][1], kPrograms + "hotloop.py");
  EXPECT_GT(served["samples"]["in_jitlog_traces"].get<int>(), 0);

  const Result jitlog = run({JITPROF_BIN, "jitlog", "--json", "--top", "20", bundle().string()});
  ASSERT_EQ(jitlog.status, 0) << jitlog.err;
  expected = json::parse(jitlog.out);
  expected.erase("file");
  EXPECT_EQ(get_json("/api/p/" + id + "/jitlog"), expected);
  EXPECT_GE(expected["loops"].get<int>(), 1);
}

// An upload is indexed with the views of the hot traces its summary lists
// only: any other trace's view is computed when first asked for, then
// answered from the index, the same after a restart, and is what
// `jitprof trace --json` prints.
TEST_F(Server, TraceViewsOutsideTheHotListAreComputedWhenFirstAskedFor) {
  start();
  const fs::path many = dir_ / "many.jprof";
  const Result recorded =
      run({JITPROF_BIN, "record", "-q", "-o", many.string(), "--", JITPROF_PYPY, kPrograms + "many_traces.py", "100"});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  const std::string id = upload(many);
  const auto views_stored = [&](const std::string& trace) {
    const Result counted = run({"sqlite3", (dir_ / "data" / "index.sqlite").string(),
                                "SELECT COUNT(*) FROM views WHERE upload = '" + id + "' AND name LIKE 'trace/" + trace + "/%'"});
    EXPECT_EQ(counted.status, 0) << counted.err;
    return std::atoi(counted.out.c_str());
  };
  const std::size_t total = get_json("/api/p/" + id + "/traces?limit=1")["total"].get<std::size_t>();
  ASSERT_GT(total, 51u);  // more than the summary's 50 hot traces
  for (const json& hot : get_json("/api/p/" + id)["traces"]) {
    const std::string hot_id = std::to_string(hot["id"].get<std::uint64_t>());
    const int stored_at_upload = views_stored(hot_id);
    EXPECT_EQ(stored_at_upload, static_cast<int>(get_json("/api/p/" + id + "/trace/" + hot_id)["stages"].size()));
  }
  const json coldest =
      get_json("/api/p/" + id + "/traces?limit=1&sort=samples&offset=" + std::to_string(total - 1))["traces"][0];
  const std::string trace_id = std::to_string(coldest["id"].get<std::uint64_t>());
  EXPECT_EQ(views_stored(trace_id), 0);

  const std::string path = "/api/p/" + id + "/trace/" + trace_id;
  int asked = 0;
  for (const std::string stage : {"noopt", "opt", "asm"}) {
    const bool listed = std::find(coldest["stages"].begin(), coldest["stages"].end(), stage) != coldest["stages"].end();
    if (!listed) {
      EXPECT_EQ(request("GET", path + "?stage=" + stage).status, 404) << stage;
      continue;
    }
    const json first = get_json(path + "?stage=" + stage);
    EXPECT_EQ(views_stored(trace_id), ++asked);
    EXPECT_EQ(get_json(path + "?stage=" + stage), first) << stage;
    EXPECT_EQ(views_stored(trace_id), asked);

    std::vector<std::string> argv = {JITPROF_BIN, "trace", "--json", "--stage", stage, many.string(), trace_id};
    if (stage == "asm") argv.push_back("--asm");
    const Result cli = run(argv);
    ASSERT_EQ(cli.status, 0) << cli.err;
    json expected = json::parse(cli.out);
    expected.erase("warnings");
    expected.erase("error");
    EXPECT_EQ(first, expected) << stage;
  }
  EXPECT_GT(asked, 0);
  EXPECT_EQ(request("GET", "/api/p/" + id + "/trace/99999999").status, 404);

  const json asm_view = get_json(path);
  start();  // the same data directory: computed views stay stored
  EXPECT_EQ(get_json(path), asm_view);
  EXPECT_EQ(views_stored(trace_id), asked);
}

TEST_F(Server, TwoUploadsComparedAnswerWhatJitprofDiffPrintsAndTheDiffIsStored) {
  start();
  // The second run's optimized() does a tenth of the first's work.
  std::vector<std::string> ids;
  for (const char* mode : {"slow", "fast"}) {
    const fs::path recording = dir_ / (std::string(mode) + ".jprof");
    const Result recorded = run({JITPROF_BIN, "record", "-q", "-o", recording.string(), "--", JITPROF_PYPY,
                                 kPrograms + "two_costs.py", "100000000", mode});
    ASSERT_EQ(recorded.status, 0) << recorded.err;
    ids.push_back(upload(recording));
  }
  const auto diffs_stored = [&] {
    const Result counted = run({"sqlite3", (dir_ / "data" / "index.sqlite").string(),
                                "SELECT COUNT(*) FROM views WHERE upload = '" + ids[1] + "' AND name = 'diff/" + ids[0] + "'"});
    EXPECT_EQ(counted.status, 0) << counted.err;
    return std::atoi(counted.out.c_str());
  };
  EXPECT_EQ(diffs_stored(), 0);
  const std::string path = "/api/diff/" + ids[0] + "/" + ids[1];
  const json diff = get_json(path);
  EXPECT_EQ(diffs_stored(), 1);

  const Result cli = run({JITPROF_BIN, "diff", "--json", "--top", "100", (dir_ / "slow.jprof").string(),
                          (dir_ / "fast.jprof").string()});
  ASSERT_EQ(cli.status, 0) << cli.err;
  json expected = json::parse(cli.out);
  expected["old"].erase("file");
  expected["new"].erase("file");
  EXPECT_EQ(diff, expected);
  bool dropped = false;
  for (const json& function : diff["functions"])
    if (function["name"] == "optimized") dropped = function["self_points"].get<double>() < -30;
  EXPECT_TRUE(dropped) << diff["functions"].dump();
  EXPECT_GT(diff["flame"]["old_samples"].get<std::uint64_t>(), diff["flame"]["samples"].get<std::uint64_t>());

  EXPECT_EQ(get_json(path), diff);  // from the stored view
  EXPECT_EQ(diffs_stored(), 1);
  const Http unknown = request("GET", "/api/diff/" + ids[0] + "/" + std::string(64, 'a'));
  EXPECT_EQ(unknown.status, 404) << unknown.body;
  const Http malformed = request("GET", "/api/diff/" + ids[0] + "/x");
  EXPECT_EQ(malformed.status, 400);
  EXPECT_NE(malformed.body.find("ids are 64 hex digits"), std::string::npos) << malformed.body;
  const Http page = request("GET", "/diff/" + ids[0] + "/" + ids[1]);
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("/static/app.js"), std::string::npos);
}

TEST_F(Server, UploadsNeedAValidTokenWhenTheServerHasATokenFile) {
  std::ofstream(dir_ / "tokens") << "# one token a line\nsecret-one\nsecret-two\n";
  start({"--token-file", (dir_ / "tokens").string()});
  EXPECT_EQ(post_file("/api/upload", bundle()).status, 401);
  EXPECT_EQ(post_file("/api/upload", bundle(), {"-H", "Authorization: Bearer wrong"}).status, 401);
  const Result refused = run({JITPROF_BIN, "upload", bundle().string(), "--server", url_, "--token", "wrong"});
  EXPECT_EQ(refused.status, 1);
  EXPECT_NE(refused.err.find("refused the upload (401"), std::string::npos) << refused.err;
  EXPECT_EQ(stored(), 0u);
  const Result accepted = run({JITPROF_BIN, "upload", bundle().string(), "--server", url_, "--token", "secret-two"});
  EXPECT_EQ(accepted.status, 0) << accepted.err;
  EXPECT_EQ(stored(), 1u);  // reading stays open without --private
}

TEST_F(Server, PrivateServersRefuseReadsWithoutAToken) {
  std::ofstream(dir_ / "tokens") << "secret\n";
  start({"--token-file", (dir_ / "tokens").string(), "--private"});
  EXPECT_EQ(request("GET", "/api/uploads").status, 401);
  EXPECT_EQ(request("GET", "/api/uploads", {"-H", "Authorization: Bearer secret"}).status, 200);
  EXPECT_EQ(request("GET", "/").status, 200);  // the viewer itself holds no data
}

TEST_F(Server, AnOversizeUploadIs413AndTheServerStaysUp) {
  start({"--max-body-mb", "1"});
  const fs::path big = dir_ / "big.bin";
  std::ofstream(big, std::ios::binary) << std::string(3 << 20, 'x');
  const Http answer = post_file("/api/upload", big);
  EXPECT_EQ(answer.status, 413);
  EXPECT_NE(answer.body.find("exceeds this server's limit of 1048576 bytes"), std::string::npos) << answer.body;
  EXPECT_EQ(stored(), 0u);
  EXPECT_TRUE(fs::is_empty(dir_ / "data" / "tmp"));
}

TEST_F(Server, CorruptTruncatedAndForeignFilesAre400WithAReason) {
  start();
  const std::string good = jitprof::testing::slurp(bundle());
  struct Case {
    std::string name, bytes, reason;
  };
  std::string flipped = good;
  flipped[good.size() / 2] = static_cast<char>(flipped[good.size() / 2] ^ 0x40);
  const std::vector<Case> cases = {
      {"flipped", flipped, "corrupt (CRC mismatch)"},
      {"truncated", good.substr(0, good.size() - 100), "truncated bundle"},
      {"foreign", "GIF89a not a bundle at all", "bad magic"},
      {"empty", "", "empty file"},
  };
  for (const Case& bad : cases) {
    const fs::path file = dir_ / (bad.name + ".jprof");
    std::ofstream(file, std::ios::binary) << bad.bytes;
    const Http answer = post_file("/api/upload", file);
    EXPECT_EQ(answer.status, 400) << bad.name;
    EXPECT_NE(answer.body.find(bad.reason), std::string::npos) << bad.name << ": " << answer.body;
  }
  EXPECT_EQ(stored(), 0u);
  EXPECT_TRUE(fs::is_empty(dir_ / "data" / "tmp"));
  EXPECT_EQ(post_file("/api/upload", bundle()).status, 201);  // still serving
}

TEST_F(Server, PathsFromRequestsNeverReachTheFilesystem) {
  start();
  for (const std::string& path : std::vector<std::string>{"/api/p/../../../../etc/passwd", "/api/p/..%2F..%2F..%2Fetc%2Fpasswd",
                                 "/api/p/%2e%2e/bundle", "/static/..%2F..%2F..%2Fetc%2Fpasswd", "/static/../index.sqlite",
                                 "/api/runtime/..%2F..%2Findex.sqlite", "/api/p/" + std::string(64, 'a') + "/bundle"}) {
    const Http answer = request("GET", path);
    EXPECT_TRUE(answer.status == 400 || answer.status == 404) << path << " -> " << answer.status;
    EXPECT_EQ(answer.body.find("root:"), std::string::npos) << path;
    EXPECT_EQ(answer.body.find("SQLite"), std::string::npos) << path;
  }
  EXPECT_EQ(request("GET", "/api/uploads").status, 200);
}

TEST_F(Server, AVmprofPythonUploadBecomesAViewableBundle) {
  start();
  // The four calls of vmprof-python's vmshare/service.py, with its payloads:
  // JSON run metadata, the raw CPU profile, the gzipped jitlog, the freeze.
  const Http created = request("POST", "/api/runtime/new",
                               {"-H", "Content-Type: application/json", "--data", R"({"argv": "hotloop.py 3000000", "VM": "PyPy"})"});
  ASSERT_EQ(created.status, 200) << created.body;
  const json new_run = json::parse(created.body);
  EXPECT_EQ(new_run["status"], "ok");
  const std::string rid = new_run["runtime_id"];
  const std::string fixtures = JITPROF_FIXTURES;
  ASSERT_EQ(run({"sh", "-c", "gzip -dc " + shell_quote(fixtures + "/hotloop.prof.gz") + " > " +
                                 shell_quote((dir_ / "hotloop.prof").string())})
                .status,
            0);
  const Http cpu = post_file("/api/runtime/upload/cpu/" + rid + "/add", dir_ / "hotloop.prof",
                             {"-H", "Content-Disposition: attachment; filename=/tmp/hotloop.prof"});
  EXPECT_EQ(cpu.status, 200) << cpu.body;
  const Http jit = post_file("/api/runtime/upload/jit/" + rid + "/add", fixtures + "/hotloop.jitlog.gz",
                             {"-H", "Content-Disposition: attachment; filename=/tmp/tmpjit.zip"});
  EXPECT_EQ(jit.status, 200) << jit.body;
  EXPECT_EQ(json::parse(jit.body)["status"], "ok");
  const Http frozen = request("POST", "/api/runtime/" + rid + "/freeze/");
  ASSERT_EQ(frozen.status, 200) << frozen.body;
  EXPECT_EQ(json::parse(frozen.body)["status"], "ok");

  // A frozen run takes no more files.
  EXPECT_EQ(post_file("/api/runtime/upload/cpu/" + rid + "/add", dir_ / "hotloop.prof").status, 400);
  // The links the client prints: URL/#/RID for the profile, URL/#/RID/traces
  // for the jitlog (its jid is the run's id). The fragment stays in the
  // browser: the viewer, served at /, asks /api/runtime/RID for the bundle
  // and opens /p/ID or /p/ID/traces (the browser test follows both links).
  EXPECT_EQ(json::parse(jit.body)["jid"], rid);
  const std::string id = get_json("/api/runtime/" + rid)["bundle"];
  EXPECT_EQ(json::parse(frozen.body)["bundle"], id);
  for (const std::string& page : {std::string("/"), "/p/" + id, "/p/" + id + "/traces"}) {
    const Http viewer = request("GET", page);
    EXPECT_EQ(viewer.status, 200) << page;
    EXPECT_NE(viewer.body.find("/static/app.js"), std::string::npos) << page;
  }
  const json summary = get_json("/api/p/" + id);
  EXPECT_EQ(summary["sample_source"], "vmprof");
  const Result profile = run({JITPROF_BIN, "profile", "--json", fixtures + "/hotloop.prof.gz"});
  EXPECT_EQ(summary["samples"], json::parse(profile.out)["samples"]);
  // What the upload carries: the run's duration in the profile (its start and
  // trailer times), the interpreter in the run's VM field (vmprof-python
  // sends no version, nor does either file hold one).
  const double duration = json::parse(profile.out)["duration_s"].get<double>();
  EXPECT_GT(duration, 0.1);
  EXPECT_NEAR(summary["manifest"]["duration_s"].get<double>(), duration, 1e-3);
  EXPECT_EQ(summary["manifest"]["vm"], "PyPy");
  const json listed = get_json("/api/uploads?q=" + id)["uploads"];
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_NEAR(listed[0]["duration"].get<double>(), duration, 1e-3);
  EXPECT_EQ(listed[0]["pypy_version"], "PyPy");
  EXPECT_EQ(summary["manifest"]["command"][0], "hotloop.py 3000000");
  bool f_seen = false;
  for (const auto& function : summary["functions"]) f_seen |= function["name"] == "f";
  EXPECT_TRUE(f_seen) << summary["functions"].dump();
  // Its traces come from the jitlog, the one f's loop compiled to among them.
  const Result jitlog = run({JITPROF_BIN, "jitlog", "--json", fixtures + "/hotloop.jitlog.gz"});
  const json expected = json::parse(jitlog.out);
  EXPECT_EQ(summary["trace_count"], expected["loops"].get<int>() + expected["bridges"].get<int>());
  bool f_loop = false;
  const json traces = get_json("/api/p/" + id + "/traces?limit=500");
  for (const auto& trace : traces["traces"])
    f_loop |= trace["type"] == "loop" && trace["function"] == "f";
  EXPECT_TRUE(f_loop);

  // `pypy -m jitlog --upload`: a run of a jitlog alone. Its traces are there;
  // its duration is unknown (null, shown as "–"), not 0 s.
  const std::string jit_run =
      json::parse(request("POST", "/api/runtime/new", {"--data", R"({"argv": "app.py", "VM": "PyPy"})"}).body)["runtime_id"];
  EXPECT_EQ(post_file("/api/runtime/upload/jit/" + jit_run + "/add", fixtures + "/hotloop.jitlog.gz").status, 200);
  const Http jit_frozen = request("POST", "/api/runtime/" + jit_run + "/freeze/");
  ASSERT_EQ(jit_frozen.status, 200) << jit_frozen.body;
  const std::string jit_id = json::parse(jit_frozen.body)["bundle"];
  const json jit_listed = get_json("/api/uploads?q=" + jit_id)["uploads"];
  ASSERT_EQ(jit_listed.size(), 1u);
  EXPECT_TRUE(jit_listed[0]["duration"].is_null()) << jit_listed[0].dump();
  EXPECT_EQ(jit_listed[0]["pypy_version"], "PyPy");
  EXPECT_EQ(jit_listed[0]["traces"], summary["trace_count"]);
  bool jit_f_loop = false;
  const json jit_traces = get_json("/api/p/" + jit_id + "/traces?limit=500");
  for (const auto& trace : jit_traces["traces"])
    jit_f_loop |= trace["type"] == "loop" && trace["function"] == "f";
  EXPECT_TRUE(jit_f_loop);

  // Not a profile, not a jitlog: refused with the reader's reason.
  const std::string other = json::parse(request("POST", "/api/runtime/new", {"--data", "{}"}).body)["runtime_id"];
  const Http junk = post_file("/api/runtime/upload/jit/" + other + "/add", bundle());
  EXPECT_EQ(junk.status, 400);
  EXPECT_NE(junk.body.find("not a jitlog"), std::string::npos) << junk.body;
}

TEST_F(Server, PyPysOwnFilesUploadAsBundlesAndTheCommandsReadThem) {
  // One real run writes both of PyPy's files: JITLOG=... for the jitlog, and
  // _vmprof.enable in a wrapper (vmprof-python is not needed) for the profile,
  // in native mode: JIT samples are then placed by the signal's PC, in the
  // trace that ran (without it PyPy takes a stale return address).
  std::ofstream(dir_ / "vmprof_run.py") << "import os, runpy, sys, _vmprof\n"
                                           "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\n"
                                           "_vmprof.enable(fd, 0.0005, 0, 0, 1, 0)\n"
                                           "sys.argv = sys.argv[2:]\n"
                                           "runpy.run_path(sys.argv[0], run_name='__main__')\n"
                                           "_vmprof.disable()\n";
  const std::string jitlog = (dir_ / "app.jitlog").string(), profile = (dir_ / "app.prof").string();
  const Result ran = run({"env", "JITLOG=" + jitlog, JITPROF_PYPY, (dir_ / "vmprof_run.py").string(), profile,
                          kPrograms + "hotloop.py", "30000000"});
  ASSERT_EQ(ran.status, 0) << ran.err;
  ASSERT_EQ(run({"sh", "-c", "gzip -k " + shell_quote(jitlog) + " " + shell_quote(profile)}).status, 0);
  const json jitlog_view = json::parse(run({JITPROF_BIN, "jitlog", "--json", jitlog}).out);
  const int traces = jitlog_view["loops"].get<int>() + jitlog_view["bridges"].get<int>();
  const json profile_view = json::parse(run({JITPROF_BIN, "profile", "--json", profile}).out);
  const std::uint64_t samples = profile_view["samples"];
  ASSERT_GT(traces, 0);
  ASSERT_GT(samples, 100u);
  start();

  // The link of each upload; its id.
  const auto upload_files = [&](const std::vector<std::string>& files) {
    std::vector<std::string> argv = {JITPROF_BIN, "upload", "-q"};
    argv.insert(argv.end(), files.begin(), files.end());
    argv.insert(argv.end(), {"--server", url_});
    const Result uploaded = run(argv);
    EXPECT_EQ(uploaded.status, 0) << uploaded.err;
    return uploaded.out;
  };
  const std::regex link("/p/([0-9a-f]{64})(/traces)?\n$");
  const auto f_loop = [&](const std::string& id) {
    const json listed = get_json("/api/p/" + id + "/traces?limit=500");
    for (const auto& trace : listed["traces"])
      if (trace["type"] == "loop" && trace["function"] == "f") return true;
    return false;
  };
  // A jitlog alone, gzipped or not: its link opens its traces, f's loop among them.
  for (const std::string& file : {jitlog, jitlog + ".gz"}) {
    std::smatch match;
    const std::string printed = upload_files({file});
    ASSERT_TRUE(std::regex_search(printed, match, link)) << printed;
    EXPECT_EQ(match[2], "/traces") << printed;
    EXPECT_TRUE(f_loop(match[1])) << file;
    const json listed = get_json("/api/uploads?q=" + match[1].str())["uploads"].at(0);
    EXPECT_EQ(listed["traces"], traces);
    EXPECT_EQ(listed["samples"], 0);
    EXPECT_EQ(listed["pypy_version"], "PyPy");
    EXPECT_TRUE(listed["duration"].is_null());
  }
  // A profile alone: its link opens the profile, whose functions put f first.
  for (const std::string& file : {profile, profile + ".gz"}) {
    std::smatch match;
    const std::string printed = upload_files({file});
    ASSERT_TRUE(std::regex_search(printed, match, link)) << printed;
    EXPECT_EQ(match[2], "") << printed;
    const json functions = get_json("/api/p/" + match[1].str() + "/functions");
    ASSERT_FALSE(functions["functions"].empty());
    EXPECT_EQ(functions["functions"][0]["name"], "f") << functions.dump();
    const json listed = get_json("/api/uploads?q=" + match[1].str())["uploads"].at(0);
    EXPECT_EQ(listed["samples"], samples);
    EXPECT_NEAR(listed["duration"].get<double>(), profile_view["duration_s"].get<double>(), 1e-3);
  }
  // The pair of one run: both in one upload, its samples joined with the traces.
  {
    std::smatch match;
    const std::string printed = upload_files({jitlog + ".gz", profile});
    ASSERT_TRUE(std::regex_search(printed, match, link)) << printed;
    const json summary = get_json("/api/p/" + match[1].str());
    EXPECT_EQ(summary["trace_count"], traces);
    EXPECT_EQ(summary["samples"], samples);
    EXPECT_EQ(summary["functions"][0]["name"], "f");
    EXPECT_TRUE(f_loop(match[1]));
    std::uint64_t in_traces = 0;
    for (const auto& trace : summary["traces"]) in_traces += trace.value("samples", std::uint64_t{0});
    EXPECT_GT(in_traces, samples / 2) << "the profile's JIT samples land in the jitlog's traces";
  }
  // What is not one file of each kind is refused, saying why.
  const Result two_jitlogs = run({JITPROF_BIN, "upload", jitlog, jitlog + ".gz", "--server", url_});
  EXPECT_EQ(two_jitlogs.status, 1);
  EXPECT_NE(two_jitlogs.err.find("are both PyPy jitlogs: upload one PyPy jitlog and one vmprof profile"), std::string::npos)
      << two_jitlogs.err;
  const Result source = run({JITPROF_BIN, "upload", kPrograms + "hotloop.py", "--server", url_});
  EXPECT_EQ(source.status, 1);
  EXPECT_NE(source.err.find("hotloop.py is text starting \"# A hot loop in \": jitprof reads a jitprof bundle"),
            std::string::npos)
      << source.err;

  // The read commands take the same files.
  const Result report = run({JITPROF_BIN, "report", "--json", profile + ".gz"});
  ASSERT_EQ(report.status, 0) << report.err;
  EXPECT_EQ(json::parse(report.out)["functions"][0]["name"], "f");
  EXPECT_EQ(json::parse(report.out)["samples"], samples);
  const Result no_samples = run({JITPROF_BIN, "report", jitlog});
  EXPECT_EQ(no_samples.status, 1);
  EXPECT_NE(no_samples.err.find("is a PyPy jitlog, which holds no samples to report: 'jitprof jitlog"), std::string::npos)
      << no_samples.err;
  const Result info = run({JITPROF_BIN, "info", jitlog + ".gz"});
  ASSERT_EQ(info.status, 0) << info.err;
  EXPECT_NE(info.out.find("app.jitlog.gz: a PyPy jitlog, gzipped"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("jitlog: " + std::to_string(traces) + " traces"), std::string::npos) << info.out;
  std::string f_id;
  for (const auto& trace : jitlog_view["hottest"])
    if (trace["type"] == "loop" && trace["source"].is_object() && trace["source"].value("function", "") == "f" && f_id.empty())
      f_id = std::to_string(trace["id"].get<std::uint64_t>());
  ASSERT_FALSE(f_id.empty()) << jitlog_view.dump();
  const Result trace = run({JITPROF_BIN, "trace", jitlog, f_id});
  ASSERT_EQ(trace.status, 0) << trace.err;
  EXPECT_NE(trace.out.find("hotloop.py"), std::string::npos);
  const Result wrong_kind = run({JITPROF_BIN, "trace", profile, f_id});
  EXPECT_EQ(wrong_kind.status, 1);
  EXPECT_NE(wrong_kind.err.find("app.prof is a vmprof profile, not a PyPy jitlog"), std::string::npos) << wrong_kind.err;
}

TEST_F(Server, UploadsRetryWithBackoffWhileNoServerAnswers) {
  // A port nobody listens on: connection refused, retried, then one clear line.
  start();
  const std::string closed = url_;
  server_.reset();
  const Result refused = run({JITPROF_BIN, "upload", bundle().string(), "--server", closed});
  EXPECT_EQ(refused.status, 1);
  EXPECT_NE(refused.err.find("retrying in 0.5 s (attempt 2 of 5)"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("retrying in 4.0 s (attempt 5 of 5)"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("jitprof: error: cannot reach " + closed + ": Connection refused"), std::string::npos)
      << refused.err;
}

TEST_F(Server, AServerKilledMidUploadKeepsEveryStoredBundleAndNoHalfOne) {
  start();
  const Result first = run({JITPROF_BIN, "upload", "-q", bundle().string(), "--server", url_});
  ASSERT_EQ(first.status, 0) << first.err;
  const std::string id = first.out.substr(first.out.rfind('/') + 1, 64);
  // A slow upload of a large body: the server dies while receiving it.
  const fs::path big = dir_ / "big.jprof";
  fs::copy_file(bundle(), big);
  std::ofstream(big, std::ios::binary | std::ios::app) << std::string(8 << 20, 'x');
  Background slow({"curl", "-s", "--limit-rate", "1M", "--data-binary", "@" + big.string(), url_ + "/api/upload"}, dir_,
                  "slow");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ASSERT_FALSE(fs::is_empty(dir_ / "data" / "tmp")) << "the upload is being received";
  ::kill(server_->process().pid(), SIGKILL);
  server_->process().wait();
  slow.wait();

  start();  // the same data directory
  EXPECT_TRUE(fs::is_empty(dir_ / "data" / "tmp"));
  const json list = get_json("/api/uploads");
  ASSERT_EQ(list["total"], 1);
  EXPECT_EQ(list["uploads"][0]["id"], id);
  EXPECT_EQ(request("GET", "/api/p/" + id + "/bundle").body, jitprof::testing::slurp(bundle()));
}

TEST_F(Server, UploadsGoOverHttpsAndCheckTheServersCertificate) {
  // A certificate for "localhost" that no system CA vouches for.
  ASSERT_EQ(run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                 "-addext", "subjectAltName=DNS:localhost", "-keyout", (dir_ / "key.pem").string(), "-out",
                 (dir_ / "cert.pem").string()})
                .status,
            0);
  Background https({"python3", std::string(JITPROF_SOURCE_DIR) + "/tests/support/https_upload_server.py", "--cert",
                    (dir_ / "cert.pem").string(), "--key", (dir_ / "key.pem").string(), "--port-file",
                    (dir_ / "port").string()},
                   dir_, "https");
  for (int i = 0; i < 200 && jitprof::testing::slurp(dir_ / "port").empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  const std::string server = "https://localhost:" + jitprof::testing::slurp(dir_ / "port");
  const std::string expected_id = run({"sh", "-c", "sha256sum " + shell_quote(bundle().string())}).out.substr(0, 64);

  const Result trusted = run({JITPROF_BIN, "upload", bundle().string(), "--server", server, "--ca-file",
                              (dir_ / "cert.pem").string()});
  EXPECT_EQ(trusted.status, 0) << trusted.err;
  EXPECT_EQ(trusted.out, server + "/p/" + expected_id + "\n");  // the server got every byte
  // Without the CA the certificate is refused, and that is not retried.
  const Result untrusted = run({JITPROF_BIN, "upload", bundle().string(), "--server", server});
  EXPECT_EQ(untrusted.status, 1);
  EXPECT_NE(untrusted.err.find("certificate verify failed"), std::string::npos) << untrusted.err;
  EXPECT_EQ(untrusted.err.find("retrying"), std::string::npos) << untrusted.err;
}

TEST_F(Server, AManifestFieldOfTheWrongTypeIs400AndABadStoredBundleNeverStopsARestart) {
  start();
  const fs::path bad = dir_ / "bad-manifest.jprof";
  jitprof::testing::write_bundle_with_manifest(bad, R"({"jitprof_version":"0.1.0","state":"complete","pypy_version":7})");
  const Http refused = post_file("/api/upload", bad);
  EXPECT_EQ(refused.status, 400);
  EXPECT_NE(refused.body.find("manifest field 'pypy_version' must be a string, not number"), std::string::npos)
      << refused.body;
  EXPECT_EQ(stored(), 0u);
  EXPECT_EQ(std::distance(fs::recursive_directory_iterator(dir_ / "data" / "bundles"), {}), 0) << "nothing published";

  // The same bytes planted straight into the store, as a damaged disk or an
  // older server could leave them, beside a good upload.
  const std::string good = upload(bundle());
  const std::string planted(64, 'b');
  fs::create_directories(dir_ / "data" / "bundles" / "bb");
  fs::copy_file(bad, dir_ / "data" / "bundles" / "bb" / (planted + ".jprof"));
  start();
  const json list = get_json("/api/uploads");
  ASSERT_EQ(list["total"], 1);
  EXPECT_EQ(list["uploads"][0]["id"], good);
  EXPECT_TRUE(fs::exists(dir_ / "data" / "quarantine" / (planted + ".jprof")));
  EXPECT_FALSE(fs::exists(dir_ / "data" / "bundles" / "bb" / (planted + ".jprof")));
  const std::string log = server_->process().err();
  EXPECT_NE(log.find("moved the stored bundle " + planted), std::string::npos) << log;
  EXPECT_NE(log.find("pypy_version"), std::string::npos) << log;
  EXPECT_EQ(get_json("/api/p/" + good)["id"], good);
}

TEST_F(Server, DecompressionBombsAreRefusedWithinTheMemoryBudget) {
  // Four heavy threads, 64 MiB per upload and 128 MiB for all of them: four
  // bombs at once would want 256 MiB, so the budget has to hold them back.
  start({"--max-inflated-mb", "64", "--memory-mb", "128", "--heavy-threads", "4"});
  const fs::path bomb = dir_ / "bomb.jprof";
  jitprof::testing::write_bundle_bomb(bomb, 32, 16 << 20);  // 512 MiB of zeros
  std::cout << "bomb: " << fs::file_size(bomb) << " bytes inflating to 512 MiB\n";
  std::vector<std::unique_ptr<Background>> bombs;
  for (int i = 0; i < 4; ++i)
    bombs.push_back(request_in_background("bomb-" + std::to_string(i), "/api/upload",
                                          {"--data-binary", "@" + bomb.string()}));
  int over_own_limit = 0;
  for (int i = 0; i < 4; ++i) {
    bombs[i]->wait();
    const std::string status = bombs[i]->out(), body = jitprof::testing::slurp(dir_ / ("bomb-" + std::to_string(i) + ".body"));
    std::cout << "bomb " << i << ": " << status << " " << body << "\n";
    if (status == "400") {
      ++over_own_limit;
      EXPECT_NE(body.find("inflate past the limit of 67108864 bytes"), std::string::npos) << body;
    } else {
      EXPECT_EQ(status, "503");
      EXPECT_NE(body.find("memory budget is 128 MiB"), std::string::npos) << body;
    }
  }
  EXPECT_GE(over_own_limit, 1);

  // vmprof-python's jitlog route: 1 GiB of zeros in 1 MB of gzip.
  const std::string run_id = json::parse(request("POST", "/api/runtime/new", {"--data", "{}"}).body)["runtime_id"];
  const fs::path zeros = dir_ / "zeros.gz";
  jitprof::testing::write_gzip_zeros(zeros, 16, 64 << 20);
  const Http jit = post_file("/api/runtime/upload/jit/" + run_id + "/add", zeros);
  EXPECT_EQ(jit.status, 400);
  EXPECT_NE(jit.body.find("not a jitlog"), std::string::npos) << jit.body;

  const double peak = peak_rss_mib(server_->process().pid());
  std::cout << "server peak RSS (VmHWM): " << peak << " MiB\n";
  EXPECT_GT(peak, 0);
  EXPECT_LT(peak, 512);
  // Still serving, with its whole budget back.
  EXPECT_EQ(post_file("/api/upload", bundle()).status, 201);
  EXPECT_EQ(stored(), 1u);
  EXPECT_TRUE(fs::is_empty(dir_ / "data" / "tmp"));
}

TEST_F(Server, HeavyQueriesLeaveLightRequestsTheirThreads) {
  start();
  const fs::path big = dir_ / "many.jprof";
  const Result recorded =
      run({JITPROF_BIN, "record", "-q", "-o", big.string(), "--", JITPROF_PYPY, kPrograms + "many_traces.py", "600"});
  ASSERT_EQ(recorded.status, 0) << recorded.err;
  const std::string id = upload(big);
  const std::string query = "/api/p/" + id + "/query?q=ops";
  std::vector<std::unique_ptr<Background>> heavy;
  for (int i = 0; i < 4; ++i) heavy.push_back(request_in_background("query-" + std::to_string(i), query));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));

  // A fifth from the same client is not queued: 503 at once, with when to come back.
  const Http fifth = request("GET", query, {"-D", (dir_ / "fifth.headers").string()});
  EXPECT_EQ(fifth.status, 503) << fifth.body;
  EXPECT_NE(jitprof::testing::slurp(dir_ / "fifth.headers").find("Retry-After: 5"), std::string::npos);
  const auto asked = Clock::now();
  const Http list = request("GET", "/api/uploads");
  const double latency = milliseconds_since(asked);
  int still_running = 0;
  for (auto& query_process : heavy) still_running += query_process->running();
  std::cout << "GET /api/uploads answered in " << latency << " ms while " << still_running
            << " of 4 heavy queries were still running\n";
  EXPECT_EQ(list.status, 200);
  EXPECT_EQ(still_running, 4) << "the list came back after the heavy queries";
  EXPECT_LT(latency, 5000);
  const auto waiting = Clock::now();
  for (auto& query_process : heavy) {
    query_process->wait();
    EXPECT_EQ(query_process->out(), "200");
  }
  std::cout << "the heavy queries finished " << milliseconds_since(waiting) << " ms later\n";
}

TEST_F(Server, IdleConnectionsNeitherLockOutRequestsNorSpinTheCpu) {
  // 256 files: room for 192 connections, which the server says.
  start({}, {"prlimit", "--nofile=256:256"});
  EXPECT_NE(server_->process().err().find("serving at most 192 connections at once: the open-file limit is 256"),
            std::string::npos)
      << server_->process().err();
  const pid_t pid = server_->process().pid();
  // More idle connections than the limit: the oldest make room for the newest.
  std::vector<int> idle = idle_connections(url_, 300);
  EXPECT_EQ(idle.size(), 300u);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  double cpu_before = cpu_seconds(pid);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  double cpu_used = cpu_seconds(pid) - cpu_before;
  auto asked = Clock::now();
  const Http answer = request("GET", "/api/uploads", {"--max-time", "8"});
  double latency = milliseconds_since(asked);
  std::cout << "at the connection limit: server CPU time over 3 s with 300 idle connections " << cpu_used
            << " s; a request then got " << answer.status << " in " << latency << " ms" << std::endl;
  EXPECT_LT(cpu_used, 0.5);
  EXPECT_EQ(answer.status, 200) << answer.body;
  EXPECT_LT(latency, 3000);

  // Out of files (the limit lowered under the server's feet): accepting
  // fails with EMFILE, and the server retries less often instead of spinning.
  ASSERT_EQ(run({"prlimit", "--pid", std::to_string(pid), "--nofile=128:128"}).status, 0);
  const std::vector<int> more = idle_connections(url_, 20);
  idle.insert(idle.end(), more.begin(), more.end());
  cpu_before = cpu_seconds(pid);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  cpu_used = cpu_seconds(pid) - cpu_before;
  EXPECT_NE(server_->process().err().find("cannot accept connections (Too many open files)"), std::string::npos)
      << server_->process().err();
  for (const int fd : idle) ::close(fd);
  asked = Clock::now();
  const Http after = request("GET", "/api/uploads", {"--max-time", "8"});
  latency = milliseconds_since(asked);
  std::cout << "out of files: server CPU time over 3 s " << cpu_used << " s; once the idle connections closed, a "
            << "request got " << after.status << " in " << latency << " ms" << std::endl;
  EXPECT_LT(cpu_used, 0.5);
  EXPECT_EQ(after.status, 200);
}

TEST_F(Server, PrivateWithoutATokenFileRefusesToStart) {
  const Result refused =
      run({JITPROF_BIN, "serve", "--data", (dir_ / "data").string(), "--listen", "127.0.0.1:0", "--private"});
  EXPECT_EQ(refused.status, 1);
  EXPECT_EQ(refused.err,
            "jitprof: error: --private needs --token-file FILE (the tokens that may read); without it every reader "
            "would be let in\n");
}

TEST_F(Server, EveryAnswerCarriesTheSecurityHeadersAndAnOverlongTraceIdIs400) {
  start();
  const std::string id = upload(bundle());
  for (const std::string& path :
       std::vector<std::string>{"/", "/static/app.js", "/api/uploads", "/api/p/" + id + "/trace/99999999999999999999"}) {
    const Http answer = request("GET", path, {"-D", (dir_ / "headers").string()});
    const std::string headers = jitprof::testing::slurp(dir_ / "headers");
    EXPECT_NE(headers.find("Content-Security-Policy: default-src 'self'; script-src 'self';"), std::string::npos)
        << path << "\n" << headers;
    EXPECT_NE(headers.find("X-Content-Type-Options: nosniff"), std::string::npos) << path;
    if (path.find("/trace/") != std::string::npos) {
      EXPECT_EQ(answer.status, 400);
      EXPECT_NE(answer.body.find("a trace id is a number below 2^64"), std::string::npos) << answer.body;
    }
  }
  EXPECT_EQ(request("GET", "/api/p/" + id + "/trace/-1").status, 400);
}

}  // namespace
