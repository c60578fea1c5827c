// The HTTP side of `jitprof serve` (Boost.Beast): sessions, limits, routing.
#include <utility>  // Boost 1.74's asio uses std::exchange without including it

#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <iostream>
#include <limits>
#include <fstream>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "bundle/text.h"
#include "server/server.h"
#include "heavy_work.h"
#include "memory_budget.h"
#include "query_cache.h"
#include "store.h"
#include "web/assets.h"

namespace jitprof::server {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace fs = std::filesystem;
using tcp = net::ip::tcp;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kSmallBodyBytes = 1 << 20;  // JSON requests
// A client that opened a connection has this long to send a request's header
// (and, on a kept-alive connection, the next one): idle connections must not
// hold the server's connections and files.
constexpr auto kHeaderTimeout = std::chrono::seconds(10);
constexpr auto kWriteTimeout = std::chrono::seconds(60);
constexpr unsigned kBusyRetrySeconds = 5;
// Rows of each table of a diff view (functions, traces), largest change first.
constexpr std::size_t kDiffRows = 100;
// Files the server needs besides its connections: the index, uploads being
// received and stored, bundles being read.
constexpr unsigned kFilesBesidesConnections = 64;
// The viewer's own scripts only; its trace view styles rows inline.
constexpr const char* kContentSecurityPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

struct Response {
  http::status status = http::status::ok;
  std::string content_type = "application/json";
  std::string body;
  std::string disposition;  // Content-Disposition, for downloads
  bool cache = false;       // views of a stored bundle, which never change
  unsigned retry_after_s = 0;  // 503: when to try again
};

Response json_response(http::status status, const json& body) { return {status, "application/json", bundle::json_text(body), {}, false}; }
Response error_response(http::status status, const std::string& message) {
  return json_response(status, {{"error", message}});
}
Response busy_response(const std::string& message) {
  Response response = error_response(http::status::service_unavailable, message);
  response.retry_after_s = kBusyRetrySeconds;
  return response;
}

std::string url_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

struct Target {
  std::vector<std::string> segments;  // the path split at '/', decoded
  std::map<std::string, std::string> query;

  explicit Target(std::string_view target) {
    const std::size_t mark = target.find('?');
    const std::string_view path = target.substr(0, mark);
    for (std::size_t at = 0; at < path.size();) {
      const std::size_t slash = std::min(path.find('/', at), path.size());
      if (slash > at) segments.push_back(url_decode(path.substr(at, slash - at)));
      at = slash + 1;
    }
    if (mark == std::string_view::npos) return;
    const std::string_view rest = target.substr(mark + 1);
    for (std::size_t at = 0; at < rest.size();) {
      const std::size_t amp = std::min(rest.find('&', at), rest.size());
      const std::string_view pair = rest.substr(at, amp - at);
      const std::size_t equals = pair.find('=');
      query[url_decode(pair.substr(0, equals))] = equals == std::string_view::npos ? "" : url_decode(pair.substr(equals + 1));
      at = amp + 1;
    }
  }
  // The path starts with `prefix`; "*" matches any one segment.
  bool is(std::initializer_list<std::string_view> prefix) const {
    if (segments.size() < prefix.size()) return false;
    std::size_t i = 0;
    for (std::string_view part : prefix) {
      if (part != "*" && segments[i] != part) return false;
      ++i;
    }
    return true;
  }
  std::size_t number(const std::string& key, std::size_t fallback, std::size_t maximum) const {
    auto it = query.find(key);
    if (it == query.end() || it->second.empty()) return fallback;
    std::size_t value = 0;
    try {
      value = std::stoul(it->second);
    } catch (const std::exception&) {
      throw BadRequest(fmt::format("{} must be a number", key));
    }
    return std::min(value, maximum);
  }
  std::string text(const std::string& key) const {
    auto it = query.find(key);
    return it == query.end() ? "" : it->second;
  }
};

std::set<std::string> read_tokens(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("cannot read the token file {}", path.string()));
  std::set<std::string> tokens;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (!line.empty() && line[0] != '#') tokens.insert(line);
  }
  if (tokens.empty()) throw std::runtime_error(fmt::format("the token file {} holds no token", path.string()));
  return tokens;
}

class Session;

