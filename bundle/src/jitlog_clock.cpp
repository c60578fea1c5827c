// JLTM's codec: when each part of the jitlog arrived, delta-coded.
#include <nlohmann/json.hpp>

#include <string_view>

#include "bundle/sections.h"
#include "varint.h"

namespace jitprof::bundle {
namespace {

// The first byte of a binary frame; format 1's frames are JSON lines, so start with '{'.
constexpr std::uint8_t kDeltaVarints = 0x01;

// Format 1: {"offset":N,"t":N} a line; a line that is not such an object is skipped.
std::vector<JitlogArrival> decode_json_lines(std::span<const std::uint8_t> frame) {
  std::vector<JitlogArrival> arrivals;
  std::string_view rest(reinterpret_cast<const char*>(frame.data()), frame.size());
  while (!rest.empty()) {
    const std::size_t end = std::min(rest.find('\n'), rest.size());
    const auto line = nlohmann::json::parse(rest.substr(0, end), nullptr, false);
    rest.remove_prefix(std::min(end + 1, rest.size()));
    if (!line.is_object()) continue;
    const auto number = [&](const char* key) {
      const auto found = line.find(key);
      return found != line.end() && found->is_number_unsigned() ? found->get<std::uint64_t>() : 0;
    };
    arrivals.push_back({number("offset"), number("t")});
  }
  return arrivals;
}

}  // namespace

std::vector<std::uint8_t> encode_jitlog_arrivals(std::span<const JitlogArrival> arrivals) {
  std::vector<std::uint8_t> frame{kDeltaVarints};
  JitlogArrival before;
  // Unsigned differences wrap, so even a clock that steps back decodes exactly.
  for (const JitlogArrival& arrival : arrivals) {
    put_varint(frame, arrival.offset - before.offset);
    put_varint(frame, arrival.time_ns - before.time_ns);
    before = arrival;
  }
  return frame;
}

std::vector<JitlogArrival> decode_jitlog_arrivals(std::span<const std::uint8_t> frame) {
  if (frame.empty()) return {};
  if (frame[0] == '{') return decode_json_lines(frame);
  if (frame[0] != kDeltaVarints) return {};
  std::vector<JitlogArrival> arrivals;
  JitlogArrival arrival;
  const std::uint8_t* at = frame.data() + 1;
  const std::uint8_t* const end = frame.data() + frame.size();
  std::uint64_t offset_step = 0, time_step = 0;
  while (read_varint(at, end, offset_step) == VarintRead::Ok && read_varint(at, end, time_step) == VarintRead::Ok) {
    arrival.offset += offset_step;
    arrival.time_ns += time_step;
    arrivals.push_back(arrival);
  }
  return arrivals;
}

std::vector<JitlogArrival> read_jitlog_arrivals(const Bundle& bundle) {
  std::vector<JitlogArrival> arrivals;
  for (const Frame& frame : bundle.frames)
    if (frame.type == JitlogArrival::kSection) {
      const std::vector<JitlogArrival> part = decode_jitlog_arrivals(frame.data);
      arrivals.insert(arrivals.end(), part.begin(), part.end());
    }
  return arrivals;
}

}  // namespace jitprof::bundle
