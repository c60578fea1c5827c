#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>

#include "vmprof/profile.h"

namespace jitprof::vmprof {
namespace {

using binio::ByteCursor;

// Marker bytes (vmprof's src/vmprof.h).
enum Marker : std::uint8_t {
  kStackTrace = 0x01,
  kVirtualIp = 0x02,
  kTrailer = 0x03,
  kInterpName = 0x04,  // pre-2016 writers only
  kHeader = 0x05,
  kTimeAndZone = 0x06,
  kMeta = 0x07,
  kNativeSymbols = 0x08,
};

// Format versions that change the layout.
constexpr std::uint16_t kVersionThreadId = 1;   // a thread id follows each stack
constexpr std::uint16_t kVersionMemory = 3;     // implies memory profiling when there is no mode byte
constexpr std::uint16_t kVersionModeAware = 4;  // a mode byte follows the version
constexpr std::uint16_t kVersionDuration = 5;   // the trailer carries a timestamp
constexpr std::uint16_t kNewestVersion = 6;

constexpr std::uint8_t kProfileMemory = 0x01;
constexpr std::uint8_t kProfileRpython = 0x08;

// Sanity limits, so that a corrupt length never turns into a huge allocation.
// Real writers stay far below: stacks have at most 1020 words, names 1023 bytes.
constexpr std::int64_t kMaxStackWords = std::int64_t{1} << 20;
constexpr std::int64_t kMaxStringBytes = std::int64_t{1} << 20;

constexpr std::uint64_t kFirstKind = static_cast<std::uint64_t>(FrameKind::Interpreted);
constexpr std::uint64_t kLastKind = static_cast<std::uint64_t>(FrameKind::Native);

const char* record_name(std::uint8_t marker) {
  switch (marker) {
    case kStackTrace: return "stack trace";
    case kVirtualIp: return "code name (VIRTUAL_IP)";
    case kTrailer: return "trailer";
    case kInterpName: return "interpreter name";
    case kHeader: return "header";
    case kTimeAndZone: return "start time";
    case kMeta: return "meta";
    case kNativeSymbols: return "native symbol";
    default: return "unknown";
  }
}

// Thrown out of RecordBuffer::drain when the bytes after a trailer are not a
// new profile: the reader ignores the rest of the input.
struct IgnoreRest {};

// Little-endian word of 1..8 bytes from memory the caller has bounds-checked.
std::uint64_t load_le(const std::uint8_t* bytes, unsigned width) {
  std::uint64_t value = 0;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&value, bytes, width);
  } else {
    for (unsigned i = 0; i < width; ++i) value |= std::uint64_t{bytes[i]} << (8 * i);
  }
  return value;
}

std::int64_t sign_extend(std::uint64_t value, unsigned width) {
  if (width >= 8) return static_cast<std::int64_t>(value);
  const std::uint64_t sign_bit = std::uint64_t{1} << (8 * width - 1);
  return static_cast<std::int64_t>((value ^ sign_bit) - sign_bit);
}

std::uint64_t magnitude(std::int64_t value) {
  const auto bits = static_cast<std::uint64_t>(value);
  return value < 0 ? 0 - bits : bits;
}

// One word of a non-RPython (CPython) stack. Words are zero-extended first so
// that a 32-bit writer's addresses above 2 GiB stay addresses; only a 64-bit
// "negative" word (never a user-space address) or 0 is a line entry.
Frame classify_cpython_word(std::uint64_t word) {
  const auto as_signed = static_cast<std::int64_t>(word);
  if (as_signed <= 0) return {FrameKind::Line, magnitude(as_signed)};
  // Code objects are aligned; native function addresses are tagged with bit 0.
  return {(word & 1) ? FrameKind::Native : FrameKind::Interpreted, word};
}

struct StaticHeader {
  unsigned word_size = 8;
  unsigned address_size = 8;
  bool win64 = false;
  std::uint64_t period_usec = 0;
};

// The 5 words {0, 3, 0, period, win64} in the writer's `long`. Where the 3
// lands tells the word size (vmprof-python's detect_file_sizes). The fixed
// words are checked byte by byte so that non-header bytes are rejected as
// early as possible. Returns nullopt if the bytes are not a static header;
// throws NeedMoreData if there are too few bytes to tell.
std::optional<StaticHeader> read_static_header(ByteCursor& in) {
  for (int i = 0; i < 4; ++i)
    if (in.u8() != 0) return std::nullopt;
  StaticHeader header;
  const std::uint8_t byte4 = in.u8();
  if (byte4 == 3) {
    header.word_size = 4;
  } else if (byte4 == 0) {
    for (int i = 5; i < 8; ++i)
      if (in.u8() != 0) return std::nullopt;
    if (in.u8() != 3) return std::nullopt;
    header.word_size = 8;
  } else {
    return std::nullopt;
  }
  // The rest of word 1 and all of word 2 are zero.
  for (unsigned i = 1; i < 2 * header.word_size; ++i)
    if (in.u8() != 0) return std::nullopt;
  header.period_usec = in.uint_le(header.word_size);
  const std::uint64_t platform = in.uint_le(header.word_size);
  header.address_size = header.word_size;
  if (platform == 1 && header.word_size == 4) {
    // Windows 64: `long` is 4 bytes but pointers are 8.
    header.win64 = true;
    header.address_size = 8;
  } else if (platform != 0) {
    return std::nullopt;
  }
  return header;
}

}  // namespace