// Connections waiting for a request's header, oldest first. A server at its
// connection limit closes the oldest of them to take a new connection, so
// that clients holding connections idle (or sending headers slowly) cannot
// lock the others out.
class WaitingConnections {
 public:
  void add(const std::shared_ptr<Session>& session);
  void remove(Session& session);
  std::shared_ptr<Session> take_oldest();

 private:
  std::mutex mutex_;
  std::list<std::weak_ptr<Session>> waiting_;
};

// Routes requests to the store and the web assets.
class App {
 public:
  App(const Settings& settings, Store& store, MemoryBudget& budget)
      : settings_(settings),
        store_(store),
        tokens_(settings.token_file ? read_tokens(*settings.token_file) : std::set<std::string>{}),
        queries_(budget.capacity() / 2, settings.max_inflated_bytes, budget),
        heavy_(settings.heavy_threads, settings.heavy_per_client) {}

  const Settings& settings() const { return settings_; }
  Store& store() { return store_; }
  HeavyWork& heavy() { return heavy_; }
  std::atomic<unsigned>& connections() { return connections_; }
  WaitingConnections& waiting() { return waiting_; }

  // Requests whose body is a file to store (bundles, vmprof profiles, jitlogs).
  static bool takes_file(http::verb method, const Target& target) {
    if (method != http::verb::post) return false;
    return target.segments == std::vector<std::string>{"api", "upload"} ||
           (target.is({"api", "runtime", "upload", "*", "*", "add"}) && target.segments.size() == 6);
  }

  // Requests that read a whole bundle or file: they run on the heavy pool.
  // A trace view is one until it was computed once.
  bool is_heavy(http::verb method, const Target& target) {
    if (method == http::verb::get || method == http::verb::head) {
      if (target.is({"api", "p", "*", "query"}) && target.segments.size() == 4) return true;
      try {
        if (const auto diff = diff_of(target)) return !store_.has_view(diff->new_id, Store::diff_view_name(diff->old_id));
        const auto view = trace_view_of(target);
        return view && !store_.has_view(checked_id(target.segments[2]), view->name());
      } catch (const std::exception&) {
        return false;  // handle() answers with the error right away
      }
    }
    return takes_file(method, target) || (target.is({"api", "runtime", "*", "freeze"}) && target.segments.size() == 4);
  }

  // Uploads need a token when the server has a token file; reads of the API
  // only when private (the viewer's page and scripts hold no data).
  bool authorized(const http::request_header<>& request, const Target& target) const {
    const bool write = request.method() == http::verb::post || request.method() == http::verb::put;
    const bool api = !target.segments.empty() && target.segments[0] == "api";
    if (tokens_.empty() || (!write && !(settings_.private_reads && api))) return true;
    const auto field = request[http::field::authorization];
    const std::string_view header(field.data(), field.size());
    for (std::string_view scheme : {"Bearer ", "Token "})
      if (header.starts_with(scheme) && tokens_.count(std::string(header.substr(scheme.size())))) return true;
    return false;
  }

  Response handle(const http::request_header<>& request, const Target& target, const std::string& body,
                  const std::optional<fs::path>& file) {
    try {
      return route(request, target, body, file);
    } catch (const BadRequest& error) {
      return error_response(http::status::bad_request, error.what());
    } catch (const NotFound& error) {
      return error_response(http::status::not_found, error.what());
    } catch (const ServerBusy& error) {
      return busy_response(error.what());
    } catch (const std::exception& error) {
      return error_response(http::status::internal_server_error, error.what());
    }
  }

 private:
  std::string base_url(const http::request_header<>& request) const {
    const auto host = request[http::field::host];
    return fmt::format("http://{}", host.empty() ? settings_.listen : std::string(host.data(), host.size()));
  }

  static std::string checked_id(const std::string& id) {
    if (!is_bundle_id(id)) throw BadRequest("not an upload id: ids are 64 hex digits");
    return id;
  }

