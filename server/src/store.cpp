#include "store.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <unistd.h>
#include <malloc.h>
#include <zlib.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <array>
#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>

#include "binio/binio.h"
#include "bundle/bundle.h"
#include "bundle/manifest.h"
#include "bundle/pypy_files.h"
#include "bundle/text.h"
#include "correlate/profile.h"
#include "jitlog/jitlog.h"
#include "views/views.h"
#include "vmprof/profile.h"

namespace jitprof::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A received file, removed however the function handling it ends.
struct RemovedOnExit {
  const fs::path& path;
  ~RemovedOnExit() {
    std::error_code ignored;
    fs::remove(path, ignored);
  }
};

bool all_hex(const std::string& text, std::size_t length) {
  return text.size() == length &&
         std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// --- files -------------------------------------------------------------------

std::string sha256_of_file(const fs::path& path) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr);
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chunk(1 << 20);
  while (in.read(chunk.data(), static_cast<std::streamsize>(chunk.size())) || in.gcount() > 0)
    EVP_DigestUpdate(context.get(), chunk.data(), static_cast<std::size_t>(in.gcount()));
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  EVP_DigestFinal_ex(context.get(), digest.data(), &size);
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

void fsync_path(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(fmt::format("cannot open {}: {}", path.string(), std::strerror(errno)));
  const int result = ::fsync(fd);
  ::close(fd);
  if (result != 0) throw std::runtime_error(fmt::format("cannot sync {}: {}", path.string(), std::strerror(errno)));
}

// Puts a complete file at `target` atomically: its bytes reach the disk
// before the name appears, and the name before this returns.
void publish(const fs::path& file, const fs::path& target) {
  fsync_path(file, O_RDONLY);
  fs::create_directories(target.parent_path());
  fs::rename(file, target);
  fsync_path(target.parent_path(), O_RDONLY | O_DIRECTORY);
}

std::string deflate_text(const std::string& text) {
  uLongf size = compressBound(static_cast<uLong>(text.size()));
  std::string out(size, '\0');
  compress2(reinterpret_cast<Bytef*>(out.data()), &size, reinterpret_cast<const Bytef*>(text.data()),
            static_cast<uLong>(text.size()), 6);
  out.resize(size);
  return out;
}

std::string inflate_text(const void* data, std::size_t size, std::size_t original) {
  std::string out(original, '\0');
  uLongf length = static_cast<uLongf>(original);
  if (uncompress(reinterpret_cast<Bytef*>(out.data()), &length, static_cast<const Bytef*>(data),
                 static_cast<uLong>(size)) != Z_OK)
    throw std::runtime_error("a stored view is corrupt");
  out.resize(length);
  return out;
}

// --- SQLite ------------------------------------------------------------------

