// Tests of the jitlog reader (jitlog/): record decoding for versions 1-4 and
// both word sizes, trace linking, counters, error handling, and real PyPy
// 7.3.11 logs checked against PyPy's own PYPYLOG text log of the same run.
//
// Format notes: shared/reference/pypy-jitlog-and-vmprof-formats.md §2 and
// shared/reference/vmprof-python-and-upload-api.md §2.
#include <gtest/gtest.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <unistd.h>

#include "binio/binio.h"
#include "jitlog/disassembler.h"
#include "jitlog/resolver.h"
#include "jitlog/jitlog.h"
#include "support/jitlog_writer.h"

namespace {

using namespace jitprof::testing;
namespace jl = jitprof::jitlog;
using jl::Forest;
using jl::MergePoint;
using jl::Operation;
using jl::Stage;
using jl::StageKind;
using jl::Trace;
using jl::TraceKind;

const std::filesystem::path kFixtures = JITPROF_FIXTURES;
const std::filesystem::path kPrograms = kFixtures.parent_path() / "programs";


// Descr texts as PyPy prints them.
std::string hex(std::uint64_t value) {
  std::ostringstream out;
  out << "0x" << std::hex << value;
  return out.str();
}
std::string guard_descr(std::uint64_t uid) { return "<ResumeGuardDescr object at " + hex(uid) + ">"; }
std::string target_token(std::uint64_t uid) { return "TargetToken(" + std::to_string(uid) + ")"; }

std::vector<std::string> texts(std::span<const std::string_view> views) { return {views.begin(), views.end()}; }
Bytes bytes_in(std::span<const std::uint8_t> code) { return {code.begin(), code.end()}; }

Bytes bytes_of(std::initializer_list<int> values) {
  Bytes out;
  for (int value : values) out.push_back(static_cast<std::uint8_t>(value));
  return out;
}
Bytes text_bytes(const std::string& text) { return Bytes(text.begin(), text.end()); }

Forest parse(const JitlogWriter& writer) { return jl::parse_jitlog(writer.bytes()); }
Forest parse(const Bytes& bytes) { return jl::parse_jitlog(bytes); }

const Trace& trace_of(const Forest& forest, std::uint64_t id) {
  const Trace* trace = forest.find(id);
  if (trace == nullptr) throw std::runtime_error("no trace " + std::to_string(id));
  return *trace;
}
const Stage& stage_of(const Trace& trace, StageKind kind) {
  const Stage* stage = trace.stage(kind);
  if (stage == nullptr) throw std::runtime_error("trace " + std::to_string(trace.id) + " lacks a stage");
  return *stage;
}

std::string diagnostics(const Forest& forest) {
  std::ostringstream out;
  if (forest.error) out << "error @" << forest.error->offset << ": " << forest.error->message << "\n";
  for (const auto& warning : forest.warnings) out << "warning @" << warning.offset << ": " << warning.message << "\n";
  return out.str();
}

// A full text rendering of what the reader built, to compare two forests.
std::string describe(const Forest& forest) {
  std::ostringstream out;
  const auto& header = forest.header;
  out << "v" << header.version << " word " << header.word_size << " " << header.machine << " headers "
      << header.header_count << " opnames " << header.op_names.size() << " records " << forest.records << " bytes "
      << forest.bytes_read << "\n"
      << diagnostics(forest);
  for (const Trace& trace : forest.traces) {
    out << "trace " << trace.id << " " << jl::trace_kind_name(trace.kind) << (trace.logged_as_bridge ? "(b)" : "")
        << " jd=" << trace.jitdriver << " start=" << hex(trace.start_descr) << " @" << trace.file_offset;
    if (trace.code) out << " code " << hex(trace.code->start) << ".." << hex(trace.code->end) << " #" << trace.code_sequence;
    if (trace.parent_guard) out << " parent " << trace.parent_guard->trace_id << ":" << trace.parent_guard->op_index;
    if (trace.stitched_at) out << " stitched " << hex(*trace.stitched_at);
    out << " entries " << trace.entry_count << " labels " << trace.label_count << (trace.aborted ? " aborted" : "")
        << "\n";
    for (const Stage& stage : trace.stages) {
      out << "  " << jl::stage_name(stage.kind) << " @" << stage.file_offset << " in " << stage.input_args.size()
          << " ops " << stage.ops.size() << " mps " << stage.merge_points.size() << "\n";
      for (const Operation& op : stage.ops) {
        out << "    " << op.name << " " << op.result << " " << op.args.size() << " " << op.descr << " "
            << op.failargs.size();
        if (op.code) out << " +" << op.code->offset << "/" << op.code->bytes.size();
        if (op.bridge) out << " bridge " << *op.bridge;
        if (op.target_trace) out << " target " << *op.target_trace;
        if (op.counter) out << " count " << op.counter;
        out << "\n";
      }
      for (const MergePoint& point : stage.merge_points)
        out << "    mp " << point.op_index << " d" << point.inline_depth << " " << point.file << ":" << point.line
            << " " << point.function << " #" << point.bytecode_index << " " << point.opcode << "\n";
    }
  }
  for (const auto& counter : forest.counters)
    out << "counter " << counter.type << " " << counter.number << " " << counter.count
        << (counter.matched ? " matched" : "") << "\n";
  for (const auto& redirect : forest.redirects)
    out << "redirect " << redirect.old_token << " " << redirect.new_token << " " << redirect.target << " -> "
        << (redirect.target_trace ? std::to_string(*redirect.target_trace) : "-") << "\n";
  for (const auto& callback : forest.tmp_callbacks) out << "tmp_callback " << callback.token << " " << callback.number << "\n";
  return out.str();
}

// The encoder itself must match the real byte layouts quoted in the reference.
TEST(JitlogEncoder, ReproducesVerifiedPyPyBytes) {
  JitlogWriter writer;
  writer.init_merge_point();
  EXPECT_EQ(writer.bytes(), bytes_of({0x1d, 0x05, 0x00, 0x01, 0x73, 0x02, 0x69, 0x08, 0x73, 0x04, 0x69, 0x10, 0x73}));

  JitlogWriter resop;
  resop.resop(11, "?,i5,4");
  Bytes expected = bytes_of({0x13, 0x0b, 0x00, 0x06, 0x00, 0x00, 0x00});
  for (char c : std::string("?,i5,4")) expected.push_back(static_cast<std::uint8_t>(c));
  for (int i = 0; i < 4; ++i) expected.push_back(0x00);  // empty failargs
  EXPECT_EQ(resop.bytes(), expected);

  JitlogWriter counter;
  counter.counter(1, 'e', 20);
  EXPECT_EQ(counter.bytes(), bytes_of({0x1c, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x65, 0x14, 0, 0, 0, 0, 0, 0, 0}));
}

// ===========================================================================
// 1. Header
// ===========================================================================

TEST(JitlogHeader, ReadsVersionMachineAndTheFilesOwnOpTable) {
  JitlogWriter writer(4, 8);
  writer.header("x86_64");
  const Forest forest = parse(writer);

  ASSERT_FALSE(forest.error) << diagnostics(forest);
  EXPECT_TRUE(forest.warnings.empty()) << diagnostics(forest);
  EXPECT_EQ(forest.header.version, 4);
  EXPECT_EQ(forest.header.word_size, 8u);
  EXPECT_EQ(forest.header.machine, "x86_64");
  EXPECT_EQ(forest.header.header_count, 1u);
  EXPECT_EQ(forest.header.op_names.size(), test_ops().size());
  EXPECT_EQ(forest.header.op_names.at(opnum::kWide), "wide_future_op");
  EXPECT_EQ(forest.header.op_names.at(opnum::kLabel), "label");
  EXPECT_EQ(forest.header.op_names.at(opnum::kJump), "jump");
  EXPECT_EQ(forest.records, 1u);
  EXPECT_EQ(forest.bytes_read, writer.size());
  EXPECT_TRUE(forest.traces.empty());
}

// vmprof-python test_read_resop: u16 opnums are little-endian (0x00ff, 0xfe00).
TEST(JitlogHeader, OpnumsAreLittleEndianSixteenBit) {
  JitlogWriter writer;
  writer.header("x86_64", {{0x00ff, "call"}, {0xfe00, "me"}});
  const Forest forest = parse(writer);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  EXPECT_EQ(forest.header.op_names.at(0xff), "call");
  EXPECT_EQ(forest.header.op_names.at(0xfe00), "me");
}

// vmprof-python test_32bit_log_header / test_32bit_read_trace (with the op table PyPy always writes).
TEST(JitlogHeader, ThirtyTwoBitLogUsesFourByteAddresses) {
  JitlogWriter writer(1, 4);
  writer.header("s390x").start_trace(0x15, "loop", 0);
  const Forest forest = parse(writer);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  EXPECT_EQ(forest.header.version, 1);
  EXPECT_EQ(forest.header.word_size, 4u);
  EXPECT_EQ(forest.header.machine, "s390x");
  ASSERT_EQ(forest.traces.size(), 1u);
  EXPECT_EQ(forest.traces[0].id, 0x15u);
  EXPECT_EQ(forest.bytes_read, writer.size());
}

// _jitlog.enable() called twice writes a second header into the same file.
TEST(JitlogHeader, SecondHeaderLaterInTheFileIsCountedAndReadingGoesOn) {
  JitlogWriter writer;
  writer.header("x86_64", {{opnum::kJump, "jump"}})
      .start_trace(1, "loop", 0)
      .trace(1)
      .input_args("p0")
      .resop_descr(opnum::kJump, "?,p0,<Loop1>", 0x10)
      .header("x86_64", {{opnum::kLabel, "label"}, {opnum::kJump, "jump"}})
      .start_trace(2, "loop", 0)
      .trace(2)
      .input_args("p0")
      .resop_descr(opnum::kLabel, "?,p0," + target_token(0x20), 0x20);
  const Forest forest = parse(writer);

  ASSERT_FALSE(forest.error) << diagnostics(forest);
  EXPECT_EQ(forest.header.header_count, 2u);
  EXPECT_EQ(forest.header.op_names.at(opnum::kLabel), "label");
  ASSERT_EQ(forest.traces.size(), 2u);
  EXPECT_EQ(stage_of(trace_of(forest, 1), StageKind::NoOpt).ops.at(0).name, "jump");
  EXPECT_EQ(stage_of(trace_of(forest, 2), StageKind::NoOpt).ops.at(0).name, "label");
  EXPECT_EQ(forest.records, writer.records());
}

TEST(JitlogHeader, UnsupportedVersionIsAnErrorAtOffsetOne) {
  JitlogWriter writer;
  writer.raw_header(9, 0, "x86_64", test_ops());
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, 1u);
  EXPECT_NE(forest.error->message.find("version 9"), std::string::npos) << forest.error->message;
  EXPECT_EQ(forest.header.header_count, 0u);
}

TEST(JitlogHeader, VersionZeroIsRejectedToo) {
  JitlogWriter writer;
  writer.raw_header(0, 0, "x86_64", test_ops());
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, 1u);
  EXPECT_NE(forest.error->message.find("version 0"), std::string::npos) << forest.error->message;
}

TEST(JitlogHeader, WordSizeFlagOtherThanZeroOrOneIsAnErrorAtItsOffset) {
  JitlogWriter writer;
  writer.raw_header(4, 2, "x86_64", test_ops());
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, 3u);
}

TEST(JitlogHeader, FileNotStartingWithTheHeaderMarkerIsAnErrorAtOffsetZero) {
  // A vmprof profile starts with a zero word, for example.
  const Forest forest = parse(bytes_of({0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03}));
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, 0u);
  EXPECT_NE(forest.error->message.find("0x00"), std::string::npos) << forest.error->message;
  EXPECT_NE(forest.error->message.find("0x1e"), std::string::npos) << forest.error->message;
  EXPECT_TRUE(forest.traces.empty());
}

TEST(JitlogHeader, StartTraceBeforeAnyHeaderIsRejected) {
  JitlogWriter writer;
  writer.start_trace(1, "loop", 0);
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, 0u);
  EXPECT_TRUE(forest.traces.empty());
}

TEST(JitlogHeader, EmptyInputIsAnError) {
  const Forest forest = parse(Bytes{});
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, 0u);
  EXPECT_NE(forest.error->message.find("empty"), std::string::npos) << forest.error->message;
  EXPECT_EQ(forest.bytes_read, 0u);
  EXPECT_TRUE(forest.warnings.empty());
}

TEST(JitlogHeader, HeaderWithoutItsOpTableIsAnErrorAtTheMissingMarker) {
  // Header fields, then a byte where RESOP_META must be.
  JitlogWriter writer;
  writer.raw(bytes_of({0x1e, 0x04, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 'x', '8', '6', '_', '6', '4', 0x00}));
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, 14u);
  EXPECT_NE(forest.error->message.find("RESOP_META"), std::string::npos) << forest.error->message;
}

// ===========================================================================
// 2. Version differences (v1: no failargs, no jitdriver; v3: redirects; v4: tmp callbacks)
// ===========================================================================

struct VersionCase {
  std::uint16_t version;
  unsigned word;
};
void PrintTo(const VersionCase& c, std::ostream* out) { *out << "v" << c.version << " word " << c.word; }

class JitlogVersions : public ::testing::TestWithParam<VersionCase> {};

