// Native samples in a bundle: the dense encoding of the "SMPL" section.
//
// The stream is a sequence of records, each starting with a u8 tag.
// "varint" is unsigned LEB128; "zvarint" is the zigzag mapping
// ((v << 1) ^ (v >> 63), on 64 bits) of a signed value, then LEB128.
//
//   tag 1  a new stack; its id is the number of stacks defined before it.
//          varint n (at most kMaxStackDepth), then n addresses, each a
//          zvarint of the difference (modulo 2^64) to the previous address
//          of the same stack, the first relative to 0.
//   tag 2  a sample.
//          zvarint  time_ns - the previous sample's time_ns (the first
//                   relative to 0; signed because samples from several CPUs
//                   may arrive slightly out of order),
//          varint   pid, varint tid, varint cpu (each at most 2^32 - 1),
//          varint   kernel stack id + 1 (0 = no kernel stack),
//          varint   user stack id + 1 (0 = no user stack),
//          u8       UnwindStop.
//   tag 3  a sample with its Python stack, read from PyPy's shadow stack at
//          the sample: the fields of tag 2, then
//          varint   Python stack id + 1 (0 = an empty Python stack),
//          u8       PythonStackStatus.
//          A Python stack is a stack like the others (tag 1), innermost
//          frame first, each word a PythonFrame (see PythonFrame::word).
//
// The encoder defines a stack the first time a sample uses it and refers to
// it by id afterwards (the same id serves kernel and user stacks), so a
// sample whose stacks were seen before costs about 10 bytes. The state
// (stack ids, previous time) carries over take(): the chunks must be decoded
// concatenated, in order. Each chunk holds whole records only, so a stream
// cut after any chunk decodes cleanly.
//
// The decoder is bounded: a varint longer than 10 bytes or past 64 bits, a
// value out of range, a count over the limit, a stack id not yet defined, an
// unknown tag or unwind-stop value stops decoding with an error at that
// field's offset (an unknown tag: the record's); a record cut short by the
// end of the stream is an error "truncated" at the record's offset. The rows
// and stacks decoded before the error are kept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "binio/binio.h"

namespace jitprof::bundle {

// Longest stack the encoding holds; the encoder keeps the leaf-most frames.
inline constexpr std::uint32_t kMaxStackDepth = 65536;

// Why a user stack ends where it does.
enum class UnwindStop : std::uint8_t {
  Complete = 0,      // reached the outermost frame
  NoUserStack,       // the sample carries no user state (e.g. a kernel thread)
  NoUnwindInfo,      // no unwind information for the next frame's code
  UnreadableMemory,  // the next frame's data was not in the copied stack
  JitFrame,          // stopped at JIT-compiled code
  DepthLimit,        // more frames than the unwinder (or kMaxStackDepth) allows
  BadFrame,          // the unwind data led somewhere implausible
};

// "complete", "no user stack", "no unwind info", "unreadable memory",
// "jit frame", "depth limit", "bad frame"; "unknown" for other values.
const char* unwind_stop_name(UnwindStop stop);

// Why a Python stack read at a sample ends where it does, or why it is empty.
enum class PythonStackStatus : std::uint8_t {
  Complete = 0,   // every frame of the thread's shadow stack
  Truncated,      // deeper than the sampler reads: the innermost frames are kept
  NotReady,       // the thread has not set up PyPy's thread locals (yet)
  NoThreadBlock,  // the thread block found does not belong to the sampled thread
  Unreadable,     // the thread's memory could not be read past some frame
  Lost,           // the sampler lost the Python stack of this sample
};
// "complete", "truncated", "not ready", "no thread block", "unreadable", "lost"; "unknown" otherwise.
const char* python_stack_status_name(PythonStackStatus status);

// One entry of PyPy's shadow stack.
struct PythonFrame {
  enum class Kind : std::uint8_t {
    Code = 1,    // an interpreted Python call: `value` is the code object's vmprof unique id
    Jitted = 3,  // JIT code entered: `value` is the return address of the last call
                 // its frame made (the word below its stack pointer): where an
                 // outer level is calling the next; stale for the innermost
  };
  Kind kind = Kind::Code;
  std::uint64_t value = 0;  // below 2^62