const char* frame_kind_name(FrameKind kind) {
  switch (kind) {
    case FrameKind::Interpreted: return "interpreted";
    case FrameKind::Blackhole: return "blackhole";
    case FrameKind::Jitted: return "jitted";
    case FrameKind::Jitting: return "jitting";
    case FrameKind::Gc: return "gc";
    case FrameKind::Assembler: return "assembler";
    case FrameKind::Native: return "native";
    case FrameKind::Line: return "line";
  }
  return "unknown";
}

CodeName parse_code_name(const std::string& raw) {
  CodeName name;
  name.raw = raw;
  // "kind:function:line:file". The file is everything after the third colon,
  // since CPython file names may contain ':' (Windows drive letters).
  const auto first = raw.find(':');
  if (first == std::string::npos || first == 0) return name;
  const auto second = raw.find(':', first + 1);
  if (second == std::string::npos) return name;
  const auto third = raw.find(':', second + 1);
  if (third == std::string::npos) return name;

  const char* line_begin = raw.data() + second + 1;
  const char* line_end = raw.data() + third;
  std::int64_t line = 0;
  const auto [end, ec] = std::from_chars(line_begin, line_end, line);
  if (ec != std::errc() || end != line_end || line_begin == line_end) return name;

  name.kind = raw.substr(0, first);
  name.function = raw.substr(first + 1, second - first - 1);
  name.line = line;
  name.file = raw.substr(third + 1);
  return name;
}

const CodeName* Profile::code_name(std::uint64_t uid) const {
  if (auto it = code_names.find(uid); it != code_names.end()) return &it->second;
  // vmprof-python keeps both record kinds in one table; code uids are even and
  // native addresses odd, so they cannot collide.
  if (auto it = native_symbols.find(uid); it != native_symbols.end()) return &it->second;
  return nullptr;
}

struct ProfileReader::State {
  enum class Phase {
    StaticHeader,  // expecting the first static header
    Records,
    AfterTrailer,  // expecting a new static header or the end of the input
    IgnoringRest,  // bytes after a trailer that are not a new profile
    Stopped,       // malformed input
  };

  binio::RecordBuffer buffer;
  Profile profile;
  Phase phase = Phase::StaticHeader;
  // What the undecoded bytes start with, for the truncation warning.
  const char* pending_record = "static header";
  std::uint64_t ignored_from = 0;             // offset of the bytes after the trailer
  std::optional<std::size_t> ignored_warning;  // index into profile.warnings

  void parse_next(ByteCursor& in);
  void parse_static_header(ByteCursor& in);
  void parse_record(ByteCursor& in);
  void read_stack_trace(ByteCursor& in, std::uint64_t record_offset);
  void read_header(ByteCursor& in);
  void read_trailer(ByteCursor& in);
  std::pair<std::uint64_t, std::string> read_named_address(ByteCursor& in);
  std::string read_string(ByteCursor& in, const char* what);
  std::int64_t read_long(ByteCursor& in) { return in.int_le(profile.header.word_size); }
  static Timestamp read_timestamp(ByteCursor& in);

  void describe_ignored_bytes();
};

void ProfileReader::State::parse_next(ByteCursor& in) {
  if (phase == Phase::Records) {
    parse_record(in);
  } else {
    parse_static_header(in);
  }
}

void ProfileReader::State::parse_static_header(ByteCursor& in) {
  pending_record = "static header";
  const std::uint64_t start = in.offset();
  const auto header = read_static_header(in);
  if (!header) {
    // PyPy starts a new profile with a new static header when vmprof is
    // enabled again on the same file; anything else after a trailer is junk.
    if (phase == Phase::AfterTrailer) throw IgnoreRest{};
    in.fail_at(start, "not a vmprof profile: it must start with the words 0, 3, 0, period, platform");
  }
  Header& h = profile.header;
  h.word_size = header->word_size;
  h.address_size = header->address_size;
  h.win64 = header->win64;
  h.period_usec = header->period_usec;
  profile.has_trailer = false;
  phase = Phase::Records;
}

