// The subcommands of the jitprof executable; main.cpp parses their options.
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

struct JitlogOptions : ViewOptions {
  std::size_t top = 10;
};

struct TraceOptions : ViewOptions {
  std::uint64_t id = 0;
  jitlog::StageKind stage = jitlog::StageKind::Opt;
  bool disassemble = false;
  bool diff = false;
};

struct ProfileOptions : ViewOptions {
  std::size_t top = 15;
};

struct RecordOptions {
  std::vector<std::string> command;
  std::string output = "jitprof.jprof";
  unsigned rate_hz = 1000;
  bool pypy = false;
  bool no_pypy = false;
  bool quiet = false;
  bool no_perf = false;
  bool children = false;
  std::string web;    // upload the bundle to this server at the end
  std::string token;  // for --web
};

struct UploadOptions {
  std::string file;
  std::string server;
  std::string token;
  std::string token_file;
  std::string ca_file;
  bool quiet = false;
};

struct ServeOptions {
  std::string data_dir;
  std::string listen = "127.0.0.1:8080";
  std::string token_file;
  bool private_reads = false;
  std::uint64_t max_body_mb = 512;
  unsigned threads = 0;
  bool quiet = false;
};

struct AttachOptions {
  int pid = 0;
  double duration_s = 0;
  std::string output = "jitprof.jprof";
  unsigned rate_hz = 1000;
  bool quiet = false;
};

struct ReportOptions : ViewOptions {
  std::size_t top = 15;
};

struct ExportOptions {
  std::string file;
  std::string format;
  std::string output = "-";
  std::uint32_t pid = 0;
};

struct TopOptions : ViewOptions {
  std::size_t depth = 12;
  double min_percent = 1.0;
};

struct QueryOptions : ViewOptions {
  std::string text;
  std::size_t limit = 50;
};

using InfoOptions = ViewOptions;

int run_jitlog_summary(const JitlogOptions& options);
int run_trace(const TraceOptions& options);
int run_profile(const ProfileOptions& options);
int run_record(const RecordOptions& options);
int run_attach(const AttachOptions& options);
int run_upload(const UploadOptions& options);
// Uploads a bundle and prints its link on stdout; 0, or 1 after an error line.
int upload_bundle(const std::string& file, const std::string& server, const std::string& token, bool quiet,
                  const std::string& ca_file = "");
int run_serve(const ServeOptions& options);
int run_info(const InfoOptions& options);
int run_report(const ReportOptions& options);
int run_export(const ExportOptions& options);
int run_top(const TopOptions& options);
int run_query(const QueryOptions& options);

}  // namespace jitprof::cli
