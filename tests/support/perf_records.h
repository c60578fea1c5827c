// The container of tests/fixtures/perf_records.bin.gz: the raw perf records
// of one real run, ring by ring, as tests/tools/capture_perf_records read
// them. Little-endian (x86-64, as the records themselves):
//
//   magic             8 bytes, "JPPERF1\n"
//   pid               u32, the recorded process
//   user_stack_bytes  u32, the stack copy size its events asked for
//   ring count        u32
//   per ring:         u32 cpu, u64 byte count, then that many bytes: the
//                     ring's records (header + body each) in ring order
#pragma once

#include <linux/perf_event.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "binio/binio.h"

namespace jitprof::testing {

inline constexpr std::string_view kPerfRecordsMagic = "JPPERF1\n";

struct RecordedRing {
  std::uint32_t cpu = 0;
  std::vector<std::uint8_t> bytes;
};

struct RecordedRun {
  std::uint32_t pid = 0;
  std::uint32_t user_stack_bytes = 0;
  std::vector<RecordedRing> rings;
};

inline void append_le(std::vector<std::uint8_t>& out, std::uint64_t value, std::size_t width) {
  for (std::size_t i = 0; i < width; ++i) out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

inline std::vector<std::uint8_t> serialize(const RecordedRun& run) {
  std::vector<std::uint8_t> out(kPerfRecordsMagic.begin(), kPerfRecordsMagic.end());
  append_le(out, run.pid, 4);
  append_le(out, run.user_stack_bytes, 4);
  append_le(out, run.rings.size(), 4);
  for (const RecordedRing& ring : run.rings) {
    append_le(out, ring.cpu, 4);
    append_le(out, ring.bytes.size(), 8);
    out.insert(out.end(), ring.bytes.begin(), ring.bytes.end());
  }
  return out;
}

// Throws binio::ParseError or binio::NeedMoreData on a damaged container.
inline RecordedRun deserialize(std::span<const std::uint8_t> data) {
  binio::ByteCursor in(data, 0);
  if (in.string(kPerfRecordsMagic.size()) != kPerfRecordsMagic) in.fail("not a perf records container");
  RecordedRun run;
  run.pid = in.u32le();
  run.user_stack_bytes = in.u32le();
  run.rings.resize(in.u32le());
  for (RecordedRing& ring : run.rings) {
    ring.cpu = in.u32le();
    const auto bytes = in.bytes(in.u64le());
    ring.bytes.assign(bytes.begin(), bytes.end());
  }
  return run;
}

inline perf_event_header header_of(std::span<const std::uint8_t> record) {
  perf_event_header header;
  std::memcpy(&header, record.data(), sizeof header);
  return header;
}

// One ring's bytes cut into records by their headers.
inline std::vector<std::span<const std::uint8_t>> split_records(std::span<const std::uint8_t> ring) {
  std::vector<std::span<const std::uint8_t>> records;
  while (ring.size() >= sizeof(perf_event_header)) {
    const perf_event_header header = header_of(ring);
    if (header.size < sizeof header || header.size > ring.size()) break;
    records.push_back(ring.first(header.size));
    ring = ring.subspan(header.size);
  }
  return records;
}

}  // namespace jitprof::testing