TEST_P(JitlogVersions, WholeLogRoundTrips) {
  const auto [version, word] = GetParam();
  const bool wide = word == 8;
  // Addresses and uids that need the full word (and fit 32 bits when word == 4).
  const std::uint64_t loop_start = wide ? 0x7f1ac47da950 : 0xf7a01950;
  const std::uint64_t bridge_start = wide ? 0x7f1ac47db000 : 0xf7a02000;
  const std::uint64_t guard = wide ? 0x7f1ac49e0da0 : 0xf7b0cda0;
  const std::uint64_t label = wide ? 0x7f1ac49f7740 : 0xf7b0d740;
  const std::uint64_t token = wide ? 0x7f610b90bd70 : 0xf7c0bd70;
  const std::uint64_t new_token = wide ? 0x7f610b90be50 : 0xf7c0be50;

  JitlogWriter writer(version, word);
  writer.header(wide ? "x86_64" : "i686")
      .start_trace(1, "loop", 0, "")
      .trace(1)
      .input_args("p0,i1")
      .init_merge_point()
      .merge_point(pypy_point("/tmp/t.py", 4, "f", 12, "FOR_ITER"))
      .resop(opnum::kIntAdd, "i2,i1,1")
      .resop_descr(opnum::kGuardTrue, "?,i2," + guard_descr(guard), guard, "p0,i1")
      .trace_asm(1)
      .input_args("p0,i1")
      .asm_addr(loop_start, loop_start + 0x400)
      .resop_descr(opnum::kLabel, "?,p0,i1," + target_token(label), label)
      .machine_code(0x40, bytes_of({0x90, 0x90}))
      .resop_descr(opnum::kGuardTrue, "?,i2," + guard_descr(guard), guard, "p0,i1")
      .machine_code(0x42, bytes_of({0x0f, 0x84, 0, 0, 0, 0}))
      .resop_descr(opnum::kJump, "?,p0,i2," + target_token(label), label)
      .machine_code(0x48, bytes_of({0xe9, 0, 0, 0, 0}))
      .start_trace(2, "bridge", guard, "pypyjit")
      .trace_asm(2)
      .input_args("p0,i1")
      .asm_addr(bridge_start, bridge_start + 0x100)
      .resop_descr(opnum::kJump, "?,p0,i1," + target_token(label), label)
      .stitch_bridge(guard, bridge_start);
  if (version >= 4) writer.tmp_callback(token, -1);
  if (version >= 3) writer.redirect_assembler(token, new_token, bridge_start);
  writer.counter(1, 'e', 10).counter(guard, 'b', 3).counter(label, 'l', 7);

  const Forest forest = parse(writer);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  EXPECT_TRUE(forest.warnings.empty()) << diagnostics(forest);
  EXPECT_EQ(forest.records, writer.records());
  EXPECT_EQ(forest.bytes_read, writer.size());
  EXPECT_EQ(forest.header.version, version);
  EXPECT_EQ(forest.header.word_size, word);
  EXPECT_EQ(forest.header.machine, wide ? "x86_64" : "i686");

  const Trace& loop = trace_of(forest, 1);
  const Trace& bridge = trace_of(forest, 2);
  EXPECT_EQ(loop.jitdriver, "");
  EXPECT_EQ(bridge.jitdriver, version >= 2 ? "pypyjit" : "");  // v1 START_TRACE has no jitdriver field
  ASSERT_TRUE(loop.code);
  EXPECT_EQ(loop.code->start, loop_start);
  EXPECT_EQ(loop.code->end, loop_start + 0x400);

  const Operation& noopt_guard = stage_of(loop, StageKind::NoOpt).ops.at(1);
  EXPECT_EQ(noopt_guard.name, "guard_true");
  EXPECT_EQ(noopt_guard.descr_number, guard);
  if (version >= 2) {
    EXPECT_EQ(texts(noopt_guard.failargs), (std::vector<std::string>{"p0", "i1"}));
  } else {
    EXPECT_TRUE(noopt_guard.failargs.empty());  // v1 writes no failargs
  }

  const MergePoint& point = stage_of(loop, StageKind::NoOpt).merge_points.at(0);
  EXPECT_EQ(point.file, "/tmp/t.py");
  EXPECT_EQ(point.line, 4);

  const Stage& loop_asm = stage_of(loop, StageKind::Asm);
  ASSERT_EQ(loop_asm.ops.size(), 3u);
  ASSERT_TRUE(loop_asm.ops[1].code);
  EXPECT_EQ(loop_asm.ops[1].code->offset, 0x42u);
  EXPECT_EQ(bytes_in(loop_asm.ops[1].code->bytes), bytes_of({0x0f, 0x84, 0, 0, 0, 0}));

  EXPECT_EQ(bridge.kind, TraceKind::Bridge);
  EXPECT_EQ(bridge.start_descr, guard);
  ASSERT_TRUE(bridge.parent_guard);
  EXPECT_EQ(bridge.parent_guard->trace_id, 1u);
  EXPECT_EQ(bridge.parent_guard->op_index, 1u);
  EXPECT_EQ(bridge.stitched_at, bridge_start);
  EXPECT_EQ(loop_asm.ops[1].bridge, 2u);
  EXPECT_EQ(stage_of(bridge, StageKind::Asm).ops.at(0).target_trace, 1u);

  EXPECT_EQ(loop.entry_count, 10u);
  EXPECT_EQ(loop.label_count, 7u);
  EXPECT_EQ(bridge.entry_count, 3u);
  EXPECT_EQ(loop_asm.ops[1].counter, 3u);
  EXPECT_EQ(loop_asm.ops[0].counter, 7u);

  EXPECT_EQ(forest.tmp_callbacks.size(), version >= 4 ? 1u : 0u);
  if (version >= 4) {
    EXPECT_EQ(forest.tmp_callbacks[0].token, token);
    EXPECT_EQ(forest.tmp_callbacks[0].number, -1);
  }
  ASSERT_EQ(forest.redirects.size(), version >= 3 ? 1u : 0u);
  if (version >= 3) {
    EXPECT_EQ(forest.redirects[0].old_token, token);
    EXPECT_EQ(forest.redirects[0].new_token, new_token);
    EXPECT_EQ(forest.redirects[0].target, bridge_start);
    EXPECT_EQ(forest.redirects[0].target_trace, 2u);
  }
}

INSTANTIATE_TEST_SUITE_P(AllVersionsAndWordSizes, JitlogVersions,
                         ::testing::Values(VersionCase{1, 4}, VersionCase{1, 8}, VersionCase{2, 4},
                                           VersionCase{2, 8}, VersionCase{3, 4}, VersionCase{3, 8},
                                           VersionCase{4, 4}, VersionCase{4, 8}),
                         [](const ::testing::TestParamInfo<VersionCase>& param_info) {
                           return "v" + std::to_string(param_info.param.version) + "_" +
                                  std::to_string(param_info.param.word * 8) + "bit";
                         });

// vmprof-python test_asm_addr: v1 START_TRACE(0x15, 'loop', 0) without jitdriver.
TEST(JitlogVersion1, StartTraceWithoutJitdriverAndAsmAddr) {
  JitlogWriter writer(1, 8);
  writer.header().start_trace(0x15, "loop", 0).trace(0x15).asm_addr(0xaffe, 0xfeed);
  const Forest forest = parse(writer);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const Trace& trace = trace_of(forest, 0x15);
  EXPECT_EQ(trace.jitdriver, "");
  ASSERT_TRUE(trace.code);
  EXPECT_EQ(trace.code->start, 0xaffeu);
  EXPECT_EQ(trace.code->end, 0xfeedu);
}

// vmprof-python test_v2_start_trace.
TEST(JitlogVersion2, StartTraceCarriesTheJitdriverName) {
  JitlogWriter writer(2, 8);
  writer.header().start_trace(0x15, "loop", 0, "jd_is_a_hippy");
  const Forest forest = parse(writer);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  EXPECT_EQ(trace_of(forest, 0x15).jitdriver, "jd_is_a_hippy");
}

// A v1 log read with v2 framing would lose sync: check RESOP_DESCR ends right for v1.
TEST(JitlogVersion1, ResopDescrHasNoFailargsField) {
  JitlogWriter writer(1, 8);
  writer.header()
      .start_trace(0xffaa, "loop", 0)
      .trace(0xffaa)
      .input_args("i1,i2")
      .resop_descr(opnum::kIntAdd, "i3,i2,i1,descr()", 0)
      .machine_code(4, text_bytes("DEADBEEF"))
      .resop(opnum::kIntMul, "i4,i3,i3");
  const Forest forest = parse(writer);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const Stage& stage = stage_of(trace_of(forest, 0xffaa), StageKind::NoOpt);
  EXPECT_EQ(texts(stage.input_args), (std::vector<std::string>{"i1", "i2"}));
  ASSERT_EQ(stage.ops.size(), 2u);
  // vmprof-python test_asm_positions: 'i3 = fire(i2, i1, @descr())' with core dump (4, DEADBEEF).
  EXPECT_EQ(stage.ops[0].result, "i3");
  EXPECT_EQ(texts(stage.ops[0].args), (std::vector<std::string>{"i2", "i1"}));
  EXPECT_EQ(stage.ops[0].descr, "descr()");
  EXPECT_EQ(stage.ops[0].descr_number, 0u);
  ASSERT_TRUE(stage.ops[0].code);
  EXPECT_EQ(stage.ops[0].code->offset, 4u);
  EXPECT_EQ(bytes_in(stage.ops[0].code->bytes), text_bytes("DEADBEEF"));
  EXPECT_EQ(stage.ops[1].name, "int_mul");
  EXPECT_EQ(texts(stage.ops[1].args), (std::vector<std::string>{"i3", "i3"}));
}

// ===========================================================================
// 3. Operations
// ===========================================================================

class JitlogOps : public ::testing::Test {
 protected:
  // One loop with a noopt stage holding the ops a test writes.
  JitlogWriter& loop_stage() {
    writer_.header().start_trace(1, "loop", 0).trace(1).input_args("p0,p1,i5");
    return writer_;
  }
  const Stage& noopt(const Forest& forest) { return stage_of(trace_of(forest, 1), StageKind::NoOpt); }
  JitlogWriter writer_;
};

TEST_F(JitlogOps, ResultArgsAndDescrAreSplitAtTheFirstAndLastComma) {
  loop_stage()
      .resop(opnum::kIntAdd, "i6,i5,4")
      .resop_descr(opnum::kGuardTrue, "?,i6," + guard_descr(0x7f1ac49e0da0), 0x7f1ac49e0da0, "p0,i5,-")
      .resop_descr(opnum::kLabel, "?," + target_token(139752944662336), 139752944662336)
      .resop_descr(opnum::kCallAssemblerI, "i7,p0,p1,<Calli 8 ii EF=0 OS=14>", 0x5555)
      .resop(opnum::kJump, "?,p0,p1,ConstPtr(null)");
  const Forest forest = parse(writer_);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const Stage& stage = noopt(forest);
  EXPECT_EQ(texts(stage.input_args), (std::vector<std::string>{"p0", "p1", "i5"}));
  ASSERT_EQ(stage.ops.size(), 5u);

  const Operation& add = stage.ops[0];
  EXPECT_EQ(add.opnum, opnum::kIntAdd);
  EXPECT_EQ(add.name, "int_add");
  EXPECT_EQ(add.result, "i6");
  EXPECT_EQ(texts(add.args), (std::vector<std::string>{"i5", "4"}));
  EXPECT_EQ(add.descr, "");
  EXPECT_FALSE(add.descr_number);
  EXPECT_TRUE(add.failargs.empty());
  EXPECT_FALSE(add.code);

  const Operation& guard = stage.ops[1];
  EXPECT_EQ(guard.result, "?");
  EXPECT_EQ(texts(guard.args), (std::vector<std::string>{"i6"}));
  EXPECT_EQ(guard.descr, "<ResumeGuardDescr object at 0x7f1ac49e0da0>");
  EXPECT_EQ(guard.descr_number, 0x7f1ac49e0da0u);
  EXPECT_EQ(texts(guard.failargs), (std::vector<std::string>{"p0", "i5", "-"}));
  EXPECT_TRUE(guard.is_guard());

  const Operation& label = stage.ops[2];
  EXPECT_EQ(label.result, "?");
  EXPECT_TRUE(label.args.empty());
  EXPECT_EQ(label.descr, "TargetToken(139752944662336)");
  EXPECT_EQ(label.descr_number, 139752944662336u);

  const Operation& call = stage.ops[3];
  EXPECT_EQ(call.result, "i7");
  EXPECT_EQ(texts(call.args), (std::vector<std::string>{"p0", "p1"}));
  EXPECT_EQ(call.descr, "<Calli 8 ii EF=0 OS=14>");  // spaces inside the descr are kept
  EXPECT_TRUE(call.is_call_assembler());

  const Operation& jump = stage.ops[4];
  EXPECT_EQ(texts(jump.args), (std::vector<std::string>{"p0", "p1", "ConstPtr(null)"}));
  EXPECT_EQ(jump.descr, "");  // a RESOP, not a RESOP_DESCR: the last field is an argument
}

TEST_F(JitlogOps, OpsWithoutArgumentsOrWithOnlyAResult) {
  loop_stage().resop(opnum::kFinish, "?").resop(opnum::kIntAdd, "i9").resop_descr(opnum::kJump, "?,<Loop3>", 7);
  const Forest forest = parse(writer_);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const Stage& stage = noopt(forest);
  ASSERT_EQ(stage.ops.size(), 3u);
  EXPECT_EQ(stage.ops[0].result, "?");
  EXPECT_TRUE(stage.ops[0].args.empty());
  EXPECT_EQ(stage.ops[1].result, "i9");
  EXPECT_TRUE(stage.ops[1].args.empty());
  EXPECT_TRUE(stage.ops[2].args.empty());
  EXPECT_EQ(stage.ops[2].descr, "<Loop3>");
}

TEST_F(JitlogOps, OpnumAboveTwoFiftyFiveIsNamedFromTheHeader) {
  loop_stage().resop(opnum::kWide, "i6,i5");
  const Forest forest = parse(writer_);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  EXPECT_EQ(noopt(forest).ops.at(0).opnum, opnum::kWide);
  EXPECT_EQ(noopt(forest).ops.at(0).name, "wide_future_op");
  EXPECT_TRUE(forest.warnings.empty()) << diagnostics(forest);
}

TEST_F(JitlogOps, UnknownOpnumIsNamedByNumberWithOneWarning) {
  loop_stage().resop(opnum::kIntAdd, "i6,i5,1");
  const std::uint64_t first_unknown = writer_.size();
  writer_.resop(300, "i7,i6").resop(300, "i8,i7").resop_descr(301, "?,i8,descr", 1);
  const Forest forest = parse(writer_);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const Stage& stage = noopt(forest);
  ASSERT_EQ(stage.ops.size(), 4u);
  EXPECT_EQ(stage.ops[1].name, "#300");
  EXPECT_EQ(stage.ops[2].name, "#300");
  EXPECT_EQ(stage.ops[3].name, "#301");
  EXPECT_EQ(texts(stage.ops[1].args), (std::vector<std::string>{"i6"}));
  // One warning per distinct unknown opnum, at the record that first used it.
  ASSERT_EQ(forest.warnings.size(), 2u) << diagnostics(forest);
  EXPECT_EQ(forest.warnings[0].offset, first_unknown);
  EXPECT_NE(forest.warnings[0].message.find("300"), std::string::npos) << forest.warnings[0].message;
  EXPECT_NE(forest.warnings[1].message.find("301"), std::string::npos) << forest.warnings[1].message;
}

TEST_F(JitlogOps, UnrolledLoopLogsTwoNoOptStagesAndStageReturnsTheLast) {
  loop_stage()
      .resop(opnum::kIntAdd, "i6,i5,1")
      .trace(1)
      .input_args("p0")
      .resop(opnum::kIntAdd, "i1,i0,1")
      .resop(opnum::kIntAdd, "i2,i1,1")
      .trace_opt(1)
      .input_args("p0");
  const Forest forest = parse(writer_);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const Trace& trace = trace_of(forest, 1);
  ASSERT_EQ(trace.stages.size(), 3u);
  EXPECT_EQ(trace.stages[0].kind, StageKind::NoOpt);
  EXPECT_EQ(trace.stages[1].kind, StageKind::NoOpt);
  EXPECT_EQ(trace.stages[2].kind, StageKind::Opt);
  EXPECT_EQ(trace.stage(StageKind::NoOpt), &trace.stages[1]);
  EXPECT_EQ(trace.stages[1].ops.size(), 2u);
  EXPECT_EQ(trace.stage(StageKind::Asm), nullptr);
}

TEST(JitlogStageNames, RoundTrip) {
  for (StageKind kind : {StageKind::NoOpt, StageKind::Opt, StageKind::Asm})
    EXPECT_EQ(jl::parse_stage_name(jl::stage_name(kind)), kind);
  EXPECT_EQ(std::string(jl::stage_name(StageKind::Asm)), "asm");
  EXPECT_FALSE(jl::parse_stage_name("optimized"));
  EXPECT_EQ(std::string(jl::trace_kind_name(TraceKind::Bridge)), "bridge");
}

// ===========================================================================
// 4. Merge points
// ===========================================================================

class JitlogMergePoints : public ::testing::Test {
 protected:
  JitlogWriter& opt_stage() {
    writer_.header().start_trace(1, "loop", 0).trace_opt(1).input_args("p0");
    return writer_;
  }
  const Stage& opt(const Forest& forest) { return stage_of(trace_of(forest, 1), StageKind::Opt); }
  JitlogWriter writer_;
};

