#include "common.h"

#include "bundle/bundle.h"
#include "bundle/text.h"
#include "views/views.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace jitprof::cli {

std::string with_commas(std::uint64_t value) {
  const std::string digits = std::to_string(value);
  std::string grouped;
  grouped.reserve(digits.size() + digits.size() / 3);
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) grouped += ',';
    grouped += digits[i];
  }
  return grouped;
}

std::string percent(double part, double whole) {
  if (whole <= 0) return "-";
  return fmt::format("{:.1f}%", 100.0 * part / whole);
}

std::string hex(std::uint64_t value) { return fmt::format("0x{:x}", value); }

void print_json(nlohmann::json view, const std::string& file) {
  view["file"] = file;
  std::cout << bundle::json_text(view, 2) << "\n";
}

int report_diagnostics(const std::string& file, const std::vector<binio::Diagnostic>& warnings,
                       const std::optional<binio::Diagnostic>& error) {
  return report_diagnostics(file, views::diagnostics_json(warnings, error));
}

int report_diagnostics(const std::string& file, const nlohmann::json& diagnostics) {
  for (const auto& warning : diagnostics["warnings"])
    std::cerr << fmt::format("jitprof: warning: {}: {}\n", file, warning["message"].get<std::string>());
  const nlohmann::json& error = diagnostics["error"];
  if (error.is_null()) return 0;
  std::cerr << fmt::format("jitprof: error: {}: at byte offset {}: {}; showing what was read before it\n", file,
                           error["offset"].get<std::uint64_t>(), error["message"].get<std::string>());
  return 1;
}

OpenedFile open_file(const std::string& file) {
  const bundle::FileFormat format = bundle::identify_file(file);
  if (format.kind == bundle::FileKind::Bundle) {
    if (!format.gzipped) return {bundle::read_bundle(file), format};
    std::vector<std::uint8_t> bytes;
    binio::read_file_chunks(file, [&](std::span<const std::uint8_t> chunk) { bytes.insert(bytes.end(), chunk.begin(), chunk.end()); });
    return {bundle::parse_bundle(bytes), format};
  }
  bundle::PypyFiles files;
  (format.kind == bundle::FileKind::Jitlog ? files.jitlog : files.profile) = file;
  bundle::PypyRun run;
  run.mode = "PyPy files";
  run.command = {std::filesystem::path(file).filename().string()};
  run.check_jitlog = false;  // the views read it whole and say what is wrong with it
  return {bundle::pypy_bundle(files, run), format};
}

namespace {

// True for PyPy's own file of the kind wanted, false for a bundle; PyPy's
// file of the other kind holds nothing wanted: said at once. A file of no
// known kind is read as the kind wanted: its reader names the bad byte.
bool is_pypy_file(const std::string& file, bundle::FileKind wanted) {
  bundle::FileKind kind = wanted;
  try {
    kind = bundle::identify_file(file).kind;
  } catch (const bundle::UnknownFile&) {
  }
  if (kind == bundle::FileKind::Bundle) return false;
  if (kind != wanted)
    throw std::runtime_error(fmt::format("{} is {}, not {}: give {} or a bundle (jitprof record)", file,
                                         bundle::file_kind_name(kind), bundle::file_kind_name(wanted),
                                         bundle::file_kind_name(wanted)));
  return true;
}

// The bundle's own problems are reported here; the section's by the caller.
std::vector<std::uint8_t> bundle_section(const std::string& file, bundle::SectionType type) {
  const OpenedFile opened = open_file(file);
  report_diagnostics(file, opened.bundle.warnings, opened.bundle.error);
  return opened.bundle.stream(type);
}

}  // namespace

jitlog::Forest load_jitlog(const std::string& file) {
  if (is_pypy_file(file, bundle::FileKind::Jitlog)) return jitlog::read_jitlog(file);
  return jitlog::parse_jitlog(bundle_section(file, bundle::sections::kJitlog));
}

vmprof::Profile load_profile(const std::string& file) {
  if (is_pypy_file(file, bundle::FileKind::Profile)) return vmprof::read_profile(file);
  return vmprof::parse_profile(bundle_section(file, bundle::sections::kVmprof));
}

