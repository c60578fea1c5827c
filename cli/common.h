// Helpers shared by the jitprof subcommands: number formatting, reporting of
// reader diagnostics, and Python source lines for display.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "binio/binio.h"
#include "bundle/bundle.h"
#include "bundle/pypy_files.h"
#include "commands.h"
#include "correlate/profile.h"
#include "jitlog/jitlog.h"
#include "record/record.h"
#include "vmprof/profile.h"

namespace jitprof::cli {

// 1234567 -> "1,234,567"
std::string with_commas(std::uint64_t value);
// 0.4567 -> "45.7%"
std::string percent(double part, double whole);
std::string hex(std::uint64_t value);
// views::python_stacks_json as one or two lines of text, e.g. "Python stacks:
// exact (read from PyPy's shadow stack at each sample) for 9,876 samples (99.9%)".
std::string python_stacks_line(const nlohmann::json& stacks, std::uint64_t samples);

// A view as `--json` prints it, with the file it is of.
void print_json(nlohmann::json view, const std::string& file);
// A view as JSON with --json, else as text by `print_text(view)`.
template <class Text>
void show(const ViewOptions& options, nlohmann::json view, Text print_text) {
  if (options.json) print_json(std::move(view), options.file);
  else print_text(view);
}

// A bundle, or PyPy's own jitlog or vmprof profile read as a bundle holding
// it (gzipped or not, told apart by content). Throws bundle::UnknownFile.
struct OpenedFile {
  bundle::Bundle bundle;
  bundle::FileFormat format;
};
OpenedFile open_file(const std::string& file);

// Reads a jitlog or vmprof profile from its own file or from a bundle's section.
jitlog::Forest load_jitlog(const std::string& file);
vmprof::Profile load_profile(const std::string& file);

// A bundle's (or PyPy's file's) correlated profile, with the exit status its reading earned.
struct Correlated {
  bundle::Bundle bundle;
  bundle::FileFormat format;
  correlate::Profile profile;
  int status = 0;
};
// Reads and correlates a bundle, printing its problems. Nullopt, after an
// error line saying what `purpose` needed, when it holds no perf samples.
std::optional<Correlated> load_correlated(const std::string& file, const std::string& purpose);

// Prints warnings and the error of a reader to stderr; returns the exit code
// the command should end with (1 when reading stopped at malformed input).
int report_diagnostics(const std::string& file, const std::vector<binio::Diagnostic>& warnings,
                       const std::optional<binio::Diagnostic>& error);
// The same from a view's "diagnostics" (views::diagnostics_json).
int report_diagnostics(const std::string& file, const nlohmann::json& diagnostics);

// `jitprof attach` and `top --pid` at their end, on stderr: what was sampled,
// how JIT code and Python functions were named, and the bundle written (when `output` is not empty).
void print_attach_summary(const record::AttachOutcome& outcome, const std::string& output);

// Reads Python source files on demand to show the line a merge point names.
class SourceCache {
 public:
  // The stripped text of `line` in `file`, or nullopt when unreadable.
  std::optional<std::string> line(const std::string& file, std::int64_t line);
  // Records a line known from elsewhere (a jitlog's SOURCE_CODE records).
  void remember(const std::string& file, std::uint32_t line, const std::string& text);

 private:
  std::map<std::string, std::optional<std::vector<std::string>>> files_;
};

}  // namespace jitprof::cli