TEST_F(JitlogMergePoints, AllFiveFieldsAndTheVerifiedPrefixSequence) {
  // The verified sequence of the reference (§2.8), then an opcode suffix.
  opt_stage()
      .init_merge_point()
      .merge_point(pypy_point("/tmp/t.py", 4, "f", 12, "FOR_ITER"))
      .resop(opnum::kIntAdd, "i1,i0,1")
      .common_prefix(0, "/tmp/t.py")
      .merge_point({mp_prefix(), mp_int(4), mp_full("f"), mp_int(14), mp_full("STORE_FAST")})
      .common_prefix(4, "STORE_")
      .merge_point({mp_suffix("x.py"), mp_int(5), mp_full("f"), mp_int(16), mp_suffix("SUBSCR")});
  const Forest forest = parse(writer_);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const auto& points = opt(forest).merge_points;
  ASSERT_EQ(points.size(), 3u);

  EXPECT_EQ(points[0].file, "/tmp/t.py");
  EXPECT_EQ(points[0].line, 4);
  EXPECT_EQ(points[0].function, "f");
  EXPECT_EQ(points[0].bytecode_index, 12);
  EXPECT_EQ(points[0].opcode, "FOR_ITER");
  EXPECT_EQ(points[0].op_index, 0u);
  EXPECT_EQ(points[0].inline_depth, 0u);

  EXPECT_EQ(points[1].file, "/tmp/t.py");  // 0xef: the slot's prefix
  EXPECT_EQ(points[1].bytecode_index, 14);
  EXPECT_EQ(points[1].opcode, "STORE_FAST");
  EXPECT_EQ(points[1].op_index, 1u);

  EXPECT_EQ(points[2].file, "/tmp/t.pyx.py");  // 0x00: prefix + suffix
  EXPECT_EQ(points[2].opcode, "STORE_SUBSCR");  // slot 4 has its own prefix
  EXPECT_EQ(points[2].line, 5);
}

TEST_F(JitlogMergePoints, ValuesFollowTheDeclaredSlotOrderAndTypes) {
  // loggen.py style: two string slots, scope first; then a line slot.
  opt_stage()
      .init_merge_point({{kMpScope, 's'}, {kMpFilename, 's'}, {kMpLineno, 'i'}})
      .merge_point({mp_full("inlined_func1"), mp_full("/b.py"), mp_int(25)});
  const Forest forest = parse(writer_);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const MergePoint& point = opt(forest).merge_points.at(0);
  EXPECT_EQ(point.function, "inlined_func1");
  EXPECT_EQ(point.file, "/b.py");
  EXPECT_EQ(point.line, 25);
  EXPECT_EQ(point.opcode, "");
}

TEST_F(JitlogMergePoints, PrefixesBelongToTheStageThatSetThem) {
  opt_stage()
      .init_merge_point()
      .merge_point(pypy_point("/src/first.py", 1, "f", 0, "LOAD_FAST"))
      .common_prefix(0, "/src/first")
      .merge_point({mp_suffix(".py"), mp_int(2), mp_full("f"), mp_int(2), mp_full("LOAD_CONST")})
      .trace_asm(1)
      .input_args("p0")
      .trace(1)
      .input_args("p0")
      .init_merge_point()
      .merge_point(pypy_point("/lib/second.py", 7, "g", 0, "LOAD_FAST"))
      .common_prefix(0, "/lib/sec")
      .merge_point({mp_suffix("ond.py"), mp_int(8), mp_full("g"), mp_int(2), mp_full("RETURN_VALUE")});
  const Forest forest = parse(writer_);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const Trace& trace = trace_of(forest, 1);
  const auto& first = stage_of(trace, StageKind::Opt).merge_points;
  const auto& second = stage_of(trace, StageKind::NoOpt).merge_points;
  ASSERT_EQ(first.size(), 2u);
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(first[1].file, "/src/first.py");
  EXPECT_EQ(second[1].file, "/lib/second.py");
  EXPECT_TRUE(stage_of(trace, StageKind::Asm).merge_points.empty());
}

TEST_F(JitlogMergePoints, InlineDepthFollowsPortalFrames) {
  opt_stage()
      .init_merge_point()
      .merge_point(pypy_point("/p/hot.py", 12, "f", 12, "FOR_ITER"))
      .resop(opnum::kEnterPortalFrame, "?,14,5020")
      .merge_point(pypy_point("/p/hot.py", 7, "g", 0, "LOAD_FAST"))
      .resop(opnum::kEnterPortalFrame, "?,14,5021")
      .merge_point(pypy_point("/p/hot.py", 3, "h", 0, "LOAD_FAST"))
      .resop(opnum::kLeavePortalFrame, "?,14")
      .merge_point(pypy_point("/p/hot.py", 7, "g", 4, "BINARY_ADD"))
      .resop(opnum::kLeavePortalFrame, "?,14")
      .merge_point(pypy_point("/p/hot.py", 14, "f", 36, "INPLACE_ADD"))
      .resop(opnum::kLeavePortalFrame, "?,14")  // more leaves than enters: stays at 0
      .merge_point(pypy_point("/p/hot.py", 15, "f", 38, "STORE_FAST"))
      .trace(1)
      .input_args("p0")
      .resop(opnum::kEnterPortalFrame, "?,14,5020")
      .trace_asm(1)  // a new stage starts at depth 0
      .input_args("p0")
      .trace(1)
      .input_args("p0")
      .init_merge_point()
      .merge_point(pypy_point("/p/hot.py", 12, "f", 12, "FOR_ITER"));
  const Forest forest = parse(writer_);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const auto& points = opt(forest).merge_points;
  ASSERT_EQ(points.size(), 6u);
  std::vector<unsigned> depths;
  for (const MergePoint& point : points) depths.push_back(point.inline_depth);
  EXPECT_EQ(depths, (std::vector<unsigned>{0, 1, 2, 1, 0, 0}));
  EXPECT_EQ(points[1].function, "g");
  EXPECT_EQ(points[1].op_index, 1u);
  EXPECT_EQ(trace_of(forest, 1).stages.back().merge_points.at(0).inline_depth, 0u);
  // The trace's own position is its first depth-0 point of the opt stage.
  ASSERT_NE(trace_of(forest, 1).source(), nullptr);
  EXPECT_EQ(trace_of(forest, 1).source(), &points[0]);
}

TEST_F(JitlogMergePoints, SourcePrefersOptOverNoOptAndSkipsInlinedPoints) {
  writer_.header()
      .start_trace(1, "bridge", 0x99, "pypyjit")
      .trace(1)
      .input_args("p0")
      .init_merge_point()
      .merge_point(pypy_point("/p/a.py", 3, "noopt_only", 0, "LOAD_FAST"))
      .trace_opt(1)
      .input_args("p0")
      .resop(opnum::kEnterPortalFrame, "?,14,1")
      .init_merge_point()
      .merge_point(pypy_point("/p/a.py", 7, "callee", 0, "LOAD_FAST"))
      .resop(opnum::kLeavePortalFrame, "?,14")
      .merge_point(pypy_point("/p/a.py", 9, "caller", 6, "STORE_FAST"));
  const Forest forest = parse(writer_);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const MergePoint* source = trace_of(forest, 1).source();
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(source->function, "caller");
  EXPECT_EQ(source->line, 9);
}

TEST_F(JitlogMergePoints, MergePointBeforeFindsTheLastPointAtOrBeforeAnOp) {
  opt_stage()
      .resop(opnum::kIntAdd, "i1,i0,1")
      .resop(opnum::kIntAdd, "i2,i1,1")
      .init_merge_point()
      .merge_point(pypy_point("/p/a.py", 10, "f", 0, "A"))
      .resop(opnum::kIntAdd, "i3,i2,1")
      .merge_point(pypy_point("/p/a.py", 11, "f", 2, "B"))
      .merge_point(pypy_point("/p/a.py", 12, "f", 4, "C"))
      .resop(opnum::kIntAdd, "i4,i3,1")
      .resop(opnum::kIntAdd, "i5,i4,1");
  const Forest forest = parse(writer_);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const Stage& stage = opt(forest);
  ASSERT_EQ(stage.merge_points.size(), 3u);
  EXPECT_EQ(stage.merge_points[0].op_index, 2u);
  EXPECT_EQ(stage.merge_points[1].op_index, 3u);
  EXPECT_EQ(stage.merge_points[2].op_index, 3u);
  EXPECT_EQ(stage.merge_point_before(0), nullptr);
  EXPECT_EQ(stage.merge_point_before(1), nullptr);
  EXPECT_EQ(stage.merge_point_before(2), &stage.merge_points[0]);
  EXPECT_EQ(stage.merge_point_before(3), &stage.merge_points[2]);  // the last of two at the same op
  EXPECT_EQ(stage.merge_point_before(4), &stage.merge_points[2]);
  EXPECT_EQ(stage.merge_point_before(100), &stage.merge_points[2]);
}

TEST_F(JitlogMergePoints, MergePointWithoutInitIsAnErrorAtItsOffset) {
  opt_stage().resop(opnum::kIntAdd, "i1,i0,1");
  const std::uint64_t at = writer_.size();
  writer_.merge_point(pypy_point("/p/a.py", 1, "f", 0, "A"));
  const Forest forest = parse(writer_);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, at);
  EXPECT_NE(forest.error->message.find("INIT_MERGE_POINT"), std::string::npos) << forest.error->message;
  EXPECT_EQ(opt(forest).ops.size(), 1u);  // what came before is kept
}

TEST_F(JitlogMergePoints, InitOfAnEarlierStageDoesNotCarryOver) {
  opt_stage().init_merge_point().merge_point(pypy_point("/p/a.py", 1, "f", 0, "A")).trace(1).input_args("p0");
  const std::uint64_t at = writer_.size();
  writer_.merge_point(pypy_point("/p/a.py", 1, "f", 0, "A"));
  const Forest forest = parse(writer_);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, at);
}

TEST_F(JitlogMergePoints, BadValueTagIsAnErrorAtTheTag) {
  opt_stage().init_merge_point();
  const std::uint64_t at = writer_.size();
  // 0x42 is none of 0xff / 0xef / 0x00.
  writer_.raw(bytes_of({mark::kMergePoint, 0x42}));
  const Forest forest = parse(writer_);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, at + 1);
}

// ===========================================================================
// 5. Machine code
// ===========================================================================

TEST(JitlogOutline, KeepsTracesStagesAndTheFilesMergePointsNameButNoOps) {
  JitlogWriter writer;
  writer.header()
      .start_trace(1, "loop", 0)
      .trace_opt(1)
      .init_merge_point()
      .merge_point(pypy_point("/src/a.py", 3, "f", 0, "LOAD_FAST"))
      .resop(opnum::kIntAdd, "i1,i0,1")
      .merge_point(pypy_point("/src/b.py", 9, "g", 2, "LOAD_FAST"))
      .trace_asm(1)
      .asm_addr(0x7f0000001000, 0x7f0000001200)
      .resop(opnum::kIntAdd, "i1,i0,1")
      .machine_code(0, bytes_of({0x48, 0x01, 0xc0}))
      .start_trace(2, "loop", 0)
      .trace_opt(2)
      .init_merge_point()
      .merge_point(pypy_point("/src/a.py", 7, "h", 0, "LOAD_FAST"));
  const Forest full = parse(writer);
  jl::JitlogReader outline_reader(jl::Detail::Outline);
  outline_reader.feed(writer.bytes());
  const Forest outline = outline_reader.finish();
  ASSERT_FALSE(outline.error) << diagnostics(outline);

  EXPECT_EQ(outline.merge_point_files, (std::set<std::string>{"/src/a.py", "/src/b.py"}));
  EXPECT_EQ(outline.merge_point_files, full.merge_point_files);
  ASSERT_EQ(outline.traces.size(), 2u);
  const Trace& first = trace_of(outline, 1);
  ASSERT_TRUE(first.code);
  EXPECT_EQ(first.code->start, 0x7f0000001000u);
  EXPECT_EQ(first.stages.size(), 2u);
  for (const Stage& stage : first.stages) {
    EXPECT_TRUE(stage.ops.empty());
    EXPECT_TRUE(stage.merge_points.empty());
  }
  EXPECT_EQ(stage_of(trace_of(full, 1), StageKind::Opt).merge_points.size(), 2u);
}

TEST(JitlogMachineCode, AsmAttachesToThePrecedingOpAndOpsWithoutAsmHaveNoCode) {
  JitlogWriter writer;
  writer.header()
      .start_trace(1, "loop", 0)
      .trace_asm(1)
      .input_args("p0")
      .asm_addr(0x7f0000001000, 0x7f0000001200)
      .resop(opnum::kIncrementDebugCounter, "?,94357214478544")
      .machine_code(267, bytes_of({0x49, 0xbb, 0xd0, 0x40, 0x40, 0x40, 0xd1, 0x55, 0x00, 0x00, 0x49, 0xff, 0x03}))
      .resop(opnum::kIntLt, "i1,i0,10")  // folded into the guard: zero bytes
      .machine_code(280, {})
      .resop_descr(opnum::kGuardTrue, "?,i1," + guard_descr(0xabc), 0xabc)
      .machine_code(280, bytes_of({0x0f, 0x8d, 1, 2, 3, 4}))
      .resop(opnum::kLeavePortalFrame, "?,14");  // no ASM record
  const Forest forest = parse(writer);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const Trace& trace = trace_of(forest, 1);
  ASSERT_TRUE(trace.code);
  EXPECT_EQ(trace.code->start, 0x7f0000001000u);
  EXPECT_EQ(trace.code->end, 0x7f0000001200u);
  EXPECT_TRUE(trace.code->contains(0x7f0000001000));
  EXPECT_TRUE(trace.code->contains(0x7f00000011ff));
  EXPECT_FALSE(trace.code->contains(0x7f0000001200));
  const auto& ops = stage_of(trace, StageKind::Asm).ops;
  ASSERT_EQ(ops.size(), 4u);
  ASSERT_TRUE(ops[0].code);
  EXPECT_EQ(ops[0].code->offset, 267u);
  EXPECT_EQ(ops[0].code->bytes.size(), 13u);
  EXPECT_EQ(ops[0].code->bytes.front(), 0x49);
  ASSERT_TRUE(ops[1].code);
  EXPECT_EQ(ops[1].code->offset, 280u);
  EXPECT_TRUE(ops[1].code->bytes.empty());
  ASSERT_TRUE(ops[2].code);
  EXPECT_EQ(bytes_in(ops[2].code->bytes), bytes_of({0x0f, 0x8d, 1, 2, 3, 4}));
  EXPECT_FALSE(ops[3].code);
}

