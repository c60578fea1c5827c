// PyPy's own files beside bundles: each kind told by its content whatever
// its name, gzipped or not; anything else refused with what it holds; and a
// bundle made of a real run's jitlog and profile keeps their bytes and dates
// the run from the profile.
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "binio/binio.h"
#include "bundle/bundle.h"
#include "bundle/manifest.h"
#include "bundle/pypy_files.h"
#include "vmprof/profile.h"

namespace fs = std::filesystem;
using namespace jitprof;
using bundle::FileKind;

namespace {

const fs::path kFixtures = JITPROF_FIXTURES;

std::vector<std::uint8_t> inflated(const fs::path& path) {
  std::vector<std::uint8_t> bytes;
  binio::read_file_chunks(path, [&](std::span<const std::uint8_t> chunk) { bytes.insert(bytes.end(), chunk.begin(), chunk.end()); });
  return bytes;
}

class PypyFiles : public ::testing::Test {
 protected:
  fs::path dir_ = fs::temp_directory_path() / ("pypy-files-test-" + std::to_string(::getpid()));
  void SetUp() override { fs::create_directories(dir_); }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write(const std::string& name, std::span<const std::uint8_t> bytes) {
    const fs::path path = dir_ / name;
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    return path;
  }
  fs::path write_gzip(const std::string& name, std::span<const std::uint8_t> bytes) {
    const fs::path path = dir_ / name;
    gzFile out = gzopen(path.c_str(), "wb");
    gzwrite(out, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(out);
    return path;
  }
  std::string refusal(const fs::path& path) {
    try {
      bundle::identify_file(path);
    } catch (const bundle::UnknownFile& error) {
      return error.what();
    }
    return "(identified)";
  }
};

TEST_F(PypyFiles, EachKindIsToldByItsContentNotItsNameGzippedOrNot) {
  const auto jitlog = inflated(kFixtures / "hotloop.jitlog.gz");
  const auto profile = inflated(kFixtures / "hotloop.prof.gz");
  // Misleading names: only the bytes count.
  const fs::path bundle_path = dir_ / "run.jitlog";
  {
    bundle::BundleWriter writer(bundle_path);
    writer.append(bundle::sections::kJitlog, jitlog);
  }
  const auto bundle_bytes = inflated(bundle_path);
  const struct {
    fs::path path;
    FileKind kind;
    bool gzipped;
  } cases[] = {
      {write("app.prof", jitlog), FileKind::Jitlog, false},
      {write_gzip("app.jprof", jitlog), FileKind::Jitlog, true},
      {write("app.jitlog", profile), FileKind::Profile, false},
      {kFixtures / "hotloop.prof.gz", FileKind::Profile, true},
      {bundle_path, FileKind::Bundle, false},
      {write_gzip("bundle.gz", bundle_bytes), FileKind::Bundle, true},
  };
  for (const auto& each : cases) {
    const bundle::FileFormat format = bundle::identify_file(each.path);
    EXPECT_EQ(format.kind, each.kind) << each.path;
    EXPECT_EQ(format.gzipped, each.gzipped) << each.path;
  }
  EXPECT_STREQ(bundle::file_kind_name(FileKind::Jitlog), "a PyPy jitlog");
}

TEST_F(PypyFiles, AnythingElseIsRefusedSayingWhatItHoldsAndWhatIsRead) {
  const std::string text = "def f():\n    return 1\n";
  const std::string python = refusal(write("app.py", std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size())));
  EXPECT_NE(python.find("app.py is text starting \"def f():\\x0a    ret\""), std::string::npos) << python;
  EXPECT_NE(python.find("jitprof reads a jitprof bundle (jitprof record), a PyPy jitlog (JITLOG=FILE pypy3 app.py) or a "
                        "vmprof profile"),
            std::string::npos)
      << python;

  const std::vector<std::uint8_t> garbage = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0};
  EXPECT_NE(refusal(write("lib.so", garbage)).find("lib.so is bytes starting 7f 45 4c 46 02 01 01 00 00 00 00 00 00 00 00 00:"),
            std::string::npos)
      << refusal(dir_ / "lib.so");
  EXPECT_NE(refusal(write_gzip("garbage.gz", garbage)).find("is gzip data that inflates to bytes starting 7f 45"),
            std::string::npos);

  EXPECT_NE(refusal(write("empty.jitlog", {})).find("empty.jitlog is an empty file:"), std::string::npos);
  EXPECT_NE(refusal(write_gzip("empty.gz", {})).find("is gzip data that inflates to nothing:"), std::string::npos);

