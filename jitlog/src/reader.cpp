// Record decoding. Layouts: ../shared/reference/pypy-jitlog-and-vmprof-formats.md §2.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <memory_resource>
#include <unordered_set>

#include "jitlog/jitlog.h"
#include "link.h"

namespace jitprof::jitlog {

// One arena: the forest's texts live as long as the forest and its copies.
struct ForestText {
  std::pmr::monotonic_buffer_resource arena{std::size_t{1} << 20};

  std::string_view copy(std::string_view text) {
    if (text.empty()) return {};
    auto* data = static_cast<char*>(arena.allocate(text.size(), 1));
    std::memcpy(data, text.data(), text.size());
    return {data, text.size()};
  }
};

namespace {

enum Mark : std::uint8_t {
  kInputArgs = 0x11,
  kResopMeta = 0x12,
  kResop = 0x13,
  kResopDescr = 0x14,
  kAsmAddr = 0x15,
  kAsm = 0x16,
  kTrace = 0x17,
  kTraceOpt = 0x18,
  kTraceAsm = 0x19,
  kStitchBridge = 0x1a,
  kStartTrace = 0x1b,
  kCounter = 0x1c,
  kInitMergePoint = 0x1d,
  kHeader = 0x1e,
  kMergePoint = 0x1f,
  kCommonPrefix = 0x20,
  kAbortTrace = 0x21,
  kSourceCode = 0x22,
  kRedirectAssembler = 0x23,
  kTmpCallback = 0x24,
};

const char* mark_name(std::uint8_t mark) {
  switch (mark) {
    case kInputArgs: return "INPUT_ARGS";
    case kResopMeta: return "RESOP_META";
    case kResop: return "RESOP";
    case kResopDescr: return "RESOP_DESCR";
    case kAsmAddr: return "ASM_ADDR";
    case kAsm: return "ASM";
    case kTrace: return "TRACE";
    case kTraceOpt: return "TRACE_OPT";
    case kTraceAsm: return "TRACE_ASM";
    case kStitchBridge: return "STITCH_BRIDGE";
    case kStartTrace: return "START_TRACE";
    case kCounter: return "JITLOG_COUNTER";
    case kInitMergePoint: return "INIT_MERGE_POINT";
    case kHeader: return "JITLOG_HEADER";
    case kMergePoint: return "MERGE_POINT";
    case kCommonPrefix: return "COMMON_PREFIX";
    case kAbortTrace: return "ABORT_TRACE";
    case kSourceCode: return "SOURCE_CODE";
    case kRedirectAssembler: return "REDIRECT_ASSEMBLER";
    case kTmpCallback: return "TMP_CALLBACK";
    default: return "unknown";
  }
}

// Bounds on single fields, far above anything PyPy writes, so that a corrupt
// length is reported instead of buffering the rest of the input.
constexpr std::uint32_t kMaxStringBytes = 64u << 20;
constexpr std::uint16_t kMaxMergePointSlots = 64;

// Merge point semantic types (MP_* in rjitlog.py).
enum MergeSemantic : std::uint8_t { kFilename = 0x01, kLineno = 0x02, kIndex = 0x04, kScope = 0x08, kOpcode = 0x10 };

struct MergeSlot {
  std::uint8_t semantic;
  bool is_int;
  std::string prefix;  // COMMON_PREFIX state of this slot
};

// Stores each distinct text and comma-separated list once in a ForestText.
class Interner {
 public:
  explicit Interner(ForestText& text) : text_(text) {}

  std::string_view text(std::string_view value) {
    if (value.empty()) return {};
    auto found = texts_.find(value);
    if (found != texts_.end()) return *found;
    return *texts_.insert(text_.copy(value)).first;
  }

  // "a,b,c" -> {"a", "b", "c"}; "" -> {}.
  std::span<const std::string_view> list(std::string_view joined) {
    if (joined.empty()) return {};
    auto found = lists_.find(joined);
    if (found != lists_.end()) return found->second;
    const auto count = static_cast<std::size_t>(std::count(joined.begin(), joined.end(), ',')) + 1;
    auto* items = static_cast<std::string_view*>(
        text_.arena.allocate(count * sizeof(std::string_view), alignof(std::string_view)));
    std::size_t begin = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t comma = std::min(joined.find(',', begin), joined.size());
      new (&items[i]) std::string_view(text(joined.substr(begin, comma - begin)));
      begin = comma + 1;
    }
    const std::span<const std::string_view> parts(items, count);
    lists_.emplace(text(joined), parts);
    return parts;
  }