TEST(JitlogMachineCode, SixteenBitOffsetsAreUnwrappedPastSixtyFourKiB) {
  const std::uint64_t start = 0x7f0000100000;
  JitlogWriter writer;
  writer.header()
      .start_trace(1, "loop", 0)
      .trace_asm(1)
      .input_args("p0")
      .asm_addr(start, start + 0x10100)
      .resop(opnum::kIntAdd, "i1,i0,1")
      .machine_code(0x0100, Bytes(0xff00, 0x90))  // runs up to 0x10000
      .resop(opnum::kIntAdd, "i2,i1,1")
      .machine_code(0x0000, Bytes(0x10, 0x90))  // really 0x10000
      .resop(opnum::kIntLt, "i3,i2,5")
      .machine_code(0x0010, {})  // really 0x10010
      .resop_descr(opnum::kGuardTrue, "?,i3," + guard_descr(0x77), 0x77)
      .machine_code(0x0010, Bytes(0x20, 0x90))  // same offset again: no extra wrap
      .resop(opnum::kJump, "?,i2")
      .machine_code(0x0030, Bytes(0xd0, 0x90))
      // A new stage starts counting again from zero.
      .start_trace(2, "loop", 0)
      .trace_asm(2)
      .input_args("p0")
      .asm_addr(start + 0x20000, start + 0x20100)
      .resop(opnum::kIntAdd, "i1,i0,1")
      .machine_code(0x0040, Bytes(4, 0x90));
  const Forest forest = parse(writer);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  std::vector<std::uint64_t> offsets;
  for (const Operation& op : stage_of(trace_of(forest, 1), StageKind::Asm).ops) {
    ASSERT_TRUE(op.code);
    offsets.push_back(op.code->offset);
  }
  EXPECT_EQ(offsets, (std::vector<std::uint64_t>{0x100, 0x10000, 0x10010, 0x10010, 0x10030}));
  EXPECT_EQ(stage_of(trace_of(forest, 2), StageKind::Asm).ops.at(0).code->offset, 0x40u);
  EXPECT_EQ(jitprof::jitlog::TraceResolver(forest).find(start + 0x10030).trace->id, 1u);
}

TEST(JitlogMachineCode, TraceAtAddressPicksTheNewestCodeWhenRangesOverlap) {
  // Freed code is never logged; a later block may reuse the addresses.
  JitlogWriter writer;
  writer.header()
      .start_trace(1, "loop", 0)
      .trace_asm(1)
      .input_args("p0")
      .asm_addr(0x1000, 0x2000)
      .start_trace(2, "loop", 0)
      .trace_asm(2)
      .input_args("p0")
      .asm_addr(0x1800, 0x2800)
      .start_trace(3, "loop", 0)
      .trace_asm(3)
      .input_args("p0")
      .asm_addr(0x3000, 0x3100)
      // Trace 3's asm stage is reopened later with new code: it is the newest now.
      .trace_asm(3)
      .input_args("p0")
      .asm_addr(0x1f00, 0x2100);
  const Forest forest = parse(writer);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const jitprof::jitlog::TraceResolver resolver(forest);
  auto id_at = [&](std::uint64_t address) -> std::int64_t {
    const Trace* trace = resolver.find(address).trace;
    return trace ? static_cast<std::int64_t>(trace->id) : -1;
  };
  EXPECT_EQ(id_at(0x1000), 1);
  EXPECT_EQ(id_at(0x17ff), 1);
  EXPECT_EQ(id_at(0x1800), 2);
  EXPECT_EQ(id_at(0x1eff), 2);
  EXPECT_EQ(id_at(0x1f00), 3);
  EXPECT_EQ(id_at(0x20ff), 3);
  EXPECT_EQ(id_at(0x2100), 2);
  EXPECT_EQ(id_at(0x27ff), 2);
  EXPECT_EQ(id_at(0x2800), -1);
  EXPECT_EQ(id_at(0x3000), -1);  // trace 3's old range was replaced
  EXPECT_EQ(id_at(0x0fff), -1);
}

