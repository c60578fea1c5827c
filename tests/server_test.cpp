// End-to-end: `jitprof serve` on loopback, with the real `jitprof upload`,
// `jitprof record --web`, curl for hand-made requests, and PyPy programs.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "test_process.h"

namespace fs = std::filesystem;
using jitprof::testing::Background;
using jitprof::testing::Result;
using jitprof::testing::shell_quote;
using nlohmann::json;

namespace {

const std::string kPrograms = std::string(JITPROF_SOURCE_DIR) + "/tests/programs/";

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
  void start(const std::vector<std::string>& extra = {}) {
    server_.reset();
    server_ = std::make_unique<jitprof::testing::ServeProcess>(JITPROF_BIN, dir_ / "data", dir_,
                                                                "server-" + std::to_string(++starts_), extra);
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
  const std::string id = get_json("/api/runtime/" + rid)["bundle"];
  const json summary = get_json("/api/p/" + id);
  EXPECT_EQ(summary["sample_source"], "vmprof");
  const Result profile = run({JITPROF_BIN, "profile", "--json", fixtures + "/hotloop.prof.gz"});
  EXPECT_EQ(summary["samples"], json::parse(profile.out)["samples"]);
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

  // Not a profile, not a jitlog: refused with the reader's reason.
  const std::string other = json::parse(request("POST", "/api/runtime/new", {"--data", "{}"}).body)["runtime_id"];
  const Http junk = post_file("/api/runtime/upload/jit/" + other + "/add", bundle());
  EXPECT_EQ(junk.status, 400);
  EXPECT_NE(junk.body.find("not a jitlog"), std::string::npos) << junk.body;
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

}  // namespace
