// Reader of vmprof CPU profiles as written by PyPy's built-in _vmprof
// (format version 6) and by vmprof-python (versions 0-6, CPython and PyPy).
//
// A profile is a static header followed by marker records; stack samples of
// PyPy profiles are (kind, value) word pairs, leaf first. Code names
// (VIRTUAL_IP records) may come after the samples that use them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "binio/binio.h"

namespace jitprof::vmprof {

// PyPy's stack word tags (rpython/rlib/rvmprof/src/shared/vmprof_get_custom_offset.h).
enum class FrameKind : std::uint8_t {
  Interpreted = 1,  // value: code uid of a frame run by the interpreter
  Blackhole = 2,
  Jitted = 3,       // value: code uid of a function inside the preceding JIT block
  Jitting = 4,
  Gc = 5,
  Assembler = 6,    // value: start address of a JIT block (= jitlog ASM_ADDR start)
  Native = 7,       // value: start address of a native function, with bit 0 set
  Line = 100,       // CPython line-profiling entry; value: line number
};

const char* frame_kind_name(FrameKind kind);

struct Frame {
  FrameKind kind;
  std::uint64_t value;
};

struct Sample {
  std::uint64_t first_frame;  // index into Profile::frames
  std::uint32_t depth;        // number of frames, leaf first
  std::uint64_t count;        // the writer's sample count (1 on PyPy)
  std::uint64_t thread_id;    // 0 on PyPy, which does not record threads
  std::optional<std::uint64_t> rss_kb;
  std::uint64_t file_offset;  // offset of the STACKTRACE marker
};

// A parsed "py:name:line:file" (code object) or "n:name:line:file" (native) record.
struct CodeName {
  std::string raw;
  std::string kind;  // "py", "n", or empty when the name has no such structure
  std::string function;
  std::int64_t line = 0;
  std::string file;
};

CodeName parse_code_name(const std::string& raw);

struct Timestamp {
  std::int64_t seconds = 0;
  std::int64_t microseconds = 0;
};

struct Header {
  unsigned word_size = 8;     // sizeof(long) of the writer
  unsigned address_size = 8;  // sizeof(void*) of the writer
  bool win64 = false;
  std::uint64_t period_usec = 0;
  std::uint16_t version = 0;
  std::uint8_t flags = 0;
  std::string interpreter;  // "pypy", "cpython", ...

  bool profiles_memory() const { return flags & 0x01; }
  bool profiles_lines() const { return flags & 0x02; }
  bool profiles_native() const { return flags & 0x04; }
  bool is_rpython() const { return flags & 0x08; }
  bool real_time() const { return flags & 0x10; }
};

using binio::Diagnostic;

// A file holding several profiles (vmprof enabled again on the same file)
// reads as one: the samples of all, the header of the last, the start time of
// the first and the end time of the last trailer.
struct Profile {
  Header header;
  std::optional<Timestamp> start_time;
  std::optional<Timestamp> end_time;  // from the trailer
  std::vector<std::pair<std::string, std::string>> meta;
  std::vector<Frame> frames;
  std::vector<Sample> samples;
  std::unordered_map<std::uint64_t, CodeName> code_names;      // by code uid; a later record wins
  std::unordered_map<std::uint64_t, CodeName> native_symbols;  // by address (MARKER_NATIVE_SYMBOLS)
  bool has_trailer = false;
  std::uint64_t bytes_read = 0;      // input bytes seen, including any not decoded
  std::vector<Diagnostic> warnings;  // e.g. truncation: the data before it is kept
  std::optional<Diagnostic> error;   // malformed input: reading stopped there

  std::span<const Frame> stack(const Sample& sample) const {
    return {frames.data() + sample.first_frame, sample.depth};
  }
  // The name of a code uid, or else of a native address; nullptr if unknown.
  const CodeName* code_name(std::uint64_t uid) const;
};

// Incremental reader: feed bytes as they arrive (a file, a pipe), then finish.
class ProfileReader {
 public:
  ProfileReader();
  ~ProfileReader();
  ProfileReader(ProfileReader&&) noexcept;
  ProfileReader& operator=(ProfileReader&&) noexcept;

  // Returns false once the reader stopped at malformed input.
  bool feed(std::span<const std::uint8_t> bytes);
  // Reports an incomplete final record as a truncation warning. The reader
  // then starts afresh.
  Profile finish();
  const Profile& current() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

Profile parse_profile(std::span<const std::uint8_t> bytes);
// Reads a file, gzip-compressed or not. Throws binio::InputError on I/O failure.
Profile read_profile(const std::filesystem::path& path);

}  // namespace jitprof::vmprof
