// Small pieces shared by `record` and `attach`.
#pragma once

#include <sys/utsname.h>
#include <time.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
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

}  // namespace jitprof::record
