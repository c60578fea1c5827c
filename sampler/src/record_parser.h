// Decodes one perf record, header and body as they sit in a ring, into what
// jitprof keeps of it. Samples are laid out as kSampleType asks the kernel to
// write them; the other records end in the sample_id trailer (sample_id_all)
// of that same type.
#pragma once

#include <linux/perf_event.h>

#include <cstdint>
#include <span>
#include <variant>
#include <vector>

#include "sampler/sampler.h"

namespace jitprof::sampler {

// The fields of every sample, which parse_record expects in this order.
inline constexpr std::uint64_t kSampleType = PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_CPU |
                                             PERF_SAMPLE_PERIOD | PERF_SAMPLE_CALLCHAIN | PERF_SAMPLE_REGS_USER |
                                             PERF_SAMPLE_STACK_USER;

// A sample with its own copy of the user stack: the ring's bytes go back to
// the kernel long before the sample is handed out. `sample.user_stack` stays
// empty until then.
struct DecodedSample {
  Sample sample;
  std::vector<std::uint8_t> user_stack;
};
// Records the kernel dropped because the ring was full.
struct Lost {
  std::uint64_t count;
};
// The kernel throttled the event.
struct Throttle {};
// A record type jitprof has no use for.
struct Ignored {
  std::uint32_t type;
};
// Shorter than its type says: nothing past its end was read.
struct Malformed {
  std::uint32_t type;
};

using DecodedRecord = std::variant<DecodedSample, Mapping, TaskEvent, Lost, Throttle, Ignored, Malformed>;

// `record` holds one record from its header on; bytes past the size its
// header gives are not read.
DecodedRecord parse_record(std::span<const std::uint8_t> record);

}  // namespace jitprof::sampler