TEST(JitlogMachineCode, TheResolverNamesReusedCodeByWhenItsTraceArrivedAndItsOpByItsBytes) {
  // Trace 2 reuses trace 1's memory; it reached the recorder at t = 5 s.
  JitlogWriter writer;
  writer.header()
      .start_trace(1, "loop", 0)
      .trace_asm(1)
      .input_args("p0")
      .asm_addr(0x1000, 0x1100)
      .resop(opnum::kIntAdd, "i1,i0,1")
      .machine_code(0x10, Bytes(0x20, 0x90))
      .resop(opnum::kJump, "?,i1")
      .machine_code(0x30, Bytes(0x10, 0x90));  // the code past 0x40 belongs to no op
  const std::uint64_t second_part = writer.size();
  writer.start_trace(2, "loop", 0)
      .trace_asm(2)
      .input_args("p0")
      .asm_addr(0x1000, 0x1100)
      .resop(opnum::kIntAdd, "i1,i0,2")
      .machine_code(0x08, Bytes(0xf8, 0x90));
  const Forest forest = parse(writer);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const jl::TraceResolver resolver(forest, {{0, 1'000'000'000}, {second_part, 5'000'000'000}});
  auto at = [&](std::uint64_t address, std::uint64_t time) {
    const auto hit = resolver.find(address, time);
    return std::make_pair(hit.trace ? static_cast<std::int64_t>(hit.trace->id) : -1,
                          hit.op ? static_cast<std::int64_t>(*hit.op) : -1);
  };
  EXPECT_EQ(at(0x1015, 2'000'000'000), std::make_pair(std::int64_t{1}, std::int64_t{0}));
  EXPECT_EQ(at(0x1035, 2'000'000'000), std::make_pair(std::int64_t{1}, std::int64_t{1}));
  EXPECT_EQ(at(0x1005, 2'000'000'000), std::make_pair(std::int64_t{1}, std::int64_t{-1}));  // entry code
  EXPECT_EQ(at(0x1050, 2'000'000'000), std::make_pair(std::int64_t{1}, std::int64_t{-1}));  // past every op's bytes
  EXPECT_EQ(at(0x1015, 6'000'000'000), std::make_pair(std::int64_t{2}, std::int64_t{0}));
  // Code runs a little before its record crosses the pipe.
  EXPECT_EQ(at(0x1015, 4'980'000'000), std::make_pair(std::int64_t{2}, std::int64_t{0}));
  // Before every trace covering it: the first one born; without a time: the newest.
  EXPECT_EQ(at(0x1015, 0), std::make_pair(std::int64_t{1}, std::int64_t{0}));
  EXPECT_EQ(resolver.find(0x1015).trace->id, 2u);
  EXPECT_EQ(at(0x1100, 6'000'000'000).first, -1);
}

TEST(JitlogMachineCode, AsmBeforeAnyOpOfItsStageIsAnError) {
  JitlogWriter writer;
  writer.header().start_trace(1, "loop", 0).trace_asm(1).input_args("p0").asm_addr(0x1000, 0x2000);
  const std::uint64_t at = writer.size();
  writer.machine_code(0, bytes_of({0x90}));
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, at);
}

TEST(JitlogMachineCode, ARepeatedTraceIdIsAnErrorAndWhatCameBeforeIsKept) {
  // The hostile-input review's case: trace 1 opened a second time with only a noopt stage.
  JitlogWriter writer;
  writer.header()
      .start_trace(1, "loop", 0)
      .trace_asm(1)
      .input_args("p0")
      .asm_addr(0x1000, 0x1100)
      .resop(opnum::kIntAdd, "i1,i0,1")
      .machine_code(0x10, Bytes(0x20, 0x90));
  const std::uint64_t at = writer.size();
  writer.start_trace(1, "loop", 0).trace(1).input_args("p0").resop(opnum::kIntAdd, "i1,i0,1");
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, at + 1);
  EXPECT_NE(forest.error->message.find("trace 1 was already started"), std::string::npos) << forest.error->message;
  ASSERT_EQ(forest.traces.size(), 1u);
  EXPECT_NE(forest.find(1)->stage(StageKind::Asm), nullptr);
}

TEST(JitlogMachineCode, RangeEndingBeforeItStartsIsAnError) {
  JitlogWriter writer;
  writer.header().start_trace(1, "loop", 0).trace_asm(1).input_args("p0");
  const std::uint64_t at = writer.size();
  writer.asm_addr(0x2000, 0x1000);
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, at);
  EXPECT_FALSE(trace_of(forest, 1).code);
}

// The asm stage has no merge points: its ops are placed through the opt ops sharing their descr.
TEST(JitlogMachineCode, OpSourcesPlaceAsmOpsThroughSharedDescrs) {
  JitlogWriter writer;
  writer.header()
      .start_trace(1, "loop", 0)
      .trace_opt(1)
      .input_args("p0")
      .init_merge_point()
      .merge_point(pypy_point("/p/a.py", 10, "f", 0, "A"))
      .resop_descr(opnum::kLabel, "?,p0," + target_token(0x50), 0x50)
      .resop_descr(opnum::kGuardTrue, "?,i1," + guard_descr(0xa), 0xa)
      .merge_point(pypy_point("/p/a.py", 20, "f", 8, "B"))
      .resop_descr(opnum::kGuardFalse, "?,i2," + guard_descr(0xb), 0xb)
      .trace_asm(1)
      .input_args("p0")
      .resop_descr(opnum::kLabel, "?,p0," + target_token(0x50), 0x50)
      .resop(opnum::kIncrementDebugCounter, "?,1234")
      .resop_descr(opnum::kGuardTrue, "?,i1," + guard_descr(0xa), 0xa)
      .resop(opnum::kIntAdd, "i3,i2,1")
      .resop_descr(opnum::kGuardFalse, "?,i3," + guard_descr(0xb), 0xb)
      .resop(opnum::kIntAdd, "i4,i3,1");
  const Forest forest = parse(writer);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const Trace& trace = trace_of(forest, 1);
  const auto sources = jl::op_sources(trace, stage_of(trace, StageKind::Asm));
  ASSERT_EQ(sources.size(), 6u);
  std::vector<std::int64_t> lines;
  for (const MergePoint* point : sources) lines.push_back(point ? point->line : -1);
  EXPECT_EQ(lines, (std::vector<std::int64_t>{10, 10, 10, 10, 20, 20}));

  const auto opt_sources = jl::op_sources(trace, stage_of(trace, StageKind::Opt));
  ASSERT_EQ(opt_sources.size(), 3u);
  EXPECT_EQ(opt_sources[2]->line, 20);
}

// ===========================================================================
// 6. Links between traces
// ===========================================================================

class JitlogLinks : public ::testing::Test {
 protected:
  static constexpr std::uint64_t kLoopStart = 0x7f0000010000;
  static constexpr std::uint64_t kGuardA = 0x7f00aaaa0010;
  static constexpr std::uint64_t kGuardB = 0x7f00aaaa0020;
  static constexpr std::uint64_t kLabel = 0x7f00bbbb0040;

  // Loop 1: opt and asm stages whose guards sit at different op indices.
  JitlogWriter& loop() {
    writer_.header()
        .start_trace(1, "loop", 0)
        .trace_opt(1)
        .input_args("p0,i0")
        .resop_descr(opnum::kLabel, "?,p0,i0," + target_token(kLabel), kLabel)
        .resop_descr(opnum::kGuardTrue, "?,i0," + guard_descr(kGuardA), kGuardA, "p0")
        .resop_descr(opnum::kGuardFalse, "?,i0," + guard_descr(kGuardB), kGuardB, "p0")
        .resop_descr(opnum::kJump, "?,p0,i0," + target_token(kLabel), kLabel)
        .trace_asm(1)
        .input_args("p0,i0")
        .asm_addr(kLoopStart, kLoopStart + 0x300)
        .resop_descr(opnum::kLabel, "?,p0,i0," + target_token(kLabel), kLabel)
        .resop(opnum::kIncrementDebugCounter, "?,1")
        .resop_descr(opnum::kGuardTrue, "?,i0," + guard_descr(kGuardA), kGuardA, "p0")
        .resop(opnum::kIntAdd, "i1,i0,1")
        .resop_descr(opnum::kGuardFalse, "?,i1," + guard_descr(kGuardB), kGuardB, "p0")
        .resop_descr(opnum::kJump, "?,p0,i1," + target_token(kLabel), kLabel);
    return writer_;
  }
  // A compiled trace with an asm stage and its own code block.
  JitlogWriter& compiled(std::uint64_t id, const std::string& kind, std::uint64_t descr, std::uint64_t start,
                         const std::string& jitdriver = "pypyjit") {
    writer_.start_trace(id, kind, descr, jitdriver)
        .trace_asm(id)
        .input_args("p0,i0")
        .asm_addr(start, start + 0x100)
        .resop_descr(opnum::kJump, "?,p0,i0," + target_token(kLabel), kLabel);
    return writer_;
  }
  Forest read() {
    Forest forest = parse(writer_);
    EXPECT_FALSE(forest.error) << diagnostics(forest);
    return forest;
  }
  JitlogWriter writer_;
};

TEST_F(JitlogLinks, BridgeHangsOffItsGuardThroughTheStartTraceDescr) {
  loop();
  compiled(2, "bridge", kGuardB, 0x7f0000020000).stitch_bridge(kGuardB, 0x7f0000020000);
  const Forest forest = read();
  const Trace& bridge = trace_of(forest, 2);
  EXPECT_EQ(bridge.kind, TraceKind::Bridge);
  EXPECT_TRUE(bridge.logged_as_bridge);
  EXPECT_EQ(bridge.jitdriver, "pypyjit");
  EXPECT_EQ(bridge.start_descr, kGuardB);
  ASSERT_TRUE(bridge.parent_guard);
  EXPECT_EQ(bridge.parent_guard->trace_id, 1u);
  EXPECT_EQ(bridge.parent_guard->op_index, 4u);  // index in the parent's asm stage
  EXPECT_EQ(bridge.stitched_at, 0x7f0000020000u);

  const Trace& parent = trace_of(forest, 1);
  const Operation& guard = stage_of(parent, StageKind::Asm).ops.at(4);
  EXPECT_EQ(guard.descr_number, kGuardB);
  EXPECT_EQ(guard.bridge, 2u);
  EXPECT_EQ(stage_of(parent, StageKind::Opt).ops.at(2).bridge, 2u);
  EXPECT_FALSE(stage_of(parent, StageKind::Asm).ops.at(2).bridge);  // the other guard has none
  EXPECT_EQ(parent.kind, TraceKind::Loop);
  EXPECT_FALSE(parent.parent_guard);
}

TEST_F(JitlogLinks, BridgeWithoutStitchStillLinksThroughItsGuard) {
  loop();
  compiled(2, "bridge", kGuardA, 0x7f0000020000);
  const Forest forest = read();
  const Trace& bridge = trace_of(forest, 2);
  EXPECT_EQ(bridge.kind, TraceKind::Bridge);
  EXPECT_FALSE(bridge.stitched_at);
  ASSERT_TRUE(bridge.parent_guard);
  EXPECT_EQ(bridge.parent_guard->op_index, 2u);
}

TEST_F(JitlogLinks, StitchedBridgeOfAGuardNotInTheLogIsStillABridge) {
  // The parent was compiled before _jitlog.enable().
  writer_.header();
  compiled(7, "bridge", 0x5150, 0x7f0000030000).stitch_bridge(0x5150, 0x7f0000030000);
  const Forest forest = read();
  const Trace& bridge = trace_of(forest, 7);
  EXPECT_EQ(bridge.kind, TraceKind::Bridge);
  EXPECT_EQ(bridge.stitched_at, 0x7f0000030000u);
  EXPECT_FALSE(bridge.parent_guard);
}

TEST_F(JitlogLinks, StitchToAnUnknownAddressSetsNothing) {
  loop();
  compiled(2, "bridge", kGuardA, 0x7f0000020000).stitch_bridge(kGuardA, 0x7f0000099999);
  const Forest forest = read();
  EXPECT_FALSE(trace_of(forest, 2).stitched_at);
  EXPECT_EQ(trace_of(forest, 2).kind, TraceKind::Bridge);  // the guard still links it
}

TEST_F(JitlogLinks, BridgeFromTheInterpreterIsClassifiedAsALoop) {
  // Function entry: START_TRACE says "bridge" with a ResumeFromInterpDescr uid
  // that no guard carries, and no STITCH_BRIDGE follows.
  loop();
  compiled(2, "bridge", 0x7f00cccc0000, 0x7f0000020000);
  const Forest forest = read();
  const Trace& entry = trace_of(forest, 2);
  EXPECT_EQ(entry.kind, TraceKind::Loop);
  EXPECT_TRUE(entry.logged_as_bridge);
  EXPECT_EQ(entry.start_descr, 0x7f00cccc0000u);
  EXPECT_FALSE(entry.parent_guard);
  EXPECT_FALSE(entry.stitched_at);
}

TEST_F(JitlogLinks, BridgeLinksToTheGuardCompiledBeforeIt) {
  // Guard uids are addresses: after a free, a later trace may reuse one.
  loop();
  compiled(2, "bridge", kGuardA, 0x7f0000020000);
  writer_.start_trace(3, "loop", 0)
      .trace_asm(3)
      .input_args("p0")
      .asm_addr(0x7f0000040000, 0x7f0000040100)
      .resop_descr(opnum::kGuardTrue, "?,i0," + guard_descr(kGuardA), kGuardA);
  compiled(4, "bridge", kGuardA, 0x7f0000050000);
  const Forest forest = read();
  ASSERT_TRUE(trace_of(forest, 2).parent_guard);
  EXPECT_EQ(trace_of(forest, 2).parent_guard->trace_id, 1u);
  ASSERT_TRUE(trace_of(forest, 4).parent_guard);
  EXPECT_EQ(trace_of(forest, 4).parent_guard->trace_id, 3u);
  EXPECT_EQ(trace_of(forest, 4).parent_guard->op_index, 0u);
}

TEST_F(JitlogLinks, JumpEntersTheTraceOfItsLabel) {
  loop();
  compiled(2, "bridge", kGuardA, 0x7f0000020000);
  writer_.start_trace(3, "loop", 0)
      .trace_asm(3)
      .input_args("p0")
      .resop_descr(opnum::kJump, "?,p0," + target_token(0x999), 0x999);  // label not in the log
  const Forest forest = read();
  const Operation& bridge_jump = stage_of(trace_of(forest, 2), StageKind::Asm).ops.at(0);
  EXPECT_EQ(bridge_jump.name, "jump");
  EXPECT_EQ(bridge_jump.target_trace, 1u);
  EXPECT_EQ(stage_of(trace_of(forest, 1), StageKind::Asm).ops.back().target_trace, 1u);
  EXPECT_FALSE(stage_of(trace_of(forest, 3), StageKind::Asm).ops.at(0).target_trace);
}

TEST_F(JitlogLinks, CallAssemblerResolvesThroughTheLoopNumberInItsDescr) {
  loop();
  writer_.start_trace(2, "loop", 0)
      .trace_asm(2)
      .input_args("p0")
      .resop_descr(opnum::kCallAssemblerR, "p5,p0,p1,<Loop1>", 0x7f0012340000)
      .resop_descr(opnum::kCallAssemblerI, "i5,p0,<Loop42>", 0x7f0012350000)   // no trace 42
      .resop_descr(opnum::kCallAssemblerI, "i6,p0,<Loop-1>", 0x7f0012360000);  // a tmp callback
  const Forest forest = read();
  const auto& ops = stage_of(trace_of(forest, 2), StageKind::Asm).ops;
  EXPECT_EQ(ops.at(0).target_trace, 1u);
  EXPECT_FALSE(ops.at(1).target_trace);
  EXPECT_FALSE(ops.at(2).target_trace);
}

TEST_F(JitlogLinks, CallAssemblerFollowsARedirectToTheNewBlocksAddressOnX86) {
  // x86 writes newlooptoken._ll_raw_start: the new block's ASM_ADDR start.
  const std::uint64_t token = 0x7f610b90bd70;
  const std::uint64_t new_token = 0x7f610b90be50;
  const std::uint64_t block = 0x7f610bb081f0;
  loop();
  writer_.start_trace(2, "loop", 0)
      .trace_opt(2)
      .input_args("p0")
      .resop_descr(opnum::kCallAssemblerR, "p5,p0,<Loop-1>", token)
      .trace_asm(2)
      .input_args("p0")
      .asm_addr(0x7f0000060000, 0x7f0000060400)
      .resop_descr(opnum::kCallAssemblerR, "p5,p0,<Loop-1>", token)
      .tmp_callback(token, -1);
  compiled(3, "bridge", 0x7f00dddd0000, block);  // a function entry
  writer_.redirect_assembler(token, new_token, block);
  const Forest forest = read();

  ASSERT_EQ(forest.tmp_callbacks.size(), 1u);
  EXPECT_EQ(forest.tmp_callbacks[0].token, token);
  EXPECT_EQ(forest.tmp_callbacks[0].number, -1);
  ASSERT_EQ(forest.redirects.size(), 1u);
  EXPECT_EQ(forest.redirects[0].target_trace, 3u);
  EXPECT_EQ(stage_of(trace_of(forest, 2), StageKind::Asm).ops.at(0).target_trace, 3u);
  EXPECT_EQ(stage_of(trace_of(forest, 2), StageKind::Opt).ops.at(0).target_trace, 3u);
}

TEST_F(JitlogLinks, CallAssemblerFollowsARedirectToATraceIdOnOtherBackends) {
  const std::uint64_t token = 0x4000100;
  loop();
  writer_.start_trace(2, "loop", 0)
      .trace_asm(2)
      .input_args("p0")
      .resop_descr(opnum::kCallAssemblerI, "i5,p0,<Loop-1>", token)
      .tmp_callback(token, -1);
  compiled(3, "loop", 0, 0x7f0000070000, "");
  writer_.redirect_assembler(token, 0x4000200, 3);  // aarch64/ppc/s390x: newlooptoken.number
  const Forest forest = read();
  EXPECT_EQ(forest.redirects.at(0).target_trace, 3u);
  EXPECT_EQ(stage_of(trace_of(forest, 2), StageKind::Asm).ops.at(0).target_trace, 3u);
}

TEST_F(JitlogLinks, RedirectChainsAreFollowed) {
  loop();
  writer_.start_trace(2, "loop", 0)
      .trace_asm(2)
      .input_args("p0")
      .resop_descr(opnum::kCallAssemblerI, "i5,p0,<Loop-1>", 0x100);
  compiled(3, "loop", 0, 0x7f0000080000, "");
  compiled(4, "loop", 0, 0x7f0000090000, "");
  writer_.redirect_assembler(0x100, 0x200, 0x7f0000080000).redirect_assembler(0x200, 0x300, 0x7f0000090000);
  const Forest forest = read();
  EXPECT_EQ(forest.redirects.at(0).target_trace, 3u);
  EXPECT_EQ(forest.redirects.at(1).target_trace, 4u);
  EXPECT_EQ(stage_of(trace_of(forest, 2), StageKind::Asm).ops.at(0).target_trace, 4u);
}

TEST_F(JitlogLinks, RedirectToUnknownCodeResolvesNothing) {
  loop();
  writer_.start_trace(2, "loop", 0)
      .trace_asm(2)
      .input_args("p0")
      .resop_descr(opnum::kCallAssemblerI, "i5,p0,<Loop-1>", 0x100)
      .redirect_assembler(0x100, 0x200, 0x7f00deadbeef);
  const Forest forest = read();
  EXPECT_FALSE(forest.redirects.at(0).target_trace);
  EXPECT_FALSE(stage_of(trace_of(forest, 2), StageKind::Asm).ops.at(0).target_trace);
}

// vmprof-python test_v3_redirect_assembler: REDIRECT(15, 17, 16) links trace 0's
// call_assembler_i (descr 15) to trace 16.
TEST(JitlogVmprofPythonVectors, V3RedirectAssembler) {
  JitlogWriter writer(3, 8);
  writer.header()
      .start_trace(0, "loop", 0)
      .trace_asm(0)
      .resop_descr(opnum::kCallAssemblerI, "i0,<Loop-1>", 15)
      .start_trace(16, "loop", 0)
      .trace_asm(16)
      .asm_addr(42, 44)
      .redirect_assembler(15, 17, 16);
  const Forest forest = parse(writer);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  EXPECT_EQ(forest.redirects.at(0).target_trace, 16u);
  const Operation& call = stage_of(trace_of(forest, 0), StageKind::Asm).ops.at(0);
  EXPECT_EQ(call.name, "call_assembler_i");
  EXPECT_EQ(call.target_trace, 16u);
}

// vmprof-python test_failing_guard: stitch_bridge(15, 42) makes the guard with descr 15 the bridge's.
TEST(JitlogVmprofPythonVectors, FailingGuard) {
  JitlogWriter writer(3, 8);
  writer.header()
      .start_trace(0, "loop", 0)
      .trace_asm(0)
      .resop_descr(opnum::kGuardTrue, "i0,descr", 15)
      .start_trace(16, "bridge", 15)
      .trace_asm(16)
      .asm_addr(42, 44)
      .stitch_bridge(15, 42);
  const Forest forest = parse(writer);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const Trace& bridge = trace_of(forest, 16);
  ASSERT_TRUE(bridge.parent_guard);
  EXPECT_EQ(bridge.parent_guard->trace_id, 0u);
  EXPECT_EQ(bridge.parent_guard->op_index, 0u);
  EXPECT_EQ(bridge.stitched_at, 42u);
}

// vmprof-python test_merge_point_encode: the SOURCE_CODE bytes a vmprof client appends.
TEST(JitlogVmprofPythonVectors, SourceCodeRecords) {
  JitlogWriter writer;
  writer.header().source_code("jitlog/test/data/code.py",
                              {{5, 4, "c = a * 2"}, {6, 8, "d = c * 3"}, {7, 4, "return d + 5"}});
  const std::string expected_tail =
      std::string("\x22\x18\x00\x00\x00jitlog/test/data/code.py", 29) + std::string("\x03\x00", 2) +
      std::string("\x05\x00\x04\x09\x00\x00\x00" "c = a * 2", 16) +
      std::string("\x06\x00\x08\x09\x00\x00\x00" "d = c * 3", 16) +
      std::string("\x07\x00\x04\x0c\x00\x00\x00" "return d + 5", 19);
  const Bytes& bytes = writer.bytes();
  ASSERT_GE(bytes.size(), expected_tail.size());
  EXPECT_EQ(std::string(bytes.end() - static_cast<std::ptrdiff_t>(expected_tail.size()), bytes.end()), expected_tail);

  writer.source_code("jitlog/test/data/code.py", {{2, 4, "return a + b"}});
  const Forest forest = parse(writer);
  ASSERT_FALSE(forest.error) << diagnostics(forest);
  const auto& lines = forest.source_code.at("jitlog/test/data/code.py");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines.at(5).indent, 4);
  EXPECT_EQ(lines.at(5).text, "c = a * 2");
  EXPECT_EQ(lines.at(6).indent, 8);
  EXPECT_EQ(lines.at(7).text, "return d + 5");
  EXPECT_EQ(lines.at(2).text, "return a + b");
}

// vmprof-python test_exception_recover, third case: a START_TRACE cut short.
TEST(JitlogVmprofPythonVectors, IncompleteLogKeepsTheCompleteTrace) {
  JitlogWriter writer(1, 8);
  writer.header().start_trace(0xffaa, "loop", 0).trace(0xffaa).raw(bytes_of({mark::kStartTrace}));
  const Forest forest = parse(writer);
  EXPECT_FALSE(forest.error) << diagnostics(forest);
  ASSERT_EQ(forest.traces.size(), 1u);
  EXPECT_EQ(forest.traces[0].id, 0xffaau);
  ASSERT_EQ(forest.warnings.size(), 1u);
  EXPECT_EQ(forest.warnings[0].offset, writer.size() - 1);
}

// ===========================================================================
// 7. Counters and aborts
// ===========================================================================

class JitlogCounters : public JitlogLinks {};

TEST_F(JitlogCounters, EntryBridgeAndLabelCountsGoWhereTheyBelong) {
  loop();
  compiled(2, "bridge", kGuardB, 0x7f0000020000).stitch_bridge(kGuardB, 0x7f0000020000);
  writer_.counter(1, 'e', 52100).counter(kLabel, 'l', 1037946858).counter(kGuardB, 'b', 32800);
  const Forest forest = read();
  const Trace& loop_trace = trace_of(forest, 1);
  const Trace& bridge = trace_of(forest, 2);

  EXPECT_EQ(loop_trace.entry_count, 52100u);  // 'b' is not added to the parent (vmprof-python does)
  EXPECT_EQ(loop_trace.label_count, 1037946858u);
  EXPECT_EQ(loop_trace.executions(), 52100u + 1037946858u);
  EXPECT_EQ(bridge.entry_count, 32800u);
  EXPECT_EQ(bridge.label_count, 0u);

  const Stage& loop_asm = stage_of(loop_trace, StageKind::Asm);
  EXPECT_EQ(loop_asm.ops.at(4).counter, 32800u);       // the guard's failures
  EXPECT_EQ(loop_asm.ops.at(2).counter, 0u);           // the other guard
  EXPECT_EQ(loop_asm.ops.at(0).counter, 1037946858u);  // the label's passes
  EXPECT_EQ(loop_asm.ops.at(5).counter, 0u);           // the jump shares the descr but is no label
  for (const auto& counter : forest.counters) EXPECT_TRUE(counter.matched) << counter.type << counter.number;
}

TEST_F(JitlogCounters, UnknownNumbersStayUnmatched) {
  loop();
  writer_.counter(99, 'e', 5).counter(0xdead, 'b', 6).counter(0xbeef, 'l', 7).counter(1, 'e', 8);
  const Forest forest = read();
  ASSERT_EQ(forest.counters.size(), 4u);
  EXPECT_FALSE(forest.counters[0].matched);
  EXPECT_FALSE(forest.counters[1].matched);
  EXPECT_FALSE(forest.counters[2].matched);
  EXPECT_TRUE(forest.counters[3].matched);
  EXPECT_EQ(forest.counters[1].type, 'b');
  EXPECT_EQ(forest.counters[1].number, 0xdeadu);
  EXPECT_EQ(forest.counters[1].count, 6);
  EXPECT_EQ(trace_of(forest, 1).entry_count, 8u);
  EXPECT_EQ(trace_of(forest, 1).label_count, 0u);
}

TEST_F(JitlogCounters, SeveralFlushesAreSummed) {
  // Each flush writes the deltas since the last one.
  loop();
  compiled(2, "bridge", kGuardA, 0x7f0000020000).stitch_bridge(kGuardA, 0x7f0000020000);
  writer_.counter(1, 'e', 10).counter(kGuardA, 'b', 3).counter(kLabel, 'l', 100);
  writer_.counter(1, 'e', 5).counter(kGuardA, 'b', 4).counter(kLabel, 'l', 50);
  const Forest forest = read();
  EXPECT_EQ(forest.counters.size(), 6u);
  EXPECT_EQ(trace_of(forest, 1).entry_count, 15u);
  EXPECT_EQ(trace_of(forest, 1).label_count, 150u);
  EXPECT_EQ(trace_of(forest, 2).entry_count, 7u);
  EXPECT_EQ(stage_of(trace_of(forest, 1), StageKind::Asm).ops.at(2).counter, 7u);
  EXPECT_EQ(stage_of(trace_of(forest, 1), StageKind::Asm).ops.at(0).counter, 150u);
}

TEST_F(JitlogCounters, CounterTypeOtherThanEBLIsAnErrorAtTheTypeByte) {
  loop();
  const std::uint64_t at = writer_.size();
  writer_.counter(1, 'x', 5);
  const Forest forest = parse(writer_);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, at + 1 + 8);
  EXPECT_EQ(forest.traces.size(), 1u);
}

TEST_F(JitlogCounters, AbortTraceMarksOnlyThatTrace) {
  loop();
  writer_.start_trace(2, "loop", 0).trace(2).input_args("p0").abort_trace(2).abort_trace(77);
  const Forest forest = read();
  EXPECT_FALSE(trace_of(forest, 1).aborted);
  EXPECT_TRUE(trace_of(forest, 2).aborted);
  EXPECT_FALSE(trace_of(forest, 2).code);
}

// ===========================================================================
// 8. Errors and incremental reading
// ===========================================================================

TEST(JitlogErrors, UnknownMarkerStopsReadingAtItsOffsetAndKeepsEarlierTraces) {
  JitlogWriter writer;
  writer.header().start_trace(1, "loop", 0).trace(1).input_args("p0").resop(opnum::kIntAdd, "i1,i0,1");
  const std::uint64_t bad = writer.size();
  writer.raw(bytes_of({0x42})).start_trace(2, "loop", 0);
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, bad);
  EXPECT_NE(forest.error->message.find("0x42"), std::string::npos) << forest.error->message;
  ASSERT_EQ(forest.traces.size(), 1u);
  EXPECT_EQ(stage_of(trace_of(forest, 1), StageKind::NoOpt).ops.size(), 1u);
  EXPECT_EQ(forest.bytes_read, writer.size());
}

// vmprof-python test_exception_recover, second case: a 0x00 after the header.
TEST(JitlogErrors, ZeroByteAfterTheHeaderIsAnUnknownMarker) {
  JitlogWriter writer;
  writer.header();
  const std::uint64_t at = writer.size();
  writer.raw(bytes_of({0x00}));
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, at);
  EXPECT_NE(forest.error->message.find("unknown marker 0x00"), std::string::npos) << forest.error->message;
}

TEST(JitlogErrors, FeedReturnsFalseOnceStoppedAndIgnoresLaterInput) {
  JitlogWriter good;
  good.header().start_trace(1, "loop", 0);
  jl::JitlogReader reader;
  EXPECT_TRUE(reader.feed(good.bytes()));
  const Bytes junk = bytes_of({0x99});
  EXPECT_FALSE(reader.feed(junk));
  JitlogWriter more;
  more.start_trace(2, "loop", 0);
  EXPECT_FALSE(reader.feed(more.bytes()));
  const Forest forest = reader.finish();
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, good.size());
  EXPECT_EQ(forest.traces.size(), 1u);
}

TEST(JitlogErrors, StageOfATraceNoStartTraceOpenedIsAnError) {
  JitlogWriter writer;
  writer.header().start_trace(1, "loop", 0).trace(1).input_args("p0");
  const std::uint64_t at = writer.size();
  writer.trace_opt(7);
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, at);
  EXPECT_NE(forest.error->message.find("7"), std::string::npos) << forest.error->message;
  EXPECT_NE(forest.error->message.find("START_TRACE"), std::string::npos) << forest.error->message;
  EXPECT_EQ(forest.traces.size(), 1u);
}

TEST(JitlogErrors, OpOutsideAnyStageIsAnError) {
  JitlogWriter writer;
  writer.header().start_trace(1, "loop", 0);
  const std::uint64_t at = writer.size();
  writer.resop(opnum::kIntAdd, "i1,i0,1");
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, at);
  EXPECT_NE(forest.error->message.find("RESOP"), std::string::npos) << forest.error->message;
}

TEST(JitlogErrors, TraceKindOtherThanLoopOrBridgeIsAnError) {
  JitlogWriter writer;
  writer.header();
  const std::uint64_t at = writer.size();
  writer.start_trace(1, "banana", 0);
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, at + 1 + 8);  // the kind string
  EXPECT_NE(forest.error->message.find("banana"), std::string::npos) << forest.error->message;
  EXPECT_TRUE(forest.traces.empty());
}

TEST(JitlogErrors, ResopMetaOutsideTheHeaderIsAnError) {
  JitlogWriter writer;
  writer.header();
  const std::uint64_t at = writer.size();
  writer.raw(bytes_of({mark::kResopMeta, 0x00, 0x00}));
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, at);
}

TEST(JitlogErrors, StringLengthAboveTheLimitIsAnErrorNotAnAllocation) {
  JitlogWriter writer;
  writer.header().start_trace(1, "loop", 0).trace(1);
  const std::uint64_t at = writer.size();
  writer.raw(bytes_of({mark::kInputArgs, 0xff, 0xff, 0xff, 0xff, 'p', '0'}));
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, at + 1);  // the length field
  EXPECT_NE(forest.error->message.find("4294967295"), std::string::npos) << forest.error->message;
  EXPECT_TRUE(forest.warnings.empty()) << diagnostics(forest);
  EXPECT_EQ(forest.traces.size(), 1u);
}

TEST(JitlogErrors, PlausibleLengthPastTheEndIsATruncationNotAnError) {
  JitlogWriter writer;
  writer.header().start_trace(1, "loop", 0).trace(1);
  const std::uint64_t at = writer.size();
  writer.raw(bytes_of({mark::kInputArgs, 0x00, 0x00, 0x00, 0x01, 'p', '0'}));  // 16 MiB announced
  const Forest forest = parse(writer);
  EXPECT_FALSE(forest.error) << diagnostics(forest);
  ASSERT_EQ(forest.warnings.size(), 1u);
  EXPECT_EQ(forest.warnings[0].offset, at);
  EXPECT_NE(forest.warnings[0].message.find("truncated"), std::string::npos) << forest.warnings[0].message;
  EXPECT_EQ(forest.bytes_read, writer.size());
}

TEST(JitlogErrors, TooManyMergePointSlotsIsAnError) {
  JitlogWriter writer;
  writer.header().start_trace(1, "loop", 0).trace(1);
  const std::uint64_t at = writer.size();
  writer.raw(bytes_of({mark::kInitMergePoint, 0xff, 0xff}));
  const Forest forest = parse(writer);
  ASSERT_TRUE(forest.error);
  EXPECT_EQ(forest.error->offset, at + 1);
}

TEST(JitlogIncremental, SyntheticLogFedByteByByteEqualsOneFeed) {
  JitlogWriter writer;
  writer.header()
      .start_trace(1, "loop", 0)
      .trace_opt(1)
      .input_args("p0,i0")
      .init_merge_point()
      .merge_point(pypy_point("/p/a.py", 3, "f", 0, "LOAD_FAST"))
      .common_prefix(0, "/p/a")
      .merge_point({mp_suffix(".py"), mp_int(4), mp_full("f"), mp_int(2), mp_full("STORE_FAST")})
      .resop_descr(opnum::kGuardTrue, "?,i0," + guard_descr(0x10), 0x10, "p0")
      .trace_asm(1)
      .input_args("p0,i0")
      .asm_addr(0x1000, 0x1100)
      .resop_descr(opnum::kGuardTrue, "?,i0," + guard_descr(0x10), 0x10, "p0")
      .machine_code(0x20, bytes_of({0x0f, 0x84, 1, 2, 3, 4}))
      .counter(1, 'e', 3)
      .source_code("/p/a.py", {{3, 4, "x = 1"}});
  const std::string whole = describe(parse(writer));
  jl::JitlogReader reader;
  for (std::uint8_t byte : writer.bytes()) ASSERT_TRUE(reader.feed(std::span<const std::uint8_t>(&byte, 1)));
  const Forest forest = reader.finish();
  EXPECT_EQ(describe(forest), whole);
  EXPECT_EQ(forest.source_code.at("/p/a.py").at(3).text, "x = 1");
}

TEST(JitlogIncremental, ReaderIsReusableAfterFinish) {
  JitlogWriter first;
  first.header().start_trace(1, "loop", 0);
  JitlogWriter second(2, 4);
  second.header("i686").start_trace(5, "loop", 0).start_trace(6, "loop", 0);
  jl::JitlogReader reader;
  reader.feed(first.bytes());
  const Forest a = reader.finish();
  reader.feed(second.bytes());
  const Forest b = reader.finish();
  ASSERT_EQ(a.traces.size(), 1u);
  ASSERT_EQ(b.traces.size(), 2u);
  EXPECT_EQ(b.header.word_size, 4u);
  EXPECT_EQ(b.header.header_count, 1u);
  EXPECT_EQ(b.bytes_read, second.size());
  EXPECT_EQ(b.traces[0].id, 5u);
}

// ===========================================================================
// Helpers for the real fixtures
// ===========================================================================

Bytes inflate(const std::filesystem::path& path) {
  Bytes out;
  jitprof::binio::read_file_chunks(path, [&](std::span<const std::uint8_t> chunk) {
    out.insert(out.end(), chunk.begin(), chunk.end());
  });
  return out;
}

const Bytes& fixture_bytes(const std::string& name) {
  static std::map<std::string, Bytes> cache;
  auto it = cache.find(name);
  if (it == cache.end()) it = cache.emplace(name, inflate(kFixtures / (name + ".jitlog.gz"))).first;
  return it->second;
}

const Forest& fixture_forest(const std::string& name) {
  static std::map<std::string, Forest> cache;
  auto it = cache.find(name);
  if (it == cache.end()) it = cache.emplace(name, jl::read_jitlog(kFixtures / (name + ".jitlog.gz"))).first;
  return it->second;
}

// An independent decoder of record boundaries (sizes only, no meaning), used
// as the oracle for record counts and truncation points.
struct ScannedRecord {
  std::uint64_t offset;
  std::uint64_t end;
  std::uint8_t mark;
};

std::vector<ScannedRecord> scan_records(const Bytes& data) {
  std::vector<ScannedRecord> records;
  std::size_t pos = 0;
  unsigned word = 8;
  unsigned version = 4;
  std::vector<bool> slot_is_int;
  auto need = [&](std::size_t count) {
    if (count > data.size() - pos) throw std::runtime_error("scan ran past the end at " + std::to_string(pos));
  };
  auto uint = [&](std::size_t width) {
    need(width);
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < width; ++i) value |= std::uint64_t{data[pos + i]} << (8 * i);
    pos += width;
    return value;
  };
  auto skip = [&](std::size_t count) {
    need(count);
    pos += count;
  };
  auto skip_str = [&] {
    const std::uint64_t length = uint(4);
    need(length);
    pos += length;
  };
  while (pos < data.size()) {
    const std::size_t start = pos;
    const std::uint8_t marker = data[pos++];
    switch (marker) {
      case mark::kHeader: {
        version = static_cast<unsigned>(uint(2));
        word = uint(1) ? 4 : 8;
        skip_str();
        if (uint(1) != mark::kResopMeta) throw std::runtime_error("header without op table");
        for (std::uint64_t n = uint(2); n > 0; --n) {
          uint(2);
          skip_str();
        }
        break;
      }
      case mark::kStartTrace:
        uint(word);
        skip_str();
        uint(word);
        if (version >= 2) skip_str();
        break;
      case mark::kTrace:
      case mark::kTraceOpt:
      case mark::kTraceAsm:
        slot_is_int.clear();
        uint(word);
        break;
      case mark::kInputArgs: skip_str(); break;
      case mark::kResop:
        uint(2);
        skip_str();
        if (version >= 2) skip_str();
        break;
      case mark::kResopDescr:
        uint(2);
        skip_str();
        uint(word);
        if (version >= 2) skip_str();
        break;
      case mark::kAsmAddr:
      case mark::kStitchBridge: skip(2 * word); break;
      case mark::kAsm:
        uint(2);
        skip_str();
        break;
      case mark::kInitMergePoint:
        slot_is_int.clear();
        for (std::uint64_t n = uint(2); n > 0; --n) {
          uint(1);
          slot_is_int.push_back(uint(1) == 'i');
        }
        break;
      case mark::kMergePoint:
        for (bool is_int : slot_is_int) {
          const std::uint64_t tag = uint(1);
          if (is_int)
            uint(8);
          else if (tag != 0xef)
            skip_str();
        }
        break;
      case mark::kCommonPrefix:
        uint(1);
        skip_str();
        break;
      case mark::kCounter: skip(word + 1 + 8); break;
      case mark::kAbortTrace: uint(word); break;
      case mark::kSourceCode:
        skip_str();
        for (std::uint64_t n = uint(2); n > 0; --n) {
          skip(3);
          skip_str();
        }
        break;
      case mark::kRedirectAssembler: skip(3 * word); break;
      case mark::kTmpCallback: skip(word + 8); break;
      default: throw std::runtime_error("scan: unknown marker at " + std::to_string(start));
    }
    records.push_back({start, pos, marker});
  }
  return records;
}

