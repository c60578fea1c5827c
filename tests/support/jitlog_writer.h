// A test-only encoder of PyPy's binary jitlog: writes records the way
// rjitlog lays them out. Shared by the jitlog tests and the benchmarks.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace jitprof::testing {

using Bytes = std::vector<std::uint8_t>;

// ===========================================================================
// Test-only encoder: writes records the way PyPy's rjitlog lays them out.
// ===========================================================================

namespace mark {
constexpr std::uint8_t kInputArgs = 0x11;
constexpr std::uint8_t kResopMeta = 0x12;
constexpr std::uint8_t kResop = 0x13;
constexpr std::uint8_t kResopDescr = 0x14;
constexpr std::uint8_t kAsmAddr = 0x15;
constexpr std::uint8_t kAsm = 0x16;
constexpr std::uint8_t kTrace = 0x17;
constexpr std::uint8_t kTraceOpt = 0x18;
constexpr std::uint8_t kTraceAsm = 0x19;
constexpr std::uint8_t kStitchBridge = 0x1a;
constexpr std::uint8_t kStartTrace = 0x1b;
constexpr std::uint8_t kCounter = 0x1c;
constexpr std::uint8_t kInitMergePoint = 0x1d;
constexpr std::uint8_t kHeader = 0x1e;
constexpr std::uint8_t kMergePoint = 0x1f;
constexpr std::uint8_t kCommonPrefix = 0x20;
constexpr std::uint8_t kAbortTrace = 0x21;
constexpr std::uint8_t kSourceCode = 0x22;
constexpr std::uint8_t kRedirectAssembler = 0x23;
constexpr std::uint8_t kTmpCallback = 0x24;
}  // namespace mark

// Opnums as in PyPy 7.3.11's table (Appendix A), plus one above 255.
namespace opnum {
constexpr std::uint16_t kJump = 1;
constexpr std::uint16_t kFinish = 2;
constexpr std::uint16_t kLabel = 4;
constexpr std::uint16_t kGuardTrue = 7;
constexpr std::uint16_t kGuardFalse = 8;
constexpr std::uint16_t kGuardValue = 11;
constexpr std::uint16_t kIntAdd = 32;
constexpr std::uint16_t kIntMul = 34;
constexpr std::uint16_t kIntLt = 92;
constexpr std::uint16_t kIncrementDebugCounter = 175;
constexpr std::uint16_t kEnterPortalFrame = 193;
constexpr std::uint16_t kLeavePortalFrame = 194;
constexpr std::uint16_t kCallAssemblerR = 223;
constexpr std::uint16_t kCallAssemblerI = 225;
constexpr std::uint16_t kWide = 0x1234;  // a u16 opnum that does not fit a byte
}  // namespace opnum

using OpTable = std::vector<std::pair<std::uint16_t, std::string>>;

// Deliberately not sorted by opnum: PyPy writes dict iteration order.
inline const OpTable& test_ops() {
  static const OpTable ops = {
      {opnum::kLabel, "label"},
      {opnum::kWide, "wide_future_op"},
      {opnum::kJump, "jump"},
      {opnum::kGuardFalse, "guard_false"},
      {opnum::kGuardTrue, "guard_true"},
      {opnum::kIntAdd, "int_add"},
      {opnum::kFinish, "finish"},
      {opnum::kGuardValue, "guard_value"},
      {opnum::kIntMul, "int_mul"},
      {opnum::kIntLt, "int_lt"},
      {opnum::kIncrementDebugCounter, "increment_debug_counter"},
      {opnum::kLeavePortalFrame, "leave_portal_frame"},
      {opnum::kEnterPortalFrame, "enter_portal_frame"},
      {opnum::kCallAssemblerR, "call_assembler_r"},
      {opnum::kCallAssemblerI, "call_assembler_i"},
  };
  return ops;
}

// Merge point semantic types (MP_* in rjitlog.py).
constexpr std::uint8_t kMpFilename = 0x01;
constexpr std::uint8_t kMpLineno = 0x02;
constexpr std::uint8_t kMpIndex = 0x04;
constexpr std::uint8_t kMpScope = 0x08;
constexpr std::uint8_t kMpOpcode = 0x10;

using MergeSlots = std::vector<std::pair<std::uint8_t, char>>;

