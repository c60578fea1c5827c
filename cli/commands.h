// The subcommands of the jitprof executable, each with its options; main.cpp
// parses them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "jitlog/jitlog.h"

namespace jitprof::cli {

// What every view of a file takes: the file, and --json.
struct ViewOptions {
  std::string file;
  bool json = false;
};

// --- reading PyPy's own files ------------------------------------------------

struct JitlogOptions : ViewOptions {
  std::size_t top = 10;
};
int run_jitlog_summary(const JitlogOptions& options);

struct TraceOptions : ViewOptions {
  std::uint64_t id = 0;
  jitlog::StageKind stage = jitlog::StageKind::Opt;
  bool disassemble = false;
  bool diff = false;
};
int run_trace(const TraceOptions& options);

struct ProfileOptions : ViewOptions {
  std::size_t top = 15;
};
int run_profile(const ProfileOptions& options);

// --- recording ---------------------------------------------------------------

struct RecordOptions {
  std::vector<std::string> command;
  std::string output = "jitprof.jprof";
  unsigned rate_hz = 1000;
  bool pypy = false;
  bool no_pypy = false;
  bool quiet = false;
  bool no_perf = false;
  bool no_bpf = false;
  bool no_phases = false;
  std::string jit = "full";  // full | ranges
  bool children = false;
  std::string web;    // upload the bundle to this server at the end
  std::string token;  // for --web
};
int run_record(const RecordOptions& options);

struct AttachOptions {
  int pid = 0;
  double duration_s = 0;
  std::string output = "jitprof.jprof";
  unsigned rate_hz = 1000;
  bool quiet = false;
  bool no_bpf = false;
};
int run_attach(const AttachOptions& options);

// --- sharing -----------------------------------------------------------------

struct UploadOptions {
  std::vector<std::string> files;  // a bundle, or PyPy's jitlog and/or vmprof profile
  std::string server;
  std::string token;
  std::string token_file;
  std::string ca_file;
  bool quiet = false;
};
int run_upload(const UploadOptions& options);
// Uploads a bundle and prints its link on stdout; 0, or 1 after an error line.
int upload_bundle(const std::string& file, const std::string& server, const std::string& token, bool quiet,
                  const std::string& ca_file = "");

struct ServeOptions {
  std::string data_dir;
  std::string listen = "127.0.0.1:8080";
  std::string token_file;
  bool private_reads = false;
  std::uint64_t max_body_mb = 512;
  std::uint64_t max_inflated_mb = 512;
  std::uint64_t memory_mb = 2048;
  unsigned threads = 0;
  unsigned heavy_threads = 2;
  unsigned max_connections = 1000;
  bool quiet = false;
};
int run_serve(const ServeOptions& options);

// --- views of a bundle -------------------------------------------------------

int run_info(const ViewOptions& options);

struct ReportOptions : ViewOptions {
  std::size_t top = 15;
};
int run_report(const ReportOptions& options);

struct DiffOptions {
  std::string old_file, new_file;
  std::size_t top = 15;
  bool json = false;
};
int run_diff(const DiffOptions& options);

struct TopOptions : ViewOptions {
  std::size_t depth = 12;
  double min_percent = 1.0;
  // A running process instead of a bundle (live view): run_live_top.
  int pid = 0;
  unsigned rate_hz = 1000;
  double duration_s = 0;
  std::string output;  // the bundle of the whole session; none when empty
  std::size_t rows = 15;  // without a terminal: functions, JIT rows and threads per snapshot
};
int run_top(const TopOptions& options);
// `top --pid`: a view of a running PyPy process refreshed every second (on a
// terminal), or one plain-text snapshot per second.
int run_live_top(const TopOptions& options);

struct QueryOptions : ViewOptions {
  std::string text;
  std::size_t limit = 50;
};
int run_query(const QueryOptions& options);

struct ExportOptions {
  std::string file;
  std::string format;
  std::string output = "-";
  std::uint32_t pid = 0;
};
int run_export(const ExportOptions& options);

}  // namespace jitprof::cli