  // Stored as value << 2 | kind; words with other low bits are not frames.
  std::uint64_t word() const { return value << 2 | static_cast<std::uint64_t>(kind); }
  static std::optional<PythonFrame> from_word(std::uint64_t word);
  friend bool operator==(const PythonFrame&, const PythonFrame&) = default;
};

struct NativeSample {
  std::uint64_t time_ns = 0;  // CLOCK_MONOTONIC, as perf reports it
  std::uint32_t pid = 0, tid = 0, cpu = 0;
  std::vector<std::uint64_t> kernel_stack;  // kernel frames, leaf first (may be empty)
  std::vector<std::uint64_t> user_stack;    // user frames, leaf first; [0] is the exact user IP
  UnwindStop unwind_stop = UnwindStop::Complete;  // why user_stack ends where it does
  // Read from PyPy's shadow stack at the sample (nullopt: not read).
  std::optional<PythonStackStatus> python_status;
  std::vector<PythonFrame> python_stack;  // innermost first
  friend bool operator==(const NativeSample&, const NativeSample&) = default;
};

// Encodes samples as they arrive; take() hands out the bytes for one bundle
// frame. Not thread-safe.
class SampleEncoder {
 public:
  // A stack longer than kMaxStackDepth keeps its leaf-most frames; a user
  // stack cut so and marked Complete becomes DepthLimit.
  void add(const NativeSample& sample);
  // The bytes encoded since the last take() (whole records only).
  std::vector<std::uint8_t> take();

  std::size_t samples() const { return samples_; }
  std::size_t unique_stacks() const { return ids_.size(); }

 private:
  struct StackHash {
    std::size_t operator()(const std::vector<std::uint64_t>& stack) const noexcept;
  };
  // The stack's id + 1, defining it first when new; 0 for an empty stack.
  std::uint64_t reference(const std::vector<std::uint64_t>& stack);
  void define(std::span<const std::uint64_t> stack);

  std::vector<std::uint8_t> out_;
  std::unordered_map<std::vector<std::uint64_t>, std::uint32_t, StackHash> ids_;
  std::uint64_t previous_time_ = 0;
  std::size_t samples_ = 0;
};

// A decoded stream: each distinct stack is stored once.
struct SampleTable {
  static constexpr std::uint32_t kNoStack = 0xffffffff;
  struct Row {
    std::uint64_t time_ns;
    std::uint32_t pid, tid, cpu;
    std::uint32_t kernel_stack, user_stack;  // index into `stacks`, or kNoStack
    UnwindStop unwind_stop;
    std::uint32_t python_stack = kNoStack;  // index into `stacks` (words of PythonFrame), or kNoStack
    std::optional<PythonStackStatus> python_status;  // nullopt: the Python stack was not read
  };

  std::vector<std::vector<std::uint64_t>> stacks;
  std::vector<Row> rows;
  std::optional<binio::Diagnostic> error;  // malformed: decoding stopped at this offset (within the stream)

  // Row `row` re-expanded; throws std::out_of_range for a bad index.
  NativeSample sample(std::size_t row) const;
  // The Python frames of a stack, innermost first (the decoder checked every word).
  std::vector<PythonFrame> python_frames(std::uint32_t stack) const;
};

// Decodes a stream chunk by chunk as it is written (the chunks of
// SampleEncoder::take(), in order), for a view of a recording that is still
// running: each decode() replaces `rows` with the chunk's samples, while
// `stacks` keep every stack defined so far (their ids stay valid). After an
// error, later chunks decode nothing.
class SampleDecoder {
 public:
  SampleDecoder();
  ~SampleDecoder();
  SampleDecoder(const SampleDecoder&) = delete;
  SampleDecoder& operator=(const SampleDecoder&) = delete;

  const SampleTable& decode(std::span<const std::uint8_t> chunk);
  SampleTable take() { return std::move(table_); }

 private:
  class Decoder;
  SampleTable table_;
  std::unique_ptr<Decoder> decoder_;
  std::uint64_t offset_ = 0;
};

// Decodes a whole SMPL stream (all frames concatenated). Never throws on
// malformed input: see `error`.
SampleTable decode_samples(std::span<const std::uint8_t> stream);

}  // namespace jitprof::bundle
