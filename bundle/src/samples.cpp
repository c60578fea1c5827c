#include "bundle/samples.h"

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>

#include "varint.h"

namespace jitprof::bundle {
namespace {

constexpr std::uint8_t kTagStack = 1;
constexpr std::uint8_t kTagSample = 2;
constexpr std::uint8_t kTagPythonSample = 3;
constexpr std::uint8_t kLastUnwindStop = static_cast<std::uint8_t>(UnwindStop::BadFrame);
constexpr std::uint8_t kLastPythonStatus = static_cast<std::uint8_t>(PythonStackStatus::Lost);

// `difference` is a two's-complement (wrapping) difference of two u64.
std::uint64_t zigzag(std::uint64_t difference) { return (difference << 1) ^ (0 - (difference >> 63)); }
std::uint64_t unzigzag(std::uint64_t value) { return (value >> 1) ^ (0 - (value & 1)); }

}  // namespace

// Decodes into a table, chunk after chunk (stack ids and the previous time
// carry over); on the first problem records it in table.error and stops.
class SampleDecoder::Decoder {
 public:
  explicit Decoder(SampleTable& table) : table_(table) {}

  // `offset`: where the chunk starts in the stream, for error offsets.
  void run(std::span<const std::uint8_t> chunk, std::uint64_t offset) {
    begin_ = chunk.data();
    base_ = offset;
    end_ = chunk.data() + chunk.size();
    p_ = chunk.data();
    while (p_ != end_) {
      record_ = p_;
      const std::uint8_t tag = *p_++;
      bool ok;
      if (tag == kTagSample || tag == kTagPythonSample)
        ok = sample(tag == kTagPythonSample);
      else if (tag == kTagStack)
        ok = stack();
      else
        ok = fail(record_, fmt::format("unknown record tag {}", tag));
      if (!ok) return;
    }
  }

 private:
  bool fail(const std::uint8_t* at, std::string message) {
    table_.error = binio::Diagnostic{base_ + static_cast<std::uint64_t>(at - begin_), std::move(message)};
    return false;
  }

  bool truncated() {
    const bool is_sample = *record_ != kTagStack;
    return fail(record_, fmt::format("truncated: {} record at offset {} is cut short by the end of the stream",
                                     is_sample ? "sample" : "stack", base_ + static_cast<std::uint64_t>(record_ - begin_)));
  }

  bool varint(std::uint64_t& out) {
    if (p_ != end_ && *p_ < 0x80) {  // the common case: one byte
      out = *p_++;
      return true;
    }
    const std::uint8_t* start = p_;
    switch (read_varint(p_, end_, out)) {
      case VarintRead::Ok: return true;
      case VarintRead::Truncated: return truncated();
      case VarintRead::Overflow: return fail(start, "varint exceeds 64 bits");
      case VarintRead::TooLong: break;
    }
    return fail(start, fmt::format("varint longer than {} bytes", kMaxVarintBytes));
  }

  bool u32_field(std::uint32_t& out, const char* what) {
    const std::uint8_t* at = p_;
    std::uint64_t value;
    if (!varint(value)) return false;
    if (value > 0xffffffffu) return fail(at, fmt::format("{} {} is out of range", what, value));
    out = static_cast<std::uint32_t>(value);
    return true;
  }

  bool stack_field(std::uint32_t& out, const char* what) {
    const std::uint8_t* at = p_;
    std::uint64_t value;
    if (!varint(value)) return false;
    if (value > table_.stacks.size())
      return fail(at, fmt::format("{} stack id {} is not defined ({} stacks so far)", what, value - 1,
                                  table_.stacks.size()));
    out = value == 0 ? SampleTable::kNoStack : static_cast<std::uint32_t>(value - 1);
    return true;
  }

  bool sample(bool with_python) {
    std::uint64_t time_delta;
    SampleTable::Row row;
    if (!varint(time_delta) || !u32_field(row.pid, "pid") || !u32_field(row.tid, "tid") ||
        !u32_field(row.cpu, "cpu") || !stack_field(row.kernel_stack, "kernel") ||
        !stack_field(row.user_stack, "user"))
      return false;
    if (p_ == end_) return truncated();
    if (*p_ > kLastUnwindStop) return fail(p_, fmt::format("unknown unwind stop {}", *p_));
    row.unwind_stop = static_cast<UnwindStop>(*p_++);
    if (with_python && !python_fields(row)) return false;
    time_ += unzigzag(time_delta);
    row.time_ns = time_;
    table_.rows.push_back(row);
    return true;
  }