 private:
  ForestText& text_;
  std::unordered_set<std::string_view> texts_;
  std::unordered_map<std::string_view, std::span<const std::string_view>> lists_;
};

// The fields of a RESOP line, cached by line: most lines repeat.
struct OpLine {
  std::string_view result;
  std::span<const std::string_view> args;
  std::string_view descr;
};

}  // namespace

struct JitlogReader::State {
  explicit State(Detail kept) : detail(kept) {}

  Detail detail;
  binio::RecordBuffer buffer;
  Forest forest;
  std::shared_ptr<ForestText> storage = std::make_shared<ForestText>();
  Interner interner{*storage};
  std::vector<std::optional<std::string_view>> op_names;  // by opnum
  std::unordered_map<std::string_view, OpLine> op_lines[2];  // by has_descr
  ForestText line_keys;  // the keys of `lines`, dropped with the reader
  bool stopped = false;
  bool saw_header = false;
  std::uint8_t last_mark = 0;

  // The trace and stage that context-dependent records (ops, merge points,
  // machine code) apply to. Indices, because traces is still growing.
  std::optional<std::size_t> trace_index;
  std::unordered_map<std::uint64_t, std::size_t> trace_by_id;
  bool stage_open = false;
  std::vector<MergeSlot> slots;  // per stage, from INIT_MERGE_POINT
  unsigned inline_depth = 0;
  std::uint64_t last_code_offset = 0;
  std::vector<std::uint16_t> unknown_opnums;
  // The open stage's ops and merge points, copied into it at its end: one
  // allocation of the exact size per stage instead of a growing vector's slack.
  std::vector<Operation> ops;
  std::vector<MergePoint> points;

  // A view into the input: valid while the record is being decoded.
  std::string_view read_text(binio::ByteCursor& in) {
    const std::uint64_t at = in.offset();
    const std::uint32_t length = in.u32le();
    if (length > kMaxStringBytes)
      in.fail_at(at, fmt::format("string length {} exceeds the limit of {} bytes", length, kMaxStringBytes));
    const auto bytes = in.bytes(length);
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
  }

  std::string read_string(binio::ByteCursor& in) { return std::string(read_text(in)); }

  std::uint64_t read_addr(binio::ByteCursor& in) { return in.uint_le(forest.header.word_size); }

  void parse_record(binio::ByteCursor& in) {
    const std::uint64_t at = in.offset();
    const std::uint8_t mark = in.u8();
    if (!saw_header && mark != kHeader)
      in.fail_at(at, fmt::format("not a jitlog: starts with 0x{:02x}, expected the header marker 0x1e", mark));
    switch (mark) {
      case kHeader: parse_header(in); break;
      case kStartTrace: parse_start_trace(in, at); break;
      case kTrace: parse_stage(in, at, StageKind::NoOpt); break;
      case kTraceOpt: parse_stage(in, at, StageKind::Opt); break;
      case kTraceAsm: parse_stage(in, at, StageKind::Asm); break;
      case kInputArgs: {
        const std::string_view args = read_text(in);
        current_stage(in, at, mark).input_args = interner.list(args);
        break;
      }
      case kResop: parse_op(in, at, false); break;
      case kResopDescr: parse_op(in, at, true); break;
      case kAsmAddr: parse_asm_addr(in, at); break;
      case kAsm: parse_asm(in, at); break;
      case kInitMergePoint: parse_init_merge_point(in, at); break;
      case kCommonPrefix: parse_common_prefix(in, at); break;
      case kMergePoint: parse_merge_point(in, at); break;
      case kStitchBridge: {
        const std::uint64_t descr = read_addr(in);
        const std::uint64_t address = read_addr(in);
        stitches.push_back({descr, address});
        break;
      }
      case kCounter: {
        const std::uint64_t number = read_addr(in);
        const auto type = static_cast<char>(in.u8());
        const std::int64_t count = in.i64le();
        if (type != 'e' && type != 'b' && type != 'l')
          in.fail_at(at + 1 + forest.header.word_size,
                     fmt::format("counter type 0x{:02x} is none of 'e', 'b', 'l'", static_cast<unsigned>(type)));
        forest.counters.push_back({type, number, count});
        break;
      }
      case kAbortTrace: {
        const std::uint64_t id = read_addr(in);
        aborted.push_back(id);
        break;
      }
      case kSourceCode: parse_source_code(in); break;
      case kRedirectAssembler: {
        Redirect redirect{};
        redirect.old_token = read_addr(in);
        redirect.new_token = read_addr(in);
        redirect.target = read_addr(in);
        forest.redirects.push_back(redirect);
        break;
      }
      case kTmpCallback: {
        const std::uint64_t token = read_addr(in);
        forest.tmp_callbacks.push_back({token, in.i64le()});
        break;
      }
      case kResopMeta:
        in.fail_at(at, "RESOP_META outside the header");
      default:
        in.fail_at(at, fmt::format("unknown marker 0x{:02x} (previous record: {})", mark, mark_name(last_mark)));
    }
    last_mark = mark;
    ++forest.records;
  }

