// Where `jitprof serve` keeps uploads: bundles content-addressed on disk
// (DIR/bundles/ab/<sha256>.jprof), and an SQLite index of the uploads with
// the views the web viewer asks for, computed once: when a bundle arrives,
// or for trace views when first asked for.
#pragma once

#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>

#include "memory_budget.h"

namespace jitprof::server {

// The client sent something unusable: HTTP 400 with this message.
class BadRequest : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// HTTP 404.
class NotFound : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Ids in URLs: a bundle's SHA-256 (64 hex digits), a vmprof run (32).
bool is_bundle_id(const std::string& text);
bool is_run_id(const std::string& text);

class Store {
 public:
  // Opens (creating) DIR; removes uploads a previous server left unfinished
  // and indexes bundles stored but not yet indexed when it stopped, moving
  // those it cannot index to DIR/quarantine (one `notice` line each).
  // Bundles are read within `max_inflated_bytes` each and within `budget`.
  Store(const std::filesystem::path& data_dir, std::uint64_t max_inflated_bytes, MemoryBudget& budget,
        const std::function<void(const std::string&)>& notice);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // A fresh path under DIR/tmp for an upload being received.
  std::filesystem::path temp_path();

  struct Added {
    std::string id;
    bool existed;  // the same bytes were uploaded before
  };
  // Checks a completely received bundle (BadRequest when malformed), indexes
  // it and moves it into place; the temp file is gone afterwards either way.
  Added add_bundle(const std::filesystem::path& received, const std::string& source);

  // Uploads, newest first, whose command line, id or PyPy version contains `query`.
  nlohmann::json list(const std::string& query, std::size_t offset, std::size_t limit);
  // A stored view: "summary", "flame", "info", "jitlog", or a trace view
  // computed before. NotFound otherwise.
  nlohmann::json view(const std::string& id, const std::string& name);
  bool has_view(const std::string& id, const std::string& name);
  // A trace at a stage ("noopt", "opt", "asm"): computed by `compute` when
  // first asked for, then stored with the upload's other views. NotFound when
  // the upload has no such trace or the trace no such stage.
  nlohmann::json trace_view(const std::string& id, std::uint64_t trace, const std::string& stage,
                            const std::function<nlohmann::json()>& compute);
  // Two uploads compared (views::profile_diff_json): computed by `compute`
  // when first asked for, then stored with the new upload's views.
  // NotFound when either is not an upload.
  nlohmann::json diff_view(const std::string& old_id, const std::string& new_id,
                           const std::function<nlohmann::json()>& compute);
  static std::string diff_view_name(const std::string& old_id) { return "diff/" + old_id; }
  nlohmann::json traces(const std::string& id, std::size_t offset, std::size_t limit, const std::string& sort,
                        const std::string& query);
  nlohmann::json functions(const std::string& id, std::size_t offset, std::size_t limit, const std::string& query);
  std::filesystem::path bundle_path(const std::string& id);

  // vmprof-python's upload protocol: a run collects a CPU profile and jitlogs
  // until it is frozen; then it becomes a bundle.
  std::string new_run(const std::string& argv, const std::string& vm);
  void add_run_file(const std::string& run, const std::string& kind, const std::filesystem::path& received);
  std::string freeze_run(const std::string& run);
  std::optional<std::string> run_bundle(const std::string& run);

 private:
  struct Indexed;
  // Checks and reads a bundle into its index rows and views (BadRequest when malformed).
  std::unique_ptr<Indexed> compute_index(const std::filesystem::path& bundle);
  void write_index(const std::string& id, const Indexed& indexed, const std::string& source, std::uint64_t size);
  std::optional<nlohmann::json> stored_view(const std::string& id, const std::string& name);
  // Stores `view` as upload `id`'s view `name` (kept if one was stored meanwhile), and answers it as stored.
  nlohmann::json store_view(const std::string& id, const std::string& name, const nlohmann::json& view);
  void reconcile(const std::function<void(const std::string&)>& notice);
  // Whether `id` is indexed; the caller holds mutex_.
  bool is_indexed(const std::string& id);
  void require_indexed(const std::string& id);

  void inflate_checked(const std::filesystem::path& received, const std::filesystem::path& decoded,
                       const std::string& kind, MemoryBudget::Lease& lease,
                       const std::function<bool(std::span<const std::uint8_t>)>& check);
  std::filesystem::path run_dir(const std::string& run) const;
  std::filesystem::path bundle_path_for(const std::string& id) const;

  std::filesystem::path dir_;
  std::uint64_t max_inflated_;
  MemoryBudget& budget_;
  std::mutex mutex_;  // one SQLite connection, used by one thread at a time
  sqlite3* db_ = nullptr;
};

}  // namespace jitprof::server
