// `jitprof record -- CMD...` and `jitprof info FILE`.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>

#include "bundle/bundle.h"
#include "commands.h"
#include "common.h"
#include "jitlog/jitlog.h"
#include "record/record.h"
#include "vmprof/profile.h"

namespace jitprof::cli {

using nlohmann::json;

int run_record(const RecordOptions& options) {
  record::Options settings;
  settings.command = options.command;
  settings.output = options.output;
  settings.rate_hz = options.rate_hz;
  if (options.pypy) settings.pypy = true;
  if (options.no_pypy) settings.pypy = false;
  settings.progress = ::isatty(STDERR_FILENO) && !options.quiet;
  const record::Outcome outcome = record::record(settings);
  if (!options.quiet) {
    std::cerr << fmt::format("jitprof: recorded {:.2f} s: jitlog {} bytes, vmprof {} bytes", outcome.seconds,
                             with_commas(outcome.jitlog_bytes), with_commas(outcome.vmprof_bytes));
    if (outcome.signal) std::cerr << fmt::format("; the target was killed by signal {}", *outcome.signal);
    std::cerr << fmt::format("\njitprof: bundle written to {}\n", options.output);
  }
  return outcome.exit_code;
}

int run_info(const InfoOptions& options) {
  const bundle::Bundle read = bundle::read_bundle(options.file);
  const bundle::Frame* manifest_frame = read.latest(bundle::sections::kManifest);
  json manifest = manifest_frame ? json::parse(manifest_frame->data, nullptr, false) : json(nullptr);
  if (manifest.is_discarded()) manifest = nullptr;

  struct SectionSummary {
    std::size_t frames = 0;
    std::uint64_t bytes = 0;
  };
  std::vector<std::pair<std::string, SectionSummary>> sections;
  for (const auto& frame : read.frames) {
    auto it = std::find_if(sections.begin(), sections.end(), [&](const auto& s) { return s.first == frame.type.name(); });
    if (it == sections.end()) it = sections.insert(sections.end(), {frame.type.name(), {}});
    ++it->second.frames;
    it->second.bytes += frame.data.size();
  }
  // An empty section is no error: PyPy compiled nothing, or its logs were off.
  const bool has_jitlog = read.has(bundle::sections::kJitlog);
  const bool has_vmprof = read.has(bundle::sections::kVmprof);
  const jitlog::Forest forest = has_jitlog ? jitlog::parse_jitlog(read.stream(bundle::sections::kJitlog)) : jitlog::Forest{};
  const vmprof::Profile profile =
      has_vmprof ? vmprof::parse_profile(read.stream(bundle::sections::kVmprof)) : vmprof::Profile{};
  std::size_t loops = 0;
  for (const auto& trace : forest.traces) loops += trace.kind == jitlog::TraceKind::Loop;
  const double duration = manifest.is_object() ? manifest.value("duration_s", 0.0) : 0.0;

  if (options.json) {
    json out = {{"file", options.file}, {"bytes", read.bytes_read}, {"manifest", manifest}};
    out["sections"] = json::array();
    for (const auto& [name, summary] : sections)
      out["sections"].push_back({{"type", name}, {"frames", summary.frames}, {"bytes", summary.bytes}});
    out["jitlog"] = {{"present", has_jitlog}, {"traces", forest.traces.size()}, {"loops", loops}, {"bridges", forest.traces.size() - loops},
                     {"diagnostics", diagnostics_json(forest.warnings, forest.error)}};
    out["vmprof"] = {{"present", has_vmprof}, {"samples", profile.samples.size()}, {"code_objects", profile.code_names.size()},
                     {"diagnostics", diagnostics_json(profile.warnings, profile.error)}};
    out.update(diagnostics_json(read.warnings, read.error));
    std::cout << out.dump(2) << "\n";
    return report_diagnostics(options.file, read.warnings, read.error);
  }

  std::cout << fmt::format("bundle {} ({} bytes, format {})\n", options.file, with_commas(read.bytes_read),
                           read.version);
  if (manifest.is_object()) {
    std::string command;
    for (const auto& word : manifest.value("command", json::array())) command += word.get<std::string>() + " ";
    std::cout << fmt::format("command: {}\n", command);
    std::cout << fmt::format("recorded by jitprof {} on {} ({} {})\n", manifest.value("jitprof_version", "?"),
                             manifest["host"].value("name", "?"), manifest["host"].value("system", "?"),
                             manifest["host"].value("release", "?"));
    if (manifest.value("state", "") != "complete")
      std::cout << "state: INCOMPLETE (the recording did not finish; what was written before is below)\n";
    else
      std::cout << fmt::format("duration: {:.3f} s\n", duration);
    if (manifest.contains("sampling")) {
      const auto& sampling = manifest["sampling"];
      std::cout << fmt::format("sampling: {} at {} Hz{}", sampling.value("source", "?"), sampling.value("rate_hz", 0),
                               sampling.value("native_frames", false) ? " with native frames" : "");
      if (duration > 0) std::cout << fmt::format(", achieved {:.0f} samples/s", double(profile.samples.size()) / duration);
      std::cout << "\n";
    }
    if (manifest.contains("exit")) {
      const auto& exit = manifest["exit"];
      if (exit.contains("signal"))
        std::cout << fmt::format("exit: killed by {} (status {})\n", exit.value("signal_name", "?"),
                                 exit.value("code", 0));
      else
        std::cout << fmt::format("exit: status {}\n", exit.value("code", 0));
    }
  } else {
    std::cout << "manifest: missing\n";
  }
  std::cout << "sections:\n";
  for (const auto& [name, summary] : sections)
    std::cout << fmt::format("  {}  {:>4} frames  {:>12} bytes\n", name, summary.frames, with_commas(summary.bytes));
  if (has_jitlog)
    std::cout << fmt::format("jitlog: {} traces ({} loops, {} bridges)\n", forest.traces.size(), loops,
                             forest.traces.size() - loops);
  else
    std::cout << "jitlog: none (PyPy compiled nothing, or its logs were off)\n";
  if (has_vmprof)
    std::cout << fmt::format("vmprof: {} samples, {} code objects\n", with_commas(profile.samples.size()),
                             with_commas(profile.code_names.size()));
  else
    std::cout << "vmprof: none\n";
  const int status = report_diagnostics(options.file, read.warnings, read.error);
  report_diagnostics(options.file + " (jitlog section)", forest.warnings, forest.error);
  report_diagnostics(options.file + " (vmprof section)", profile.warnings, profile.error);
  return status;
}

}  // namespace jitprof::cli