  Response route(const http::request_header<>& request, const Target& target, const std::string& body,
                 const std::optional<fs::path>& file) {
    const auto method = request.method();
    const auto& parts = target.segments;
    if (method == http::verb::get || method == http::verb::head) {
      if (parts.empty() || parts[0] == "p" || parts[0] == "uploads" || parts[0] == "diff") return page("index.html");
      if (parts[0] == "static" && parts.size() == 2) return page(parts[1]);
      if (parts[0] != "api") throw NotFound("no such page");
      if (target.is({"api", "uploads"}) && parts.size() == 2)
        return json_response(http::status::ok, store_.list(target.text("q"), target.number("offset", 0, SIZE_MAX),
                                                           target.number("limit", 20, 200)));
      if (target.is({"api", "runtime", "*"}) && parts.size() == 3) {
        const auto bundle = store_.run_bundle(parts[2]);
        return json_response(http::status::ok, {{"bundle", bundle ? json(*bundle) : json(nullptr)}});
      }
      if (const auto diff = diff_of(target))
        return cached(json_response(http::status::ok, store_.diff_view(diff->old_id, diff->new_id, [&] {
          // Both bundles loaded as for queries: within the memory budget, and kept for the next request.
          const auto old_run = queries_.get(diff->old_id, store_.bundle_path(diff->old_id));
          const auto new_run = queries_.get(diff->new_id, store_.bundle_path(diff->new_id));
          return views::profile_diff_json({old_run->bundle, old_run->profile}, {new_run->bundle, new_run->profile},
                                          kDiffRows);
        })));
      if (!target.is({"api", "p", "*"})) throw NotFound("no such API");
      const std::string id = checked_id(parts[2]);
      if (parts.size() == 3) {
        json summary = store_.view(id, "summary");
        summary["id"] = id;
        return cached(json_response(http::status::ok, summary));
      }
      const std::string& what = parts[3];
      // The views `jitprof top --json`, `info --json` and `jitlog --json` print.
      if ((what == "flame" || what == "info" || what == "jitlog") && parts.size() == 4)
        return cached(json_response(http::status::ok, store_.view(id, what)));
      if (what == "traces" && parts.size() == 4)
        return json_response(http::status::ok, store_.traces(id, target.number("offset", 0, SIZE_MAX),
                                                             target.number("limit", 50, 500), target.text("sort"),
                                                             target.text("q")));
      if (what == "functions" && parts.size() == 4)
        return json_response(http::status::ok, store_.functions(id, target.number("offset", 0, SIZE_MAX),
                                                                target.number("limit", 50, 500), target.text("q")));
      if (const auto view = trace_view_of(target))
        return cached(json_response(http::status::ok, store_.trace_view(id, view->trace, view->stage, [&] {
          const auto loaded = queries_.get(id, store_.bundle_path(id));
          const jitlog::Trace* trace = loaded->profile.forest.find(view->trace);
          if (trace == nullptr) throw NotFound("no trace " + std::to_string(view->trace));
          const jitlog::StageKind kind = view->stage == "noopt" ? jitlog::StageKind::NoOpt
                                         : view->stage == "opt" ? jitlog::StageKind::Opt
                                                                : jitlog::StageKind::Asm;
          const auto heat = loaded->heats.find(view->trace);
          return views::trace_json(loaded->profile.forest, *trace, kind, heat == loaded->heats.end() ? nullptr : &heat->second,
                                   kind == jitlog::StageKind::Asm, &loaded->files);
        })));
      if (what == "query" && parts.size() == 4) {
        // The same engine as `jitprof query --json`.
        const auto loaded = queries_.get(id, store_.bundle_path(id));
        try {
          json result = query::result_json(query::run(*loaded->model, target.text("q")));
          result["query"] = target.text("q");
          return json_response(http::status::ok, result);
        } catch (const query::QueryError& error) {
          return json_response(http::status::bad_request, {{"error", error.what()}, {"column", error.column()}});
        }
      }
      if (what == "bundle" && parts.size() == 4) {
        std::ifstream in(store_.bundle_path(id), std::ios::binary);
        Response response{http::status::ok, "application/octet-stream", {std::istreambuf_iterator<char>(in), {}}, {}, true};
        response.disposition = fmt::format("attachment; filename=\"{}.jprof\"", id.substr(0, 12));
        return response;
      }
      throw NotFound("no such API");
    }
    if (method != http::verb::post) return error_response(http::status::method_not_allowed, "use GET or POST");

    if (parts == std::vector<std::string>{"api", "upload"}) {
      const Store::Added added = store_.add_bundle(*file, "upload");
      return json_response(added.existed ? http::status::ok : http::status::created,
                           {{"id", added.id}, {"url", fmt::format("{}/p/{}", base_url(request), added.id)},
                            {"existed", added.existed}});
    }
    // vmprof-python's client (vmshare/service.py).
    if (parts == std::vector<std::string>{"api", "runtime", "new"}) {
      const json fields = json::parse(body.empty() ? "{}" : body, nullptr, false);
      if (!fields.is_object()) throw BadRequest("expected a JSON object with argv and VM");
      const auto text = [&](const char* key) {
        return fields.contains(key) && fields[key].is_string() ? fields[key].get<std::string>() : std::string();
      };
      return json_response(http::status::ok, {{"status", "ok"}, {"runtime_id", store_.new_run(text("argv"), text("VM"))}});
    }
    if (target.is({"api", "runtime", "upload", "*", "*", "add"}) && parts.size() == 6) {
      const std::string& kind = parts[3];
      if (kind != "cpu" && kind != "jit") throw NotFound("uploads are cpu or jit");
      store_.add_run_file(parts[4], kind, *file);
      json reply = {{"status", "ok"}};
      if (kind == "jit") reply["jid"] = parts[4];
      return json_response(http::status::ok, reply);
    }
    if (target.is({"api", "runtime", "*", "freeze"}) && parts.size() == 4) {
      const std::string bundle = store_.freeze_run(parts[2]);
      return json_response(http::status::ok, {{"status", "ok"},
                                              {"bundle", bundle},
                                              {"url", fmt::format("{}/p/{}", base_url(request), bundle)}});
    }
    throw NotFound("no such API");
  }

