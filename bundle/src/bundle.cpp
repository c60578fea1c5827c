#include "bundle/bundle.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>

namespace jitprof::bundle {
namespace {

constexpr std::array<std::uint8_t, 8> kMagic = {0x89, 'J', 'P', 'R', 'O', 'F', '\r', '\n'};
// Each frame says how its bytes are stored: zlib in bundles of format 1, zstd
// since, on its own or continuing its section's stream. One flag at most.
constexpr std::uint32_t kFlagZlib = 1;
constexpr std::uint32_t kFlagZstd = 2;
constexpr std::uint32_t kFlagZstdStream = 4;
// The most window a reader takes (what earlier writers used, level 9's own),
// so that a crafted stream cannot make it allocate more.
constexpr int kMaxStreamWindowLog = 22;
// What the writer uses: level 9's own window and match tables for a stream
// take 17 MiB, a third of what `record` holds on a JIT-heavy program; these
// take 3 MiB and make PyPy's jitlog 2-3% larger (58 MB jitlog: 2.01 MB
// instead of 1.95 MB).
constexpr int kStreamWindowLog = 20, kStreamHashLog = 18;
constexpr std::size_t kFrameHeaderBytes = 4 + 4 + 8 + 8 + 4;

void put_le(std::vector<std::uint8_t>& out, std::uint64_t value, std::size_t width) {
  for (std::size_t i = 0; i < width; ++i) out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

std::uint32_t crc_of(std::span<const std::uint8_t> bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // crc32 takes a uInt length: feed large buffers in pieces.
  for (std::size_t at = 0; at < bytes.size(); at += 1u << 30) {
    const std::size_t piece = std::min<std::size_t>(bytes.size() - at, 1u << 30);
    crc = crc32(crc, bytes.data() + at, static_cast<uInt>(piece));
  }
  return static_cast<std::uint32_t>(crc);
}

void write_all(int fd, const std::uint8_t* data, std::size_t size, const std::filesystem::path& path) {
  while (size > 0) {
    const ssize_t wrote = ::write(fd, data, size);
    if (wrote < 0) {
      if (errno == EINTR) continue;
      throw binio::InputError(fmt::format("cannot write {}: {}", path.string(), std::strerror(errno)));
    }
    data += wrote;
    size -= static_cast<std::size_t>(wrote);
  }
}

}  // namespace

std::string SectionType::name() const {
  std::string text;
  for (int i = 0; i < 4; ++i) {
    const auto c = static_cast<char>((code >> (8 * i)) & 0xff);
    text += (c >= 0x20 && c < 0x7f) ? std::string(1, c) : fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
  }
  return text;
}

std::vector<std::uint8_t> Bundle::stream(SectionType type) const {
  std::vector<std::uint8_t> joined;
  for (const Frame& frame : frames)
    if (frame.type == type) joined.insert(joined.end(), frame.data.begin(), frame.data.end());
  return joined;
}

const Frame* Bundle::latest(SectionType type) const {
  for (auto it = frames.rbegin(); it != frames.rend(); ++it)
    if (it->type == type) return &*it;
  return nullptr;
}

BundleWriter::BundleWriter(const std::filesystem::path& path, int compression_level)
    : level_(compression_level), path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw binio::InputError(fmt::format("cannot create {}: {}", path.string(), std::strerror(errno)));
  std::vector<std::uint8_t> header(kMagic.begin(), kMagic.end());
  put_le(header, kFormatVersion, 2);
  write_all(fd_, header.data(), header.size(), path_);
  offset_ = header.size();
}

BundleWriter::BundleWriter(FrameSink sink) : level_(0), sink_(std::move(sink)) {}

struct BundleWriter::SectionStream {
  struct Free {
    void operator()(ZSTD_CCtx* context) const { ZSTD_freeCCtx(context); }
  };
  std::unique_ptr<ZSTD_CCtx, Free> context;