// PyPy's get_location order on the wire: filename, lineno, scope, index, opcode.
inline const MergeSlots& pypy_slots() {
  static const MergeSlots slots = {
      {kMpFilename, 's'}, {kMpLineno, 'i'}, {kMpScope, 's'}, {kMpIndex, 'i'}, {kMpOpcode, 's'}};
  return slots;
}

// One MERGE_POINT value in one of its wire forms.
struct MpValue {
  enum class Form { Full, Prefix, PrefixPlusSuffix, Int };
  Form form;
  std::string text;
  std::int64_t number = 0;
};
inline MpValue mp_full(std::string text) { return {MpValue::Form::Full, std::move(text)}; }          // 0xff + str
inline MpValue mp_prefix() { return {MpValue::Form::Prefix, {}}; }                                     // 0xef
inline MpValue mp_suffix(std::string text) { return {MpValue::Form::PrefixPlusSuffix, std::move(text)}; }  // 0x00 + str
inline MpValue mp_int(std::int64_t number) { return {MpValue::Form::Int, {}, number}; }                 // 0x00 + i64

inline std::vector<MpValue> pypy_point(const std::string& file, std::int64_t line, const std::string& scope,
                                std::int64_t index, const std::string& opcode) {
  return {mp_full(file), mp_int(line), mp_full(scope), mp_int(index), mp_full(opcode)};
}

class JitlogWriter {
 public:
  // `word` is the writer's address size: 8 on 64-bit PyPy, 4 on 32-bit.
  explicit JitlogWriter(std::uint16_t version = 4, unsigned word = 8) : version_(version), word_(word) {}