  struct TraceView {
    std::uint64_t trace;
    std::string stage;
    std::string name() const { return fmt::format("trace/{}/{}", trace, stage); }
  };
  // GET /api/p/ID/trace/TRACE?stage=STAGE (asm when not given); BadRequest when malformed.
  static std::optional<TraceView> trace_view_of(const Target& target) {
    if (!target.is({"api", "p", "*", "trace"}) || target.segments.size() != 5) return std::nullopt;
    TraceView view{0, target.text("stage")};
    const std::string& text = target.segments[4];
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), view.trace);
    if (text.empty() || error != std::errc() || end != text.data() + text.size())
      throw BadRequest("a trace id is a number below 2^64");
    if (view.stage.empty()) view.stage = "asm";
    if (view.stage != "noopt" && view.stage != "opt" && view.stage != "asm")
      throw BadRequest("stage must be noopt, opt or asm");
    return view;
  }

  struct Diff {
    std::string old_id, new_id;
  };
  // GET /api/diff/OLD/NEW; BadRequest when an id is malformed.
  static std::optional<Diff> diff_of(const Target& target) {
    if (!target.is({"api", "diff"}) || target.segments.size() != 4) return std::nullopt;
    return Diff{checked_id(target.segments[2]), checked_id(target.segments[3])};
  }

  static Response cached(Response response) {
    response.cache = true;  // views of a content-addressed bundle never change
    return response;
  }

  static Response page(const std::string& name) {
    const auto asset = web::find_asset(name);
    if (!asset) throw NotFound("no such page");
    return {http::status::ok, std::string(asset->content_type), std::string(asset->bytes), {}, false};
  }

  const Settings& settings_;
  Store& store_;
  std::set<std::string> tokens_;
  QueryCache queries_;
  std::atomic<unsigned> connections_{0};  // before heavy_: its queued requests hold connections
  WaitingConnections waiting_;
  HeavyWork heavy_;
};