std::size_t count_marks(const std::vector<ScannedRecord>& records, std::uint8_t marker) {
  return static_cast<std::size_t>(
      std::count_if(records.begin(), records.end(), [&](const ScannedRecord& r) { return r.mark == marker; }));
}

// PyPy's own PYPYLOG text (jit-backend-addr, jit-backend-counts) of the same run.
struct PypyLog {
  struct Block {
    std::optional<std::uint64_t> loop;   // "Loop N (...)"
    std::optional<std::uint64_t> guard;  // "bridge out of Guard 0xD"
    std::string name;                    // a loop's printable location
    std::uint64_t gc_table = 0;
    std::uint64_t end = 0;
  };
  std::vector<Block> blocks;
  std::map<std::uint64_t, std::uint64_t> entry_counts;   // loop number -> count
  std::map<std::uint64_t, std::uint64_t> bridge_counts;  // guard descr -> count
  std::map<std::uint64_t, std::uint64_t> label_counts;   // TargetToken uid -> count
};

// The text after `prefix` when `line` starts with it.
std::optional<std::string_view> after(std::string_view line, std::string_view prefix) {
  if (!line.starts_with(prefix)) return std::nullopt;
  return line.substr(prefix.size());
}

// A whole field of digits; throws on anything else, so format drift is noticed.
std::uint64_t number(std::string_view text, int base = 10) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
    throw std::runtime_error("not a number: '" + std::string(text) + "'");
  return value;
}

// "KEY:COUNT" of jit-backend-counts.
std::pair<std::string_view, std::uint64_t> count_line(std::string_view text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) throw std::runtime_error("no count in '" + std::string(text) + "'");
  return {text.substr(0, colon), number(text.substr(colon + 1))};
}

