#include "uploader/uploader.h"

#include <utility>  // Boost 1.74's asio uses std::exchange without including it

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>
#include <openssl/ssl.h>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "bundle/pypy_files.h"

#include <chrono>
#include <fstream>
#include <optional>
#include <thread>

namespace jitprof::uploader {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

constexpr auto kTimeout = std::chrono::seconds(60);  // per read or write: a stalled server is a failure

struct Url {
  bool https = false;
  std::string host, port, path;  // path: the prefix the API lives under, without a trailing '/'
};

Url parse_url(const std::string& text) {
  Url url;
  std::string rest;
  if (text.starts_with("http://")) {
    rest = text.substr(7);
  } else if (text.starts_with("https://")) {
    url.https = true;
    rest = text.substr(8);
  } else {
    throw UploadError(fmt::format("--server wants an http:// or https:// URL, not '{}'", text));
  }
  const std::size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  url.path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!url.path.empty() && url.path.back() == '/') url.path.pop_back();
  const std::size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
    url.host = authority.substr(0, colon);
    url.port = authority.substr(colon + 1);
  } else {
    url.host = authority;
    url.port = url.https ? "443" : "80";
  }
  if (url.host.size() > 2 && url.host.front() == '[') url.host = url.host.substr(1, url.host.size() - 2);
  if (url.host.empty()) throw UploadError(fmt::format("--server '{}' names no host", text));
  return url;
}

// One answer, or an error to retry (connection trouble, 5xx).
struct Retryable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class Stream>
net::awaitable<http::response<http::string_body>> send(Stream& stream, const Url& url, const Options& options,
                                                        const std::filesystem::path& path, std::uint64_t total) {
  http::request<http::buffer_body> request{http::verb::post, url.path + "/api/upload", 11};
  const bool default_port = url.port == (url.https ? "443" : "80");
  const std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  request.set(http::field::host, default_port ? host : host + ":" + url.port);
  request.set(http::field::user_agent, "jitprof-upload/" JITPROF_VERSION);
  request.set(http::field::content_type, "application/octet-stream");
  if (!options.token.empty()) request.set(http::field::authorization, "Bearer " + options.token);
  request.content_length(total);
  request.body().data = nullptr;
  request.body().more = true;
  http::request_serializer<http::buffer_body> serializer{request};
  beast::get_lowest_layer(stream).expires_after(kTimeout);
  co_await http::async_write_header(stream, serializer, net::use_awaitable);

  std::ifstream in(path, std::ios::binary);
  std::vector<char> chunk(256 * 1024);
  std::uint64_t sent = 0;
  while (sent < total) {
    in.read(chunk.data(), static_cast<std::streamsize>(std::min<std::uint64_t>(chunk.size(), total - sent)));
    const auto got = static_cast<std::size_t>(in.gcount());
    if (got == 0) throw UploadError(fmt::format("{} shrank while it was being uploaded", path.string()));
    request.body().data = chunk.data();
    request.body().size = got;
    request.body().more = sent + got < total;
    beast::get_lowest_layer(stream).expires_after(kTimeout);
    beast::error_code error;
    co_await http::async_write(stream, serializer, net::redirect_error(net::use_awaitable, error));
    if (error && error != http::error::need_buffer) throw boost::system::system_error(error);
    sent += got;
    if (options.progress) options.progress(sent, total);
  }
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  beast::get_lowest_layer(stream).expires_after(kTimeout);
  co_await http::async_read(stream, buffer, response, net::use_awaitable);
  co_return response;
}

net::awaitable<http::response<http::string_body>> attempt(net::io_context& context, const Url& url,
                                                           const Options& options, const std::filesystem::path& path,
                                                           std::uint64_t total) {
  tcp::resolver resolver(context);
  const auto endpoints = co_await resolver.async_resolve(url.host, url.port, net::use_awaitable);
  if (!url.https) {
    beast::tcp_stream stream(context);
    stream.expires_after(kTimeout);
    co_await stream.async_connect(endpoints, net::use_awaitable);
    auto response = co_await send(stream, url, options, path, total);
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    co_return response;
  }
  net::ssl::context tls(net::ssl::context::tls_client);
  tls.set_default_verify_paths();
  if (!options.ca_file.empty()) {
    boost::system::error_code error;
    tls.load_verify_file(options.ca_file, error);
    if (error) throw UploadError(fmt::format("cannot use {} as a CA file: {}", options.ca_file, error.message()));
  }
  tls.set_verify_mode(net::ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(context, tls);
  // SNI, and the certificate must name the host.
  if (!SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str()))
    throw UploadError("cannot set the TLS server name");
  stream.set_verify_callback(net::ssl::host_name_verification(url.host));
  beast::get_lowest_layer(stream).expires_after(kTimeout);
  co_await beast::get_lowest_layer(stream).async_connect(endpoints, net::use_awaitable);
  co_await stream.async_handshake(net::ssl::stream_base::client, net::use_awaitable);
  auto response = co_await send(stream, url, options, path, total);
  co_return response;
}

}  // namespace