// One connection: requests read one after another (keep-alive).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, App& app) : stream_(std::move(socket)), app_(app) {
    ++app_.connections();
    beast::error_code ignored;
    const auto remote = stream_.socket().remote_endpoint(ignored);
    peer_ = ignored ? "?" : remote.address().to_string();
  }
  ~Session() { --app_.connections(); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start() { net::dispatch(stream_.get_executor(), beast::bind_front_handler(&Session::read_header, shared_from_this())); }
  // Closes a connection waiting for its next request, to make room.
  void evict() {
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->close(); });
  }
  // Over the connection limit: a 503 without reading the request, then closed.
  void refuse() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      self->reply(busy_response("the server has too many connections open; retry later"), true);
    });
  }

 private:
  void read_header() {
    small_parser_.reset();
    file_parser_.reset();
    head_.emplace();
    head_->header_limit(16 * 1024);
    // Decided once the route is known. (Not boost::none: Beast 1.74 compares
    // a length with an empty optional as "over the limit".)
    head_->body_limit(std::numeric_limits<std::uint64_t>::max());
    stream_.expires_after(kHeaderTimeout);
    app_.waiting().add(shared_from_this());
    http::async_read_header(stream_, buffer_, *head_, beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code error, std::size_t) {
    app_.waiting().remove(*this);
    if (error) return close();
    started_ = Clock::now();
    const auto& request = head_->get();
    request_line_ = fmt::format("{} {}", std::string(request.method_string()), std::string(request.target()));
    target_.emplace(std::string_view(request.target().data(), request.target().size()));
    if (!app_.authorized(request, *target_)) {
      return reply(error_response(http::status::unauthorized, "a valid token is needed: Authorization: Bearer TOKEN"),
                   true);
    }
    const auto& limits = app_.settings();
    const std::uint64_t limit = App::takes_file(request.method(), *target_) ? limits.max_body_bytes : kSmallBodyBytes;
    // A declared length over the limit is refused before any of the body is read.
    if (const auto length = head_->content_length(); length && *length > limit)
      return reply(too_large(limit), true);
    if (App::takes_file(request.method(), *target_)) {
      file_path_ = app_.store().temp_path();
      file_parser_.emplace(std::move(*head_));
      file_parser_->body_limit(app_.settings().max_body_bytes);
      beast::error_code open_error;
      file_parser_->get().body().open(file_path_.c_str(), beast::file_mode::write, open_error);
      if (open_error) return reply(error_response(http::status::internal_server_error, open_error.message()), true);
      stream_.expires_after(std::chrono::minutes(10));
      http::async_read(stream_, buffer_, *file_parser_, beast::bind_front_handler(&Session::on_file, shared_from_this()));
    } else {
      small_parser_.emplace(std::move(*head_));
      small_parser_->body_limit(kSmallBodyBytes);
      http::async_read(stream_, buffer_, *small_parser_, beast::bind_front_handler(&Session::on_small, shared_from_this()));
    }
  }

  void on_file(beast::error_code error, std::size_t) {
    file_parser_->get().body().close();
    if (error == http::error::body_limit) {
      discard_file();
      return reply(too_large(app_.settings().max_body_bytes), true);
    }
    if (error) {
      discard_file();  // the client went away mid-upload: nothing is kept
      return close();
    }
    keep_alive_ = file_parser_->get().keep_alive();
    respond(file_parser_->get(), file_path_);
  }

  void on_small(beast::error_code error, std::size_t) {
    if (error == http::error::body_limit) return reply(too_large(kSmallBodyBytes), true);
    if (error) return close();
    keep_alive_ = small_parser_->get().keep_alive();
    respond(small_parser_->get(), std::nullopt);
  }

  // Light requests are answered on this thread; heavy ones on the heavy
  // pool, their answer coming back to this connection's strand. The request
  // stays in its parser until the answer is written.
  void respond(const http::request_header<>& request, const std::optional<fs::path>& file) {
    static const std::string kNoBody;
    const std::string& body = small_parser_ ? small_parser_->get().body() : kNoBody;
    if (!app_.is_heavy(request.method(), *target_)) return answer(app_.handle(request, *target_, body, file));
    const bool queued = app_.heavy().try_post(peer_, [self = shared_from_this(), &request, &body, file] {
      Response response = self->app_.handle(request, *self->target_, body, file);
      net::post(self->stream_.get_executor(),
                [self, response = std::move(response)]() mutable { self->answer(std::move(response)); });
    });
    if (!queued)
      answer(busy_response(fmt::format("this client already has {} uploads or queries waiting; retry later",
                                       app_.settings().heavy_per_client)));
  }

  void answer(Response response) {
    discard_file();
    if (small_parser_ && small_parser_->get().method() == http::verb::head) response.body.clear();
    reply(std::move(response), !keep_alive_);
  }

  static Response too_large(std::uint64_t limit) {
    return error_response(http::status::payload_too_large,
                          fmt::format("the body exceeds this server's limit of {} bytes", limit));
  }

  void discard_file() {
    if (file_path_.empty()) return;
    std::error_code ignored;
    fs::remove(file_path_, ignored);
    file_path_.clear();
  }

  void reply(Response response, bool close_after) {
    auto message = std::make_shared<http::response<http::string_body>>(response.status, 11);
    message->set(http::field::server, "jitprof");
    message->set(http::field::content_type, response.content_type);
    if (!response.disposition.empty()) message->set(http::field::content_disposition, response.disposition);
    // Views of a bundle never change, but on a private server they must not
    // outlive the token in shared caches; the viewer's files change with upgrades.
    if (!response.cache)
      message->set(http::field::cache_control, "no-cache");
    else if (app_.settings().private_reads)
      message->set(http::field::cache_control, "private, no-cache");
    else
      message->set(http::field::cache_control, "public, max-age=31536000, immutable");
    message->set(http::field::vary, "Authorization");
    message->set("Content-Security-Policy", kContentSecurityPolicy);
    message->set("X-Content-Type-Options", "nosniff");
    if (response.retry_after_s) message->set(http::field::retry_after, std::to_string(response.retry_after_s));
    message->body() = std::move(response.body);
    message->keep_alive(!close_after);
    message->prepare_payload();
    if (app_.settings().log)
      app_.settings().log(fmt::format("{} {} {} {}B {:.1f}ms", peer_, request_line_,
                                      static_cast<unsigned>(response.status), message->body().size(),
                                      std::chrono::duration<double, std::milli>(Clock::now() - started_).count()));
    stream_.expires_after(kWriteTimeout);
    http::async_write(stream_, *message,
                      [self = shared_from_this(), message, close_after](beast::error_code error, std::size_t) {
                        if (error) return self->close();
                        if (close_after) return self->drain_and_close();
                        self->read_header();
                      });
  }

  // After refusing a request whose body is still coming (401, 413), read and
  // drop a bounded amount of it, so that the client gets to read the answer
  // instead of a reset connection.
  void drain_and_close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(std::chrono::seconds(5));
    drain_buffer_.resize(64 * 1024);
    drain_more();
  }
  void drain_more() {
    stream_.async_read_some(net::buffer(drain_buffer_), [self = shared_from_this()](beast::error_code error, std::size_t got) {
      self->drained_ += got;
      if (error || self->drained_ > (std::uint64_t{64} << 20)) return self->close();
      self->drain_more();
    });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  App& app_;
  std::string peer_;
  std::optional<http::request_parser<http::empty_body>> head_;
  std::optional<http::request_parser<http::string_body>> small_parser_;
  std::optional<http::request_parser<http::file_body>> file_parser_;
  std::optional<Target> target_;
  std::string request_line_ = "- -";  // method and target, for the log
  fs::path file_path_;
  bool keep_alive_ = false;
  Clock::time_point started_ = Clock::now();
  std::vector<char> drain_buffer_;
  std::uint64_t drained_ = 0;
  // Where this connection is in App::waiting(), while it waits for a header;
  // guarded by that list's mutex.
  friend class WaitingConnections;
  std::optional<std::list<std::weak_ptr<Session>>::iterator> waiting_at_;
};

