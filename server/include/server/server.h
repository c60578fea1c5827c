// `jitprof serve`: a self-hosted server for bundles. Uploads are stored
// content-addressed and indexed once; the web viewer and its JSON API read
// the index. Also accepts vmprof-python's upload protocol.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace jitprof::server {

struct Settings {
  std::filesystem::path data_dir;
  std::string listen = "127.0.0.1:8080";       // HOST:PORT; port 0 picks a free one
  std::optional<std::filesystem::path> token_file;  // one token a line: uploads need one of them
  bool private_reads = false;                  // reading needs a token too
  std::uint64_t max_body_bytes = std::uint64_t{512} << 20;
  std::uint64_t max_inflated_bytes = std::uint64_t{512} << 20;  // one upload's frames, once inflated
  // Inflated bundles in memory at once, all requests together; bundles kept
  // for queries take half of it at most.
  std::uint64_t memory_budget_bytes = std::uint64_t{2} << 30;
  unsigned threads = 0;                        // 0: twice the CPUs, at least 4
  unsigned heavy_threads = 2;                  // for requests that read whole bundles: uploads, queries
  unsigned heavy_per_client = 4;               // such requests queued or running for one client address
  unsigned max_connections = 1000;             // lowered to fit the open-file limit
  std::function<void(const std::string&)> log;      // one line per request
  std::function<void(const std::string&)> on_listening;  // "http://HOST:PORT", once accepting
  // What an operator must hear of even without a request log (a stored bundle
  // set aside, a lowered limit); stderr when unset.
  std::function<void(const std::string&)> notice;
};

// Serves until SIGINT or SIGTERM. Throws std::runtime_error when it cannot
// start, or when the settings contradict each other (--private without tokens).
void serve(const Settings& settings);

}  // namespace jitprof::server