class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &statement_, nullptr) != SQLITE_OK)
      throw std::runtime_error(fmt::format("SQLite: {} in: {}", sqlite3_errmsg(db), sql));
  }
  ~Statement() { sqlite3_finalize(statement_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, const std::string& text) {
    sqlite3_bind_text(statement_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind(int index, std::int64_t value) {
    sqlite3_bind_int64(statement_, index, value);
    return *this;
  }
  Statement& bind(int index, double value) {
    sqlite3_bind_double(statement_, index, value);
    return *this;
  }
  Statement& bind(int index, const std::optional<double>& value) {
    if (value) return bind(index, *value);
    sqlite3_bind_null(statement_, index);
    return *this;
  }
  Statement& bind_blob(int index, const std::string& bytes) {
    sqlite3_bind_blob(statement_, index, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // True while rows come; throws on errors.
  bool step() {
    const int result = sqlite3_step(statement_);
    if (result == SQLITE_ROW) return true;
    if (result == SQLITE_DONE) return false;
    throw std::runtime_error(fmt::format("SQLite: {}", sqlite3_errmsg(db_)));
  }
  void run() {
    while (step()) {
    }
    sqlite3_reset(statement_);
  }
  std::string text(int column) const {
    const auto* data = sqlite3_column_text(statement_, column);
    return data ? std::string(reinterpret_cast<const char*>(data), sqlite3_column_bytes(statement_, column)) : "";
  }
  std::int64_t integer(int column) const { return sqlite3_column_int64(statement_, column); }
  double real(int column) const { return sqlite3_column_double(statement_, column); }
  bool is_null(int column) const { return sqlite3_column_type(statement_, column) == SQLITE_NULL; }
  std::pair<const void*, std::size_t> blob(int column) const {
    return {sqlite3_column_blob(statement_, column), static_cast<std::size_t>(sqlite3_column_bytes(statement_, column))};
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* statement_ = nullptr;
};

void exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    const std::string message = error ? error : "?";
    sqlite3_free(error);
    throw std::runtime_error("SQLite: " + message);
  }
}

constexpr const char* kSchema = R"SQL(
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS uploads(
  id TEXT PRIMARY KEY, created REAL, command TEXT, pypy_version TEXT, size INTEGER,
  samples INTEGER, traces INTEGER, duration REAL, crashed INTEGER, source TEXT);
CREATE TABLE IF NOT EXISTS views(upload TEXT, name TEXT, size INTEGER, body BLOB, PRIMARY KEY(upload, name));
CREATE TABLE IF NOT EXISTS traces(
  upload TEXT, id INTEGER, type TEXT, samples INTEGER, entries INTEGER, function TEXT, file TEXT,
  line INTEGER, parent INTEGER, bridges INTEGER, stages TEXT, PRIMARY KEY(upload, id));
CREATE TABLE IF NOT EXISTS functions(upload TEXT, name TEXT, file TEXT, line INTEGER, self INTEGER, total INTEGER);
CREATE INDEX IF NOT EXISTS functions_by_upload ON functions(upload, self DESC, total DESC);
CREATE TABLE IF NOT EXISTS runs(id TEXT PRIMARY KEY, created REAL, argv TEXT, vm TEXT, bundle TEXT);
)SQL";

// One page of an upload's rows of `table` that `filter` keeps (?1 is the
// upload, ?2 the search text): {total, offset, TABLE: [row(statement)...]}.
// The caller holds the store's lock. Only this file's fixed SQL fragments
// reach the statements; request text is always bound.
json page(sqlite3* db, const std::string& id, const char* table, const char* columns, const char* filter,
          const char* order, const std::string& query, std::size_t offset, std::size_t limit,
          const std::function<json(const Statement&)>& row) {
  Statement count(db, fmt::format("SELECT COUNT(*) FROM {} WHERE upload = ?1 AND (?2 = '' OR {})", table, filter).c_str());
  count.bind(1, id).bind(2, query).step();
  json out = {{"total", count.integer(0)}, {"offset", offset}, {table, json::array()}};
  Statement rows(db, fmt::format("SELECT {} FROM {} WHERE upload = ?1 AND (?2 = '' OR {}) ORDER BY {} LIMIT ?3 OFFSET ?4",
                                  columns, table, filter, order)
                          .c_str());
  rows.bind(1, id).bind(2, query).bind(3, static_cast<std::int64_t>(limit)).bind(4, static_cast<std::int64_t>(offset));
  while (rows.step()) out[table].push_back(row(rows));
  return out;
}

std::string command_text(const json& manifest) {
  std::string command;
  if (manifest.contains("command") && manifest["command"].is_array())
    for (const auto& word : manifest["command"])
      if (word.is_string()) command += (command.empty() ? "" : " ") + word.get<std::string>();
  return command;
}

// From the system's CSPRNG: run ids are the only key to a vmprof run's uploads.
std::string random_hex(std::size_t digits) {
  std::vector<unsigned char> bytes((digits + 1) / 2);
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
    throw std::runtime_error("the system's random number generator failed");
  std::string hex;
  for (unsigned char byte : bytes) hex += fmt::format("{:02x}", byte);
  hex.resize(digits);
  return hex;
}

}  // namespace

bool is_bundle_id(const std::string& text) { return all_hex(text, 64); }
bool is_run_id(const std::string& text) { return all_hex(text, 32); }

Store::Store(const fs::path& data_dir, std::uint64_t max_inflated_bytes, MemoryBudget& budget,
             const std::function<void(const std::string&)>& notice)
    : dir_(data_dir), max_inflated_(max_inflated_bytes), budget_(budget) {
  fs::create_directories(dir_ / "bundles");
  fs::create_directories(dir_ / "runs");
  // Anything in tmp is an upload a previous server never finished.
  fs::remove_all(dir_ / "tmp");
  fs::create_directories(dir_ / "tmp");
  if (sqlite3_open_v2((dir_ / "index.sqlite").c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK)
    throw std::runtime_error(fmt::format("cannot open {}: {}", (dir_ / "index.sqlite").string(), sqlite3_errmsg(db_)));
  sqlite3_busy_timeout(db_, 10000);
  exec(db_, kSchema);
  reconcile(notice);
}

Store::~Store() { sqlite3_close(db_); }

fs::path Store::temp_path() {
  static std::atomic<std::uint64_t> counter{0};
  return dir_ / "tmp" / fmt::format("upload-{}-{}-{}", ::getpid(), ++counter, random_hex(8));
}

// A bundle file whose index rows never got written (the server stopped in
// between) is indexed now: every stored bundle is listed. One that cannot be
// indexed (damaged on disk, stored by an older server, over today's limits)
// is moved aside, not deleted: it must never stop the server from starting.
void Store::reconcile(const std::function<void(const std::string&)>& notice) {
  for (const auto& shard : fs::directory_iterator(dir_ / "bundles")) {
    if (!shard.is_directory()) continue;
    for (const auto& file : fs::directory_iterator(shard.path())) {
      const std::string id = file.path().stem().string();
      if (file.path().extension() != ".jprof" || !is_bundle_id(id)) continue;
      {
        std::lock_guard lock(mutex_);
        if (is_indexed(id)) continue;
      }
      try {
        write_index(id, *compute_index(file.path()), "recovered", fs::file_size(file.path()));
      } catch (const std::exception& error) {
        const fs::path aside = dir_ / "quarantine" / file.path().filename();
        fs::create_directories(aside.parent_path());
        fs::rename(file.path(), aside);
        notice(fmt::format("jitprof: moved the stored bundle {} to {}: {}", id, aside.string(), error.what()));
      }
    }
  }
}

bool Store::is_indexed(const std::string& id) {
  Statement query(db_, "SELECT 1 FROM uploads WHERE id = ?");
  return query.bind(1, id).step();
}

void Store::require_indexed(const std::string& id) {
  if (!is_indexed(id)) throw NotFound("no upload " + id);
}

Store::Added Store::add_bundle(const fs::path& received, const std::string& source) {
  const RemovedOnExit cleanup{received};
  const std::string id = sha256_of_file(received);
  const fs::path target = bundle_path_for(id);
  {
    std::lock_guard lock(mutex_);
    if (is_indexed(id)) return {id, true};
  }
  // Checked before anything becomes visible; the file is in place before its
  // index rows, and a restart indexes a file whose rows never got written.
  {
    const auto indexed = compute_index(received);
    const std::uint64_t size = fs::file_size(received);
    publish(received, target);
    write_index(id, *indexed, source, size);
  }
  // Reading the bundle freed hundreds of megabytes in small pieces: give them
  // back to the system, not keep them for a next upload that may never come.
  ::malloc_trim(0);
  return {id, false};
}

fs::path Store::bundle_path_for(const std::string& id) const {
  return dir_ / "bundles" / id.substr(0, 2) / (id + ".jprof");
}

struct Store::Indexed {
  nlohmann::json manifest, functions;
  struct View {
    std::string name;
    std::size_t size;        // of its JSON text
    std::string compressed;  // the JSON text as stored
  };
  std::vector<View> views;
  struct TraceRow {
    std::uint64_t id, samples, entries;
    std::string type, function, file, stages;  // stages: a JSON array
    std::int64_t line, parent;
    std::size_t bridges;
  };
  std::vector<TraceRow> traces;
  std::size_t samples = 0;
  bool crashed = false;
};

std::unique_ptr<Store::Indexed> Store::compute_index(const fs::path& path) {
  auto indexed = std::make_unique<Indexed>();
  MemoryBudget::Lease lease(budget_);
  const bundle::Bundle read = read_bundle_within(path, max_inflated_, lease);
  if (read.error)
    throw BadRequest(fmt::format("not a valid jitprof bundle: {} (at byte {})", read.error->message, read.error->offset));
  if (!read.warnings.empty())
    throw BadRequest(fmt::format("truncated bundle: {}", read.warnings.front().message));
  const bundle::ManifestRead read_manifest = bundle::read_manifest(read);
  if (!read_manifest.manifest) throw BadRequest("not a usable jitprof bundle: " + read_manifest.error);
  const json manifest = bundle::to_json(*read_manifest.manifest);

  const correlate::Profile profile = correlate::correlate(read);
  // An absent jitlog is no error (PyPy compiled nothing); a malformed one is, as on the command line.
  if (read.has(bundle::sections::kJitlog) && profile.forest.error)
    throw BadRequest(fmt::format("malformed jitlog section: {} (at byte {} of the jitlog)", profile.forest.error->message,
                                 profile.forest.error->offset));
  json report = views::report_json(profile, read, SIZE_MAX);
  json summary = report;
  for (const char* list : {"functions", "traces", "native_functions"})
    if (summary[list].size() > 50) summary[list].erase(summary[list].begin() + 50, summary[list].end());
  summary["manifest"] = manifest;
  summary["crash"] = views::crash_json(read, correlate::trace_resolver(read, profile.forest), profile.threads);
  summary["trace_count"] = profile.forest.traces.size();
  summary["has_samples"] = !profile.samples.empty();

  const views::CallTree tree = views::call_tree(profile);
  // Branches under 1/5000 of the samples are left out: a flame graph cannot show them.
  const json flame = {{"samples", tree.root.total},
                      {"children", views::call_tree_json(tree.root, 256, std::max<std::uint64_t>(1, tree.root.total / 5000))}};

  // Every trace: a row for lists and queries. The views (each stage's ops,
  // machine code and samples) of the hot traces the summary lists are
  // computed now, so that the traces most opened open at once; the rest's
  // when first asked for (trace_view).
  const auto heats = views::heat_of_traces(profile);
  const views::SourceFiles files = views::source_files(read, profile.forest);
  auto store_view = [&](std::string name, const json& view) {
    const std::string text = bundle::json_text(view);
    indexed->views.push_back({std::move(name), text.size(), deflate_text(text)});
  };
  store_view("summary", summary);
  store_view("flame", flame);
  store_view("info", views::info_json(read, profile));
  store_view("jitlog", views::jitlog_json(profile.forest, 20));
  std::map<std::uint64_t, std::size_t> bridges;
  for (const jitlog::Trace& trace : profile.forest.traces)
    if (trace.parent_guard) ++bridges[trace.parent_guard->trace_id];
  std::set<std::uint64_t> listed;
  for (const json& hot : summary["traces"])
    if (hot.contains("type")) listed.insert(hot["id"].get<std::uint64_t>());
  for (const jitlog::Trace& trace : profile.forest.traces) {
    const auto heat = heats.find(trace.id);
    const views::TraceHeat* trace_heat = heat == heats.end() ? nullptr : &heat->second;
    json stages = json::array();
    for (jitlog::StageKind kind : {jitlog::StageKind::NoOpt, jitlog::StageKind::Opt, jitlog::StageKind::Asm}) {
      if (trace.stage(kind) == nullptr) continue;
      const std::string stage = jitlog::stage_name(kind);
      stages.push_back(stage);
      if (listed.contains(trace.id))
        store_view(fmt::format("trace/{}/{}", trace.id, stage),
                   views::trace_json(profile.forest, trace, kind, trace_heat, kind == jitlog::StageKind::Asm, &files));
    }
    const jitlog::MergePoint* point = trace.source();
    indexed->traces.push_back({trace.id, trace_heat ? trace_heat->total : 0, trace.entry_count,
                               jitlog::trace_kind_name(trace.kind), point ? point->function : std::string(),
                               point ? point->file : std::string(), stages.dump(), point ? point->line : 0,
                               trace.parent_guard ? static_cast<std::int64_t>(trace.parent_guard->trace_id) : -1,
                               bridges[trace.id]});
  }
  indexed->manifest = manifest;
  indexed->functions = std::move(report["functions"]);
  indexed->samples = profile.samples.size();
  indexed->crashed = !summary["crash"].is_null();
  return indexed;
}

void Store::write_index(const std::string& id, const Indexed& indexed, const std::string& source, std::uint64_t size) {
  const json& manifest = indexed.manifest;

  std::lock_guard lock(mutex_);
  exec(db_, "BEGIN IMMEDIATE");
  try {
    for (const char* table : {"DELETE FROM views WHERE upload = ?", "DELETE FROM traces WHERE upload = ?",
                              "DELETE FROM functions WHERE upload = ?", "DELETE FROM uploads WHERE id = ?"}) {
      Statement clear(db_, table);
      clear.bind(1, id).run();
    }
    Statement upload(db_,
                     "INSERT INTO uploads(id, created, command, pypy_version, size, samples, traces, duration, crashed, "
                     "source) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    upload.bind(1, id)
        .bind(2, unix_now())
        .bind(3, command_text(manifest))
        // PyPy's own files carry no version: the interpreter they name stands for it.
        .bind(4, manifest.value("pypy_version", manifest.value("vm", std::string())))
        .bind(5, static_cast<std::int64_t>(size))
        .bind(6, static_cast<std::int64_t>(indexed.samples))
        .bind(7, static_cast<std::int64_t>(indexed.traces.size()))
        // Unknown (a jitlog alone, a recording cut short) stays unknown, not 0 s.
        .bind(8, manifest.value("duration_s", json()).is_number() ? std::optional(manifest["duration_s"].get<double>())
                                                                  : std::nullopt)
        .bind(9, std::int64_t{indexed.crashed})
        .bind(10, source)
        .run();
    Statement view(db_, "INSERT INTO views(upload, name, size, body) VALUES(?, ?, ?, ?)");
    for (const Indexed::View& stored : indexed.views)
      view.bind(1, id).bind(2, stored.name).bind(3, static_cast<std::int64_t>(stored.size)).bind_blob(4, stored.compressed).run();
    Statement trace_row(db_,
                        "INSERT INTO traces(upload, id, type, samples, entries, function, file, line, parent, bridges, "
                        "stages) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (const Indexed::TraceRow& row : indexed.traces) {
      trace_row.bind(1, id)
          .bind(2, static_cast<std::int64_t>(row.id))
          .bind(3, row.type)
          .bind(4, static_cast<std::int64_t>(row.samples))
          .bind(5, static_cast<std::int64_t>(row.entries))
          .bind(6, row.function)
          .bind(7, row.file)
          .bind(8, row.line)
          .bind(9, row.parent)
          .bind(10, static_cast<std::int64_t>(row.bridges))
          .bind(11, row.stages)
          .run();
    }
    Statement function_row(db_, "INSERT INTO functions(upload, name, file, line, self, total) VALUES(?, ?, ?, ?, ?, ?)");
    for (const auto& function : indexed.functions) {
      function_row.bind(1, id)
          .bind(2, function["name"].get<std::string>())
          .bind(3, function["file"].get<std::string>())
          .bind(4, function["line"].get<std::int64_t>())
          .bind(5, function["self"].get<std::int64_t>())
          .bind(6, function["total"].get<std::int64_t>())
          .run();
    }
    exec(db_, "COMMIT");
  } catch (...) {
    exec(db_, "ROLLBACK");
    throw;
  }
}

json Store::list(const std::string& query, std::size_t offset, std::size_t limit) {
  std::lock_guard lock(mutex_);
  const std::string pattern = "%" + query + "%";
  Statement count(db_,
                  "SELECT COUNT(*) FROM uploads WHERE instr(command, ?1) > 0 OR instr(id, ?1) > 0 OR "
                  "instr(pypy_version, ?1) > 0");
  count.bind(1, query).step();
  json out = {{"total", count.integer(0)}, {"offset", offset}, {"uploads", json::array()}};
  Statement rows(db_,
                 "SELECT id, created, command, pypy_version, size, samples, traces, duration, crashed, source FROM "
                 "uploads WHERE instr(command, ?1) > 0 OR instr(id, ?1) > 0 OR instr(pypy_version, ?1) > 0 "
                 "ORDER BY created DESC, id LIMIT ?2 OFFSET ?3");
  rows.bind(1, query).bind(2, static_cast<std::int64_t>(limit)).bind(3, static_cast<std::int64_t>(offset));
  while (rows.step())
    out["uploads"].push_back({{"id", rows.text(0)},
                              {"created", rows.real(1)},
                              {"command", rows.text(2)},
                              {"pypy_version", rows.text(3)},
                              {"size", rows.integer(4)},
                              {"samples", rows.integer(5)},
                              {"traces", rows.integer(6)},
                              {"duration", rows.is_null(7) ? json(nullptr) : json(rows.real(7))},
                              {"crashed", rows.integer(8) != 0},
                              {"source", rows.text(9)}});
  return out;
}

json Store::view(const std::string& id, const std::string& name) {
  auto stored = stored_view(id, name);
  if (!stored) throw NotFound(fmt::format("no {} for upload {}", name, id));
  return std::move(*stored);
}

std::optional<json> Store::stored_view(const std::string& id, const std::string& name) {
  std::string text;
  {
    std::lock_guard lock(mutex_);
    Statement query(db_, "SELECT size, body FROM views WHERE upload = ? AND name = ?");
    if (!query.bind(1, id).bind(2, name).step()) return std::nullopt;
    const auto [data, size] = query.blob(1);
    text = inflate_text(data, size, static_cast<std::size_t>(query.integer(0)));
  }
  return json::parse(text);
}

bool Store::has_view(const std::string& id, const std::string& name) {
  std::lock_guard lock(mutex_);
  Statement query(db_, "SELECT 1 FROM views WHERE upload = ? AND name = ?");
  return query.bind(1, id).bind(2, name).step();
}

json Store::trace_view(const std::string& id, std::uint64_t trace, const std::string& stage,
                       const std::function<json()>& compute) {
  const std::string name = fmt::format("trace/{}/{}", trace, stage);
  if (auto stored = stored_view(id, name)) return std::move(*stored);
  {
    std::lock_guard lock(mutex_);
    Statement query(db_, "SELECT stages FROM traces WHERE upload = ? AND id = ?");
    bool known = false;
    if (query.bind(1, id).bind(2, static_cast<std::int64_t>(trace)).step()) {
      const json stages = json::parse(query.text(0), nullptr, false);
      known = stages.is_array() && std::find(stages.begin(), stages.end(), stage) != stages.end();
    }
    if (!known) throw NotFound(fmt::format("no {} for upload {}", name, id));
  }
  return store_view(id, name, compute());
}

json Store::diff_view(const std::string& old_id, const std::string& new_id, const std::function<json()>& compute) {
  const std::string name = diff_view_name(old_id);
  if (auto stored = stored_view(new_id, name)) return std::move(*stored);
  {
    std::lock_guard lock(mutex_);
    require_indexed(old_id);
    require_indexed(new_id);
  }
  return store_view(new_id, name, compute());
}

json Store::store_view(const std::string& id, const std::string& name, const json& view) {
  // Stored as text and answered from that text, as the views computed at upload are.
  const std::string text = bundle::json_text(view);
  {
    std::lock_guard lock(mutex_);
    Statement insert(db_, "INSERT OR IGNORE INTO views(upload, name, size, body) VALUES(?, ?, ?, ?)");
    insert.bind(1, id).bind(2, name).bind(3, static_cast<std::int64_t>(text.size())).bind_blob(4, deflate_text(text)).run();
  }
  return json::parse(text);
}

json Store::traces(const std::string& id, std::size_t offset, std::size_t limit, const std::string& sort,
                   const std::string& query) {
  // Sort keys come from this fixed list, never from the request's text.
  static const std::map<std::string, std::string> kOrder = {
      {"samples", "samples DESC, entries DESC, id"}, {"entries", "entries DESC, samples DESC, id"},
      {"id", "id"}, {"function", "function, id"}};
  const auto order = kOrder.find(sort.empty() ? "samples" : sort);
  if (order == kOrder.end()) throw BadRequest("sort must be one of samples, entries, id, function");
  std::lock_guard lock(mutex_);
  require_indexed(id);
  return page(db_, id, "traces", "id, type, samples, entries, function, file, line, parent, bridges, stages",
              "instr(function, ?2) > 0 OR instr(file, ?2) > 0 OR type = ?2", order->second.c_str(), query, offset, limit,
              [](const Statement& rows) {
                json item = {{"id", rows.integer(0)},      {"type", rows.text(1)},     {"samples", rows.integer(2)},
                             {"entries", rows.integer(3)}, {"function", rows.text(4)}, {"file", rows.text(5)},
                             {"line", rows.integer(6)},    {"bridges", rows.integer(8)}};
                item["parent"] = rows.integer(7) < 0 ? json(nullptr) : json(rows.integer(7));
                item["stages"] = json::parse(rows.text(9), nullptr, false);
                return item;
              });
}

json Store::functions(const std::string& id, std::size_t offset, std::size_t limit, const std::string& query) {
  std::lock_guard lock(mutex_);
  require_indexed(id);
  return page(db_, id, "functions", "name, file, line, self, total", "instr(name, ?2) > 0 OR instr(file, ?2) > 0",
              "self DESC, total DESC", query, offset, limit, [](const Statement& rows) {
                return json{{"name", rows.text(0)},
                            {"file", rows.text(1)},
                            {"line", rows.integer(2)},
                            {"self", rows.integer(3)},
                            {"total", rows.integer(4)}};
              });
}

fs::path Store::bundle_path(const std::string& id) {
  if (!is_bundle_id(id)) throw BadRequest("not an upload id");
  const fs::path path = bundle_path_for(id);
  if (!fs::exists(path)) throw NotFound("no upload " + id);
  return path;
}

// --- vmprof-python's protocol ------------------------------------------------

fs::path Store::run_dir(const std::string& run) const { return dir_ / "runs" / run; }

std::string Store::new_run(const std::string& argv, const std::string& vm) {
  const std::string run = random_hex(32);
  fs::create_directories(run_dir(run));
  std::lock_guard lock(mutex_);
  Statement insert(db_, "INSERT INTO runs(id, created, argv, vm, bundle) VALUES(?, ?, ?, ?, NULL)");
  // As vmprof-server did: overlong fields are cut, not refused.
  insert.bind(1, run).bind(2, unix_now()).bind(3, argv.substr(0, 4096)).bind(4, vm.substr(0, 64)).run();
  return run;
}

void Store::add_run_file(const std::string& run, const std::string& kind, const fs::path& received) {
  const RemovedOnExit cleanup{received};
  if (!is_run_id(run)) throw BadRequest("not a run id");
  {
    std::lock_guard lock(mutex_);
    Statement query(db_, "SELECT bundle FROM runs WHERE id = ?");
    if (!query.bind(1, run).step()) throw NotFound("no run " + run);
    if (!query.is_null(0)) throw BadRequest("the runtime data is already frozen");
  }
  // Refused now rather than at freeze time, with the reader's own message.
  const fs::path target = run_dir(run) / (kind == "cpu" ? "cpu.prof" : "jit.log");
  const fs::path decoded = temp_path();
  const RemovedOnExit decoded_cleanup{decoded};
  MemoryBudget::Lease lease(budget_);  // for as long as the reader holds what it read
  if (kind == "cpu") {
    vmprof::ProfileReader reader;
    inflate_checked(received, decoded, kind, lease, [&](auto chunk) { return reader.feed(chunk); });
    const vmprof::Profile profile = reader.finish();
    if (profile.error) throw BadRequest(fmt::format("not a vmprof profile: {}", profile.error->message));
  } else {
    jitlog::JitlogReader reader;
    inflate_checked(received, decoded, kind, lease, [&](auto chunk) { return reader.feed(chunk); });
    const jitlog::Forest forest = reader.finish();
    if (forest.error) throw BadRequest(fmt::format("not a jitlog: {}", forest.error->message));
  }
  publish(decoded, target);
}

// Inflates a vmprof client's file (gzip or not) into `decoded` while `check`
// reads it, chunk by chunk: never whole in memory, within the per-upload
// limit, and what the reader keeps taken from `lease`. Stops early when
// `check` returns false (the reader found malformed input).
void Store::inflate_checked(const fs::path& received, const fs::path& decoded, const std::string& kind,
                            MemoryBudget::Lease& lease,
                            const std::function<bool(std::span<const std::uint8_t>)>& check) {
  struct Malformed {};
  std::ofstream out(decoded, std::ios::binary);
  binio::ReadOptions options;
  options.max_decompressed_bytes = max_inflated_;
  try {
    binio::read_file_chunks(
        received,
        [&](std::span<const std::uint8_t> chunk) {
          lease.take(chunk.size());
          if (!check(chunk)) throw Malformed{};
          out.write(reinterpret_cast<const char*>(chunk.data()), static_cast<std::streamsize>(chunk.size()));
        },
        options);
  } catch (const Malformed&) {
    return;  // the reader tells why
  } catch (const binio::InputError& error) {
    throw BadRequest(fmt::format("unreadable {} upload: {}", kind, error.what()));
  }
  if (!out.flush()) throw std::runtime_error(fmt::format("cannot write {}", decoded.string()));
}

std::string Store::freeze_run(const std::string& run) {
  if (!is_run_id(run)) throw BadRequest("not a run id");
  std::string argv, vm;
  {
    std::lock_guard lock(mutex_);
    Statement query(db_, "SELECT argv, vm, bundle FROM runs WHERE id = ?");
    if (!query.bind(1, run).step()) throw NotFound("no run " + run);
    if (!query.is_null(2)) return query.text(2);  // frozen before: the same bundle
    argv = query.text(0);
    vm = query.text(1);
  }
  const fs::path cpu = run_dir(run) / "cpu.prof", jit = run_dir(run) / "jit.log";
  if (!fs::exists(cpu) && !fs::exists(jit)) throw BadRequest("the run has no profile and no jitlog to freeze");
  const fs::path assembled = temp_path();
  {
    bundle::PypyFiles files;
    if (fs::exists(cpu)) files.profile = cpu;
    if (fs::exists(jit)) files.jitlog = jit;
    bundle::PypyRun from;
    from.mode = "vmprof upload";
    from.command = {argv};
    if (!vm.empty()) from.vm = vm;
    from.start_time = unix_now();
    from.check_jitlog = false;  // add_run_file checked it
    MemoryBudget::Lease lease(budget_);  // for the profile's reader, which gives the run's times
    from.before_reading = [&](std::uint64_t bytes) { lease.take(bytes); };
    bundle::write_pypy_bundle(files, from, assembled);
  }
  const Added added = add_bundle(assembled, "vmprof-python");
  std::lock_guard lock(mutex_);
  Statement update(db_, "UPDATE runs SET bundle = ? WHERE id = ?");
  update.bind(1, added.id).bind(2, run).run();
  return added.id;
}

std::optional<std::string> Store::run_bundle(const std::string& run) {
  if (!is_run_id(run)) throw BadRequest("not a run id");
  std::lock_guard lock(mutex_);
  Statement query(db_, "SELECT bundle FROM runs WHERE id = ?");
  if (!query.bind(1, run).step()) throw NotFound("no run " + run);
  if (query.is_null(0)) return std::nullopt;
  return query.text(0);
}

}  // namespace jitprof::server