void WaitingConnections::add(const std::shared_ptr<Session>& session) {
  std::lock_guard lock(mutex_);
  session->waiting_at_ = waiting_.insert(waiting_.end(), session);
}

void WaitingConnections::remove(Session& session) {
  std::lock_guard lock(mutex_);
  if (session.waiting_at_) waiting_.erase(*session.waiting_at_);
  session.waiting_at_.reset();
}

std::shared_ptr<Session> WaitingConnections::take_oldest() {
  std::lock_guard lock(mutex_);
  while (!waiting_.empty()) {
    std::shared_ptr<Session> oldest = waiting_.front().lock();
    waiting_.pop_front();
    if (!oldest) continue;  // ending already
    oldest->waiting_at_.reset();
    return oldest;
  }
  return nullptr;
}

void notify(const Settings& settings, const std::string& line) {
  if (settings.notice)
    settings.notice(line);
  else
    std::cerr << line << "\n";
}

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(net::io_context& context, tcp::endpoint endpoint, App& app, unsigned max_connections)
      : context_(context), acceptor_(context), retry_(context), app_(app), max_connections_(max_connections) {
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(net::socket_base::max_listen_connections);
  }
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  void accept() {
    acceptor_.async_accept(net::make_strand(context_), [self = shared_from_this()](beast::error_code error, tcp::socket socket) {
      if (error == net::error::operation_aborted) return;
      if (error) return self->back_off(error);
      self->delay_ = kFirstDelay;
      auto session = std::make_shared<Session>(std::move(socket), self->app_);
      if (self->app_.connections() <= self->max_connections_) {
        session->start();
      } else if (const auto oldest = self->app_.waiting().take_oldest()) {
        oldest->evict();
        session->start();
      } else {
        session->refuse();  // every connection is busy with a request
      }
      self->accept();
    });
  }

 private:
  static constexpr auto kFirstDelay = std::chrono::milliseconds(50);
  static constexpr auto kLongestDelay = std::chrono::seconds(1);

  // Accepting fails when the process is out of files (EMFILE, ENFILE): the
  // connection stays pending, so accepting again at once would spin.
  void back_off(beast::error_code error) {
    if (delay_ == kFirstDelay)
      notify(app_.settings(), fmt::format("jitprof: cannot accept connections ({}); retrying less often until it can",
                                          error.message()));
    retry_.expires_after(delay_);
    delay_ = std::min<std::chrono::milliseconds>(delay_ * 2, kLongestDelay);
    retry_.async_wait([self = shared_from_this()](beast::error_code waited) {
      if (!waited) self->accept();
    });
  }

  net::io_context& context_;
  tcp::acceptor acceptor_;
  net::steady_timer retry_;
  App& app_;
  const unsigned max_connections_;
  std::chrono::milliseconds delay_ = kFirstDelay;
};