void ProfileReader::State::parse_record(ByteCursor& in) {
  const std::uint64_t start = in.offset();
  const std::uint8_t marker = in.u8();
  pending_record = record_name(marker);
  switch (marker) {
    case kStackTrace:
      read_stack_trace(in, start);
      break;
    case kVirtualIp: {
      auto [uid, text] = read_named_address(in);
      profile.code_names.insert_or_assign(uid, parse_code_name(text));
      break;
    }
    case kNativeSymbols: {
      auto [address, text] = read_named_address(in);
      profile.native_symbols.insert_or_assign(address, parse_code_name(text));
      break;
    }
    case kTrailer:
      read_trailer(in);
      break;
    case kInterpName:
      profile.header.interpreter = in.string(in.u8());
      break;
    case kHeader:
      read_header(in);
      break;
    case kTimeAndZone: {
      const Timestamp time = read_timestamp(in);
      // A file with several profiles started when the first one did.
      if (!profile.start_time) profile.start_time = time;
      break;
    }
    case kMeta: {
      std::string key = read_string(in, "meta key");
      std::string value = read_string(in, "meta value");
      profile.meta.emplace_back(std::move(key), std::move(value));
      break;
    }
    default:
      in.fail_at(start, fmt::format("unknown marker 0x{:02x}", marker));
  }
}

// count, depth, depth stack words, [thread id], [rss]. The whole record is
// taken from the buffer before decoding, so an incomplete record is retried
// only once it can be complete, and nothing is half-added.
void ProfileReader::State::read_stack_trace(ByteCursor& in, std::uint64_t record_offset) {
  const Header& h = profile.header;
  const std::uint64_t count_offset = in.offset();
  const std::int64_t count = read_long(in);
  if (count < 0) in.fail_at(count_offset, fmt::format("negative sample count {}", count));
  const std::uint64_t depth_offset = in.offset();
  const std::int64_t depth = read_long(in);
  if (depth < 0 || depth > kMaxStackWords)
    in.fail_at(depth_offset, fmt::format("stack depth of {} words is out of range (0 to {})", depth, kMaxStackWords));
  const bool pairs = h.is_rpython();
  if (pairs && depth % 2 != 0)
    in.fail_at(depth_offset,
               fmt::format("odd stack depth {} in an RPython profile, whose words are (kind, value) pairs", depth));

  const unsigned width = h.address_size;
  const bool has_thread_id = h.version >= kVersionThreadId;
  const bool has_rss = h.profiles_memory();
  const auto words = static_cast<std::size_t>(depth) + has_thread_id + has_rss;
  const std::uint64_t stack_offset = in.offset();
  const std::uint8_t* word = in.bytes(words * width).data();

  auto& frames = profile.frames;
  const std::size_t first_frame = frames.size();
  const auto depth_words = static_cast<std::size_t>(depth);
  if (pairs) {
    for (std::size_t i = 0; i < depth_words; i += 2, word += 2 * width) {
      const std::uint64_t kind = load_le(word, width);
      if (kind < kFirstKind || kind > kLastKind) {
        frames.resize(first_frame);
        in.fail_at(stack_offset + i * width, fmt::format("unknown stack entry kind {}", kind));
      }
      frames.push_back({static_cast<FrameKind>(kind), load_le(word + width, width)});
    }
  } else if (h.profiles_lines()) {
    // CPython line mode: each frame is (line number, code uid), and a native
    // frame is (0, address | 1).
    for (std::size_t i = 0; i < depth_words; ++i, word += width) {
      const std::uint64_t value = load_le(word, width);
      if (i % 2 == 0)
        frames.push_back({FrameKind::Line, magnitude(sign_extend(value, width))});
      else
        frames.push_back(classify_cpython_word(value));
    }
  } else {
    for (std::size_t i = 0; i < depth_words; ++i, word += width)
      frames.push_back(classify_cpython_word(load_le(word, width)));
  }

  Sample sample;
  sample.first_frame = first_frame;
  sample.depth = static_cast<std::uint32_t>(frames.size() - first_frame);
  sample.count = static_cast<std::uint64_t>(count);
  sample.thread_id = 0;
  if (has_thread_id) {
    sample.thread_id = load_le(word, width);
    word += width;
  }
  if (has_rss) sample.rss_kb = load_le(word, width);
  sample.file_offset = record_offset;
  profile.samples.push_back(sample);
}

void ProfileReader::State::read_header(ByteCursor& in) {
  const std::uint64_t version_offset = in.offset();
  const std::uint16_t version = in.u16be();  // the only big-endian field
  if (version > kNewestVersion)
    in.fail_at(version_offset,
               fmt::format("unsupported profile version {} (this reader knows 0 to {})", version, kNewestVersion));
  std::uint8_t flags = version >= kVersionModeAware ? in.u8() : 0;
  std::string name = in.string(in.u8());
  if (version < kVersionModeAware) {
    // Without a mode byte, vmprof-python derives the mode like this.
    if (version == kVersionMemory) flags |= kProfileMemory;
    if (name == "pypy") flags |= kProfileRpython;
  }
  Header& h = profile.header;
  h.version = version;
  h.flags = flags;
  h.interpreter = std::move(name);
}

