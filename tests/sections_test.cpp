// The codecs of a bundle's sections and of its manifest: what a writer puts
// in comes back out of a reader, across frames, and what is malformed is
// skipped (line sections) or refused with the field named (the manifest).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "bundle/bundle.h"
#include "bundle/manifest.h"
#include "bundle/sections.h"
#include "bundle/text.h"

namespace {

using namespace jitprof;

// A bundle in memory whose frames are the given texts, in order.
bundle::Bundle bundle_of(const std::vector<std::pair<bundle::SectionType, std::string>>& frames) {
  bundle::Bundle read;
  read.version = bundle::kFormatVersion;
  for (const auto& [type, text] : frames) read.frames.push_back({type, 0, {text.begin(), text.end()}});
  return read;
}

// The frames a SectionBuffer hands to the writer, one per flush.
template <class Record>
std::vector<std::pair<bundle::SectionType, std::string>> frames_of(const std::vector<std::vector<Record>>& batches) {
  std::vector<std::pair<bundle::SectionType, std::string>> frames;
  for (const auto& batch : batches) {
    std::string text;
    for (const Record& record : batch) bundle::encode(record, text);
    frames.emplace_back(Record::kSection, text);
  }
  return frames;
}

TEST(Sections, LineSectionsComeBackAsWrittenAcrossFrames) {
  const bundle::MappingRecord libpypy{10, 4242, 4242, 0x7f0000001000, 0x200000, 0x1000, 5, 2, 8, 1, 99, "/usr/lib/libpypy3.9-c.so"};
  const bundle::MappingRecord jit{11, 4242, 4243, 0x7f1000000000, 0x100000, 0, 7, 0x22, 0, 0, 0, "//anon"};
  EXPECT_EQ(bundle::read_mappings(bundle_of(frames_of<bundle::MappingRecord>({{libpypy}, {jit}}))),
            (std::vector{libpypy, jit}));

  const bundle::TaskRecord comm{bundle::TaskRecord::Kind::Comm, 5, 4242, 4243, 0, 0, "worker-1"};
  const bundle::TaskRecord fork{bundle::TaskRecord::Kind::Fork, 6, 4242, 4244, 4242, 4242, ""};
  EXPECT_EQ(bundle::read_tasks(bundle_of(frames_of<bundle::TaskRecord>({{comm, fork}}))), (std::vector{comm, fork}));

  const bundle::SymbolRecord named{4242, 0x7f0000001234, "/lib/libc.so.6", "ab12", "memset", 0x34,
                                   {{"spin", "native_hot.c", 12}, {"mix", "native_hot.c", 5}}, ""};
  const bundle::SymbolRecord kernel{0, 0xffffffff81000000, "[kernel.kallsyms]", "", "do_syscall_64", 16, {}, ""};
  const bundle::SymbolRecord rpython{4242, 0x7f2000001000, "/usr/lib/libpypy3.9-c.so", "cd34",
                                     "IncrementalMiniMarkGC_minor_collection", 0x10, {}, "gc"};
  EXPECT_EQ(bundle::read_symbols(bundle_of(frames_of<bundle::SymbolRecord>({{named, kernel, rpython}}))),
            (std::vector{named, kernel, rpython}));
  // The component is written only when there is one; a bundle from before it reads with none.
  std::string line;
  bundle::encode(named, line);
  EXPECT_EQ(line.find("component"), std::string::npos) << line;
  const std::string older =
      R"({"pid":1,"address":16,"path":"/usr/lib/libpypy3.9-c.so","build_id":"cd34","name":"f","offset":0})" "\n";
  const auto read_older = bundle::read_symbols(bundle_of({{bundle::sections::kSymbols, older}}));
  ASSERT_EQ(read_older.size(), 1u);
  EXPECT_EQ(read_older[0].name, "f");
  EXPECT_EQ(read_older[0].component, "");

  const bundle::JitCodeRecord code{4242, 0x7f1000000040, {0x48, 0x89, 0xe5, 0x00, 0xff}};
  EXPECT_EQ(bundle::read_jit_code(bundle_of(frames_of<bundle::JitCodeRecord>({{code}}))), std::vector{code});

  const bundle::SourceFileRecord source{"/app/main.py", "def f():\n    return 1\n"};
  EXPECT_EQ(bundle::read_source_files(bundle_of(frames_of<bundle::SourceFileRecord>({{source}}))), std::vector{source});

  const bundle::CodeNameRecord hot{4242, 1040, "hot_loop", "/app/main.py", 12}, other{4243, 8, "<module>", "/app/x.py", 1};
  EXPECT_EQ(bundle::read_code_names(bundle_of(frames_of<bundle::CodeNameRecord>({{hot}, {other}}))),
            (std::vector{hot, other}));

  const bundle::JitCodemapRecord inlined{4242, 0x7f1000000040, {1040, 2048, 96}}, none{4242, 0x7f1000000100, {}};
  EXPECT_EQ(bundle::read_jit_codemap(bundle_of(frames_of<bundle::JitCodemapRecord>({{inlined, none}}))),
            (std::vector{inlined, none}));
}

// A JLTM frame as the writer stores it.
std::string jitlog_clock_frame(const std::vector<bundle::JitlogArrival>& arrivals) {
  const std::vector<std::uint8_t> bytes = bundle::encode_jitlog_arrivals(arrivals);
  return {bytes.begin(), bytes.end()};
}

TEST(Sections, JitlogArrivalsComeBackAsWrittenAcrossFrames) {
  // Pipe reads a few bytes and microseconds apart, a clock that steps back, and the extremes.
  const std::vector<bundle::JitlogArrival> first{{0, 41953596987824}, {4345, 41953749069007}, {4383, 41953749330783}};
  const std::vector<bundle::JitlogArrival> second{{4392, 41953749403431}, {4392, 5}, {UINT64_MAX, UINT64_MAX}, {0, 0}};
  std::vector<bundle::JitlogArrival> both = first;
  both.insert(both.end(), second.begin(), second.end());
  EXPECT_EQ(bundle::read_jitlog_arrivals(bundle_of({{bundle::sections::kJitlogClock, jitlog_clock_frame(first)},
                                                    {bundle::sections::kJitlogClock, jitlog_clock_frame(second)}})),
            both);
  // The format byte, then a few bytes an arrival (offset and time steps), not the 35 of a JSON line.
  EXPECT_EQ(jitlog_clock_frame(first).size(), 1u + (1 + 7) + (2 + 4) + (1 + 3));
  EXPECT_TRUE(bundle::decode_jitlog_arrivals(bundle::encode_jitlog_arrivals({})).empty());
}

TEST(Sections, AJitlogClockFrameCutShortReadsUpToItsLastWholeArrival) {
  const std::vector<bundle::JitlogArrival> arrivals{{0, 1000}, {300, 1'000'000'000'000}, {70000, 1'000'000'250'000}};
  const std::vector<std::uint8_t> whole = bundle::encode_jitlog_arrivals(arrivals);
  std::size_t previous = 0;
  for (std::size_t cut = 0; cut <= whole.size(); ++cut) {
    const auto read = bundle::decode_jitlog_arrivals(std::span(whole).first(cut));
    ASSERT_LE(read.size(), arrivals.size());
    EXPECT_GE(read.size(), previous) << "cut at " << cut;
    EXPECT_EQ(read, std::vector(arrivals.begin(), arrivals.begin() + std::ptrdiff_t(read.size()))) << "cut at " << cut;
    previous = read.size();
  }
  EXPECT_EQ(previous, arrivals.size());
  // A frame of a format this version does not know gives nothing rather than a misreading.
  EXPECT_TRUE(bundle::decode_jitlog_arrivals(std::vector<std::uint8_t>{0x7f, 1, 2}).empty());
}

TEST(Sections, JitlogArrivalsOfFormatOneReadAndMalformedLinesAreSkipped) {
  const std::string text = "{\"offset\":1,\"t\":10}\nnot json\n[1, 2]\n{\"offset\":2,\"t\":20}\n{\"offset\":3,\"t\":";
  const auto arrivals = bundle::read_jitlog_arrivals(bundle_of({{bundle::sections::kJitlogClock, text}}));
  EXPECT_EQ(arrivals, (std::vector<bundle::JitlogArrival>{{1, 10}, {2, 20}}));
}

TEST(Sections, PythonThreadNamesComeBackAsWritten) {
  // What record's sitecustomize said of a thread: its threading.Thread name, then a rename.
  const bundle::TaskRecord started{bundle::TaskRecord::Kind::PythonName, 7, 4242, 4243, 0, 0, "worker-1"};
  const bundle::TaskRecord renamed{bundle::TaskRecord::Kind::PythonName, 9, 4242, 4243, 0, 0, "caf\xe9 worker"};
  std::string line;
  bundle::encode(started, line);
  EXPECT_NE(line.find(R"("kind":"python-name")"), std::string::npos) << line;
  EXPECT_EQ(bundle::read_tasks(bundle_of(frames_of<bundle::TaskRecord>({{started}, {renamed}}))),
            (std::vector{started, renamed}));
}

TEST(Sections, ATaskOfAnUnknownKindIsSkipped) {
  // A task of a kind this version does not know is skipped, not misread.
  const auto tasks = bundle::read_tasks(bundle_of({{bundle::sections::kTasks, R"({"kind":"teleport","pid":1})"
                                                                              "\n"}}));
  EXPECT_TRUE(tasks.empty());
}

TEST(Sections, TextThatIsNotUtf8IsKeptByteForByte) {
  // A Latin-1 source file, a path and a thread name with bytes that are not UTF-8.
  const bundle::SourceFileRecord source{"/app/caf\xe9.py", "# caf\xe9\nx = 1\n"};
  const bundle::TaskRecord task{bundle::TaskRecord::Kind::Comm, 1, 2, 3, 0, 0, "w\xff\x1b"};
  std::string sources, tasks;
  bundle::encode(source, sources);
  bundle::encode(task, tasks);
  EXPECT_TRUE(bundle::is_utf8(sources)) << "the section itself is JSON, hence UTF-8";
  EXPECT_EQ(bundle::read_source_files(bundle_of({{bundle::sections::kSources, sources}})), std::vector{source});
  EXPECT_EQ(bundle::read_tasks(bundle_of({{bundle::sections::kTasks, tasks}})), std::vector{task});
}

TEST(Sections, Utf8IsToldFromOtherBytes) {
  EXPECT_TRUE(bundle::is_utf8("plain ascii"));
  EXPECT_TRUE(bundle::is_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x8d"));
  EXPECT_FALSE(bundle::is_utf8("caf\xe9"));                  // Latin-1
  EXPECT_FALSE(bundle::is_utf8("\xc0\xaf"));                 // overlong '/'
  EXPECT_FALSE(bundle::is_utf8("hot\xed\xb3\xbf"));          // a lone surrogate, as PyPy encodes '\udcff'
  EXPECT_FALSE(bundle::is_utf8("\xe2\x82"));                 // cut short
  EXPECT_FALSE(bundle::is_utf8("\xf4\x90\x80\x80"));         // past U+10FFFF
  // Output shows them as U+FFFD rather than failing.
  EXPECT_EQ(bundle::json_text(nlohmann::json{{"name", "hot\xed\xb3\xbf"}}), "{\"name\":\"hot\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"}");
}

TEST(Sections, TheCrashRecordComesBackWithItsRegistersAndFrames) {
  bundle::CrashRecord crash{11, "SIGSEGV", 1, 0, 4243, {{"rip", 0x7f1000000044}, {"rsp", 0x7ffd0000}}, {}};
  crash.frames.push_back({0x7f1000000044, true, std::nullopt});
  crash.frames.push_back({0x7f0000001234, false,
                          bundle::SymbolRecord{4242, 0x7f0000001234, "/lib/libc.so.6", "ab12", "memset", 0x34, {}, ""}});
  const auto read = bundle::read_crash(bundle_of({{bundle::sections::kCrash, bundle::encode(crash)}}));
  ASSERT_TRUE(read.has_value());
  // JSON objects come back by name: the registers in name order.
  std::sort(crash.registers.begin(), crash.registers.end());
  EXPECT_EQ(*read, crash);
  EXPECT_FALSE(bundle::read_crash(bundle_of({{bundle::sections::kCrash, "truncat"}})).has_value());
}

bundle::Manifest recorded_manifest() {
  bundle::Manifest manifest;
  manifest.jitprof_version = "0.1.0";
  manifest.command = {"pypy3", "app.py", "--flag"};
  manifest.pid = 4242;
  manifest.start_time = 1700000000.25;
  manifest.host = bundle::Manifest::Host{"box", "Linux", "6.1", "x86_64"};
  manifest.pypy_logs = true;
  manifest.pypy_version = "Python 3.9.16 [PyPy 7.3.11]";
  manifest.clock = bundle::Manifest::Clock{123456789, 1700000000.25};
  manifest.state = "complete";
  manifest.vmprof = bundle::Manifest::Vmprof{1000, true};
  manifest.perf.emplace();
  manifest.perf->event = "cpu-clock";
  manifest.perf->rate_hz = 1000;
  manifest.perf->kernel_frames = true;
  manifest.perf->children = false;
  manifest.perf->samples = 900;
  manifest.perf->lost = 0;
  manifest.perf->achieved_hz = 981.5;
  manifest.crash_capture = bundle::Manifest::CrashCapture{true, std::nullopt};
  manifest.exit = bundle::Manifest::Exit{139, 11, "SIGSEGV", 4243};
  manifest.sections = bundle::Manifest::SectionBytes{1000, 2000, std::nullopt};
  manifest.duration_s = 1.5;
  manifest.target_cpu_s = 0.9;
  manifest.recorder_cpu_s = 0.05;
  manifest.recorder_peak_rss_kib = 41000;
  return manifest;
}

TEST(Manifest, ComesBackAsWrittenAndTheNewestFrameWins) {
  bundle::Manifest recording = recorded_manifest();
  recording.state = "recording";
  const bundle::Manifest complete = recorded_manifest();
  const auto read = bundle::read_manifest(
      bundle_of({{bundle::sections::kManifest, bundle::encode(recording)}, {bundle::sections::kManifest, bundle::encode(complete)}}));
  ASSERT_TRUE(read.manifest) << read.error;
  EXPECT_TRUE(read.manifest->complete());
  EXPECT_EQ(bundle::to_json(*read.manifest), bundle::to_json(complete));
  EXPECT_EQ(read.manifest->exit->signal_name, "SIGSEGV");
  EXPECT_EQ(read.manifest->perf->achieved_hz, 981.5);
  EXPECT_EQ(read.manifest->recorder_peak_rss_kib, 41000u);
}

TEST(Manifest, ArgumentsThatAreNotUtf8AreStoredExactlyAndShownReplaced) {
  bundle::Manifest manifest = recorded_manifest();
  manifest.command = {"/bin/echo", "arg\xff", "caf\xc3\xa9"};
  const auto read = bundle::read_manifest(bundle_of({{bundle::sections::kManifest, bundle::encode(manifest)}}));
  ASSERT_TRUE(read.manifest) << read.error;
  EXPECT_EQ(read.manifest->command, manifest.command);
  const std::string shown = bundle::json_text(bundle::to_json(*read.manifest)["command"]);
  EXPECT_EQ(shown, "[\"/bin/echo\",\"arg\xef\xbf\xbd\",\"caf\xc3\xa9\"]");
}

TEST(Manifest, PerfOffRefusedAndOnAreTold) {
  for (const auto state : {bundle::Manifest::Perf::State::Off, bundle::Manifest::Perf::State::Refused,
                           bundle::Manifest::Perf::State::On}) {
    bundle::Manifest manifest = recorded_manifest();
    manifest.perf->state = state;
    if (state == bundle::Manifest::Perf::State::Refused) manifest.perf->refused = "perf_event_open was refused (EACCES)";
    const auto read = bundle::read_manifest(bundle_of({{bundle::sections::kManifest, bundle::encode(manifest)}}));
    ASSERT_TRUE(read.manifest) << read.error;
    EXPECT_EQ(read.manifest->perf->state, state);
    if (state == bundle::Manifest::Perf::State::Refused) {
      EXPECT_EQ(read.manifest->perf->refused, "perf_event_open was refused (EACCES)");
    }
  }
  // "perf": null is how a recording with --no-perf says it.
  const auto off = bundle::read_manifest(bundle_of({{bundle::sections::kManifest, R"({"state":"complete","perf":null})"}}));
  ASSERT_TRUE(off.manifest);
  EXPECT_EQ(off.manifest->perf->state, bundle::Manifest::Perf::State::Off);
}

TEST(Manifest, AFieldOfTheWrongTypeIsRefusedWithItsName) {
  const auto wrong = [](const std::string& text) {
    return bundle::read_manifest(bundle_of({{bundle::sections::kManifest, text}})).error;
  };
  EXPECT_EQ(wrong(R"({"pypy_version": 7})"), "manifest field 'pypy_version' must be a string, not number");
  EXPECT_EQ(wrong(R"({"perf": {"rate_hz": "fast"}})"), "manifest field 'perf.rate_hz' must be a non-negative integer, not string");
  EXPECT_EQ(wrong(R"({"command": ["pypy3", 3]})"), "manifest field 'command' must be a list of strings, not array");
  EXPECT_EQ(wrong(R"({"exit": 0})"), "manifest field 'exit' must be an object");
  EXPECT_EQ(wrong(R"([1])"), "the manifest is not a JSON object");
  EXPECT_EQ(wrong(R"({"state": "comp)"), "the manifest is not valid JSON");
  EXPECT_EQ(bundle::read_manifest(bundle_of({})).error, "the bundle has no manifest");
  // Fields a later version adds are skipped.
  const auto read = bundle::read_manifest(bundle_of({{bundle::sections::kManifest, R"({"state":"complete","new_field":{"a":1}})"}}));
  ASSERT_TRUE(read.manifest) << read.error;
  EXPECT_EQ(read.manifest->state, "complete");
}

}  // namespace
