#include "bundle/pypy_log.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "varint.h"

namespace jitprof::bundle {
namespace {

constexpr std::uint8_t kTagSection = 1;
constexpr std::uint8_t kTagClock = 2;
constexpr std::uint8_t kTagJitCode = 3;
constexpr std::uint64_t kMaxJitCodeName = 4096;

constexpr std::array<const char*, 6> kNames = {"gc-minor",    "gc-collect-step", "gc-collect-done",
                                               "jit-tracing", "jit-optimize",    "jit-backend"};

}  // namespace

const char* pypy_log_name(PypyLogName name) {
  const auto index = static_cast<std::size_t>(name) - 1;
  return index < kNames.size() ? kNames[index] : "?";
}

std::optional<PypyLogName> pypy_log_name_of(std::string_view text) {
  for (std::size_t i = 0; i < kNames.size(); ++i)
    if (text == kNames[i]) return static_cast<PypyLogName>(i + 1);
  return std::nullopt;
}

std::string_view pypy_log_prefixes() { return "gc-minor,gc-collect-step,gc-collect-done,jit-tracing,jit-optimize,jit-backend"; }

void PypyLogBuffer::add(const PypyLogSection& section) {
  pending_.push_back(kTagSection);
  pending_.push_back(static_cast<std::uint8_t>(section.name));
  put_varint(pending_, section.start_tsc);
  put_varint(pending_, section.end_tsc - section.start_tsc);
}

void PypyLogBuffer::add(const TimestampPair& pair) {
  pending_.push_back(kTagClock);
  put_varint(pending_, pair.tsc);
  put_varint(pending_, pair.monotonic_ns);
}

void PypyLogBuffer::add(const PypyLogJitCode& code) {
  pending_.push_back(kTagJitCode);
  pending_.push_back(static_cast<std::uint8_t>(code.kind));
  put_varint(pending_, code.number);
  put_varint(pending_, code.start);
  put_varint(pending_, code.end - code.start);
  put_varint(pending_, code.logged_tsc);
  const std::size_t length = std::min<std::size_t>(code.name.size(), kMaxJitCodeName);
  put_varint(pending_, length);
  pending_.insert(pending_.end(), code.name.begin(), code.name.begin() + static_cast<std::ptrdiff_t>(length));
}

void PypyLogBuffer::flush_into(BundleWriter& writer) {
  if (pending_.empty()) return;
  writer.append(sections::kPypyLog, pending_);
  pending_.clear();
}

PypyLog decode_pypy_log(std::span<const std::uint8_t> stream) {
  PypyLog log;
  const std::uint8_t* const begin = stream.data();
  const std::uint8_t* const end = begin + stream.size();
  const std::uint8_t* p = begin;
  // Keeps what was read before a malformed record.
  auto stop = [&](const std::uint8_t* at, std::string message) {
    log.error = binio::Diagnostic{static_cast<std::uint64_t>(at - begin), std::move(message)};
    return std::move(log);
  };
  while (p != end) {
    const std::uint8_t* record = p;
    const std::uint8_t tag = *p++;
    std::uint64_t first = 0, second = 0;
    if (tag == kTagSection) {
      if (p == end) return stop(record, "section record cut short");
      const std::uint8_t name = *p++;
      if (name == 0 || name > static_cast<std::uint8_t>(kLastPypyLogName))
        return stop(record, fmt::format("unknown section name {}", name));
      if (read_varint(p, end, first) != VarintRead::Ok || read_varint(p, end, second) != VarintRead::Ok ||
          first + second < first)
        return stop(record, "section record cut short or out of range");
      log.sections.push_back({static_cast<PypyLogName>(name), first, first + second});
    } else if (tag == kTagClock) {
      if (read_varint(p, end, first) != VarintRead::Ok || read_varint(p, end, second) != VarintRead::Ok)
        return stop(record, "clock record cut short");
      log.clock.push_back({first, second});
    } else if (tag == kTagJitCode) {
      if (p == end || (*p != 1 && *p != 2)) return stop(record, "JIT code record cut short or of an unknown kind");
      PypyLogJitCode code;
      code.kind = static_cast<PypyLogJitCode::Kind>(*p++);
      std::uint64_t size = 0, length = 0;
      if (read_varint(p, end, code.number) != VarintRead::Ok || read_varint(p, end, code.start) != VarintRead::Ok ||
          read_varint(p, end, size) != VarintRead::Ok || read_varint(p, end, code.logged_tsc) != VarintRead::Ok ||
          read_varint(p, end, length) != VarintRead::Ok || code.start + size < code.start || length > kMaxJitCodeName ||
          length > static_cast<std::uint64_t>(end - p))
        return stop(record, "JIT code record cut short or out of range");
      code.end = code.start + size;
      code.name.assign(reinterpret_cast<const char*>(p), length);
      p += length;
      log.jit_code.push_back(std::move(code));
    } else {
      return stop(record, fmt::format("unknown record tag {}", tag));
    }
  }
  return log;
}

PypyLog read_pypy_log(const Bundle& bundle) { return decode_pypy_log(bundle.stream(sections::kPypyLog)); }

}  // namespace jitprof::bundle