  void parse_header(binio::ByteCursor& in) {
    const std::uint64_t version_at = in.offset();
    const std::uint16_t version = in.u16le();
    const std::uint8_t is_32bit = in.u8();
    std::string machine = read_string(in);
    const std::uint64_t meta_at = in.offset();
    if (in.u8() != kResopMeta) in.fail_at(meta_at, "header lacks its RESOP_META op table");
    const std::uint16_t count = in.u16le();
    std::unordered_map<std::uint16_t, std::string> names;
    for (std::uint16_t i = 0; i < count; ++i) {
      const std::uint16_t opnum = in.u16le();
      names[opnum] = read_string(in);
    }
    // Validate only once the whole record is here, so a split header is retried.
    if (version < 1 || version > 4)
      in.fail_at(version_at, fmt::format("jitlog version {} is not supported (1-4 are)", version));
    if (is_32bit > 1) in.fail_at(version_at + 2, fmt::format("word-size flag {} is neither 0 nor 1", is_32bit));
    Header& header = forest.header;
    header.version = version;
    header.word_size = is_32bit ? 4 : 8;
    header.machine = std::move(machine);
    for (auto& [opnum, name] : names) header.op_names[opnum] = std::move(name);
    op_names.clear();
    for (const auto& [opnum, name] : header.op_names) {
      if (opnum >= op_names.size()) op_names.resize(opnum + 1);
      op_names[opnum] = interner.text(name);
    }
    ++header.header_count;
    saw_header = true;
  }

  void parse_start_trace(binio::ByteCursor& in, std::uint64_t at) {
    Trace trace;
    trace.id = read_addr(in);
    const std::string kind = read_string(in);
    trace.start_descr = read_addr(in);
    if (forest.header.version >= 2) trace.jitdriver = read_string(in);
    if (kind != "loop" && kind != "bridge")
      in.fail_at(at + 1 + forest.header.word_size, fmt::format("trace type '{}' is neither loop nor bridge", kind));
    // PyPy numbers traces from one process-wide counter: a repeated id is not a
    // jitlog PyPy wrote, and would make "trace N" name two traces.
    if (const auto earlier = trace_by_id.find(trace.id); earlier != trace_by_id.end())
      in.fail_at(at + 1, fmt::format("trace {} was already started at byte offset {}: trace ids are unique", trace.id,
                                     forest.traces[earlier->second].file_offset));
    trace.logged_as_bridge = kind == "bridge";
    trace.kind = trace.logged_as_bridge ? TraceKind::Bridge : TraceKind::Loop;
    trace.file_offset = at;
    close_stage();
    trace_index = forest.traces.size();
    trace_by_id[trace.id] = *trace_index;
    forest.traces.push_back(std::move(trace));
    stage_open = false;
  }

  void parse_stage(binio::ByteCursor& in, std::uint64_t at, StageKind kind) {
    const std::uint64_t id = read_addr(in);
    const auto found = trace_by_id.find(id);
    if (found == trace_by_id.end())
      in.fail_at(at, fmt::format("{} stage of trace {} that no START_TRACE opened", stage_name(kind), id));
    close_stage();
    trace_index = found->second;
    Stage& opened = forest.traces[*trace_index].stages.emplace_back();
    opened.kind = kind;
    opened.file_offset = at;
    stage_open = true;
    slots.clear();
    inline_depth = 0;
    last_code_offset = 0;
  }

  Stage& current_stage(binio::ByteCursor& in, std::uint64_t at, std::uint8_t mark) {
    if (!stage_open) in.fail_at(at, fmt::format("{} record outside a trace stage", mark_name(mark)));
    return forest.traces[*trace_index].stages.back();
  }

  // Done before another stage opens and whenever the forest is handed out.
  void close_stage() {
    if (!stage_open) return;
    if (detail == Detail::Full) {
      Stage& stage = forest.traces[*trace_index].stages.back();
      stage.ops.assign(ops.begin(), ops.end());
      stage.merge_points.assign(std::make_move_iterator(points.begin()), std::make_move_iterator(points.end()));
    }
    ops.clear();
    points.clear();
    stage_open = false;
  }