  bool python_fields(SampleTable::Row& row) {
    const std::uint8_t* at = p_;
    if (!stack_field(row.python_stack, "python")) return false;
    if (row.python_stack != SampleTable::kNoStack && !checked_before(row.python_stack)) {
      for (const std::uint64_t word : table_.stacks[row.python_stack])
        if (!PythonFrame::from_word(word))
          return fail(at, fmt::format("python stack {} holds {:#x}, which is not a Python frame", row.python_stack, word));
    }
    if (p_ == end_) return truncated();
    if (*p_ > kLastPythonStatus) return fail(p_, fmt::format("unknown python stack status {}", *p_));
    row.python_status = static_cast<PythonStackStatus>(*p_++);
    return true;
  }

  // True when the stack was checked before; marks it checked.
  bool checked_before(std::uint32_t stack) {
    if (python_checked_stacks_.size() <= stack) python_checked_stacks_.resize(stack + 1, false);
    const bool before = python_checked_stacks_[stack];
    python_checked_stacks_[stack] = true;
    return before;
  }

  bool stack() {
    const std::uint8_t* at = p_;
    std::uint64_t count;
    if (!varint(count)) return false;
    if (count > kMaxStackDepth)
      return fail(at, fmt::format("stack of {} frames exceeds the limit of {}", count, kMaxStackDepth));
    if (table_.stacks.size() >= SampleTable::kNoStack) return fail(record_, "too many stacks");
    std::vector<std::uint64_t> frames;
    // Every address takes at least one byte: a lying count cannot make us allocate much.
    frames.reserve(std::min<std::uint64_t>(count, static_cast<std::uint64_t>(end_ - p_)));
    std::uint64_t address = 0;
    for (std::uint64_t i = 0; i < count; ++i) {
      std::uint64_t delta;
      if (!varint(delta)) return false;
      address += unzigzag(delta);
      frames.push_back(address);
    }
    table_.stacks.push_back(std::move(frames));
    return true;
  }