std::optional<Correlated> load_correlated(const std::string& file, const std::string& purpose) {
  Correlated result;
  OpenedFile opened = open_file(file);
  result.bundle = std::move(opened.bundle);
  result.format = opened.format;
  result.status = report_diagnostics(file, result.bundle.warnings, result.bundle.error);
  result.profile = correlate::correlate(result.bundle);
  // An absent jitlog is no error: PyPy compiled nothing, or its logs were off.
  const jitlog::Forest& forest = result.profile.forest;
  const bool raw = result.format.kind != bundle::FileKind::Bundle;
  if (result.bundle.has(bundle::sections::kJitlog))
    result.status =
        std::max(result.status, report_diagnostics(raw ? file : file + " (jitlog section)", forest.warnings, forest.error));
  if (result.bundle.has(bundle::sections::kVmprof) && raw) {
    const vmprof::Profile profile = vmprof::parse_profile(result.bundle.stream(bundle::sections::kVmprof));
    result.status = std::max(result.status, report_diagnostics(file, profile.warnings, profile.error));
  }
  if (result.profile.samples.empty()) {
    if (result.format.kind == bundle::FileKind::Jitlog)
      std::cerr << fmt::format("jitprof: error: {0} is a PyPy jitlog, which holds no samples {1}: 'jitprof jitlog {0}' "
                               "and 'jitprof trace {0} ID' show its traces; 'jitprof record -- pypy3 app.py' records "
                               "samples with the jitlog\n",
                               file, purpose);
    else
      std::cerr << fmt::format("jitprof: error: {} has no samples {}: neither perf's nor PyPy's own\n", file, purpose);
    return std::nullopt;
  }
  if (result.profile.samples_from_vmprof && !raw)
    std::cerr << fmt::format("jitprof: note: {} has no perf samples (recorded with --no-perf, or perf was refused): "
                             "showing PyPy's own samples, which name a JIT sample's trace but not its instruction\n",
                             file);
  return result;
}

std::optional<std::string> SourceCache::line(const std::string& file, std::int64_t line) {
  auto [entry, inserted] = files_.try_emplace(file);
  if (inserted) {
    std::ifstream in(file);
    if (in) {
      std::vector<std::string> lines;
      for (std::string text; std::getline(in, text);) lines.push_back(std::move(text));
      entry->second = std::move(lines);
    }
  }
  if (!entry->second || line < 1 || static_cast<std::size_t>(line) > entry->second->size()) return std::nullopt;
  const std::string& text = (*entry->second)[static_cast<std::size_t>(line - 1)];
  const auto first = text.find_first_not_of(" \t");
  return first == std::string::npos ? std::string{} : text.substr(first);
}

void SourceCache::remember(const std::string& file, std::uint32_t line, const std::string& text) {
  if (line == 0) return;
  auto& lines = files_[file];
  if (!lines) lines.emplace();
  if (lines->size() < line) lines->resize(line);
  (*lines)[line - 1] = text;
}

// Where the samples' Python frames come from, e.g. "Python stacks: exact
// (read from PyPy's shadow stack at each sample) for 9,876 samples (99.9%)".
std::string python_stacks_line(const nlohmann::json& stacks, std::uint64_t samples) {
  const double total = double(samples);
  const auto n = [&](const char* key) { return stacks.value(key, std::uint64_t{0}); };
  std::vector<std::string> parts;
  if (n("exact")) {
    std::string statuses;
    for (const auto& [status, count] : stacks["read_status"].items())
      if (status != "complete") statuses += fmt::format(", {} {}", with_commas(count.get<std::uint64_t>()), status);
    parts.push_back(fmt::format("exact (read from PyPy's shadow stack at each sample) for {} samples ({}){}",
                                with_commas(n("exact")), percent(double(n("exact")), total), statuses));
  }
  if (n("from_jitlog") || n("from_vmprof_by_time"))
    parts.push_back(fmt::format("joined statistically with vmprof for {} samples (JIT callers {}, by time {})",
                                with_commas(n("from_jitlog") + n("from_vmprof_by_time")), with_commas(n("from_jitlog")),
                                with_commas(n("from_vmprof_by_time"))));
  if (n("unknown")) parts.push_back(fmt::format("none for {} samples", with_commas(n("unknown"))));
  std::string line = "Python stacks: " + (parts.empty() ? std::string("none") : parts.front());
  for (std::size_t i = 1; i < parts.size(); ++i) line += "; " + parts[i];
  if (n("unnamed_code_objects"))
    line += fmt::format("\n{} code objects on the stacks have no name (shown as \"code #ID\"; {} samples)",
                        with_commas(n("unnamed_code_objects")), with_commas(n("samples_with_unnamed_code")));
  return line;
}

void print_attach_summary(const record::AttachOutcome& outcome, const std::string& output) {
  std::cerr << fmt::format("jitprof: sampled {:.2f} s: {} samples from {} threads ({} lost)", outcome.seconds,
                           with_commas(outcome.samples), outcome.threads, with_commas(outcome.lost));
  if (outcome.jit_names == record::JitNames::LiveJitlog)
    std::cerr << fmt::format("; jitlog {} bytes from {}", with_commas(outcome.jitlog_bytes), outcome.jitlog_path);
  else
    std::cerr << fmt::format("; no jitlog, {} bytes of hot JIT code read", with_commas(outcome.jit_code_bytes));
  if (outcome.code_objects > 0)
    std::cerr << fmt::format("; {} of {} Python functions on the stacks named", with_commas(outcome.code_objects_named),
                             with_commas(outcome.code_objects));
  if (outcome.target_exited) std::cerr << "; the process exited";
  std::cerr << "\n";
  if (!output.empty()) std::cerr << fmt::format("jitprof: bundle written to {}\n", output);
}

}  // namespace jitprof::cli
