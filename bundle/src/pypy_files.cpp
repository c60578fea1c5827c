#include "bundle/pypy_files.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "bundle/manifest.h"
#include "jitlog/jitlog.h"
#include "vmprof/profile.h"

namespace jitprof::bundle {
namespace {

namespace fs = std::filesystem;

// Enough for a jitlog's header (4,345 bytes from PyPy 7.3.11, its op table
// included) and a vmprof profile's headers.
constexpr std::size_t kIdentifyBytes = 64 << 10;
// Frames of the sections as the server has always stored uploads.
constexpr std::size_t kPieceBytes = 16 << 20;

// What a file that is none of the three starts with, for the error.
std::string describe_start(const binio::FileStart& start) {
  const std::string gzipped = start.gzipped ? "gzip data that inflates to " : "";
  if (start.bytes.empty()) return start.gzipped ? "gzip data that inflates to nothing" : "an empty file";
  const std::size_t shown = std::min<std::size_t>(start.bytes.size(), 16);
  const bool text = std::all_of(start.bytes.begin(), start.bytes.begin() + static_cast<std::ptrdiff_t>(shown),
                                [](std::uint8_t c) { return std::isprint(c) || c == '\n' || c == '\t' || c == '\r'; });
  std::string head;
  for (std::size_t i = 0; i < shown; ++i) {
    const std::uint8_t c = start.bytes[i];
    if (text) head += std::isprint(c) ? std::string(1, static_cast<char>(c)) : fmt::format("\\x{:02x}", c);
    else head += fmt::format("{}{:02x}", i ? " " : "", c);
  }
  return text ? fmt::format("{}text starting \"{}\"", gzipped, head)
              : fmt::format("{}bytes starting {}", gzipped, head);
}

bool reads_as_jitlog(std::span<const std::uint8_t> start) {
  jitlog::JitlogReader reader(jitlog::Detail::Outline);
  if (!reader.feed(start)) return false;
  return reader.finish().header.header_count > 0;
}

bool reads_as_profile(std::span<const std::uint8_t> start) {
  vmprof::ProfileReader reader;
  // PyPy and vmprof-python name the interpreter right after the static header.
  return reader.feed(start) && !reader.current().header.interpreter.empty();
}

std::string interpreter_name(const std::string& written) {
  if (written == "pypy") return "PyPy";
  if (written == "cpython") return "CPython";
  return written;
}

double unix_seconds(const vmprof::Timestamp& time) {
  return double(time.seconds) + double(time.microseconds) / 1e6;
}

// Streams one file (inflated when gzipped) to `section` in pieces of
// kPieceBytes, each also handed to `read` (a reader checking it).
std::uint64_t copy_section(const fs::path& file, SectionType section, const PypyRun& run, const AppendFrame& append,
                           const std::function<void(std::span<const std::uint8_t>)>& read) {
  std::vector<std::uint8_t> piece;
  piece.reserve(kPieceBytes);
  const auto flush = [&] {
    if (piece.empty()) return;
    append(section, piece);
    piece.clear();
  };
  binio::ReadOptions options;
  options.max_decompressed_bytes = run.max_inflated_bytes;
  const std::uint64_t bytes = binio::read_file_chunks(
      file,
      [&](std::span<const std::uint8_t> chunk) {
        read(chunk);
        while (!chunk.empty()) {
          const std::size_t taken = std::min(chunk.size(), kPieceBytes - piece.size());
          piece.insert(piece.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(taken));
          chunk = chunk.subspan(taken);
          if (piece.size() == kPieceBytes) flush();
        }
      },
      options);
  flush();
  return bytes;
}

}  // namespace

const char* file_kind_name(FileKind kind) {
  switch (kind) {
    case FileKind::Bundle: return "a jitprof bundle";
    case FileKind::Jitlog: return "a PyPy jitlog";
    case FileKind::Profile: return "a vmprof profile";
  }
  return "?";
}

FileFormat identify_file(const fs::path& path) {
  const binio::FileStart start = binio::read_file_start(path, kIdentifyBytes);
  const std::span<const std::uint8_t> bytes(start.bytes);
  if (starts_as_bundle(bytes)) return {FileKind::Bundle, start.gzipped};
  if (reads_as_jitlog(bytes)) return {FileKind::Jitlog, start.gzipped};
  if (reads_as_profile(bytes)) return {FileKind::Profile, start.gzipped};
  throw UnknownFile(fmt::format(
      "{} is {}: jitprof reads a jitprof bundle (jitprof record), a PyPy jitlog (JITLOG=FILE pypy3 app.py) or a "
      "vmprof profile (_vmprof, vmprof-python), each gzipped or not",
      path.string(), describe_start(start)));
}

std::vector<FileCheck> assemble_bundle(const PypyFiles& files, const PypyRun& run, const AppendFrame& append) {
  Manifest manifest;
  manifest.jitprof_version = JITPROF_VERSION;
  manifest.mode = run.mode;
  manifest.command = run.command;
  manifest.vm = run.vm;
  manifest.start_time = run.start_time;
  manifest.state = "complete";
  manifest.sections.emplace();
  std::vector<FileCheck> checks;

  if (files.profile) {
    vmprof::ProfileReader reader;
    bool reading = true;
    manifest.sections->vmprof_bytes =
        copy_section(*files.profile, sections::kVmprof, run, append, [&](std::span<const std::uint8_t> chunk) {
          if (!reading) return;
          if (run.before_reading) run.before_reading(chunk.size());
          reading = reader.feed(chunk);
        });
    const vmprof::Profile profile = reader.finish();
    checks.push_back({*files.profile, FileKind::Profile, profile.warnings, profile.error});
    if (!manifest.vm && !profile.header.interpreter.empty()) manifest.vm = interpreter_name(profile.header.interpreter);
    if (profile.start_time) manifest.start_time = unix_seconds(*profile.start_time);
    if (profile.start_time && profile.end_time) {
      manifest.end_time = unix_seconds(*profile.end_time);
      manifest.duration_s = std::max(0.0, *manifest.end_time - *manifest.start_time);
    }
    if (profile.header.period_usec > 0)
      manifest.vmprof = Manifest::Vmprof{static_cast<unsigned>(1'000'000 / profile.header.period_usec),
                                         profile.header.profiles_native(), true};
  }
  if (files.jitlog) {
    std::optional<jitlog::JitlogReader> reader;
    if (run.check_jitlog) reader.emplace(jitlog::Detail::Outline);
    bool reading = run.check_jitlog;
    manifest.sections->jitlog_bytes =
        copy_section(*files.jitlog, sections::kJitlog, run, append, [&](std::span<const std::uint8_t> chunk) {
          if (reading) reading = reader->feed(chunk);
        });
    if (reader) {
      const jitlog::Forest forest = reader->finish();
      checks.push_back({*files.jitlog, FileKind::Jitlog, forest.warnings, forest.error});
    }
    // Only PyPy writes jitlogs.
    if (!manifest.vm) manifest.vm = "PyPy";
  }
  const std::string text = encode(manifest);
  append(sections::kManifest, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
  return checks;
}

std::vector<FileCheck> write_pypy_bundle(const PypyFiles& files, const PypyRun& run, const fs::path& output) {
  BundleWriter writer(output);
  const auto checks =
      assemble_bundle(files, run, [&](SectionType type, std::span<const std::uint8_t> data) { writer.append(type, data); });
  writer.sync();
  return checks;
}

Bundle pypy_bundle(const PypyFiles& files, const PypyRun& run, std::vector<FileCheck>* checks) {
  Bundle bundle;
  bundle.version = kFormatVersion;
  auto found = assemble_bundle(files, run, [&](SectionType type, std::span<const std::uint8_t> data) {
    bundle.frames.push_back({type, bundle.bytes_read, {data.begin(), data.end()}});
    bundle.bytes_read += data.size();
  });
  if (checks) *checks = std::move(found);
  return bundle;
}

}  // namespace jitprof::bundle
