// `jitprof upload`: sends a bundle to a `jitprof serve` server over HTTP or
// HTTPS, streaming it from disk, retrying when the connection fails.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>

namespace jitprof::uploader {

struct Options {
  std::string server;  // "http://host:port" or "https://host", optionally with a path prefix
  std::string token;   // sent as "Authorization: Bearer TOKEN" when not empty
  std::string ca_file; // HTTPS: trust this CA (PEM) as well, e.g. a self-hosted server's own
  unsigned attempts = 5;  // connection failures and 5xx answers are retried, with backoff
  std::function<void(std::uint64_t sent, std::uint64_t total)> progress;
  std::function<void(const std::string&)> notice;  // one line per retry
};

struct Result {
  std::string id;
  std::string url;  // the share link
  bool existed = false;  // the server had these bytes already
};

// A failure worth one line: the server refused (with its message), or it
// could not be reached after every attempt.
class UploadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

Result upload(const std::filesystem::path& bundle, const Options& options);

}  // namespace jitprof::uploader
