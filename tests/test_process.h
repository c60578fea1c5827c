// Runs a command for the end-to-end tests and captures its output.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace jitprof::testing {

struct Result {
  int status;  // exit status, or 128 + signal, as a shell reports it
  std::string out;
  std::string err;
};

inline std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Percent-encodes everything but unreserved characters, for URL queries.
inline std::string url_encode(const std::string& text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// A wait status as a shell reports it: the exit code, or 128 + signal.
inline int shell_status(int raw) { return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw); }

inline std::string shell_quote(const std::string& word) {
  std::string quoted = "'";
  for (char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// Runs `argv` with stdin from /dev/null; stdout and stderr go through files in `scratch`.
inline Result run_command(const std::vector<std::string>& argv, const std::filesystem::path& scratch) {
  std::string command;
  for (const auto& word : argv) command += shell_quote(word) + " ";
  const auto out = scratch / "stdout.txt", err = scratch / "stderr.txt";
  command += "> " + shell_quote(out.string()) + " 2> " + shell_quote(err.string()) + " < /dev/null";
  const int raw = std::system(command.c_str());
  Result result{};
  result.status = shell_status(raw);
  result.out = slurp(out);
  result.err = slurp(err);
  return result;
}

// A process running beside the test: stdout and stderr go to files, extra
// environment variables are added to the test's own.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const std::filesystem::path& scratch, const std::string& name,
             const std::vector<std::string>& environment = {})
      : out_(scratch / (name + ".out")), err_(scratch / (name + ".err")) {
    std::fflush(nullptr);  // or the child's freopen writes out the test's buffered output again
    // Emptied before the child starts: a process started under a name used
    // before must not show the earlier one's output to a test reading at once.
    for (const auto& file : {out_, err_}) std::ofstream(file, std::ios::trunc);
    pid_ = ::fork();
    if (pid_ != 0) return;
    for (const auto& assignment : environment) ::putenv(const_cast<char*>(assignment.c_str()));
    std::FILE* in = std::freopen("/dev/null", "r", stdin);
    std::FILE* out = std::freopen(out_.c_str(), "w", stdout);
    std::FILE* err = std::freopen(err_.c_str(), "w", stderr);
    if (!in || !out || !err) ::_exit(126);
    std::vector<char*> words;
    for (const auto& word : argv) words.push_back(const_cast<char*>(word.c_str()));
    words.push_back(nullptr);
    ::execvp(words[0], words.data());
    ::_exit(127);
  }
  ~Background() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  pid_t pid() const { return pid_; }
  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }
  // Still alive (a process that exited, zombie or not, is not).
  bool running() {
    if (status_) return false;
    int raw = 0;
    if (::waitpid(pid_, &raw, WNOHANG) != pid_) return true;
    status_ = shell_status(raw);
    return false;
  }
  // Polls stdout for `text`, up to `seconds`.
  bool wait_for_output(const std::string& text, double seconds = 20) const {
    for (int i = 0; i < seconds * 20; ++i) {
      if (out().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // Exit status as a shell reports it.
  int wait() {
    if (!status_) {
      int raw = 0;
      ::waitpid(pid_, &raw, 0);
      status_ = shell_status(raw);
    }
    return *status_;
  }

 private:
  std::filesystem::path out_, err_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// `jitprof serve` on a free loopback port, for as long as the object lives;
// `launcher` (e.g. prlimit and its options) runs it when given.
class ServeProcess {
 public:
  ServeProcess(const std::string& jitprof, const std::filesystem::path& data, const std::filesystem::path& scratch,
               const std::string& name, const std::vector<std::string>& options = {},
               const std::vector<std::string>& launcher = {}) {
    std::vector<std::string> argv = launcher;
    argv.insert(argv.end(), {jitprof, "serve", "--data", data.string(), "--listen", "127.0.0.1:0"});
    argv.insert(argv.end(), options.begin(), options.end());
    process_ = std::make_unique<Background>(argv, scratch, name);
    // The server says where it listens once it accepts connections.
    for (int i = 0; i < 400 && url_.empty(); ++i) {
      const std::string log = process_->err();
      const std::size_t at = log.find(" on http://127.0.0.1:");
      if (at != std::string::npos) url_ = log.substr(at + 4, log.find_first_of(" \n", at + 4) - at - 4);
      else std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }
  const std::string& url() const { return url_; }  // empty when it did not start
  Background& process() { return *process_; }

 private:
  std::unique_ptr<Background> process_;
  std::string url_;
};

}  // namespace jitprof::testing