  const std::uint8_t* begin_ = nullptr;  // the chunk's start, at `base_` in the stream
  std::uint64_t base_ = 0;
  const std::uint8_t* end_ = nullptr;
  const std::uint8_t* p_ = nullptr;
  const std::uint8_t* record_ = nullptr;
  std::uint64_t time_ = 0;
  std::vector<bool> python_checked_stacks_;
  SampleTable& table_;
};

const char* unwind_stop_name(UnwindStop stop) {
  switch (stop) {
    case UnwindStop::Complete: return "complete";
    case UnwindStop::NoUserStack: return "no user stack";
    case UnwindStop::NoUnwindInfo: return "no unwind info";
    case UnwindStop::UnreadableMemory: return "unreadable memory";
    case UnwindStop::JitFrame: return "jit frame";
    case UnwindStop::DepthLimit: return "depth limit";
    case UnwindStop::BadFrame: return "bad frame";
  }
  return "unknown";
}

const char* python_stack_status_name(PythonStackStatus status) {
  switch (status) {
    case PythonStackStatus::Complete: return "complete";
    case PythonStackStatus::Truncated: return "truncated";
    case PythonStackStatus::NotReady: return "not ready";
    case PythonStackStatus::NoThreadBlock: return "no thread block";
    case PythonStackStatus::Unreadable: return "unreadable";
    case PythonStackStatus::Lost: return "lost";
  }
  return "unknown";
}

std::optional<PythonFrame> PythonFrame::from_word(std::uint64_t word) {
  const auto kind = static_cast<Kind>(word & 3);
  if (kind != Kind::Code && kind != Kind::Jitted) return std::nullopt;
  return PythonFrame{kind, word >> 2};
}

std::size_t SampleEncoder::StackHash::operator()(const std::vector<std::uint64_t>& stack) const noexcept {
  std::uint64_t hash = stack.size();
  for (const std::uint64_t address : stack) {
    hash = (hash ^ address) * 0x9e3779b97f4a7c15u;
    hash ^= hash >> 29;
  }
  return static_cast<std::size_t>(hash);
}

void SampleEncoder::define(std::span<const std::uint64_t> stack) {
  out_.push_back(kTagStack);
  put_varint(out_, stack.size());
  std::uint64_t previous = 0;
  for (const std::uint64_t address : stack) {
    put_varint(out_, zigzag(address - previous));
    previous = address;
  }
}

std::uint64_t SampleEncoder::reference(const std::vector<std::uint64_t>& stack) {
  if (stack.empty()) return 0;
  if (ids_.size() >= SampleTable::kNoStack) throw std::length_error("too many distinct stacks for one recording");
  const auto [it, inserted] = ids_.try_emplace(stack, static_cast<std::uint32_t>(ids_.size()));
  if (inserted) define(stack);
  return std::uint64_t{it->second} + 1;
}

void SampleEncoder::add(const NativeSample& sample) {
  const auto clipped = [](const std::vector<std::uint64_t>& stack) {
    return std::vector<std::uint64_t>(stack.begin(), stack.begin() + kMaxStackDepth);
  };
  UnwindStop stop = sample.unwind_stop;
  const std::uint64_t kernel = sample.kernel_stack.size() > kMaxStackDepth ? reference(clipped(sample.kernel_stack))
                                                                          : reference(sample.kernel_stack);
  std::uint64_t user;
  if (sample.user_stack.size() > kMaxStackDepth) {
    user = reference(clipped(sample.user_stack));
    if (stop == UnwindStop::Complete) stop = UnwindStop::DepthLimit;
  } else {
    user = reference(sample.user_stack);
  }
  std::uint64_t python = 0;
  if (sample.python_status) {
    std::vector<std::uint64_t> words;
    const std::size_t kept = std::min<std::size_t>(sample.python_stack.size(), kMaxStackDepth);
    words.reserve(kept);
    for (std::size_t i = 0; i < kept; ++i) words.push_back(sample.python_stack[i].word());
    python = reference(words);
  }
  out_.push_back(sample.python_status ? kTagPythonSample : kTagSample);
  put_varint(out_, zigzag(sample.time_ns - previous_time_));
  previous_time_ = sample.time_ns;
  put_varint(out_, sample.pid);
  put_varint(out_, sample.tid);
  put_varint(out_, sample.cpu);
  put_varint(out_, kernel);
  put_varint(out_, user);
  out_.push_back(static_cast<std::uint8_t>(stop));
  if (sample.python_status) {
    put_varint(out_, python);
    const bool cut = sample.python_stack.size() > kMaxStackDepth && *sample.python_status == PythonStackStatus::Complete;
    out_.push_back(static_cast<std::uint8_t>(cut ? PythonStackStatus::Truncated : *sample.python_status));
  }
  ++samples_;
}

std::vector<std::uint8_t> SampleEncoder::take() {
  std::vector<std::uint8_t> bytes;
  bytes.swap(out_);
  return bytes;
}

NativeSample SampleTable::sample(std::size_t row) const {
  const Row& r = rows.at(row);
  NativeSample out;
  out.time_ns = r.time_ns;
  out.pid = r.pid;
  out.tid = r.tid;
  out.cpu = r.cpu;
  if (r.kernel_stack != kNoStack) out.kernel_stack = stacks.at(r.kernel_stack);
  if (r.user_stack != kNoStack) out.user_stack = stacks.at(r.user_stack);
  out.unwind_stop = r.unwind_stop;
  out.python_status = r.python_status;
  if (r.python_stack != kNoStack) out.python_stack = python_frames(r.python_stack);
  return out;
}

std::vector<PythonFrame> SampleTable::python_frames(std::uint32_t stack) const {
  std::vector<PythonFrame> frames;
  for (const std::uint64_t word : stacks.at(stack))
    if (const auto frame = PythonFrame::from_word(word)) frames.push_back(*frame);
  return frames;
}

SampleDecoder::SampleDecoder() : decoder_(std::make_unique<Decoder>(table_)) {}
SampleDecoder::~SampleDecoder() = default;

const SampleTable& SampleDecoder::decode(std::span<const std::uint8_t> chunk) {
  table_.rows.clear();
  if (!table_.error) decoder_->run(chunk, offset_);
  offset_ += chunk.size();
  return table_;
}

SampleTable decode_samples(std::span<const std::uint8_t> stream) {
  SampleDecoder decoder;
  decoder.decode(stream);
  return decoder.take();
}

}  // namespace jitprof::bundle
