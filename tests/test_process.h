// Runs a command for the end-to-end tests and captures its output.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
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
  result.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  result.out = slurp(out);
  result.err = slurp(err);
  return result;
}

}  // namespace jitprof::testing
