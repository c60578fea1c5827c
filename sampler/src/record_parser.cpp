#include "record_parser.h"

#include <asm/perf_regs.h>

#include <algorithm>
#include <cstring>

#include "binio/binio.h"

namespace jitprof::sampler {

static_assert(arch::kPerfUserRegisterMask ==
                  (((std::uint64_t{1} << (PERF_REG_X86_IP + 1)) - 1) | (std::uint64_t{0xff} << PERF_REG_X86_R8)),
              "arch::Register lists AX..IP and R8..R15 in perf's order");

namespace {

using binio::ByteCursor;

// The sample_id trailer of kSampleType: pid/tid, time, cpu/reserved.
constexpr std::size_t kSampleIdBytes = 8 + 8 + 8;
// A longer callchain than the kernel ever writes means a corrupt record.
constexpr std::uint64_t kMaxCallchain = 4096;

std::uint64_t trailer_time(ByteCursor& in) {
  in.u64le();  // pid, tid
  const std::uint64_t time = in.u64le();
  in.u64le();  // cpu, reserved
  return time;
}

// A NUL-terminated name padded to 8 bytes, filling the record up to its trailer.
std::string name_before_trailer(ByteCursor& in, std::size_t record_size) {
  const std::size_t rest = record_size - in.position();
  if (rest < kSampleIdBytes) in.fail("no room for the sample_id trailer");
  const auto field = in.bytes(rest - kSampleIdBytes);
  const auto* text = reinterpret_cast<const char*>(field.data());
  return std::string(text, strnlen(text, field.size()));
}

// The kernel's part of the callchain, leaf first, without the context markers.
std::vector<std::uint64_t> kernel_callchain(ByteCursor& in) {
  const std::uint64_t entries = in.u64le();
  if (entries > kMaxCallchain) in.fail("callchain too long");
  std::vector<std::uint64_t> chain;
  for (std::uint64_t i = 0; i < entries; ++i) {
    const std::uint64_t address = in.u64le();
    if (address < PERF_CONTEXT_MAX) chain.push_back(address);  // PERF_CONTEXT_KERNEL/USER are above
  }
  return chain;
}

DecodedSample parse_sample(ByteCursor& in, std::uint16_t misc) {
  DecodedSample decoded{};
  Sample& sample = decoded.sample;
  sample.ip = in.u64le();
  sample.pid = in.u32le();
  sample.tid = in.u32le();
  sample.time_ns = in.u64le();
  sample.cpu = in.u32le();
  in.u32le();  // reserved
  in.u64le();  // period
  sample.kernel_callchain = kernel_callchain(in);
  sample.in_kernel = (misc & PERF_RECORD_MISC_CPUMODE_MASK) == PERF_RECORD_MISC_KERNEL;
  sample.has_user_registers = in.u64le() != PERF_SAMPLE_REGS_ABI_NONE;
  if (sample.has_user_registers)
    for (std::uint64_t& value : sample.user_registers) value = in.u64le();
  if (const std::uint64_t stack_size = in.u64le(); stack_size > 0) {
    const auto stack = in.bytes(stack_size);
    const std::uint64_t copied = in.u64le();  // dyn_size: how much of the stack the kernel could copy
    const auto valid = stack.first(std::min<std::uint64_t>(copied, stack.size()));
    decoded.user_stack.assign(valid.begin(), valid.end());
  }
  return decoded;
}

Mapping parse_mapping(ByteCursor& in, std::size_t record_size) {
  Mapping mapping{};
  mapping.pid = in.u32le();
  mapping.tid = in.u32le();
  mapping.start = in.u64le();
  mapping.length = in.u64le();
  mapping.file_offset = in.u64le();
  mapping.major = in.u32le();
  mapping.minor = in.u32le();
  mapping.inode = in.u64le();
  in.u64le();  // inode generation
  mapping.prot = in.u32le();
  mapping.flags = in.u32le();
  mapping.path = name_before_trailer(in, record_size);
  mapping.time_ns = trailer_time(in);
  return mapping;
}

TaskEvent parse_comm(ByteCursor& in, std::uint16_t misc, std::size_t record_size) {
  TaskEvent event{};
  event.kind = (misc & PERF_RECORD_MISC_COMM_EXEC) ? TaskEvent::Kind::Exec : TaskEvent::Kind::Comm;
  event.pid = in.u32le();
  event.tid = in.u32le();
  event.comm = name_before_trailer(in, record_size);
  event.time_ns = trailer_time(in);
  return event;
}

TaskEvent parse_fork_or_exit(ByteCursor& in, TaskEvent::Kind kind) {
  TaskEvent event{};
  event.kind = kind;
  event.pid = in.u32le();
  event.parent_pid = in.u32le();
  event.tid = in.u32le();
  event.parent_tid = in.u32le();
  event.time_ns = in.u64le();
  return event;
}

DecodedRecord parse_body(ByteCursor& in, const perf_event_header& header) {
  switch (header.type) {
    case PERF_RECORD_SAMPLE:
      return parse_sample(in, header.misc);
    case PERF_RECORD_MMAP2:
      return parse_mapping(in, header.size);
    case PERF_RECORD_COMM:
      return parse_comm(in, header.misc, header.size);
    case PERF_RECORD_FORK:
      return parse_fork_or_exit(in, TaskEvent::Kind::Fork);
    case PERF_RECORD_EXIT:
      return parse_fork_or_exit(in, TaskEvent::Kind::Exit);
    case PERF_RECORD_LOST:
      in.u64le();  // id
      return Lost{in.u64le()};
    case PERF_RECORD_THROTTLE:
      return Throttle{};
    default:
      return Ignored{header.type};
  }
}

}  // namespace

DecodedRecord parse_record(std::span<const std::uint8_t> record) {
  perf_event_header header{};
  if (record.size() >= sizeof header) std::memcpy(&header, record.data(), sizeof header);
  if (record.size() < sizeof header || header.size < sizeof header || header.size > record.size())
    return Malformed{header.type};
  ByteCursor in(record.first(header.size), 0);
  in.bytes(sizeof header);
  try {
    return parse_body(in, header);
  } catch (const binio::NeedMoreData&) {
    return Malformed{header.type};
  } catch (const binio::ParseError&) {
    return Malformed{header.type};
  }
}

}  // namespace jitprof::sampler
