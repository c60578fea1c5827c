#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "binio/binio.h"

namespace jitprof::binio {
namespace {

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

class GzipInflater {
 public:
  GzipInflater() {
    // 16 + MAX_WBITS: expect a gzip wrapper.
    if (inflateInit2(&stream_, 16 + MAX_WBITS) != Z_OK) throw InputError("zlib: cannot initialise");
  }
  ~GzipInflater() { inflateEnd(&stream_); }
  GzipInflater(const GzipInflater&) = delete;
  GzipInflater& operator=(const GzipInflater&) = delete;

  // Inflates `input`, passing output to `sink`.
  void feed(std::span<const std::uint8_t> input, const std::function<void(std::span<const std::uint8_t>)>& sink) {
    stream_.next_in = const_cast<Bytef*>(input.data());
    stream_.avail_in = static_cast<uInt>(input.size());
    while (stream_.avail_in > 0) {
      if (finished_) {
        // Concatenated gzip members are one stream, as gzip(1) treats them.
        if (inflateReset(&stream_) != Z_OK) throw InputError("zlib: cannot reset");
        finished_ = false;
      }
      stream_.next_out = out_.data();
      stream_.avail_out = static_cast<uInt>(out_.size());
      const int rc = inflate(&stream_, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
        throw InputError(fmt::format("gzip data is corrupt after {} compressed bytes: {}",
                                     stream_.total_in, stream_.msg ? stream_.msg : "inflate failed"));
      }
      const std::size_t have = out_.size() - stream_.avail_out;
      if (have > 0) sink({out_.data(), have});
      if (rc == Z_STREAM_END) finished_ = true;
      if (rc == Z_BUF_ERROR && have == 0) break;
    }
  }

  bool finished() const { return finished_; }

 private:
  z_stream stream_{};
  std::array<std::uint8_t, 1 << 16> out_{};
  bool finished_ = false;
};

}  // namespace

std::uint64_t read_file_chunks(const std::filesystem::path& path,
                               const std::function<void(std::span<const std::uint8_t>)>& sink,
                               const ReadOptions& options) {
  FilePtr file(std::fopen(path.c_str(), "rb"));
  if (!file) throw InputError(fmt::format("cannot open {}: {}", path.string(), std::strerror(errno)));

  // At least 2 bytes, so that the first read can see the whole gzip magic.
  std::vector<std::uint8_t> chunk(std::max<std::size_t>(options.chunk_size, 2));
  std::unique_ptr<GzipInflater> inflater;
  bool first = true;
  std::uint64_t delivered = 0;
  for (;;) {
    const std::size_t got = std::fread(chunk.data(), 1, chunk.size(), file.get());
    if (got == 0) {
      if (std::ferror(file.get()))
        throw InputError(fmt::format("cannot read {}: {}", path.string(), std::strerror(errno)));
      break;
    }
    std::span<const std::uint8_t> data(chunk.data(), got);
    if (first) {
      first = false;
      if (got >= 2 && data[0] == 0x1f && data[1] == 0x8b) inflater = std::make_unique<GzipInflater>();
    }
    if (!inflater) {
      sink(data);
      delivered += got;
      continue;
    }
    inflater->feed(data, [&](std::span<const std::uint8_t> out) {
      if (delivered + out.size() > options.max_decompressed_bytes)
        throw InputError(fmt::format("{} inflates past the limit of {} bytes; refusing it", path.string(),
                                     options.max_decompressed_bytes));
      delivered += out.size();
      sink(out);
    });
  }
  if (inflater && !inflater->finished())
    throw InputError(fmt::format("{}: gzip stream is truncated", path.string()));
  return delivered;
}

FileStart read_file_start(const std::filesystem::path& path, std::size_t max_bytes) {
  FilePtr file(std::fopen(path.c_str(), "rb"));
  if (!file) throw InputError(fmt::format("cannot open {}: {}", path.string(), std::strerror(errno)));
  FileStart start;
  // Small reads: a gzip file that inflates enormously is never inflated past what is asked.
  std::array<std::uint8_t, 4096> chunk{};
  std::unique_ptr<GzipInflater> inflater;
  bool first = true;
  while (start.bytes.size() < max_bytes) {
    const std::size_t got = std::fread(chunk.data(), 1, chunk.size(), file.get());
    if (got == 0) {
      if (std::ferror(file.get()))
        throw InputError(fmt::format("cannot read {}: {}", path.string(), std::strerror(errno)));
      break;
    }
    std::span<const std::uint8_t> data(chunk.data(), got);
    if (first) {
      first = false;
      start.gzipped = got >= 2 && data[0] == 0x1f && data[1] == 0x8b;
      if (start.gzipped) inflater = std::make_unique<GzipInflater>();
    }
    const auto keep = [&](std::span<const std::uint8_t> bytes) {
      const std::size_t wanted = std::min(bytes.size(), max_bytes - start.bytes.size());
      start.bytes.insert(start.bytes.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(wanted));
    };
    if (inflater) inflater->feed(data, keep);
    else keep(data);
  }
  return start;
}

}  // namespace jitprof::binio