Result upload(const std::filesystem::path& bundle, const Options& options) {
  std::error_code size_error;
  const std::uint64_t total = std::filesystem::file_size(bundle, size_error);
  if (size_error) throw UploadError(fmt::format("cannot read {}: {}", bundle.string(), size_error.message()));
  const Url url = parse_url(options.server);
  std::string last_problem;
  for (unsigned attempt_number = 1; attempt_number <= std::max(1u, options.attempts); ++attempt_number) {
    if (attempt_number > 1) {
      const auto wait = std::chrono::milliseconds(500) * (1 << std::min(attempt_number - 2, 4u));
      if (options.notice)
        options.notice(fmt::format("{}; retrying in {:.1f} s (attempt {} of {})", last_problem,
                                   std::chrono::duration<double>(wait).count(), attempt_number, options.attempts));
      std::this_thread::sleep_for(wait);
    }
    net::io_context context;
    std::optional<http::response<http::string_body>> response;
    std::exception_ptr failure;
    net::co_spawn(context, attempt(context, url, options, bundle, total),
                  [&](std::exception_ptr error, http::response<http::string_body> answer) {
                    failure = error;
                    if (!error) response = std::move(answer);
                  });
    context.run();
    if (failure) {
      try {
        std::rethrow_exception(failure);
      } catch (const UploadError&) {
        throw;
      } catch (const boost::system::system_error& error) {
        // A certificate that does not verify will not verify on the next try either.
        if (error.code().category() == net::error::get_ssl_category())
          throw UploadError(fmt::format("TLS with {} failed: {}", options.server, error.what()));
        last_problem = fmt::format("cannot reach {}: {}", options.server, error.what());
        continue;
      } catch (const std::exception& error) {
        last_problem = fmt::format("cannot reach {}: {}", options.server, error.what());
        continue;
      }
    }
    const nlohmann::json body = nlohmann::json::parse(response->body(), nullptr, false);
    const unsigned status = response->result_int();
    if (status >= 500) {
      last_problem = fmt::format("the server answered {} {}", status, body.is_object() ? body.value("error", "") : "");
      continue;
    }
    if (status >= 400 || !body.is_object() || !body.contains("id"))
      throw UploadError(fmt::format("the server refused the upload ({} {}): {}", status,
                                    std::string(response->reason()),
                                    body.is_object() ? body.value("error", response->body()) : response->body()));
    return {body.value("id", ""), body.value("url", ""), body.value("existed", false)};
  }
  throw UploadError(last_problem);
}

namespace {

// A file made for one upload, removed however the upload ends.
struct TemporaryFile {
  std::filesystem::path path;
  ~TemporaryFile() {
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
  }
};

std::filesystem::path temporary_bundle_path() {
  static unsigned counter = 0;
  return std::filesystem::temp_directory_path() / fmt::format("jitprof-upload-{}-{}.jprof", ::getpid(), ++counter);
}

}  // namespace

Result upload_files(const std::vector<std::filesystem::path>& files, const Options& options) {
  if (files.empty() || files.size() > 2) throw UploadError("upload takes one bundle, or a jitlog and a vmprof profile");
  bundle::PypyFiles pypy;
  std::vector<std::string> names;
  for (const auto& file : files) {
    bundle::FileFormat format;
    try {
      format = bundle::identify_file(file);
    } catch (const bundle::UnknownFile& error) {
      throw UploadError(error.what());
    } catch (const binio::InputError& error) {
      throw UploadError(error.what());
    }
    auto& slot = format.kind == bundle::FileKind::Jitlog ? pypy.jitlog : pypy.profile;
    if (format.kind == bundle::FileKind::Bundle) {
      if (files.size() > 1)
        throw UploadError(fmt::format("{} is a jitprof bundle: upload it alone (a second file goes with PyPy's own "
                                      "files only: a jitlog and a vmprof profile of one run)",
                                      file.string()));
      if (!format.gzipped) return upload(file, options);
      // Inflated first: the server stores bundles as jitprof writes them.
      const TemporaryFile inflated{temporary_bundle_path()};
      std::ofstream out(inflated.path, std::ios::binary);
      try {
        binio::read_file_chunks(file, [&](std::span<const std::uint8_t> chunk) {
          out.write(reinterpret_cast<const char*>(chunk.data()), static_cast<std::streamsize>(chunk.size()));
        });
      } catch (const binio::InputError& error) {
        throw UploadError(error.what());
      }
      if (!out.flush()) throw UploadError(fmt::format("cannot write {}", inflated.path.string()));
      return upload(inflated.path, options);
    }
    if (slot)
      throw UploadError(fmt::format("{} and {} are both {}s: upload one PyPy jitlog and one vmprof profile of the same "
                                    "run, or each on its own",
                                    slot->string(), file.string(), std::string(bundle::file_kind_name(format.kind)).substr(2)));
    slot = file;
    names.push_back(file.filename().string());
  }

  bundle::PypyRun run;
  run.mode = "PyPy files";
  run.command = names;  // the command line is not in PyPy's files: their names stand for it
  const TemporaryFile assembled{temporary_bundle_path()};
  std::vector<bundle::FileCheck> checks;
  try {
    checks = bundle::write_pypy_bundle(pypy, run, assembled.path);
  } catch (const binio::InputError& error) {
    throw UploadError(error.what());
  }
  for (const bundle::FileCheck& check : checks) {
    if (check.error)
      throw UploadError(fmt::format("{} is {} malformed at byte offset {}: {}; not uploaded", check.file.string(),
                                    bundle::file_kind_name(check.kind), check.error->offset, check.error->message));
    if (options.notice)
      for (const auto& warning : check.warnings)
        options.notice(fmt::format("warning: {}: {}; uploading what was read before it", check.file.string(),
                                   warning.message));
  }
  Result result = upload(assembled.path, options);
  if (!pypy.profile) result.url += "/traces";  // no samples: the traces are what there is to see
  return result;
}

}  // namespace jitprof::uploader