  // Only the header of a jitlog's first record: too little to tell.
  const auto jitlog = inflated(kFixtures / "hotloop.jitlog.gz");
  EXPECT_NE(refusal(write("cut.jitlog", std::span(jitlog).first(40))).find("is bytes starting 1e 04 00"),
            std::string::npos);
  EXPECT_THROW(bundle::identify_file(dir_ / "missing"), binio::InputError);
}

TEST_F(PypyFiles, ABundleOfARunKeepsBothFilesBytesAndDatesTheRunFromTheProfile) {
  const auto jitlog = inflated(kFixtures / "hotloop.jitlog.gz");
  const auto profile_bytes = inflated(kFixtures / "hotloop.prof.gz");
  bundle::PypyFiles files;
  files.jitlog = kFixtures / "hotloop.jitlog.gz";
  files.profile = kFixtures / "hotloop.prof.gz";
  bundle::PypyRun run;
  run.mode = "PyPy files";
  run.command = {"hotloop.jitlog.gz", "hotloop.prof.gz"};
  const fs::path output = dir_ / "run.jprof";
  const auto checks = bundle::write_pypy_bundle(files, run, output);
  ASSERT_EQ(checks.size(), 2u);
  for (const auto& check : checks) {
    EXPECT_FALSE(check.error) << check.file << ": " << check.error->message;
    EXPECT_TRUE(check.warnings.empty()) << check.file;
  }

  const bundle::Bundle read = bundle::read_bundle(output);
  ASSERT_FALSE(read.error);
  EXPECT_EQ(read.stream(bundle::sections::kJitlog), jitlog);
  EXPECT_EQ(read.stream(bundle::sections::kVmprof), profile_bytes);
  const auto manifest = bundle::read_manifest(read).manifest;
  ASSERT_TRUE(manifest);
  const vmprof::Profile profile = vmprof::parse_profile(profile_bytes);
  ASSERT_TRUE(profile.start_time && profile.end_time);
  const double start = double(profile.start_time->seconds) + double(profile.start_time->microseconds) / 1e6;
  const double end = double(profile.end_time->seconds) + double(profile.end_time->microseconds) / 1e6;
  EXPECT_DOUBLE_EQ(*manifest->start_time, start);
  ASSERT_TRUE(manifest->duration_s);
  EXPECT_NEAR(*manifest->duration_s, end - start, 1e-6);
  EXPECT_GT(*manifest->duration_s, 0.1);
  EXPECT_EQ(manifest->vm, "PyPy");  // the profile's interpreter, "pypy"
  EXPECT_EQ(manifest->mode, "PyPy files");
  EXPECT_EQ(manifest->command, run.command);
  EXPECT_EQ(manifest->sections->jitlog_bytes, jitlog.size());
  EXPECT_EQ(manifest->sections->vmprof_bytes, profile_bytes.size());
  ASSERT_TRUE(manifest->vmprof);
  EXPECT_EQ(manifest->vmprof->rate_hz, 1'000'000 / profile.header.period_usec);

  // The same in memory, as the commands that read bundles get it.
  const bundle::Bundle in_memory = bundle::pypy_bundle(files, run);
  EXPECT_EQ(in_memory.stream(bundle::sections::kJitlog), jitlog);
  EXPECT_EQ(in_memory.stream(bundle::sections::kVmprof), profile_bytes);
}

TEST_F(PypyFiles, AJitlogAloneIsPyPysAndAMalformedRecordIsReportedWithItsOffset) {
  auto jitlog = inflated(kFixtures / "hotloop.jitlog.gz");
  const std::size_t good = jitlog.size();
  jitlog.push_back(0xff);  // no jitlog marker
  bundle::PypyFiles files;
  files.jitlog = write("bad.jitlog", jitlog);
  bundle::PypyRun run;
  run.mode = "PyPy files";
  std::vector<bundle::FileCheck> checks;
  const bundle::Bundle read = bundle::pypy_bundle(files, run, &checks);
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_EQ(checks[0].kind, FileKind::Jitlog);
  ASSERT_TRUE(checks[0].error);
  EXPECT_EQ(checks[0].error->offset, good);
  EXPECT_NE(checks[0].error->message.find("unknown marker 0xff"), std::string::npos) << checks[0].error->message;
  const auto manifest = bundle::read_manifest(read).manifest;
  ASSERT_TRUE(manifest);
  EXPECT_EQ(manifest->vm, "PyPy");
  EXPECT_FALSE(manifest->duration_s);  // a jitlog says nothing of time
  EXPECT_FALSE(read.has(bundle::sections::kVmprof));
}

}  // namespace
