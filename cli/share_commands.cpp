// `jitprof upload` and `jitprof serve`.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <mutex>

#include "commands.h"
#include "common.h"
#include "terminal.h"
#include "server/server.h"
#include "uploader/uploader.h"

namespace jitprof::cli {

namespace {

int upload_with(const std::vector<std::string>& files, const std::string& server, const std::string& token, bool quiet,
                const std::string& ca_file) {
  uploader::Options options;
  options.server = server;
  options.token = token;
  options.ca_file = ca_file;
  const bool bar = !quiet && ::isatty(STDERR_FILENO);
  if (bar)
    options.progress = [](std::uint64_t sent, std::uint64_t total) {
      status_line(fmt::format("jitprof: uploading {} of {} bytes ({})", with_commas(sent), with_commas(total),
                              percent(double(sent), double(total))));
    };
  options.notice = [bar](const std::string& message) {
    if (bar) status_line("");
    std::cerr << "jitprof: " << message << "\n";
  };
  try {
    const uploader::Result result = uploader::upload_files({files.begin(), files.end()}, options);
    if (bar) status_line("");
    if (!quiet)
      std::cerr << fmt::format("jitprof: {} {}\n", result.existed ? "already on the server:" : "uploaded:",
                               fmt::join(files, " and "));
    std::cout << result.url << "\n";
    return 0;
  } catch (const uploader::UploadError& error) {
    if (bar) status_line("");
    std::cerr << "jitprof: error: " << error.what() << "\n";
    return 1;
  }
}

}  // namespace

int upload_bundle(const std::string& file, const std::string& server, const std::string& token, bool quiet,
                  const std::string& ca_file) {
  return upload_with({file}, server, token, quiet, ca_file);
}

int run_upload(const UploadOptions& options) {
  std::string token = options.token;
  if (!options.token_file.empty()) {
    std::ifstream in(options.token_file);
    std::getline(in, token);
  }
  return upload_with(options.files, options.server, token, options.quiet, options.ca_file);
}

int run_serve(const ServeOptions& options) {
  server::Settings settings;
  settings.data_dir = options.data_dir;
  settings.listen = options.listen;
  if (!options.token_file.empty()) settings.token_file = options.token_file;
  settings.private_reads = options.private_reads;
  settings.max_body_bytes = options.max_body_mb << 20;
  settings.max_inflated_bytes = options.max_inflated_mb << 20;
  settings.memory_budget_bytes = options.memory_mb << 20;
  settings.threads = options.threads;
  settings.heavy_threads = options.heavy_threads;
  settings.max_connections = options.max_connections;
  static std::mutex log_mutex;
  if (!options.quiet)
    settings.log = [](const std::string& line) {
      std::lock_guard lock(log_mutex);
      std::cerr << line << "\n";
    };
  settings.on_listening = [&](const std::string& url) {
    std::lock_guard lock(log_mutex);
    std::cerr << fmt::format("jitprof: serving {} on {}{}\n", options.data_dir, url,
                             options.token_file.empty() ? "" : " (uploads need a token)");
  };
  server::serve(settings);
  return 0;
}

}  // namespace jitprof::cli
