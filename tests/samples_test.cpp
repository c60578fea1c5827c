// The SMPL section: native samples round-trip through the dense encoding,
// stacks are stored once, and a malformed stream stops at the damage with
// its offset named and the rows before it kept.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>

#include "bundle/bundle.h"
#include "bundle/samples.h"

namespace fs = std::filesystem;
using namespace jitprof;
using bundle::NativeSample;
using bundle::SampleEncoder;
using bundle::SampleTable;
using bundle::PythonFrame;
using bundle::PythonStackStatus;
using bundle::UnwindStop;
using Bytes = std::vector<std::uint8_t>;

namespace jitprof::bundle {
// Readable failures for EXPECT_EQ on samples.
void PrintTo(const NativeSample& s, std::ostream* os) {
  *os << "{t=" << s.time_ns << " pid=" << s.pid << " tid=" << s.tid << " cpu=" << s.cpu
      << " kernel=" << s.kernel_stack.size() << " user=" << s.user_stack.size()
      << " stop=" << unwind_stop_name(s.unwind_stop) << " python=" << s.python_stack.size() << "/"
      << (s.python_status ? python_stack_status_name(*s.python_status) : "none") << "}";
}
}  // namespace jitprof::bundle

namespace {

Bytes encode(const std::vector<NativeSample>& samples) {
  SampleEncoder encoder;
  for (const auto& s : samples) encoder.add(s);
  return encoder.take();
}

void append(Bytes& to, const Bytes& more) { to.insert(to.end(), more.begin(), more.end()); }

void expect_decodes_to(const SampleTable& table, const std::vector<NativeSample>& expected) {
  ASSERT_FALSE(table.error) << table.error->offset << ": " << table.error->message;
  ASSERT_EQ(table.rows.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) ASSERT_EQ(table.sample(i), expected[i]) << "row " << i;
}

// A mix of everything the encoding must carry: repeated and distinct stacks,
// kernel-only, user-only and empty samples, times out of order, addresses at
// both ends of the 64-bit range.
std::vector<NativeSample> random_samples(std::size_t count, std::uint32_t seed) {
  std::mt19937_64 random(seed);
  const auto pick = [&](std::uint64_t n) { return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(random); };
  const auto random_stack = [&](bool kernel) {
    std::vector<std::uint64_t> stack(1 + pick(40));
    for (auto& address : stack) {
      switch (pick(5)) {
        case 0: address = pick(64); break;                                 // near 0
        case 1: address = ~std::uint64_t{0} - pick(64); break;             // near 2^64
        case 2: address = random(); break;                                 // anywhere
        default: address = (kernel ? 0xffffffff81000000u : 0x7f3a00000000u) + pick(1 << 24); break;
      }
    }
    return stack;
  };
  std::vector<std::vector<std::uint64_t>> kernel_pool, user_pool;
  for (int i = 0; i < 20; ++i) kernel_pool.push_back(random_stack(true));
  for (int i = 0; i < 50; ++i) user_pool.push_back(random_stack(false));
  std::vector<std::vector<PythonFrame>> python_pool(30);
  for (auto& stack : python_pool) {
    const std::size_t depth = pick(4) == 0 ? 0 : 1 + pick(pick(10) == 0 ? 300 : 30);
    for (std::size_t i = 0; i < depth; ++i)
      stack.push_back(pick(3) == 0 ? PythonFrame{PythonFrame::Kind::Jitted, 0x7f3a00000000u + pick(1 << 20)}
                                   : PythonFrame{PythonFrame::Kind::Code, 4 * pick(200)});
  }

  std::vector<NativeSample> samples(count);
  std::uint64_t now = 1'000'000'000'000;
  for (auto& s : samples) {
    now += pick(2'000'000);
    // Out of order by up to 50 us, as samples from several CPUs arrive.
    s.time_ns = now - pick(50'000);
    if (pick(100) == 0) s.time_ns = pick(3) == 0 ? 0 : ~std::uint64_t{0} - pick(10);
    s.pid = static_cast<std::uint32_t>(1000 + pick(4));
    s.tid = pick(50) == 0 ? 0xffffffffu : s.pid + static_cast<std::uint32_t>(pick(8));
    s.cpu = static_cast<std::uint32_t>(pick(64));
    switch (pick(6)) {
      case 0: s.kernel_stack = kernel_pool[pick(kernel_pool.size())]; break;  // kernel only
      case 1: break;                                                           // nothing
      case 2: s.user_stack = random_stack(false); break;                       // a fresh stack
      case 3:
        s.kernel_stack = kernel_pool[pick(kernel_pool.size())];
        s.user_stack = user_pool[pick(user_pool.size())];
        break;
      default: s.user_stack = user_pool[pick(user_pool.size())]; break;  // user only, repeated
    }
    s.unwind_stop = static_cast<UnwindStop>(pick(7));
    // A third of the samples carry a Python stack (some empty, some deep).
    if (pick(3) == 0) {
      s.python_status = static_cast<bundle::PythonStackStatus>(pick(6));
      s.python_stack = python_pool[pick(python_pool.size())];
    }
  }
  return samples;
}

// A stream with two complete samples to put bad records after.
Bytes good_prefix() {
  NativeSample a;
  a.time_ns = 100;
  a.pid = a.tid = 5;
  a.user_stack = {0x1000, 0x2000};
  NativeSample b = a;
  b.time_ns = 200;
  b.kernel_stack = {0xffffffff81000010u};
  return encode({a, b});
}

TEST(UnwindStop, NamesEveryValue) {
  EXPECT_STREQ(bundle::unwind_stop_name(UnwindStop::Complete), "complete");
  EXPECT_STREQ(bundle::unwind_stop_name(UnwindStop::NoUserStack), "no user stack");
  EXPECT_STREQ(bundle::unwind_stop_name(UnwindStop::NoUnwindInfo), "no unwind info");
  EXPECT_STREQ(bundle::unwind_stop_name(UnwindStop::UnreadableMemory), "unreadable memory");
  EXPECT_STREQ(bundle::unwind_stop_name(UnwindStop::JitFrame), "jit frame");
  EXPECT_STREQ(bundle::unwind_stop_name(UnwindStop::DepthLimit), "depth limit");
  EXPECT_STREQ(bundle::unwind_stop_name(UnwindStop::BadFrame), "bad frame");
  EXPECT_STREQ(bundle::unwind_stop_name(static_cast<UnwindStop>(7)), "unknown");
  EXPECT_EQ(bundle::sections::kSamples.name(), "SMPL");
}

TEST(SampleEncoding, RandomSamplesRoundTrip) {
  const auto samples = random_samples(20'000, 42);
  SampleEncoder encoder;
  for (const auto& s : samples) encoder.add(s);
  EXPECT_EQ(encoder.samples(), samples.size());
  const Bytes bytes = encoder.take();
  const SampleTable table = bundle::decode_samples(bytes);
  expect_decodes_to(table, samples);
  EXPECT_EQ(table.stacks.size(), encoder.unique_stacks());
  // 20 kernel + 50 user + up to 30 Python pool stacks, plus the fresh ones (a fresh one can coincide only by chance).
  EXPECT_GT(encoder.unique_stacks(), 90u);
  EXPECT_LT(encoder.unique_stacks(), 100u + samples.size() / 6 * 2);
  // Stacks are stored once: rows referring to the same address list share an index.
  for (const auto& stack : table.stacks) EXPECT_FALSE(stack.empty());
}

TEST(SampleEncoding, TakesSplitAcrossFramesDecodeAsOneStream) {
  const auto samples = random_samples(5'000, 7);
  SampleEncoder encoder;
  Bytes stream;
  std::vector<std::size_t> frame_ends;       // stream size after each take
  std::vector<std::size_t> samples_at_end;   // samples added before each take
  std::mt19937 random(3);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    encoder.add(samples[i]);
    if (random() % 97 == 0 || i + 1 == samples.size()) {
      const Bytes frame = encoder.take();
      append(stream, frame);
      frame_ends.push_back(stream.size());
      samples_at_end.push_back(i + 1);
    }
  }
  ASSERT_GT(frame_ends.size(), 20u);
  EXPECT_TRUE(encoder.take().empty());
  expect_decodes_to(bundle::decode_samples(stream), samples);

  // A recording cut after any whole frame decodes cleanly up to it.
  for (std::size_t f = 0; f < frame_ends.size(); ++f) {
    const SampleTable table = bundle::decode_samples(std::span(stream).first(frame_ends[f]));
    ASSERT_FALSE(table.error) << "frame " << f;
    ASSERT_EQ(table.rows.size(), samples_at_end[f]);
    EXPECT_EQ(table.sample(table.rows.size() - 1), samples[samples_at_end[f] - 1]);
  }
}

TEST(SampleEncoding, FramesInABundleFileRoundTrip) {
  const fs::path path = fs::temp_directory_path() / ("samples-test-" + std::to_string(::getpid()) + ".jprof");
  const auto samples = random_samples(3'000, 11);
  {
    bundle::BundleWriter writer(path);
    SampleEncoder encoder;
    for (std::size_t i = 0; i < samples.size(); ++i) {
      encoder.add(samples[i]);
      if (i % 1000 == 999) writer.append(bundle::sections::kSamples, encoder.take());
      if (i % 1500 == 0) writer.append(bundle::sections::kTasks, std::string("{}\n"));
    }
  }
  const bundle::Bundle read = bundle::read_bundle(path);
  fs::remove(path);
  ASSERT_FALSE(read.error);
  EXPECT_EQ(std::count_if(read.frames.begin(), read.frames.end(),
                          [](const bundle::Frame& f) { return f.type == bundle::sections::kSamples; }),
            3);
  expect_decodes_to(bundle::decode_samples(read.stream(bundle::sections::kSamples)), samples);
}

TEST(SampleEncoding, PythonStacksRoundTripAndShareTheStackTable) {
  NativeSample a;
  a.time_ns = 10;
  a.pid = a.tid = 42;
  a.user_stack = {0x1000, 0x2000};
  a.python_status = PythonStackStatus::Complete;
  a.python_stack = {{PythonFrame::Kind::Jitted, 0x7f0000001234u}, {PythonFrame::Kind::Code, 96}, {PythonFrame::Kind::Code, 4}};
  NativeSample b = a;  // the same Python stack: defined once
  b.time_ns = 20;
  NativeSample c = a;  // read, but empty: the thread was not ready
  c.time_ns = 30;
  c.python_status = PythonStackStatus::NotReady;
  c.python_stack.clear();
  NativeSample d = a;  // not read at all: an ordinary sample (tag 2)
  d.time_ns = 40;
  d.python_status.reset();
  d.python_stack.clear();
  SampleEncoder encoder;
  for (const NativeSample* s : {&a, &b, &c, &d}) encoder.add(*s);
  EXPECT_EQ(encoder.unique_stacks(), 2u);  // the user stack and the Python stack
  const SampleTable table = bundle::decode_samples(encoder.take());
  expect_decodes_to(table, {a, b, c, d});
  EXPECT_EQ(table.rows[0].python_stack, table.rows[1].python_stack);
  EXPECT_EQ(table.rows[2].python_stack, SampleTable::kNoStack);
  EXPECT_EQ(table.rows[2].python_status, PythonStackStatus::NotReady);
  EXPECT_FALSE(table.rows[3].python_status);
}

TEST(SampleEncoding, AStackOfWordsThatAreNotPythonFramesIsAnErrorWhereTheSampleUsesIt) {
  // Stack 0 = {0x1000} (low bits 00: a native address, not a Python frame),
  // then a tag-3 sample naming it as its Python stack.
  const Bytes stream = {1, 1, 0x80, 0x40,        // tag 1: one address, zigzag(0x1000)
                        3, 0, 1, 1, 0, 0, 0, 0,  // tag 3: time, pid, tid, cpu, no kernel, no user, complete
                        1, 0};                   // python stack id 0 + 1, status complete
  const SampleTable table = bundle::decode_samples(stream);
  ASSERT_TRUE(table.error);
  EXPECT_EQ(table.error->offset, 12u);
  EXPECT_NE(table.error->message.find("not a Python frame"), std::string::npos) << table.error->message;
  EXPECT_TRUE(table.rows.empty());
}

TEST(SampleEncoding, AnUnknownPythonStackStatusIsAnError) {
  const Bytes stream = {3, 0, 1, 1, 0, 0, 0, 0, 0, 6};
  const SampleTable table = bundle::decode_samples(stream);
  ASSERT_TRUE(table.error);
  EXPECT_EQ(table.error->offset, 9u);
  EXPECT_NE(table.error->message.find("unknown python stack status 6"), std::string::npos) << table.error->message;
}

TEST(PythonStackStatus, NamesEveryValue) {
  EXPECT_STREQ(bundle::python_stack_status_name(PythonStackStatus::Complete), "complete");
  EXPECT_STREQ(bundle::python_stack_status_name(PythonStackStatus::Truncated), "truncated");
  EXPECT_STREQ(bundle::python_stack_status_name(PythonStackStatus::NotReady), "not ready");
  EXPECT_STREQ(bundle::python_stack_status_name(PythonStackStatus::NoThreadBlock), "no thread block");
  EXPECT_STREQ(bundle::python_stack_status_name(PythonStackStatus::Unreadable), "unreadable");
  EXPECT_STREQ(bundle::python_stack_status_name(PythonStackStatus::Lost), "lost");
  EXPECT_STREQ(bundle::python_stack_status_name(static_cast<PythonStackStatus>(6)), "unknown");
}

TEST(SampleEncoding, EmptyStreamHasNoRows) {
  const SampleTable table = bundle::decode_samples({});
  EXPECT_FALSE(table.error);
  EXPECT_TRUE(table.rows.empty());
  EXPECT_TRUE(table.stacks.empty());
  SampleEncoder encoder;
  EXPECT_TRUE(encoder.take().empty());
}

TEST(SampleEncoding, EmptyStacksAreNone) {
  NativeSample s;
  s.time_ns = 5;
  s.unwind_stop = UnwindStop::NoUserStack;
  SampleEncoder encoder;
  encoder.add(s);
  EXPECT_EQ(encoder.unique_stacks(), 0u);
  const SampleTable table = bundle::decode_samples(encoder.take());
  ASSERT_EQ(table.rows.size(), 1u);
  EXPECT_EQ(table.rows[0].kernel_stack, SampleTable::kNoStack);
  EXPECT_EQ(table.rows[0].user_stack, SampleTable::kNoStack);
  EXPECT_EQ(table.sample(0), s);
}

TEST(SampleEncoding, KernelAndUserShareIdenticalStacks) {
  NativeSample s;
  s.kernel_stack = {1, 2, 3};
  s.user_stack = {1, 2, 3};
  SampleEncoder encoder;
  encoder.add(s);
  EXPECT_EQ(encoder.unique_stacks(), 1u);
  const SampleTable table = bundle::decode_samples(encoder.take());
  ASSERT_EQ(table.rows.size(), 1u);
  EXPECT_EQ(table.rows[0].kernel_stack, 0u);
  EXPECT_EQ(table.rows[0].user_stack, 0u);
}

TEST(SampleEncoding, RepeatedStacksAreStoredOnceAndCostLittle) {
  std::vector<std::vector<std::uint64_t>> stacks(3);
  for (std::size_t k = 0; k < stacks.size(); ++k)
    for (std::uint64_t f = 0; f < 20; ++f) stacks[k].push_back(0x7f3a12340000u + k * 0x10000 + f * 0x1234);
  SampleEncoder encoder;
  std::vector<NativeSample> samples(10'000);
  std::uint64_t now = 5'000'000'000'000;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    now += 1'000'000 + (i * 7919) % 20'000;  // 1 kHz with jitter
    samples[i].time_ns = now;
    samples[i].pid = 31337;
    samples[i].tid = 31337 + static_cast<std::uint32_t>(i % 4);
    samples[i].cpu = static_cast<std::uint32_t>(i % 8);
    samples[i].user_stack = stacks[i % 3];
    samples[i].unwind_stop = UnwindStop::Complete;
    encoder.add(samples[i]);
  }
  EXPECT_EQ(encoder.unique_stacks(), 3u);
  EXPECT_EQ(encoder.samples(), 10'000u);
  const Bytes bytes = encoder.take();
  const double per_sample = static_cast<double>(bytes.size()) / static_cast<double>(samples.size());
  std::printf("repeated 20-frame stacks: %zu bytes for %zu samples = %.2f bytes/sample\n", bytes.size(),
              samples.size(), per_sample);
  EXPECT_LT(per_sample, 15.0);
  const SampleTable table = bundle::decode_samples(bytes);
  EXPECT_EQ(table.stacks.size(), 3u);
  expect_decodes_to(table, samples);
}

TEST(SampleEncoding, ExactBytesOfASmallCase) {
  NativeSample a;
  a.time_ns = 1000;
  a.pid = 7;
  a.tid = 8;
  a.cpu = 1;
  a.user_stack = {0x400000, 0x400010, 0x3ffff0};
  NativeSample b;
  b.time_ns = 990;  // earlier than a: out of order
  b.pid = 7;
  b.tid = 8;
  b.cpu = 0;
  b.kernel_stack = {0xffffffff81000000u};
  b.user_stack = a.user_stack;
  b.unwind_stop = UnwindStop::DepthLimit;

  // By hand, from the spec in bundle/samples.h:
  //   a: its user stack is new -> stack 0:
  //     01               tag 1
  //     03               3 addresses
  //     80 80 80 04      0x400000 - 0 = +2^22, zigzag 2^23: four 7-bit groups 0,0,0,4
  //     20               0x400010 - 0x400000 = +16, zigzag 32
  //     3f               0x3ffff0 - 0x400010 = -32, zigzag 63
  //   a itself:
  //     02               tag 2
  //     d0 0f            time +1000, zigzag 2000 = 0x7d0: 0x50|0x80, 0x0f
  //     07 08 01         pid, tid, cpu
  //     00               no kernel stack
  //     01               user stack 0 + 1
  //     00               complete
  //   b: its kernel stack is new -> stack 1:
  //     01 01            tag 1, 1 address
  //     ff ff ff ef 0f   0xffffffff81000000 - 0 = -0x7f000000, zigzag 0xfdffffff:
  //                      groups 7f 7f 7f 6f 0f
  //   b itself:
  //     02               tag 2
  //     13               time 990 - 1000 = -10, zigzag 19
  //     07 08 00         pid, tid, cpu
  //     02               kernel stack 1 + 1
  //     01               user stack 0 + 1 (already defined)
  //     05               depth limit
  const Bytes expected = {0x01, 0x03, 0x80, 0x80, 0x80, 0x04, 0x20, 0x3f,                    //
                          0x02, 0xd0, 0x0f, 0x07, 0x08, 0x01, 0x00, 0x01, 0x00,              //
                          0x01, 0x01, 0xff, 0xff, 0xff, 0xef, 0x0f,                          //
                          0x02, 0x13, 0x07, 0x08, 0x00, 0x02, 0x01, 0x05};
  EXPECT_EQ(encode({a, b}), expected);
  const SampleTable table = bundle::decode_samples(expected);
  expect_decodes_to(table, {a, b});
  EXPECT_EQ(table.stacks.size(), 2u);
}

TEST(SampleEncoding, OverlongStacksKeepTheirLeafFrames) {
  NativeSample s;
  for (std::uint64_t i = 0; i < bundle::kMaxStackDepth + 10; ++i) s.user_stack.push_back(0x1000 + i);
  s.kernel_stack = s.user_stack;
  SampleEncoder encoder;
  encoder.add(s);
  const SampleTable table = bundle::decode_samples(encoder.take());
  ASSERT_FALSE(table.error);
  const NativeSample back = table.sample(0);
  ASSERT_EQ(back.user_stack.size(), bundle::kMaxStackDepth);
  ASSERT_EQ(back.kernel_stack.size(), bundle::kMaxStackDepth);
  EXPECT_EQ(back.user_stack.front(), 0x1000u);
  EXPECT_EQ(back.user_stack.back(), 0x1000u + bundle::kMaxStackDepth - 1);
  EXPECT_EQ(back.unwind_stop, UnwindStop::DepthLimit);
}

// Malformed streams: each stops at the exact offset, keeping what came before.
class MalformedSamples : public ::testing::Test {
 protected:
  Bytes stream_ = good_prefix();
  const std::size_t prefix_ = stream_.size();

  SampleTable decode_with(const Bytes& bad) {
    Bytes bytes = stream_;
    append(bytes, bad);
    return bundle::decode_samples(bytes);
  }
  void expect_error(const SampleTable& table, std::uint64_t offset, const std::string& words) {
    ASSERT_TRUE(table.error);
    EXPECT_EQ(table.error->offset, offset) << table.error->message;
    EXPECT_NE(table.error->message.find(words), std::string::npos) << table.error->message;
    ASSERT_EQ(table.rows.size(), 2u);
    EXPECT_EQ(table.rows[1].time_ns, 200u);
    EXPECT_EQ(table.stacks.size(), 2u);
  }
};

TEST_F(MalformedSamples, PrefixIsValid) {
  const SampleTable table = bundle::decode_samples(stream_);
  EXPECT_FALSE(table.error);
  EXPECT_EQ(table.rows.size(), 2u);
}

TEST_F(MalformedSamples, UnknownTag) {
  expect_error(decode_with({0x04, 0x00}), prefix_, "unknown record tag 4");
  expect_error(decode_with({0x00}), prefix_, "unknown record tag 0");
}

TEST_F(MalformedSamples, UndefinedStackId) {
  // tag, time, pid, tid, cpu, kernel none, user id 2 + 1 (only 0 and 1 exist), stop
  expect_error(decode_with({0x02, 0x00, 0x01, 0x01, 0x01, 0x00, 0x03, 0x00}), prefix_ + 6, "user stack id 2");
  expect_error(decode_with({0x02, 0x00, 0x01, 0x01, 0x01, 0x07, 0x01, 0x00}), prefix_ + 5, "kernel stack id 6");
}

TEST_F(MalformedSamples, OverlongVarint) {
  // The time delta: 11 bytes with the continuation bit.
  Bytes bad = {0x02};
  bad.insert(bad.end(), 11, 0x80);
  bad.push_back(0x00);
  expect_error(decode_with(bad), prefix_ + 1, "longer than 10 bytes");
}

TEST_F(MalformedSamples, VarintPast64Bits) {
  Bytes bad = {0x02, 0x00, 0x01, 0x01, 0x01, 0x00};
  for (int i = 0; i < 9; ++i) bad.push_back(0xff);
  bad.push_back(0x02);  // the 10th byte may carry only bit 63
  expect_error(decode_with(bad), prefix_ + 6, "exceeds 64 bits");
}

TEST_F(MalformedSamples, HugeCount) {
  // 65537 = 0x10001: groups 01 04 04
  expect_error(decode_with({0x01, 0x81, 0x80, 0x04}), prefix_ + 1, "exceeds the limit");
  // Exactly the limit is accepted as far as the count goes, then the stream ends.
  expect_error(decode_with({0x01, 0x80, 0x80, 0x04, 0x00}), prefix_, "truncated");
}

TEST_F(MalformedSamples, OutOfRangeFields) {
  // pid 2^32 = groups 00 00 00 00 10 (with continuation bits)
  expect_error(decode_with({0x02, 0x00, 0x80, 0x80, 0x80, 0x80, 0x10, 0x01, 0x01, 0x00, 0x00, 0x00}), prefix_ + 2,
               "pid 4294967296 is out of range");
  expect_error(decode_with({0x02, 0x00, 0x01, 0x01, 0x01, 0x00, 0x00, 0x07}), prefix_ + 7, "unknown unwind stop 7");
}

TEST_F(MalformedSamples, CutMidRecord) {
  NativeSample c;
  c.time_ns = 1'000'000'300;
  c.pid = 300;
  c.tid = 301;
  c.cpu = 2;
  c.user_stack = {0x7f0000001234u, 0x7f0000005678u};
  c.kernel_stack = {0x1000, 0x2000};  // stack 0 again
  SampleEncoder encoder;
  NativeSample a;
  a.time_ns = 100;
  a.pid = a.tid = 5;
  a.user_stack = {0x1000, 0x2000};
  NativeSample b = a;
  b.time_ns = 200;
  b.kernel_stack = {0xffffffff81000010u};
  encoder.add(a);
  encoder.add(b);
  ASSERT_EQ(encoder.take(), stream_);
  encoder.add(c);
  const Bytes record = encoder.take();  // a stack record (c's user stack), then the sample
  const std::size_t stack_bytes = 1 + 1 + 7 + 3;  // zigzag 0xfe0000002468: 7 bytes; 0x8888: 3
  ASSERT_EQ(record[0], 0x01);
  ASSERT_EQ(record[stack_bytes], 0x02);
  for (std::size_t cut = 1; cut < record.size(); ++cut) {
    SCOPED_TRACE(cut);
    const SampleTable table = decode_with(Bytes(record.begin(), record.begin() + static_cast<long>(cut)));
    if (cut == stack_bytes) {  // between the two records: nothing is wrong
      EXPECT_FALSE(table.error);
      EXPECT_EQ(table.stacks.size(), 3u);
      EXPECT_EQ(table.rows.size(), 2u);
      continue;
    }
    ASSERT_TRUE(table.error);
    EXPECT_EQ(table.error->message.rfind("truncated", 0), 0u) << table.error->message;
    if (cut < stack_bytes) {
      expect_error(table, prefix_, "truncated");
    } else {
      // The stack record is whole: it is kept; the sample record is cut.
      EXPECT_EQ(table.error->offset, prefix_ + stack_bytes);
      EXPECT_EQ(table.stacks.size(), 3u);
      EXPECT_EQ(table.rows.size(), 2u);
    }
  }
  expect_decodes_to(decode_with(record), {a, b, c});
}

TEST(SampleDecoding, GarbageNeverCrashes) {
  std::mt19937 random(1234);
  const Bytes valid = encode(random_samples(300, 5));
  std::size_t errors = 0;
  for (int round = 0; round < 3000; ++round) {
    Bytes bytes;
    if (round % 2 == 0) {
      bytes.resize(random() % 400);
      // Mostly small values, so that records get far before failing.
      for (auto& b : bytes) b = static_cast<std::uint8_t>(random() % 4 == 0 ? random() : random() % 8);
    } else {
      bytes = valid;
      for (int flips = 1 + static_cast<int>(random() % 4); flips > 0; --flips)
        bytes[random() % bytes.size()] ^= static_cast<std::uint8_t>(1u << (random() % 8));
      bytes.resize(random() % (bytes.size() + 1));
    }
    const SampleTable table = bundle::decode_samples(bytes);
    if (table.error) {
      ++errors;
      ASSERT_LE(table.error->offset, bytes.size());
      ASSERT_FALSE(table.error->message.empty());
    }
    for (std::size_t i = 0; i < table.rows.size(); ++i) {
      const auto& row = table.rows[i];
      ASSERT_TRUE(row.kernel_stack == SampleTable::kNoStack || row.kernel_stack < table.stacks.size());
      ASSERT_TRUE(row.user_stack == SampleTable::kNoStack || row.user_stack < table.stacks.size());
      ASSERT_LE(static_cast<int>(row.unwind_stop), static_cast<int>(UnwindStop::BadFrame));
      (void)table.sample(i);
    }
    for (const auto& stack : table.stacks) ASSERT_LE(stack.size(), bundle::kMaxStackDepth);
  }
  EXPECT_GT(errors, 1000u);  // garbage is mostly caught, not silently accepted
}

TEST(SampleDecoding, AMillionSamplesRoundTrip) {
  constexpr std::size_t kCount = 1'000'000;
  std::vector<std::vector<std::uint64_t>> stacks(200);
  std::mt19937_64 random(99);
  for (auto& stack : stacks) {
    stack.resize(5 + random() % 30);
    for (auto& address : stack) address = 0x7f0000000000u + random() % (1u << 30);
  }
  SampleEncoder encoder;
  NativeSample s;
  s.pid = 4242;
  std::uint64_t now = 1'000'000'000;
  for (std::size_t i = 0; i < kCount; ++i) {
    now += 1'000'000 + random() % 10'000;
    s.time_ns = now;
    s.tid = 4242 + static_cast<std::uint32_t>(i % 16);
    s.cpu = static_cast<std::uint32_t>(random() % 16);
    s.user_stack = stacks[random() % stacks.size()];
    s.kernel_stack = i % 10 == 0 ? stacks[i % 7] : std::vector<std::uint64_t>{};
    encoder.add(s);
  }
  const Bytes bytes = encoder.take();
  const SampleTable table = bundle::decode_samples(bytes);
  ASSERT_FALSE(table.error);
  ASSERT_EQ(table.rows.size(), kCount);
  EXPECT_EQ(table.stacks.size(), 200u);
  EXPECT_EQ(table.rows.back().time_ns, now);
  EXPECT_EQ(table.sample(kCount - 1), s);
}

}  // namespace