PypyLog read_pypylog(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  PypyLog log;
  std::string text;
  auto current = [&]() -> PypyLog::Block& {
    if (log.blocks.empty()) throw std::runtime_error("address line outside a block: " + text);
    return log.blocks.back();
  };
  while (std::getline(in, text)) {
    const std::string_view line = text;
    const std::string_view trimmed = line.substr(std::min(line.find_first_not_of(' '), line.size()));
    if (auto rest = after(line, "Loop ")) {
      // Loop N (NAME) has address 0x... to 0x... (bootstrap 0x...)
      const std::size_t space = rest->find(' ');
      const std::size_t name_end = rest->find(") has address ");
      if (space == std::string_view::npos || name_end == std::string_view::npos || rest->substr(space, 2) != " (")
        throw std::runtime_error("unexpected loop line: " + text);
      log.blocks.push_back({number(rest->substr(0, space)), std::nullopt,
                            std::string(rest->substr(space + 2, name_end - space - 2))});
    } else if (auto guard = after(line, "bridge out of Guard 0x")) {
      log.blocks.push_back({std::nullopt, number(guard->substr(0, guard->find(' ')), 16), ""});
    } else if (auto gc_table = after(trimmed, "gc table: 0x")) {
      current().gc_table = number(*gc_table, 16);
    } else if (auto end = after(trimmed, "end: 0x")) {
      current().end = number(*end, 16);
    } else if (auto entry = after(line, "entry ")) {
      const auto [loop, count] = count_line(*entry);
      log.entry_counts[number(loop)] += count;
    } else if (auto bridge = after(line, "bridge ")) {
      const auto [guard_uid, count] = count_line(*bridge);
      log.bridge_counts[number(guard_uid)] += count;
    } else if (auto token = after(line, "TargetToken(")) {
      const auto [uid, count] = count_line(*token);
      if (!uid.ends_with(")")) throw std::runtime_error("unexpected label line: " + text);
      log.label_counts[number(uid.substr(0, uid.size() - 1))] += count;
    }
  }
  return log;
}

// A loop's printable location from get_printable_location:
// "co_name;co_filename:co_firstlineno-line~#bytecode_index OPCODE".
struct PythonLocation {
  std::string function, file, opcode;
  std::int64_t first_line = 0, line = 0, bytecode_index = 0;
};

std::optional<PythonLocation> parse_python_location(std::string_view name) {
  const std::size_t semicolon = name.find(';');
  const std::size_t space = name.rfind(' ');
  const std::size_t hash = name.rfind("~#");
  if (semicolon == std::string_view::npos || space == std::string_view::npos || hash == std::string_view::npos ||
      !(semicolon < hash && hash < space))
    return std::nullopt;  // e.g. "tuple.contains [str]" of another jitdriver
  const std::string_view place = name.substr(semicolon + 1, hash - semicolon - 1);  // file:first-line
  const std::size_t colon = place.rfind(':');
  const std::size_t dash = place.rfind('-');
  if (colon == std::string_view::npos || dash == std::string_view::npos || dash < colon) return std::nullopt;
  PythonLocation location;
  location.function = std::string(name.substr(0, semicolon));
  location.file = std::string(place.substr(0, colon));
  location.first_line = static_cast<std::int64_t>(number(place.substr(colon + 1, dash - colon - 1)));
  location.line = static_cast<std::int64_t>(number(place.substr(dash + 1)));
  location.bytecode_index = static_cast<std::int64_t>(number(name.substr(hash + 2, space - hash - 2)));
  location.opcode = std::string(name.substr(space + 1));
  return location;
}

bool is_opcode_name(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return (c >= 'A' && c <= 'Z') || c == '_'; });
}

// 1-based number of the first line of a file that contains `text`.
int line_of(const std::filesystem::path& path, const std::string& text) {
  std::ifstream in(path);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number)
    if (line.find(text) != std::string::npos) return number;
  throw std::runtime_error("'" + text + "' not in " + path.string());
}

const Operation* asm_op_with_descr(const Trace& trace, std::uint64_t descr, const std::string& name_prefix) {
  const Stage* stage = trace.stage(StageKind::Asm);
  if (stage == nullptr) return nullptr;
  for (const Operation& op : stage->ops)
    if (op.descr_number == descr && op.name.starts_with(name_prefix)) return &op;
  return nullptr;
}

// ===========================================================================
// 9. Real PyPy 7.3.11 fixtures against PYPYLOG
// ===========================================================================

class JitlogFixture : public ::testing::TestWithParam<std::string> {
 protected:
  const Forest& forest() const { return fixture_forest(GetParam()); }
  PypyLog pypylog() const { return read_pypylog(kFixtures / (GetParam() + ".pypylog")); }
};

TEST_P(JitlogFixture, ReadsToTheEndWithoutDiagnostics) {
  const Forest& f = forest();
  EXPECT_FALSE(f.error) << diagnostics(f);
  EXPECT_TRUE(f.warnings.empty()) << diagnostics(f);
  EXPECT_EQ(f.header.version, 4);
  EXPECT_EQ(f.header.word_size, 8u);
  EXPECT_EQ(f.header.machine, "x86_64");
  EXPECT_EQ(f.header.header_count, 1u);
  EXPECT_EQ(f.header.op_names.size(), 224u);  // PyPy 7.3.11 amd64
  EXPECT_EQ(f.header.op_names.at(1), "jump");
  EXPECT_EQ(f.header.op_names.at(193), "enter_portal_frame");
  EXPECT_EQ(f.bytes_read, fixture_bytes(GetParam()).size());
}

TEST_P(JitlogFixture, RecordCountsMatchAnIndependentScan) {
  const Forest& f = forest();
  const auto records = scan_records(fixture_bytes(GetParam()));
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.front().end, 4345u);  // the 7.3.11 header's size (reference §2.4)
  EXPECT_EQ(f.records, records.size());
  EXPECT_EQ(f.traces.size(), count_marks(records, mark::kStartTrace));
  EXPECT_EQ(f.counters.size(), count_marks(records, mark::kCounter));
  EXPECT_EQ(f.redirects.size(), count_marks(records, mark::kRedirectAssembler));
  EXPECT_EQ(f.tmp_callbacks.size(), count_marks(records, mark::kTmpCallback));
  std::size_t stages = 0, ops = 0, points = 0, code = 0;
  for (const Trace& trace : f.traces) {
    stages += trace.stages.size();
    for (const Stage& stage : trace.stages) {
      ops += stage.ops.size();
      points += stage.merge_points.size();
      code += static_cast<std::size_t>(
          std::count_if(stage.ops.begin(), stage.ops.end(), [](const Operation& op) { return op.code.has_value(); }));
    }
  }
  EXPECT_EQ(stages, count_marks(records, mark::kTrace) + count_marks(records, mark::kTraceOpt) +
                        count_marks(records, mark::kTraceAsm));
  EXPECT_EQ(ops, count_marks(records, mark::kResop) + count_marks(records, mark::kResopDescr));
  EXPECT_EQ(points, count_marks(records, mark::kMergePoint));
  EXPECT_EQ(code, count_marks(records, mark::kAsm));
}

TEST_P(JitlogFixture, CodeRangesAreExactlyThePypylogBlocks) {
  const PypyLog log = pypylog();
  ASSERT_FALSE(log.blocks.empty());
  std::set<std::pair<std::uint64_t, std::uint64_t>> expected, actual;
  for (const auto& block : log.blocks) {
    ASSERT_NE(block.gc_table, 0u);
    ASSERT_GT(block.end, block.gc_table);
    expected.insert({block.gc_table, block.end});
  }
  for (const Trace& trace : forest().traces)
    if (trace.code) actual.insert({trace.code->start, trace.code->end});
  EXPECT_EQ(actual, expected);
}

TEST_P(JitlogFixture, EveryPypylogLoopIsTheTraceWithThatNumber) {
  const Forest& f = forest();
  std::set<std::uint64_t> pypylog_loops;
  for (const auto& block : pypylog().blocks) {
    if (!block.loop) continue;
    pypylog_loops.insert(*block.loop);
    const Trace* trace = f.find(*block.loop);
    ASSERT_NE(trace, nullptr) << "Loop " << *block.loop;
    ASSERT_TRUE(trace->code);
    EXPECT_EQ(trace->code->start, block.gc_table) << "Loop " << *block.loop;
    EXPECT_EQ(trace->kind, TraceKind::Loop) << "Loop " << *block.loop;
  }
  // And the reader calls nothing else a loop (function-entry "bridges" included).
  std::set<std::uint64_t> reader_loops;
  for (const Trace& trace : f.traces)
    if (trace.kind == TraceKind::Loop && trace.code) reader_loops.insert(trace.id);
  EXPECT_EQ(reader_loops, pypylog_loops);
}

// PyPy names a loop of the Python jitdriver after its green key:
// "co_name;co_filename:co_firstlineno-line~#bytecode_index OPCODE". That is
// the position of the trace's first merge point.
TEST_P(JitlogFixture, PypylogLoopNamesAreTheTracesSourcePositions) {
  std::size_t checked = 0;
  for (const auto& block : pypylog().blocks) {
    if (!block.loop) continue;
    const auto location = parse_python_location(block.name);
    if (!location) continue;
    const Trace& trace = trace_of(forest(), *block.loop);
    const MergePoint* source = trace.source();
    ASSERT_NE(source, nullptr) << block.name;
    EXPECT_EQ(source->function, location->function) << block.name;
    EXPECT_EQ(source->file, location->file) << block.name;
    EXPECT_EQ(source->line, location->line) << block.name;
    EXPECT_EQ(source->bytecode_index, location->bytecode_index) << block.name;
    EXPECT_EQ(source->opcode, location->opcode) << block.name;
    ++checked;
  }
  EXPECT_GE(checked, 2u);  // _structseq's __get__ and the program's own loop
}

// The same bytecode position must decode to the same line and opcode in every
// stage of every trace (each stage compresses its strings independently).
TEST_P(JitlogFixture, MergePointsAgreeAcrossStagesAndTraces) {
  std::map<std::tuple<std::string, std::string, std::int64_t>, std::pair<std::int64_t, std::string>> seen;
  std::size_t points = 0;
  for (const Trace& trace : forest().traces) {
    for (const Stage& stage : trace.stages) {
      for (const MergePoint& point : stage.merge_points) {
        ++points;
        ASSERT_TRUE(point.file.ends_with(".py") || point.file.starts_with("<builtin>/")) << point.file;
        ASSERT_FALSE(point.function.empty());
        ASSERT_TRUE(is_opcode_name(point.opcode)) << point.opcode;
        ASSERT_GT(point.line, 0);
        const auto key = std::make_tuple(point.file, point.function, point.bytecode_index);
        const auto value = std::make_pair(point.line, point.opcode);
        auto [it, inserted] = seen.emplace(key, value);
        ASSERT_EQ(it->second, value) << point.file << " " << point.function << " #" << point.bytecode_index
                                     << " in trace " << trace.id;
      }
    }
  }
  EXPECT_GT(points, 50u);
}

TEST_P(JitlogFixture, EveryPypylogBridgeHangsOffItsGuard) {
  const Forest& f = forest();
  std::set<std::uint64_t> pypylog_guards, reader_guards;
  for (const auto& block : pypylog().blocks) {
    if (!block.guard) continue;
    const std::uint64_t guard = *block.guard;
    pypylog_guards.insert(guard);
    const Trace* bridge = jitprof::jitlog::TraceResolver(f).find(block.gc_table).trace;
    ASSERT_NE(bridge, nullptr) << "bridge out of Guard " << hex(guard);
    EXPECT_EQ(bridge->code->start, block.gc_table);
    EXPECT_EQ(bridge->kind, TraceKind::Bridge);
    EXPECT_EQ(bridge->start_descr, guard);
    EXPECT_EQ(bridge->stitched_at, block.gc_table);  // STITCH_BRIDGE names the block start
    ASSERT_TRUE(bridge->parent_guard) << "bridge " << bridge->id;
    const Trace& parent = trace_of(f, bridge->parent_guard->trace_id);
    const Operation& guard_op = stage_of(parent, StageKind::Asm).ops.at(bridge->parent_guard->op_index);
    EXPECT_TRUE(guard_op.is_guard()) << guard_op.name;
    EXPECT_EQ(guard_op.descr_number, guard);
    EXPECT_EQ(guard_op.bridge, bridge->id);
    EXPECT_LT(parent.code_sequence, bridge->code_sequence);  // compiled before its bridge
  }
  for (const Trace& trace : f.traces)
    if (trace.kind == TraceKind::Bridge) reader_guards.insert(trace.start_descr);
  EXPECT_EQ(reader_guards, pypylog_guards);
}

TEST_P(JitlogFixture, EntryCountsMatchPypylog) {
  const Forest& f = forest();
  const PypyLog log = pypylog();
  ASSERT_FALSE(log.entry_counts.empty());
  for (const auto& [loop, count] : log.entry_counts) {
    const Trace* trace = f.find(loop);
    ASSERT_NE(trace, nullptr) << "entry " << loop;
    EXPECT_EQ(trace->entry_count, count) << "entry " << loop;
  }
}

TEST_P(JitlogFixture, BridgeCountsMatchPypylogOnTheBridgeAndItsGuard) {
  const Forest& f = forest();
  const PypyLog log = pypylog();
  ASSERT_FALSE(log.bridge_counts.empty());
  for (const auto& [guard, count] : log.bridge_counts) {
    const Trace* bridge = nullptr;
    for (const Trace& trace : f.traces)
      if (trace.kind == TraceKind::Bridge && trace.start_descr == guard) bridge = &trace;
    ASSERT_NE(bridge, nullptr) << "bridge " << guard;
    EXPECT_EQ(bridge->entry_count, count) << "bridge " << guard;
    ASSERT_TRUE(bridge->parent_guard);
    const Operation* guard_op = asm_op_with_descr(trace_of(f, bridge->parent_guard->trace_id), guard, "guard_");
    ASSERT_NE(guard_op, nullptr);
    EXPECT_EQ(guard_op->counter, count) << "bridge " << guard;
  }
}

TEST_P(JitlogFixture, LabelCountsMatchPypylog) {
  const Forest& f = forest();
  const PypyLog log = pypylog();
  ASSERT_FALSE(log.label_counts.empty());
  for (const auto& [token, count] : log.label_counts) {
    const Operation* label = nullptr;
    for (const Trace& trace : f.traces)
      if (const Operation* op = asm_op_with_descr(trace, token, "label")) label = op;
    ASSERT_NE(label, nullptr) << "TargetToken(" << token << ")";
    EXPECT_EQ(label->counter, count) << "TargetToken(" << token << ")";
  }
}

TEST_P(JitlogFixture, EveryCounterRecordIsCreditedAndAccountedFor) {
  const Forest& f = forest();
  const PypyLog log = pypylog();
  std::uint64_t pypylog_total = 0, jitlog_total = 0;
  for (const auto& counts : {log.entry_counts, log.bridge_counts, log.label_counts})
    for (const auto& [key, count] : counts) pypylog_total += count;
  for (const auto& counter : f.counters) {
    EXPECT_TRUE(counter.matched) << counter.type << " " << counter.number;
    jitlog_total += static_cast<std::uint64_t>(counter.count);
  }
  EXPECT_EQ(jitlog_total, pypylog_total);
}

TEST_P(JitlogFixture, MachineCodeOfEachOpLiesInsideItsBlockInOrder) {
  for (const Trace& trace : forest().traces) {
    const Stage* stage = trace.stage(StageKind::Asm);
    if (stage == nullptr) continue;
    ASSERT_TRUE(trace.code) << "trace " << trace.id;
    const Operation* previous = nullptr;
    for (const Operation& op : stage->ops) {
      if (!op.code) continue;
      const std::uint64_t begin = trace.code->start + op.code->offset;
      EXPECT_LE(begin + op.code->bytes.size(), trace.code->end) << "trace " << trace.id << " " << op.name;
      // Each dump runs up to the next op's offset.
      if (previous) {
        EXPECT_EQ(previous->code->offset + previous->code->bytes.size(), op.code->offset)
            << "trace " << trace.id << " " << op.name;
      }
      previous = &op;
    }
    ASSERT_NE(previous, nullptr);
    // The last dump runs to the end of the block, failure stubs included.
    EXPECT_EQ(trace.code->start + previous->code->offset + previous->code->bytes.size(), trace.code->end)
        << "trace " << trace.id;
  }
}