  std::string_view op_name(std::uint16_t opnum, std::uint64_t at) {
    if (opnum < op_names.size() && op_names[opnum]) return *op_names[opnum];
    if (std::find(unknown_opnums.begin(), unknown_opnums.end(), opnum) == unknown_opnums.end()) {
      unknown_opnums.push_back(opnum);
      forest.warnings.push_back({at, fmt::format("opnum {} is not in the header's op table", opnum)});
    }
    return interner.text(fmt::format("#{}", opnum));
  }

  // "res,arg0,...,argN[,descr]": descr texts may contain spaces but, in all
  // PyPy output seen, no comma, so the descr is what follows the last comma.
  const OpLine& op_line(std::string_view line, bool has_descr) {
    auto& cache = op_lines[has_descr];
    auto found = cache.find(line);
    if (found != cache.end()) return found->second;
    OpLine parsed;
    std::string_view text = line;
    const std::size_t comma = text.find(',');
    parsed.result = interner.text(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    if (has_descr) {
      const std::size_t last = text.rfind(',');
      parsed.descr = interner.text(last == std::string_view::npos ? text : text.substr(last + 1));
      text = last == std::string_view::npos ? std::string_view{} : text.substr(0, last);
    }
    parsed.args = interner.list(text);
    return cache.emplace(line_keys.copy(line), parsed).first->second;
  }

  void parse_op(binio::ByteCursor& in, std::uint64_t at, bool has_descr) {
    Operation op;
    op.opnum = in.u16le();
    const std::string_view line = read_text(in);
    if (has_descr) op.descr_number = read_addr(in);
    std::string_view failargs;
    if (forest.header.version >= 2) failargs = read_text(in);
    current_stage(in, at, has_descr ? kResopDescr : kResop);

    op.name = op_name(op.opnum, at);
    if (detail == Detail::Full) {
      const OpLine& fields = op_line(line, has_descr);
      op.result = fields.result;
      op.args = fields.args;
      op.descr = fields.descr;
      op.failargs = interner.list(failargs);
    }

    if (op.name == "enter_portal_frame") ++inline_depth;
    if (op.name == "leave_portal_frame" && inline_depth > 0) --inline_depth;
    ops.push_back(op);
  }

  void parse_asm_addr(binio::ByteCursor& in, std::uint64_t at) {
    CodeRange range;
    range.start = read_addr(in);
    range.end = read_addr(in);
    current_stage(in, at, kAsmAddr);
    if (range.end < range.start)
      in.fail_at(at, fmt::format("code range 0x{:x}..0x{:x} ends before it starts", range.start, range.end));
    Trace& owner = forest.traces[*trace_index];
    owner.code = range;
    owner.code_sequence = forest.records;
  }

  void parse_asm(binio::ByteCursor& in, std::uint64_t at) {
    const std::uint16_t offset16 = in.u16le();
    const std::string_view input = read_text(in);
    current_stage(in, at, kAsm);
    if (ops.empty()) in.fail_at(at, "ASM record before any operation of its stage");
    const std::string_view bytes = detail == Detail::Full ? storage->copy(input) : std::string_view{};
    // The offset is written as 16 bits; ops are laid out in order, so the real
    // offset is the first value >= the previous op's with the same low bits.
    std::uint64_t offset = (last_code_offset & ~std::uint64_t{0xffff}) | offset16;
    if (offset < last_code_offset) offset += 0x10000;
    last_code_offset = offset;
    ops.back().code = MachineCode{offset, {reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()}};
  }

  void parse_init_merge_point(binio::ByteCursor& in, std::uint64_t at) {
    const std::uint16_t count = in.u16le();
    if (count > kMaxMergePointSlots)
      in.fail_at(at + 1, fmt::format("{} merge point slots exceed the limit of {}", count, kMaxMergePointSlots));
    std::vector<MergeSlot> declared;
    for (std::uint16_t i = 0; i < count; ++i) {
      const std::uint64_t slot_at = in.offset();
      const std::uint8_t semantic = in.u8();
      const auto type = static_cast<char>(in.u8());
      if (type != 's' && type != 'i')
        in.fail_at(slot_at + 1, fmt::format("merge point slot type 0x{:02x} is neither 's' nor 'i'",
                                            static_cast<unsigned>(type)));
      declared.push_back({semantic, type == 'i', {}});
    }
    current_stage(in, at, kInitMergePoint);
    slots = std::move(declared);
  }

  void parse_common_prefix(binio::ByteCursor& in, std::uint64_t at) {
    const std::uint8_t index = in.u8();
    std::string prefix = read_string(in);
    current_stage(in, at, kCommonPrefix);
    if (index >= slots.size())
      in.fail_at(at + 1, fmt::format("prefix for merge point slot {} of {}", index, slots.size()));
    slots[index].prefix = std::move(prefix);
  }

  void parse_merge_point(binio::ByteCursor& in, std::uint64_t at) {
    if (slots.empty()) in.fail_at(at, "MERGE_POINT before INIT_MERGE_POINT declared its slots");
    MergePoint point;
    for (auto& slot : slots) {
      const std::uint64_t value_at = in.offset();
      const std::uint8_t tag = in.u8();
      std::int64_t number = 0;
      std::string text;
      if (slot.is_int) {
        if (tag != 0x00) in.fail_at(value_at, fmt::format("integer merge point value tagged 0x{:02x}", tag));
        number = in.i64le();
      } else if (tag == 0xff) {
        text = read_string(in);
      } else if (tag == 0xef) {
        text = slot.prefix;
      } else if (tag == 0x00) {
        text.assign(slot.prefix).append(read_text(in));
      } else {
        in.fail_at(value_at, fmt::format("string merge point value tagged 0x{:02x}", tag));
      }
      switch (slot.semantic) {
        case kFilename: point.file = std::move(text); break;
        case kLineno: point.line = number; break;
        case kIndex: point.bytecode_index = number; break;
        case kScope: point.function = std::move(text); break;
        case kOpcode: point.opcode = std::move(text); break;
        default: break;  // generic values of other jitdrivers carry no known meaning
      }
    }
    current_stage(in, at, kMergePoint);
    if (!point.file.empty()) forest.merge_point_files.insert(point.file);
    point.op_index = ops.size();
    point.inline_depth = inline_depth;
    points.push_back(std::move(point));
  }

  void parse_source_code(binio::ByteCursor& in) {
    std::string file = read_string(in);
    const std::uint16_t count = in.u16le();
    std::map<std::uint32_t, SourceLine> lines;
    for (std::uint16_t i = 0; i < count; ++i) {
      const std::uint16_t lineno = in.u16le();
      const std::uint8_t indent = in.u8();
      lines[lineno] = SourceLine{indent, read_string(in)};
    }
    auto& known = forest.source_code[file];
    known.merge(lines);
  }

  std::vector<Stitch> stitches;
  std::vector<std::uint64_t> aborted;
};

JitlogReader::JitlogReader(Detail detail) : state_(std::make_unique<State>(detail)) {}
JitlogReader::~JitlogReader() = default;

bool JitlogReader::feed(std::span<const std::uint8_t> bytes) {
  State& s = *state_;
  if (s.stopped) return false;
  s.buffer.append(bytes);
  try {
    s.buffer.drain([&](binio::ByteCursor& in) { s.parse_record(in); });
  } catch (const binio::ParseError& error) {
    s.forest.error = Diagnostic{error.offset(), error.detail()};
    s.stopped = true;
    s.close_stage();
  }
  return !s.stopped;
}

std::size_t JitlogReader::traces_so_far() const { return state_->forest.traces.size(); }

Forest JitlogReader::finish() {
  State& s = *state_;
  Forest& forest = s.forest;
  forest.bytes_read = s.buffer.consumed_offset() + s.buffer.pending_size();
  if (!s.stopped && s.buffer.pending_size() > 0) {
    const std::uint64_t at = s.buffer.consumed_offset();
    forest.warnings.push_back(
        {at, fmt::format("truncated: incomplete record at byte offset {} ({} bytes); "
                         "everything before it was read",
                         at, s.buffer.pending_size())});
  }
  s.close_stage();
  forest.text = s.storage;
  if (!s.saw_header && !forest.error)
    forest.error = Diagnostic{0, forest.bytes_read == 0 ? "empty file: no jitlog header" : "no complete jitlog header"};
  link_forest(forest, s.stitches, s.aborted);
  Forest result = std::move(forest);
  state_ = std::make_unique<State>(state_->detail);
  return result;
}

Forest parse_jitlog(std::span<const std::uint8_t> bytes) {
  JitlogReader reader;
  reader.feed(bytes);
  return reader.finish();
}

Forest read_jitlog(const std::filesystem::path& path) {
  JitlogReader reader;
  std::uint64_t delivered = 0;
  try {
    binio::read_file_chunks(path, [&](std::span<const std::uint8_t> chunk) {
      delivered += chunk.size();
      reader.feed(chunk);
    });
  } catch (const binio::InputError& error) {
    if (delivered == 0) throw;
    // Broken compression mid-file: keep what was decoded before it.
    Forest forest = reader.finish();
    if (!forest.error) forest.error = Diagnostic{delivered, error.what()};
    return forest;
  }
  return reader.finish();
}

}  // namespace jitprof::jitlog