  // JITLOG_HEADER with its embedded RESOP_META op table.
  JitlogWriter& header(const std::string& machine = "x86_64", const OpTable& ops = test_ops()) {
    return raw_header(version_, word_ == 4 ? 1 : 0, machine, ops);
  }
  JitlogWriter& raw_header(std::uint16_t version, std::uint8_t is_32bit, const std::string& machine,
                           const OpTable& ops) {
    begin(mark::kHeader);
    u16(version);
    u8(is_32bit);
    str(machine);
    u8(mark::kResopMeta);
    u16(static_cast<std::uint16_t>(ops.size()));
    for (const auto& [number, name] : ops) {
      u16(number);
      str(name);
    }
    return *this;
  }
  // Version 1 has no jitdriver name.
  JitlogWriter& start_trace(std::uint64_t id, const std::string& kind, std::uint64_t descr,
                            const std::string& jitdriver = "") {
    begin(mark::kStartTrace);
    addr(id);
    str(kind);
    addr(descr);
    if (version_ >= 2) str(jitdriver);
    return *this;
  }
  JitlogWriter& trace(std::uint64_t id) { return stage(mark::kTrace, id); }
  JitlogWriter& trace_opt(std::uint64_t id) { return stage(mark::kTraceOpt, id); }
  JitlogWriter& trace_asm(std::uint64_t id) { return stage(mark::kTraceAsm, id); }
  JitlogWriter& input_args(const std::string& args) {
    begin(mark::kInputArgs);
    str(args);
    return *this;
  }
  // Versions 1 has no failargs.
  JitlogWriter& resop(std::uint16_t number, const std::string& line, const std::string& failargs = "") {
    begin(mark::kResop);
    u16(number);
    str(line);
    if (version_ >= 2) str(failargs);
    return *this;
  }
  JitlogWriter& resop_descr(std::uint16_t number, const std::string& line, std::uint64_t descr,
                            const std::string& failargs = "") {
    begin(mark::kResopDescr);
    u16(number);
    str(line);
    addr(descr);
    if (version_ >= 2) str(failargs);
    return *this;
  }
  JitlogWriter& asm_addr(std::uint64_t start, std::uint64_t end) {
    begin(mark::kAsmAddr);
    addr(start);
    addr(end);
    return *this;
  }
  JitlogWriter& machine_code(std::uint16_t offset, const Bytes& code) {  // ASM
    begin(mark::kAsm);
    u16(offset);
    u32(static_cast<std::uint32_t>(code.size()));
    bytes_.insert(bytes_.end(), code.begin(), code.end());
    return *this;
  }
  JitlogWriter& init_merge_point(const MergeSlots& slots = pypy_slots()) {
    begin(mark::kInitMergePoint);
    u16(static_cast<std::uint16_t>(slots.size()));
    for (const auto& [semantic, type] : slots) {
      u8(semantic);
      u8(static_cast<std::uint8_t>(type));
    }
    return *this;
  }
  JitlogWriter& merge_point(const std::vector<MpValue>& values) {
    begin(mark::kMergePoint);
    for (const MpValue& value : values) {
      switch (value.form) {
        case MpValue::Form::Full: u8(0xff); str(value.text); break;
        case MpValue::Form::Prefix: u8(0xef); break;
        case MpValue::Form::PrefixPlusSuffix: u8(0x00); str(value.text); break;
        case MpValue::Form::Int: u8(0x00); put(static_cast<std::uint64_t>(value.number), 8); break;
      }
    }
    return *this;
  }
  JitlogWriter& common_prefix(std::uint8_t index, const std::string& prefix) {
    begin(mark::kCommonPrefix);
    u8(index);
    str(prefix);
    return *this;
  }
  JitlogWriter& stitch_bridge(std::uint64_t descr, std::uint64_t block_start) {
    begin(mark::kStitchBridge);
    addr(descr);
    addr(block_start);
    return *this;
  }
  JitlogWriter& counter(std::uint64_t number, char type, std::int64_t count) {
    begin(mark::kCounter);
    addr(number);
    u8(static_cast<std::uint8_t>(type));
    put(static_cast<std::uint64_t>(count), 8);
    return *this;
  }
  JitlogWriter& abort_trace(std::uint64_t id) {
    begin(mark::kAbortTrace);
    addr(id);
    return *this;
  }
  JitlogWriter& redirect_assembler(std::uint64_t old_token, std::uint64_t new_token, std::uint64_t target) {
    begin(mark::kRedirectAssembler);
    addr(old_token);
    addr(new_token);
    addr(target);
    return *this;
  }
  JitlogWriter& tmp_callback(std::uint64_t token, std::int64_t number) {
    begin(mark::kTmpCallback);
    addr(token);
    put(static_cast<std::uint64_t>(number), 8);
    return *this;
  }
  struct Line {
    std::uint16_t lineno;
    std::uint8_t indent;
    std::string text;
  };
  JitlogWriter& source_code(const std::string& file, const std::vector<Line>& lines) {
    begin(mark::kSourceCode);
    str(file);
    u16(static_cast<std::uint16_t>(lines.size()));
    for (const Line& line : lines) {
      u16(line.lineno);
      u8(line.indent);
      str(line.text);
    }
    return *this;
  }
  // Bytes that are not (or not a complete) record.
  JitlogWriter& raw(const Bytes& data) {
    last_record_ = bytes_.size();
    bytes_.insert(bytes_.end(), data.begin(), data.end());
    return *this;
  }

  std::uint64_t size() const { return bytes_.size(); }
  std::uint64_t last_record() const { return last_record_; }  // offset of the latest record
  std::uint64_t records() const { return records_; }
  const Bytes& bytes() const { return bytes_; }
  unsigned word() const { return word_; }

 private:
  void begin(std::uint8_t marker) {
    last_record_ = bytes_.size();
    ++records_;
    bytes_.push_back(marker);
  }
  JitlogWriter& stage(std::uint8_t marker, std::uint64_t id) {
    begin(marker);
    addr(id);
    return *this;
  }
  void put(std::uint64_t value, unsigned width) {
    for (unsigned i = 0; i < width; ++i) bytes_.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
  }
  void u8(std::uint8_t value) { bytes_.push_back(value); }
  void u16(std::uint16_t value) { put(value, 2); }
  void u32(std::uint32_t value) { put(value, 4); }
  void addr(std::uint64_t value) {
    if (word_ == 4 && value > 0xffffffffu) throw std::logic_error("test bug: address does not fit 32 bits");
    put(value, word_);
  }
  void str(const std::string& text) {
    u32(static_cast<std::uint32_t>(text.size()));
    bytes_.insert(bytes_.end(), text.begin(), text.end());
  }

  std::uint16_t version_;
  unsigned word_;
  Bytes bytes_;
  std::uint64_t last_record_ = 0;
  std::uint64_t records_ = 0;
};

}  // namespace jitprof::testing