TEST_P(JitlogFixture, DisassemblyOfEachOpIsContiguousAndCoversItsBytes) {
  const Forest& f = forest();
  const jl::Disassembler disassembler(f.header.machine, f.header.word_size);
  std::size_t checked = 0;
  for (const Trace& trace : f.traces) {
    const Stage* stage = trace.stage(StageKind::Asm);
    if (stage == nullptr || !trace.code) continue;
    bool first = true;
    for (const Operation& op : stage->ops) {
      if (!op.code || op.code->bytes.empty()) continue;
      const std::uint64_t address = trace.code->start + op.code->offset;
      const auto instructions = disassembler.disassemble(op.code->bytes, address);
      std::uint64_t expected = address;
      std::size_t total = 0;
      for (const auto& instruction : instructions) {
        ASSERT_EQ(instruction.address, expected) << "trace " << trace.id << " " << op.name;
        expected += instruction.size;
        total += instruction.size;
      }
      EXPECT_EQ(total, op.code->bytes.size()) << "trace " << trace.id << " " << op.name;
      if (first && trace.kind == TraceKind::Loop) {
        // The first op's code is real instructions, not data.
        for (const auto& instruction : instructions)
          EXPECT_NE(instruction.mnemonic, ".byte") << "trace " << trace.id << " " << op.name;
      }
      first = false;
      ++checked;
    }
  }
  EXPECT_GT(checked, 100u);
}

TEST_P(JitlogFixture, PlainAndGzipInputGiveTheSameForest) {
  const auto plain = std::filesystem::temp_directory_path() /
                     ("jitlog_test_" + std::to_string(::getpid()) + "_" + GetParam() + ".jitlog");
  {
    std::ofstream out(plain, std::ios::binary);
    const Bytes& data = fixture_bytes(GetParam());
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  }
  const Forest from_plain = jl::read_jitlog(plain);
  std::filesystem::remove(plain);
  EXPECT_EQ(describe(from_plain), describe(forest()));
}

TEST_P(JitlogFixture, FeedingInChunksGivesTheSameForestAsOneFeed) {
  const Bytes& data = fixture_bytes(GetParam());
  const std::string whole = describe(jl::parse_jitlog(data));
  EXPECT_EQ(whole, describe(forest()));  // read_jitlog's 1 MiB chunks
  for (std::size_t chunk : {std::size_t{1}, std::size_t{3}, std::size_t{4096}}) {
    jl::JitlogReader reader;
    for (std::size_t at = 0; at < data.size(); at += chunk) {
      const std::size_t size = std::min(chunk, data.size() - at);
      ASSERT_TRUE(reader.feed(std::span<const std::uint8_t>(data.data() + at, size))) << "chunk " << chunk;
    }
    EXPECT_EQ(describe(reader.finish()), whole) << "chunk size " << chunk;
  }
}

INSTANTIATE_TEST_SUITE_P(PyPy7311, JitlogFixture, ::testing::Values("hotloop", "hotloop_native_mem", "recursion"));

TEST(JitlogHotloop, HottestTraceIsFsLoopAndTheBridgeInlinesG) {
  const Forest& f = fixture_forest("hotloop");
  const auto program = kPrograms / "hotloop.py";
  const int loop_line = line_of(program, "for i in range(n):");
  const int g_line = line_of(program, "return x * 3 + 1");
  ASSERT_EQ(loop_line, 12);
  ASSERT_EQ(g_line, 7);

  const Trace* hottest = nullptr;
  for (const Trace& trace : f.traces)
    if (!hottest || trace.executions() > hottest->executions()) hottest = &trace;
  ASSERT_NE(hottest, nullptr);
  EXPECT_EQ(hottest->kind, TraceKind::Loop);
  EXPECT_GT(hottest->label_count, 1000000u);  // 20 × 3e6 iterations
  const MergePoint* source = hottest->source();
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(source->function, "f");
  EXPECT_TRUE(source->file.ends_with("hotloop.py")) << source->file;
  EXPECT_EQ(source->line, loop_line);
  EXPECT_EQ(source->opcode, "FOR_ITER");

  // The `if i % 7 == 0` branch is a bridge off the loop, with g inlined.
  const Trace* bridge = nullptr;
  for (const Trace& trace : f.traces)
    if (trace.kind == TraceKind::Bridge && trace.parent_guard && trace.parent_guard->trace_id == hottest->id)
      bridge = &trace;
  ASSERT_NE(bridge, nullptr);
  bool saw_g = false;
  for (const MergePoint& point : stage_of(*bridge, StageKind::Opt).merge_points) {
    if (point.function != "g") continue;
    saw_g = true;
    EXPECT_EQ(point.inline_depth, 1u);
    EXPECT_EQ(point.line, g_line);
    EXPECT_TRUE(point.file.ends_with("hotloop.py")) << point.file;
  }
  EXPECT_TRUE(saw_g);
  // Its back edge jumps into the loop.
  const Operation& jump = stage_of(*bridge, StageKind::Asm).ops.back();
  EXPECT_EQ(jump.name, "jump");
  EXPECT_EQ(jump.target_trace, hottest->id);
  // About one iteration in seven fails the guard into the bridge.
  EXPECT_GT(bridge->entry_count * 8, hottest->label_count);
  EXPECT_LT(bridge->entry_count * 6, hottest->label_count);
}

TEST(JitlogHotloop, OpSourcesOfTheLoopsAsmStageAreInF) {
  const Forest& f = fixture_forest("hotloop");
  const Trace* loop = nullptr;
  for (const Trace& trace : f.traces)
    if (const MergePoint* source = trace.source(); source && source->function == "f" && trace.kind == TraceKind::Loop)
      loop = &trace;
  ASSERT_NE(loop, nullptr);
  const auto sources = jl::op_sources(*loop, stage_of(*loop, StageKind::Asm));
  ASSERT_FALSE(sources.empty());
  std::set<std::int64_t> lines;
  for (const MergePoint* point : sources) {
    ASSERT_NE(point, nullptr);
    EXPECT_EQ(point->function, "f");
    lines.insert(point->line);
  }
  EXPECT_GE(lines.size(), 2u);  // guards spread the code over several lines of f
}

TEST(JitlogRecursion, CallAssemblerResolvesToFibsLoop) {
  const Forest& f = fixture_forest("recursion");
  const Trace* fib = nullptr;
  for (const Trace& trace : f.traces)
    if (const MergePoint* source = trace.source(); source && source->function == "fib" && trace.kind == TraceKind::Loop)
      fib = &trace;
  ASSERT_NE(fib, nullptr);
  EXPECT_TRUE(fib->logged_as_bridge);  // compiled from a function entry
  EXPECT_EQ(fib->jitdriver, "pypyjit");

  std::size_t calls = 0, resolved = 0;
  for (const Trace& trace : f.traces) {
    for (const Stage& stage : trace.stages) {
      for (const Operation& op : stage.ops) {
        if (!op.is_call_assembler()) continue;
        ++calls;
        if (!op.target_trace) continue;
        ++resolved;
        EXPECT_EQ(*op.target_trace, fib->id);
        EXPECT_EQ(op.descr, "<Loop" + std::to_string(fib->id) + ">");
      }
    }
  }
  EXPECT_GT(calls, 0u);
  EXPECT_EQ(resolved, calls);
}

// The recursion run logs no TMP_CALLBACK / REDIRECT_ASSEMBLER: fib's loop was
// compiled before any trace called it, so call_assembler names <Loop5> directly.
TEST(JitlogRecursion, RedirectRecordsAreExactlyWhatTheFileHolds) {
  const Forest& f = fixture_forest("recursion");
  const auto records = scan_records(fixture_bytes("recursion"));
  EXPECT_EQ(f.redirects.size(), count_marks(records, mark::kRedirectAssembler));
  EXPECT_EQ(f.tmp_callbacks.size(), count_marks(records, mark::kTmpCallback));
  for (const auto& redirect : f.redirects) EXPECT_TRUE(redirect.target_trace) << redirect.target;
}

// ===========================================================================
// 8 (continued). Truncation and corruption of a real log
// ===========================================================================

TEST(JitlogTruncation, EveryPrefixKeepsTheCompleteRecordsAndWarnsAtTheCutRecord) {
  const Bytes& data = fixture_bytes("hotloop");
  const auto records = scan_records(data);
  const std::size_t full_traces = fixture_forest("hotloop").traces.size();
  const std::uint64_t header_end = records.front().end;

  std::vector<std::uint64_t> cuts;
  for (std::uint64_t n = 0; n <= std::min<std::uint64_t>(data.size(), header_end + 4096); ++n) cuts.push_back(n);
  for (std::uint64_t n = header_end + 4096; n < data.size(); n += 97) cuts.push_back(n);
  cuts.push_back(data.size());

  std::size_t mid_record = 0;
  for (std::uint64_t n : cuts) {
    const Forest forest = jl::parse_jitlog(std::span<const std::uint8_t>(data.data(), n));
    // The record the cut falls in (or the first record not read at all).
    auto cut = std::find_if(records.begin(), records.end(), [&](const ScannedRecord& r) { return r.end > n; });
    const std::size_t complete = static_cast<std::size_t>(cut - records.begin());
    const bool inside = cut != records.end() && cut->offset < n;
    std::size_t complete_traces = 0;
    for (std::size_t i = 0; i < complete; ++i) complete_traces += records[i].mark == mark::kStartTrace;

    ASSERT_EQ(forest.bytes_read, n) << "cut " << n;
    ASSERT_EQ(forest.records, complete) << "cut " << n;
    ASSERT_LE(forest.traces.size(), full_traces) << "cut " << n;
    ASSERT_EQ(forest.traces.size(), complete_traces) << "cut " << n;
    if (inside) {
      ++mid_record;
      ASSERT_EQ(forest.warnings.size(), 1u) << "cut " << n << "\n" << diagnostics(forest);
      ASSERT_EQ(forest.warnings[0].offset, cut->offset) << "cut " << n;
    } else {
      ASSERT_TRUE(forest.warnings.empty()) << "cut " << n << "\n" << diagnostics(forest);
    }
    if (n < header_end) {
      ASSERT_TRUE(forest.error) << "cut " << n;  // no complete header
      ASSERT_EQ(forest.error->offset, 0u);
    } else {
      ASSERT_FALSE(forest.error) << "cut " << n << "\n" << diagnostics(forest);
    }
  }
  EXPECT_GT(mid_record, cuts.size() / 2);
}

TEST(JitlogCorruption, RandomMutationsOfARealPrefixNeverCrashAndReportOffsetsInside) {
  const Bytes& data = fixture_bytes("hotloop");
  const std::size_t header_end = 4345;
  const Bytes prefix(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(header_end + 6000));
  std::mt19937 random(20240611);
  std::size_t errors = 0, truncated = 0;
  for (int round = 0; round < 3000; ++round) {
    Bytes input = prefix;
    const int edits = 1 + static_cast<int>(random() % 6);
    for (int e = 0; e < edits; ++e) {
      const auto kind = static_cast<std::uint32_t>(random() % 10);
      // Mostly past the header, where the interesting records are.
      const std::size_t lo = kind == 0 ? 0 : header_end;
      const std::size_t at = lo + random() % (input.size() - lo);
      if (kind < 7) {
        input[at] = static_cast<std::uint8_t>(random());
      } else if (kind < 9) {
        input[at] ^= static_cast<std::uint8_t>(1u << (random() % 8));
      } else {
        input.resize(at);  // also cut it
      }
      if (input.size() <= header_end) break;
    }
    const Forest forest = jl::parse_jitlog(input);
    ASSERT_EQ(forest.bytes_read, input.size()) << "round " << round;
    if (forest.error) {
      ++errors;
      ASSERT_LE(forest.error->offset, input.size()) << "round " << round << ": " << forest.error->message;
    }
    for (const auto& warning : forest.warnings) ASSERT_LE(warning.offset, input.size()) << "round " << round;
    truncated += !forest.warnings.empty();
    for (const Trace& trace : forest.traces) {
      for (const Stage& stage : trace.stages) {
        ASSERT_LE(stage.file_offset, input.size());
        (void)jl::op_sources(trace, stage);
      }
      if (trace.code) (void)jl::TraceResolver(forest).find(trace.code->start);
    }
  }
  // The mutations must have exercised both failure paths.
  EXPECT_GT(errors, 100u);
  EXPECT_GT(truncated, 10u);
}

// ===========================================================================
// Disassembler
// ===========================================================================

TEST(JitlogDisassembler, DecodesX86_64AtTheGivenAddress) {
  // increment_debug_counter from the reference hexdump: movabs r11, imm64; inc qword ptr [r11].
  const Bytes code = bytes_of({0x49, 0xbb, 0xd0, 0x40, 0x40, 0x40, 0xd1, 0x55, 0x00, 0x00, 0x49, 0xff, 0x03});
  const jl::Disassembler disassembler("x86_64", 8);
  const auto instructions = disassembler.disassemble(code, 0x7f1ac47dab5b);
  ASSERT_EQ(instructions.size(), 2u);
  EXPECT_EQ(instructions[0].address, 0x7f1ac47dab5bu);
  EXPECT_EQ(instructions[0].size, 10);
  EXPECT_EQ(instructions[0].mnemonic, "movabs");
  EXPECT_NE(instructions[0].operands.find("r11"), std::string::npos) << instructions[0].operands;
  EXPECT_EQ(instructions[1].address, 0x7f1ac47dab65u);
  EXPECT_EQ(instructions[1].size, 3);
  EXPECT_EQ(instructions[1].mnemonic, "inc");
}

TEST(JitlogDisassembler, UndecodableBytesBecomeSingleByteEntries) {
  // 0x06 (push es) does not exist in 64-bit mode; it does in 32-bit mode.
  const Bytes code = bytes_of({0x06, 0x90});
  const auto wide = jl::Disassembler("x86_64", 8).disassemble(code, 0x1000);
  ASSERT_EQ(wide.size(), 2u);
  EXPECT_EQ(wide[0].mnemonic, ".byte");
  EXPECT_EQ(wide[0].operands, "0x06");
  EXPECT_EQ(wide[0].size, 1);
  EXPECT_EQ(wide[1].address, 0x1001u);
  EXPECT_EQ(wide[1].mnemonic, "nop");

  const auto narrow = jl::Disassembler("i686", 4).disassemble(code, 0x1000);
  ASSERT_EQ(narrow.size(), 2u);
  EXPECT_EQ(narrow[0].mnemonic, "push");
}

TEST(JitlogDisassembler, EmptyCodeGivesNoInstructions) {
  EXPECT_TRUE(jl::Disassembler("x86_64", 8).disassemble({}, 0x1000).empty());
}

TEST(JitlogDisassembler, UnknownMachineThrowsNamingIt) {
  try {
    jl::Disassembler disassembler("mips", 8);
    FAIL() << "mips was accepted";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("mips"), std::string::npos) << error.what();
  }
}

}  // namespace
