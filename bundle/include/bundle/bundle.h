// The jitprof bundle (*.jprof): one file holding everything a recording
// produced (manifest, PyPy's jitlog and vmprof profile as written, samples,
// memory maps, symbols, crash record).
//
// Layout: an 8-byte magic and a u16 format version, then frames appended one
// after the other:
//   u32 section type (four characters), u32 flags, u64 data length,
//   u64 stored length, u32 CRC-32 of the stored bytes, stored bytes.
// The flags say how the stored bytes are compressed: each frame on its own in
// zstd (format 2) or zlib (format 1, still read), not at all, or (format 2)
// as the next part of its section's one zstd stream, for PyPy's jitlog, which
// arrives a pipe buffer at a time: such a frame inflates only after the
// section's frames before it, as a reader reads them anyway.
// A section is a stream: all frames of one type, concatenated in file order,
// so the jitlog can be appended as PyPy writes it. Every frame is written
// whole and flushed, so a bundle cut short by a crash reads up to its last
// complete frame. Document-like sections (the manifest) use their last frame.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "binio/binio.h"

namespace jitprof::bundle {

// 2: frames in zstd, JLTM binary. Format 1 (zlib, JLTM as JSON lines) still reads.
constexpr std::uint16_t kFormatVersion = 2;
constexpr std::uint16_t kOldestFormatVersion = 1;

// Four characters, e.g. "JLOG", packed little-endian into a u32.
struct SectionType {
  std::uint32_t code;
  static constexpr SectionType from(const char (&name)[5]) {
    return {static_cast<std::uint32_t>(static_cast<unsigned char>(name[0])) |
            static_cast<std::uint32_t>(static_cast<unsigned char>(name[1])) << 8 |
            static_cast<std::uint32_t>(static_cast<unsigned char>(name[2])) << 16 |
            static_cast<std::uint32_t>(static_cast<unsigned char>(name[3])) << 24};
  }
  std::string name() const;
  friend bool operator==(SectionType, SectionType) = default;
};

namespace sections {
inline constexpr SectionType kManifest = SectionType::from("MANI");  // JSON document
inline constexpr SectionType kJitlog = SectionType::from("JLOG");    // PyPy's jitlog bytes
inline constexpr SectionType kVmprof = SectionType::from("VMPF");    // PyPy's vmprof profile bytes
inline constexpr SectionType kMaps = SectionType::from("MAPS");      // mmap events, one JSON object a line
inline constexpr SectionType kTasks = SectionType::from("TASK");     // fork/exit/comm/exec events, JSON lines
inline constexpr SectionType kJitlogClock = SectionType::from("JLTM");  // jitlog arrival times (bundle/sections.h)
inline constexpr SectionType kCrash = SectionType::from("CRSH");     // the fatal fault: JSON document
inline constexpr SectionType kSymbols = SectionType::from("SYMS");   // each sampled native address named, JSON lines
inline constexpr SectionType kSamples = SectionType::from("SMPL");   // native samples (bundle/samples.h)
// Hot machine code read from a running process's JIT memory when no jitlog
// names it (attach): JSON lines {"pid", "address", "hex"}.
inline constexpr SectionType kJitCode = SectionType::from("JCOD");
// The Python files the jitlog's traces come from: JSON lines {"file", "text"}.
inline constexpr SectionType kSources = SectionType::from("SRCS");
// Python code objects named by their vmprof unique id, read from the target's
// memory (attach): JSON lines {"pid", "id", "name", "file", "line"}.
inline constexpr SectionType kCodeNames = SectionType::from("PYCN");
// The Python code objects at JIT addresses, from PyPy's JIT codemap read from
// the target's memory (attach without a jitlog): JSON lines {"pid", "address", "ids"}.
inline constexpr SectionType kJitCodemap = SectionType::from("PYJC");
}  // namespace sections

struct Frame {
  SectionType type;
  std::uint64_t file_offset;  // of the frame header
  std::vector<std::uint8_t> data;
};

struct Bundle {
  std::uint16_t version = 0;
  std::vector<Frame> frames;
  std::uint64_t bytes_read = 0;
  std::vector<binio::Diagnostic> warnings;  // e.g. a frame cut short at the end
  std::optional<binio::Diagnostic> error;   // corrupt frame: reading stopped there

  // All frames of `type` concatenated, in file order.
  std::vector<std::uint8_t> stream(SectionType type) const;
  // The newest frame of `type`, or nullptr.
  const Frame* latest(SectionType type) const;
  bool has(SectionType type) const { return latest(type) != nullptr; }
};

class BundleWriter {
 public:
  // Creates (truncates) `path` and writes the file header. Throws binio::InputError on failure.
  // `compression_level`: zstd's; 9 compresses PyPy's jitlog well below
  // gzip -9 and still faster than PyPy writes it.
  explicit BundleWriter(const std::filesystem::path& path, int compression_level = 9);
  // Each frame's data as appended, before compression: a live view of a
  // recording (`top --pid`) takes the frames this way.
  using FrameSink = std::function<void(SectionType, std::span<const std::uint8_t>)>;
  // A writer whose frames go only to `sink`: a recording no file keeps.
  explicit BundleWriter(FrameSink sink);
  ~BundleWriter();
  BundleWriter(const BundleWriter&) = delete;
  BundleWriter& operator=(const BundleWriter&) = delete;

  // Appends one frame, compressed when that makes it smaller, and hands it to
  // the kernel before returning, so that it survives a crash of this process.
  void append(SectionType type, std::span<const std::uint8_t> data);
  void append(SectionType type, const std::string& text);
  // Frames appended from now on also go to `sink`.
  void tap(FrameSink sink) { sink_ = std::move(sink); }
  // fsync: the frames written so far survive a crash of the machine too.
  void sync();
  std::uint64_t bytes_written() const { return offset_; }

 private:
  struct SectionStream;  // a section compressed as one zstd stream
  std::vector<std::uint8_t> compress_frame(SectionType type, std::span<const std::uint8_t> data, std::uint32_t& flags);

  int fd_ = -1;
  int level_;
  std::unique_ptr<SectionStream> jitlog_stream_;
  std::uint64_t offset_ = 0;
  std::filesystem::path path_;
  FrameSink sink_;
};

// Limit on one frame's data, so a corrupt length cannot make the reader allocate much.
constexpr std::uint64_t kMaxFrameBytes = std::uint64_t{256} << 20;

// True when the file starts with the bundle magic.
bool is_bundle(const std::filesystem::path& path);
bool starts_as_bundle(std::span<const std::uint8_t> start);

Bundle parse_bundle(std::span<const std::uint8_t> bytes);
// Called with each frame's inflated size before its memory is taken; it may
// throw to stop reading (a server's budget of memory for all its requests).
using BeforeInflating = std::function<void(std::uint64_t bytes)>;

// Throws binio::InputError when the file cannot be read.
// `max_inflated_bytes` bounds the frames' total size once inflated (a server
// reading untrusted uploads refuses decompression bombs with it).
Bundle read_bundle(const std::filesystem::path& path, std::uint64_t max_inflated_bytes = UINT64_MAX,
                   const BeforeInflating& before_inflating = {});

}  // namespace jitprof::bundle
