// PyPy's own files beside jitprof's bundles: which of the three a file is
// (told by its content, gzipped or not), and a bundle made of one run's
// jitlog and vmprof profile, so that uploads and the commands that read
// bundles take them as they take a recording.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "binio/binio.h"
#include "bundle/bundle.h"

namespace jitprof::bundle {

enum class FileKind : std::uint8_t { Bundle, Jitlog, Profile };
// "a jitprof bundle", "a PyPy jitlog", "a vmprof profile"
const char* file_kind_name(FileKind kind);

struct FileFormat {
  FileKind kind = FileKind::Bundle;
  bool gzipped = false;
};

// A file that is none of the three; the message says what it holds and what
// jitprof reads.
class UnknownFile : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Tells a file's kind from its first bytes (inflated when gzipped): the
// bundle magic, or a start that the jitlog or vmprof reader reads as its
// format's header. Throws UnknownFile, or binio::InputError when the file
// cannot be read.
FileFormat identify_file(const std::filesystem::path& path);

// The files PyPy wrote for one run; either may be absent, not both.
struct PypyFiles {
  std::optional<std::filesystem::path> jitlog, profile;
};

// What the files do not say about their run.
struct PypyRun {
  std::string mode;                  // the manifest's: "vmprof upload", "PyPy files"
  std::vector<std::string> command;  // the command line, as far as it is known
  std::optional<std::string> vm;     // the interpreter a vmprof client named ("PyPy")
  std::optional<double> start_time;  // unix seconds, when the profile has none
  // The jitlog is read as it is copied (its records checked, in outline)
  // unless it was checked before (a server checks each file as it arrives).
  bool check_jitlog = true;
  std::uint64_t max_inflated_bytes = UINT64_MAX;  // per file, gzip-compressed or not
  // Called with the size of each piece of the profile before the reader keeps it.
  std::function<void(std::uint64_t bytes)> before_reading;
};

// What reading a file found: a malformed record stops the reader; what was
// before it is kept.
struct FileCheck {
  std::filesystem::path file;
  FileKind kind;
  std::vector<binio::Diagnostic> warnings;
  std::optional<binio::Diagnostic> error;
};

// Copies the files into sections JLOG and VMPF piece by piece (a jitlog is
// never whole in memory) through `append`, then a manifest: the run's mode
// and command, the interpreter, and from the profile its start, duration and
// sampling period. Throws binio::InputError when a file cannot be read.
using AppendFrame = std::function<void(SectionType, std::span<const std::uint8_t>)>;
std::vector<FileCheck> assemble_bundle(const PypyFiles& files, const PypyRun& run, const AppendFrame& append);
// The same into a bundle file.
std::vector<FileCheck> write_pypy_bundle(const PypyFiles& files, const PypyRun& run,
                                         const std::filesystem::path& output);
// The same in memory, for the commands that read a bundle.
Bundle pypy_bundle(const PypyFiles& files, const PypyRun& run, std::vector<FileCheck>* checks = nullptr);

}  // namespace jitprof::bundle
