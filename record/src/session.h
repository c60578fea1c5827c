// Small pieces shared by `record` and `attach`.
#pragma once

#include <sys/utsname.h>
#include <time.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "record/record.h"

namespace jitprof::record {

[[noreturn]] inline void fail(const std::string& message) { throw RecordError(message); }

inline std::string errno_text() { return std::strerror(errno); }

inline std::uint64_t monotonic_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return std::uint64_t(now.tv_sec) * 1'000'000'000u + std::uint64_t(now.tv_nsec);
}

inline double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

inline nlohmann::json host_json() {
  utsname names{};
  ::uname(&names);
  return {{"name", names.nodename}, {"system", names.sysname}, {"release", names.release}, {"machine", names.machine}};
}

// "Python 3.9.16 (7.3.11+dfsg-2+deb12u3, ...) [PyPy 7.3.11 with GCC 12.2.0]", as the interpreter tells it.
inline std::string interpreter_version(const std::string& program) {
  if (program.find('\'') != std::string::npos) return "";  // not worth quoting for a version string
  const std::string command = "'" + program + "' --version 2>&1";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::string text;
  char buffer[256];
  while (std::fgets(buffer, sizeof buffer, pipe)) text += buffer;
  ::pclose(pipe);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  for (char& c : text)
    if (c == '\n') c = ' ';
  return text;
}

}  // namespace jitprof::record