// The connections the open-file limit leaves room for: the soft limit is
// raised to the hard one first, as far as that goes.
unsigned connection_limit(const Settings& settings) {
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0) return settings.max_connections;
  if (files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
    ::getrlimit(RLIMIT_NOFILE, &files);
  }
  const rlim_t room = files.rlim_cur > 2 * kFilesBesidesConnections ? files.rlim_cur - kFilesBesidesConnections
                                                                     : files.rlim_cur / 2;
  if (settings.max_connections <= room) return settings.max_connections;
  notify(settings, fmt::format("jitprof: serving at most {} connections at once: the open-file limit is {}", room,
                               files.rlim_cur));
  return static_cast<unsigned>(room);
}

void check(const Settings& settings) {
  if (settings.private_reads && !settings.token_file)
    throw std::runtime_error("--private needs --token-file FILE (the tokens that may read); without it every reader would be let in");
  if (settings.max_inflated_bytes > settings.memory_budget_bytes)
    throw std::runtime_error("--max-inflated-mb must not exceed --memory-mb: an upload that large could never be read");
  if (settings.heavy_threads == 0 || settings.heavy_per_client == 0 || settings.max_connections == 0)
    throw std::runtime_error("--heavy-threads and --max-connections must be at least 1");
}

tcp::endpoint parse_listen(const std::string& listen) {
  const std::size_t colon = listen.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error(fmt::format("--listen wants HOST:PORT, not '{}'", listen));
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  beast::error_code error;
  const auto address = net::ip::make_address(host.empty() ? "0.0.0.0" : host, error);
  if (error) throw std::runtime_error(fmt::format("--listen: '{}' is not an IP address", host));
  unsigned long port = 0;
  try {
    port = std::stoul(listen.substr(colon + 1));
  } catch (const std::exception&) {
    port = 65536;
  }
  if (port > 65535) throw std::runtime_error(fmt::format("--listen: '{}' is not a port", listen.substr(colon + 1)));
  return {address, static_cast<unsigned short>(port)};
}

}  // namespace

void serve(const Settings& settings) {
  check(settings);
  MemoryBudget budget(settings.memory_budget_bytes);
  Store store(settings.data_dir, settings.max_inflated_bytes, budget,
              [&settings](const std::string& line) { notify(settings, line); });
  App app(settings, store, budget);
  const unsigned threads = settings.threads ? settings.threads : std::max(4u, 2 * std::thread::hardware_concurrency());
  net::io_context context(static_cast<int>(threads));
  auto listener = std::make_shared<Listener>(context, parse_listen(settings.listen), app, connection_limit(settings));
  listener->accept();
  net::signal_set signals(context, SIGINT, SIGTERM);
  signals.async_wait([&](beast::error_code, int) { context.stop(); });
  if (settings.on_listening) {
    const auto endpoint = listener->endpoint();
    settings.on_listening(fmt::format("http://{}:{}", endpoint.address().to_string(), endpoint.port()));
  }
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&context] { context.run(); });
  context.run();
  for (auto& thread : pool) thread.join();
  app.heavy().stop();  // its queued requests hold connections of `context`
}

}  // namespace jitprof::server