  explicit SectionStream(int level) : context(ZSTD_createCCtx()) {
    if (!context) throw std::bad_alloc();
    ZSTD_CCtx_setParameter(context.get(), ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(context.get(), ZSTD_c_windowLog, kStreamWindowLog);
    ZSTD_CCtx_setParameter(context.get(), ZSTD_c_hashLog, kStreamHashLog);
    ZSTD_CCtx_setParameter(context.get(), ZSTD_c_chainLog, kStreamHashLog);
  }

  // Everything given so far, flushed: the reader can inflate it at once.
  std::vector<std::uint8_t> compress(std::span<const std::uint8_t> data) {
    std::vector<std::uint8_t> stored(ZSTD_compressBound(data.size()) + ZSTD_CStreamOutSize());
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    ZSTD_outBuffer out{stored.data(), stored.size(), 0};
    for (;;) {
      const std::size_t left = ZSTD_compressStream2(context.get(), &out, &in, ZSTD_e_flush);
      if (ZSTD_isError(left)) throw binio::InputError(fmt::format("zstd: {}", ZSTD_getErrorName(left)));
      if (left == 0) break;
      stored.resize(stored.size() * 2);
      out.dst = stored.data();
      out.size = stored.size();
    }
    stored.resize(out.pos);
    return stored;
  }
};

BundleWriter::~BundleWriter() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<std::uint8_t> BundleWriter::compress_frame(SectionType type, std::span<const std::uint8_t> data,
                                                       std::uint32_t& flags) {
  // Always the stream's bytes, even when larger: the stream's history must
  // stay the same on both sides.
  if (type == sections::kJitlog) {
    if (!jitlog_stream_) jitlog_stream_ = std::make_unique<SectionStream>(level_);
    flags = kFlagZstdStream;
    return jitlog_stream_->compress(data);
  }
  std::vector<std::uint8_t> stored(ZSTD_compressBound(data.size()));
  const std::size_t stored_size = ZSTD_compress(stored.data(), stored.size(), data.data(), data.size(), level_);
  if (!ZSTD_isError(stored_size) && stored_size < data.size()) {
    stored.resize(stored_size);
    flags = kFlagZstd;
    return stored;
  }
  flags = 0;
  return {data.begin(), data.end()};
}

void BundleWriter::append(SectionType type, std::span<const std::uint8_t> data) {
  if (sink_) sink_(type, data);
  if (fd_ < 0) return;
  std::uint32_t flags = 0;
  const std::vector<std::uint8_t> stored = compress_frame(type, data, flags);
  // Header and payload go out in one buffer: a frame is never half-announced.
  std::vector<std::uint8_t> frame;
  frame.reserve(kFrameHeaderBytes + stored.size());
  put_le(frame, type.code, 4);
  put_le(frame, flags, 4);
  put_le(frame, data.size(), 8);
  put_le(frame, stored.size(), 8);
  put_le(frame, crc_of(stored), 4);
  frame.insert(frame.end(), stored.begin(), stored.end());
  write_all(fd_, frame.data(), frame.size(), path_);
  offset_ += frame.size();
}

void BundleWriter::append(SectionType type, const std::string& text) {
  append(type, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

void BundleWriter::sync() {
  if (fd_ >= 0 && ::fsync(fd_) != 0) throw binio::InputError(fmt::format("cannot sync {}: {}", path_.string(), std::strerror(errno)));
}

namespace {

class FrameParser {
 public:
  FrameParser(Bundle& bundle, std::uint64_t max_inflated, const BeforeInflating& before_inflating)
      : bundle_(bundle), max_inflated_(max_inflated), before_inflating_(before_inflating) {}

  void parse(binio::ByteCursor& in) {
    if (!saw_header_) {
      parse_file_header(in);
      return;
    }
    const std::uint64_t at = in.offset();
    Frame frame;
    frame.type = SectionType{in.u32le()};
    frame.file_offset = at;
    const std::uint32_t flags = in.u32le();
    const std::uint64_t size = in.u64le();
    const std::uint64_t stored_size = in.u64le();
    const std::uint32_t crc = in.u32le();
    if (flags != 0 && flags != kFlagZlib && flags != kFlagZstd && flags != kFlagZstdStream)
      in.fail_at(at + 4, fmt::format("unknown frame flags 0x{:x}", flags));
    if (size > kMaxFrameBytes || stored_size > kMaxFrameBytes)
      in.fail_at(at + 8, fmt::format("frame of {} bytes exceeds the limit of {}", std::max(size, stored_size),
                                     kMaxFrameBytes));
    if (size > max_inflated_ - inflated_)
      in.fail_at(at + 8, fmt::format("the frames inflate past the limit of {} bytes", max_inflated_));
    if (flags == 0 && size != stored_size)
      in.fail_at(at + 8, fmt::format("uncompressed frame declares {} bytes but stores {}", size, stored_size));
    // Counted once the whole frame is here: a frame that needs more input is
    // parsed again when it arrives.
    const auto stored = in.bytes(stored_size);
    if (crc_of(stored) != crc)
      in.fail_at(at, fmt::format("{} frame is corrupt (CRC mismatch)", frame.type.name()));
    inflated_ += size;
    if (before_inflating_) before_inflating_(size);
    if (flags == 0) {
      frame.data.assign(stored.begin(), stored.end());
    } else {
      frame.data.resize(size);
      if (!inflate(flags, frame.type, stored, frame.data))
        in.fail_at(at, fmt::format("{} frame does not inflate to its declared {} bytes", frame.type.name(), size));
    }
    bundle_.frames.push_back(std::move(frame));
  }

 private:
  struct FreeStream {
    void operator()(ZSTD_DCtx* context) const { ZSTD_freeDCtx(context); }
  };
  using Stream = std::unique_ptr<ZSTD_DCtx, FreeStream>;

  // Fills `data` (sized as the frame declares) from the stored bytes; false
  // when they do not decompress to exactly that many.
  bool inflate(std::uint32_t flags, SectionType type, std::span<const std::uint8_t> stored,
               std::vector<std::uint8_t>& data) {
    if (flags == kFlagZstdStream) return inflate_stream(stream_of(type), stored, data);
    if (flags == kFlagZstd) {
      const std::size_t inflated = ZSTD_decompress(data.data(), data.size(), stored.data(), stored.size());
      return !ZSTD_isError(inflated) && inflated == data.size();
    }
    uLongf inflated = static_cast<uLongf>(data.size());
    return uncompress(data.data(), &inflated, stored.data(), static_cast<uLong>(stored.size())) == Z_OK &&
           inflated == data.size();
  }

  ZSTD_DCtx* stream_of(SectionType type) {
    Stream& stream = streams_[type.code];
    if (!stream) {
      stream.reset(ZSTD_createDCtx());
      if (!stream) throw std::bad_alloc();
      ZSTD_DCtx_setParameter(stream.get(), ZSTD_d_windowLogMax, kMaxStreamWindowLog);
    }
    return stream.get();
  }

  // The next part of a section's stream: exactly `data.size()` bytes, and all
  // of the stored bytes taken.
  static bool inflate_stream(ZSTD_DCtx* stream, std::span<const std::uint8_t> stored, std::vector<std::uint8_t>& data) {
    ZSTD_inBuffer in{stored.data(), stored.size(), 0};
    ZSTD_outBuffer out{data.data(), data.size(), 0};
    while (in.pos < in.size) {
      const std::size_t before = in.pos + out.pos;
      if (ZSTD_isError(ZSTD_decompressStream(stream, &out, &in))) return false;
      if (in.pos + out.pos == before) return false;  // more output than declared
    }
    // A flushed block can leave output the decoder still holds.
    while (out.pos < out.size) {
      const std::size_t before = out.pos;
      if (ZSTD_isError(ZSTD_decompressStream(stream, &out, &in)) || out.pos == before) break;
    }
    return out.pos == out.size;
  }

  void parse_file_header(binio::ByteCursor& in) {
    const auto magic = in.bytes(kMagic.size());
    if (!std::equal(magic.begin(), magic.end(), kMagic.begin())) in.fail_at(0, "not a jitprof bundle (bad magic)");
    bundle_.version = in.u16le();
    if (bundle_.version < kOldestFormatVersion || bundle_.version > kFormatVersion)
      in.fail_at(8, fmt::format("bundle format version {} is not supported (this jitprof reads {} to {})",
                                bundle_.version, kOldestFormatVersion, kFormatVersion));
    saw_header_ = true;
  }

  Bundle& bundle_;
  std::map<std::uint32_t, Stream> streams_;  // by section type
  bool saw_header_ = false;
  const std::uint64_t max_inflated_;
  const BeforeInflating before_inflating_;
  std::uint64_t inflated_ = 0;
};

// Reads chunks through a RecordBuffer so a large bundle is never held twice.
class StreamingReader {
 public:
  explicit StreamingReader(std::uint64_t max_inflated = UINT64_MAX, const BeforeInflating& before_inflating = {})
      : parser_{bundle_, max_inflated, before_inflating} {}
  void feed(std::span<const std::uint8_t> chunk) {
    if (bundle_.error) return;
    buffer_.append(chunk);
    try {
      buffer_.drain([&](binio::ByteCursor& in) { parser_.parse(in); });
    } catch (const binio::ParseError& error) {
      bundle_.error = binio::Diagnostic{error.offset(), error.detail()};
    }
  }

  Bundle finish() {
    bundle_.bytes_read = buffer_.consumed_offset() + buffer_.pending_size();
    if (!bundle_.error && buffer_.pending_size() > 0) {
      const std::uint64_t at = buffer_.consumed_offset();
      if (bundle_.version == 0)
        bundle_.error = binio::Diagnostic{0, "too short for a jitprof bundle"};
      else
        bundle_.warnings.push_back({at, fmt::format("truncated: incomplete frame at byte offset {} ({} bytes); "
                                                    "the frames before it were read",
                                                    at, buffer_.pending_size())});
    }
    if (!bundle_.error && bundle_.version == 0) bundle_.error = binio::Diagnostic{0, "empty file: not a jitprof bundle"};
    return std::move(bundle_);
  }

 private:
  Bundle bundle_;
  binio::RecordBuffer buffer_;
  FrameParser parser_;
};

}  // namespace

bool is_bundle(const std::filesystem::path& path) {
  std::array<std::uint8_t, kMagic.size()> head{};
  std::ifstream in(path, std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(head.data()), head.size())) return false;
  return starts_as_bundle(head);
}

bool starts_as_bundle(std::span<const std::uint8_t> start) {
  return start.size() >= kMagic.size() && std::equal(kMagic.begin(), kMagic.end(), start.begin());
}

Bundle parse_bundle(std::span<const std::uint8_t> bytes) {
  StreamingReader reader;
  reader.feed(bytes);
  return reader.finish();
}

Bundle read_bundle(const std::filesystem::path& path, std::uint64_t max_inflated_bytes,
                   const BeforeInflating& before_inflating) {
  StreamingReader reader(max_inflated_bytes, before_inflating);
  binio::read_file_chunks(path, [&](std::span<const std::uint8_t> chunk) { reader.feed(chunk); });
  return reader.finish();
}

}  // namespace jitprof::bundle