void ProfileReader::State::read_trailer(ByteCursor& in) {
  // Writers before version 5 put no timestamp in the trailer.
  if (profile.header.version >= kVersionDuration) profile.end_time = read_timestamp(in);
  profile.has_trailer = true;
  phase = Phase::AfterTrailer;
}

Timestamp ProfileReader::State::read_timestamp(ByteCursor& in) {
  Timestamp time;
  time.seconds = in.i64le();
  time.microseconds = in.i64le();
  in.bytes(8);  // time zone, always zeros
  return time;
}

// VIRTUAL_IP and NATIVE_SYMBOLS: address-sized uid, long length, name bytes.
std::pair<std::uint64_t, std::string> ProfileReader::State::read_named_address(ByteCursor& in) {
  const std::uint64_t uid = in.uint_le(profile.header.address_size);
  return {uid, read_string(in, "name")};
}

std::string ProfileReader::State::read_string(ByteCursor& in, const char* what) {
  const std::uint64_t length_offset = in.offset();
  const std::int64_t length = read_long(in);
  if (length < 0 || length > kMaxStringBytes)
    in.fail_at(length_offset, fmt::format("{} length {} is out of range (0 to {})", what, length, kMaxStringBytes));
  return in.string(static_cast<std::size_t>(length));
}

void ProfileReader::State::describe_ignored_bytes() {
  // Rewritten as more input arrives, so the count covers all of it.
  std::string message = fmt::format("ignored {} bytes after the trailer at byte offset {}: they do not start a new profile",
                                    profile.bytes_read - ignored_from, ignored_from);
  if (ignored_warning) {
    profile.warnings[*ignored_warning].message = std::move(message);
  } else {
    ignored_warning = profile.warnings.size();
    profile.warnings.push_back({ignored_from, std::move(message)});
  }
}

ProfileReader::ProfileReader() : state_(std::make_unique<State>()) {}
ProfileReader::~ProfileReader() = default;
ProfileReader::ProfileReader(ProfileReader&&) noexcept = default;
ProfileReader& ProfileReader::operator=(ProfileReader&&) noexcept = default;

bool ProfileReader::feed(std::span<const std::uint8_t> bytes) {
  State& s = *state_;
  s.profile.bytes_read += bytes.size();
  switch (s.phase) {
    case State::Phase::Stopped:
      return false;
    case State::Phase::IgnoringRest:
      s.describe_ignored_bytes();
      return true;
    default:
      break;
  }
  s.buffer.append(bytes);
  try {
    s.buffer.drain([&s](ByteCursor& in) { s.parse_next(in); });
  } catch (const binio::ParseError& error) {
    s.profile.error = Diagnostic{error.offset(), error.detail()};
    s.phase = State::Phase::Stopped;
    s.buffer = {};
    return false;
  } catch (const IgnoreRest&) {
    s.phase = State::Phase::IgnoringRest;
    s.ignored_from = s.buffer.consumed_offset();
    s.buffer = {};
    s.describe_ignored_bytes();
  }
  return true;
}

Profile ProfileReader::finish() {
  State& s = *state_;
  const std::size_t pending = s.buffer.pending_size();
  const std::uint64_t offset = s.buffer.consumed_offset();
  if (s.phase == State::Phase::StaticHeader) {
    s.profile.error = Diagnostic{
        offset, fmt::format("not a vmprof profile: {} bytes are too short for the static header", s.profile.bytes_read)};
  } else if ((s.phase == State::Phase::Records || s.phase == State::Phase::AfterTrailer) && pending > 0) {
    s.profile.warnings.push_back(
        {offset, fmt::format("truncated: incomplete {} record at byte offset {} ({} bytes)", s.pending_record, offset,
                             pending)});
  }
  Profile result = std::move(s.profile);
  state_ = std::make_unique<State>();
  return result;
}

const Profile& ProfileReader::current() const { return state_->profile; }

Profile parse_profile(std::span<const std::uint8_t> bytes) {
  // In slices, so that the record buffer holds a slice rather than a copy of
  // the whole input.
  constexpr std::size_t kSlice = std::size_t{1} << 20;
  ProfileReader reader;
  for (std::size_t at = 0; at < bytes.size(); at += kSlice)
    reader.feed(bytes.subspan(at, std::min(kSlice, bytes.size() - at)));
  return reader.finish();
}

Profile read_profile(const std::filesystem::path& path) {
  ProfileReader reader;
  binio::read_file_chunks(path, [&reader](std::span<const std::uint8_t> chunk) { reader.feed(chunk); });
  return reader.finish();
}

}  // namespace jitprof::vmprof
