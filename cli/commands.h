// The subcommands of the jitprof executable; main.cpp parses their options.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "jitlog/jitlog.h"

namespace jitprof::cli {

struct JitlogOptions {
  std::string file;
  std::size_t top = 10;
  bool json = false;
};

struct TraceOptions {
  std::string file;
  std::uint64_t id = 0;
  jitlog::StageKind stage = jitlog::StageKind::Opt;
  bool disassemble = false;
  bool json = false;
};

struct ProfileOptions {
  std::string file;
  std::size_t top = 15;
  bool json = false;
};

int run_jitlog_summary(const JitlogOptions& options);
int run_trace(const TraceOptions& options);
int run_profile(const ProfileOptions& options);

}  // namespace jitprof::cli
