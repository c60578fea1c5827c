// profile.proto (github.com/google/pprof/proto/profile.proto), written with
// the protobuf wire format directly: the few message types need no codegen.
#include <zlib.h>

#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "export/export.h"

namespace jitprof::exports {
namespace {

// Field numbers of profile.proto.
enum ProfileField { kSampleType = 1, kSample = 2, kLocation = 4, kFunction = 5, kStringTable = 6,
                    kDurationNanos = 10, kPeriodType = 11, kPeriod = 12 };
enum ValueTypeField { kType = 1, kUnit = 2 };
enum SampleField { kLocationId = 1, kValue = 2, kLabel = 3 };
enum LabelField { kKey = 1, kStr = 2 };
enum LocationField { kLocationIdField = 1, kLine = 4 };
enum LineField { kFunctionId = 1, kLineNumber = 2 };
enum FunctionField { kFunctionIdField = 1, kName = 2, kSystemName = 3, kFilename = 4 };

class Message {
 public:
  void varint_field(int field, std::uint64_t value) {
    key(field, 0);
    varint(value);
  }
  void bytes_field(int field, const std::string& bytes) {
    key(field, 2);
    varint(bytes.size());
    data_ += bytes;
  }
  void message_field(int field, const Message& message) { bytes_field(field, message.data_); }
  void packed_field(int field, const std::vector<std::uint64_t>& values) {
    Message packed;
    for (std::uint64_t value : values) packed.varint(value);
    bytes_field(field, packed.data_);
  }
  const std::string& data() const { return data_; }

 private:
  void key(int field, int wire_type) { varint(std::uint64_t(field) << 3 | std::uint64_t(wire_type)); }
  void varint(std::uint64_t value) {
    while (value >= 0x80) {
      data_ += static_cast<char>((value & 0x7f) | 0x80);
      value >>= 7;
    }
    data_ += static_cast<char>(value);
  }
  std::string data_;
};

class StringTable {
 public:
  StringTable() { index(""); }  // string_table[0] must be ""
  std::uint64_t index(const std::string& text) {
    auto [it, inserted] = indices_.try_emplace(text, strings_.size());
    if (inserted) strings_.push_back(text);
    return it->second;
  }
  const std::vector<std::string>& strings() const { return strings_; }

 private:
  std::map<std::string, std::uint64_t> indices_;
  std::vector<std::string> strings_;
};

Message value_type(StringTable& strings, const std::string& type, const std::string& unit) {
  Message message;
  message.varint_field(kType, strings.index(type));
  message.varint_field(kUnit, strings.index(unit));
  return message;
}

std::string gzip(const std::string& data) {
  z_stream stream{};
  if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("zlib: cannot start gzip");
  std::string out(deflateBound(&stream, static_cast<uLong>(data.size())), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  if (rc != Z_STREAM_END) throw std::runtime_error("zlib: gzip failed");
  return out;
}

}  // namespace

void write_pprof(const correlate::Profile& profile, std::ostream& out) {
  StringTable strings;
  Message document;
  const auto period_ns = static_cast<std::uint64_t>(profile.seconds_per_sample * 1e9);
  document.message_field(kSampleType, value_type(strings, "samples", "count"));
  document.message_field(kSampleType, value_type(strings, "cpu", "nanoseconds"));

  // One sample per stack and thread, labelled with the thread ("worker-1 (tid 4243)": pprof -tagfocus).
  std::map<std::tuple<std::uint32_t, std::uint32_t, std::uint32_t>, std::uint64_t> counts;  // (stack, pid, tid)
  for (const auto& sample : profile.samples) ++counts[{sample.stack, sample.pid, sample.tid}];
  const std::uint64_t thread_key = strings.index("thread");
  for (const auto& [key, count] : counts) {
    const auto [stack, pid, tid] = key;
    const auto& ids = profile.stacks[stack];
    std::vector<std::uint64_t> locations;  // leaf first; location id = frame id + 1
    for (auto it = ids.rbegin(); it != ids.rend(); ++it) locations.push_back(std::uint64_t{*it} + 1);
    Message label;
    label.varint_field(kKey, thread_key);
    label.varint_field(kStr, strings.index(correlate::thread_label(profile.thread(pid, tid), tid)));
    Message sample;
    sample.packed_field(kLocationId, locations);
    sample.packed_field(kValue, {count, count * period_ns});
    sample.message_field(kLabel, label);
    document.message_field(kSample, sample);
  }

  // One function per label and file; one location (with one line) per frame.
  std::map<std::pair<std::string, std::string>, std::uint64_t> function_ids;
  for (std::size_t id = 0; id < profile.frames.size(); ++id) {
    const correlate::Frame& frame = profile.frames[id];
    const std::string name = correlate::frame_label(frame);
    // Native frames with debug information point at their C source, not their library.
    const std::string& file = frame.source_file.empty() ? frame.file : frame.source_file;
    auto [function, fresh] = function_ids.try_emplace({name, file}, function_ids.size() + 1);
    if (fresh) {
      Message message;
      message.varint_field(kFunctionIdField, function->second);
      message.varint_field(kName, strings.index(name));
      message.varint_field(kSystemName, strings.index(frame.name));
      message.varint_field(kFilename, strings.index(file));
      document.message_field(kFunction, message);
    }
    Message line;
    line.varint_field(kFunctionId, function->second);
    if (frame.line > 0) line.varint_field(kLineNumber, static_cast<std::uint64_t>(frame.line));
    Message location;
    location.varint_field(kLocationIdField, id + 1);
    location.message_field(kLine, line);
    document.message_field(kLocation, location);
  }
  document.message_field(kPeriodType, value_type(strings, "cpu", "nanoseconds"));
  document.varint_field(kPeriod, period_ns);
  document.varint_field(kDurationNanos, profile.samples.size() * period_ns);
  for (const std::string& text : strings.strings()) document.bytes_field(kStringTable, text);
  const std::string compressed = gzip(document.data());
  out.write(compressed.data(), static_cast<std::streamsize>(compressed.size()));
}

}  // namespace jitprof::exports
