// `jitprof upload`: sends a bundle to a `jitprof serve` server over HTTP or
// HTTPS, streaming it from disk, retrying when the connection fails; PyPy's
// own files (a jitlog, a vmprof profile, or the two of one run) go as a
// bundle made of them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

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

// Uploads one bundle, or PyPy's files of one run (a jitlog, a vmprof profile,
// or one of each), gzipped or not, told apart by their content. PyPy's files
// are checked and copied into a bundle in the temporary directory first (a
// jitlog never whole in memory). The link leads to what the files hold: a
// jitlog alone to its traces. Throws UploadError naming the file and what
// is wrong with it.
Result upload_files(const std::vector<std::filesystem::path>& files, const Options& options);

}  // namespace jitprof::uploader
