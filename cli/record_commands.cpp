// `jitprof record -- CMD...` and `jitprof info FILE`.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <map>

#include "bundle/bundle.h"
#include "bundle/samples.h"
#include "commands.h"
#include "common.h"
#include "correlate/profile.h"
#include "jitlog/jitlog.h"
#include "record/record.h"
#include "views/views.h"
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
  settings.perf = !options.no_perf;
  settings.children = options.children;
  settings.notice = [](const std::string& message) { std::cerr << "jitprof: " << message << "\n"; };
  const record::Outcome outcome = record::record(settings);
  if (!options.quiet) {
    std::cerr << fmt::format("jitprof: recorded {:.2f} s: {} samples ({} lost), jitlog {} bytes, vmprof {} bytes",
                             outcome.seconds, with_commas(outcome.samples), with_commas(outcome.lost),
                             with_commas(outcome.jitlog_bytes), with_commas(outcome.vmprof_bytes));
    if (outcome.signal) std::cerr << fmt::format("; the target was killed by signal {}", *outcome.signal);
    std::cerr << fmt::format("\njitprof: bundle written to {}\n", options.output);
  }
  // The bundle is complete even when the upload fails; the target's status stays jitprof's.
  if (!options.web.empty()) upload_bundle(options.output, options.web, options.token, options.quiet);
  return outcome.exit_code;
}

int run_attach(const AttachOptions& options) {
  record::AttachOptions settings;
  settings.pid = options.pid;
  settings.output = options.output;
  settings.duration_s = options.duration_s;
  settings.rate_hz = options.rate_hz;
  settings.progress = ::isatty(STDERR_FILENO) && !options.quiet;
  if (!options.quiet) settings.notice = [](const std::string& message) { std::cerr << "jitprof: " << message << "\n"; };
  const record::AttachOutcome outcome = record::attach(settings);
  if (!options.quiet) {
    std::cerr << fmt::format("jitprof: sampled {:.2f} s: {} samples from {} threads ({} lost)", outcome.seconds,
                             with_commas(outcome.samples), outcome.threads, with_commas(outcome.lost));
    if (outcome.jit_names == record::JitNames::LiveJitlog)
      std::cerr << fmt::format("; jitlog {} bytes from {}", with_commas(outcome.jitlog_bytes), outcome.jitlog_path);
    else
      std::cerr << fmt::format("; no jitlog, {} bytes of hot JIT code read", with_commas(outcome.jit_code_bytes));
    if (outcome.target_exited) std::cerr << "; the process exited";
    std::cerr << fmt::format("\njitprof: bundle written to {}\n", options.output);
  }
  return 0;
}

namespace {

struct SampleSummary {
  std::size_t samples = 0, in_kernel = 0, in_jit_code = 0, in_traces = 0, unique_stacks = 0;
  std::size_t user_frames = 0;
  std::map<std::string, std::size_t> unwind_stops;  // why user stacks end
};

SampleSummary summarize_samples(const bundle::Bundle& read) {
  SampleSummary summary;
  const bundle::SampleTable table = bundle::decode_samples(read.stream(bundle::sections::kSamples));
  summary.samples = table.rows.size();
  summary.unique_stacks = table.stacks.size();
  for (const auto& row : table.rows) {
    summary.in_kernel += row.kernel_stack != bundle::SampleTable::kNoStack;
    ++summary.unwind_stops[bundle::unwind_stop_name(row.unwind_stop)];
    if (row.user_stack != bundle::SampleTable::kNoStack) summary.user_frames += table.stacks[row.user_stack].size();
  }
  if (summary.samples == 0) return summary;
  // JIT samples resolve at their own time (code is freed and reused): the
  // correlator's answer, so that info and report agree.
  const correlate::Profile profile = correlate::correlate(read);
  summary.in_jit_code = profile.stats.jit;
  summary.in_traces = profile.stats.jit_in_trace;
  return summary;
}

}  // namespace

void print_crash(const json& crash) {
  std::cout << fmt::format("crash: {} in thread {} at {}", crash.value("signal_name", "?"), crash.value("tid", 0),
                           hex(crash["registers"].value("rip", std::uint64_t{0})));
  const std::string name = crash.value("signal_name", "");
  if (name == "SIGSEGV" || name == "SIGBUS")
    std::cout << fmt::format(" (fault address {})", hex(crash.value("fault_address", std::uint64_t{0})));
  std::cout << "\n";
  if (crash.contains("trace")) {
    const json& trace = crash["trace"];
    std::cout << fmt::format("  {} JIT code of {} {}", trace.value("frame_index", 0) == 0 ? "in" : "called from",
                             trace.value("type", ""), trace.value("id", 0));
    if (trace.contains("op")) std::cout << fmt::format(", op {} ({})", trace.value("op_index", 0), trace.value("op", ""));
    if (trace.contains("source"))
      std::cout << fmt::format(", from {} at {}:{}", trace["source"].value("function", ""),
                               trace["source"].value("file", ""), trace["source"].value("line", 0));
    std::cout << "\n";
  }
  std::size_t shown = 0;
  for (const auto& frame : crash["frames"]) {
    if (++shown > 12) {
      std::cout << fmt::format("  ... {} frames in all\n", crash["frames"].size());
      break;
    }
    std::string where = frame.value("jit", false) ? "JIT code" : frame.value("path", "?");
    if (!frame.value("name", "").empty()) where = frame.value("name", "") + " in " + where;
    std::cout << fmt::format("  #{:<3} {}  {}\n", shown - 1, hex(frame.value("address", std::uint64_t{0})), where);
  }
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
  const SampleSummary samples = summarize_samples(read);
  const json crash = views::crash_json(read, forest);
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
    out["samples"] = {{"count", samples.samples},
                      {"in_kernel", samples.in_kernel},
                      {"in_jit_code", samples.in_jit_code},
                      {"in_jitlog_traces", samples.in_traces},
                      {"unique_stacks", samples.unique_stacks},
                      {"user_frames", samples.user_frames},
                      {"unwind_stops", samples.unwind_stops}};
    out["crash"] = crash;
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
    if (!manifest.value("pypy_version", "").empty())
      std::cout << fmt::format("interpreter: {}\n", manifest.value("pypy_version", ""));
    std::cout << fmt::format("recorded by jitprof {} on {} ({} {})\n", manifest.value("jitprof_version", "?"),
                             manifest["host"].value("name", "?"), manifest["host"].value("system", "?"),
                             manifest["host"].value("release", "?"));
    if (manifest.value("state", "") != "complete")
      std::cout << "state: INCOMPLETE (the recording did not finish; what was written before is below)\n";
    else
      std::cout << fmt::format("duration: {:.3f} s\n", duration);
    const json perf = manifest.value("perf", json(nullptr));
    if (perf.is_object() && perf.contains("refused"))
      std::cout << fmt::format("perf sampling: refused: {}\n", perf.value("refused", ""));
    else if (perf.is_object())
      std::cout << fmt::format("perf sampling: {} at {} Hz: {} samples, {:.0f}/s of target CPU time ({:.3f} s), {} lost\n",
                               perf.value("event", "?"), perf.value("rate_hz", 0), with_commas(perf.value("samples", std::uint64_t{0})),
                               perf.value("achieved_hz", 0.0), manifest.value("target_cpu_s", 0.0),
                               with_commas(perf.value("lost", std::uint64_t{0})));
    else
      std::cout << "perf sampling: off\n";
    if (manifest.contains("vmprof")) {
      const auto& vmprof = manifest["vmprof"];
      std::cout << fmt::format("vmprof sampling: {} Hz{}", vmprof.value("rate_hz", 0),
                               vmprof.value("native_frames", false) ? " with native frames" : "");
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
  if (!crash.is_null()) print_crash(crash);
  std::cout << "sections:\n";
  for (const auto& [name, summary] : sections)
    std::cout << fmt::format("  {}  {:>4} frames  {:>12} bytes\n", name, summary.frames, with_commas(summary.bytes));
  if (samples.samples > 0)
    std::cout << fmt::format(
        "perf samples: {} ({} in the kernel), {} in JIT code, of which {} ({}) at an address inside a jitlog "
        "trace and {} in PyPy's JIT helper code, which the jitlog does not describe\n",
        with_commas(samples.samples), with_commas(samples.in_kernel), with_commas(samples.in_jit_code),
        with_commas(samples.in_traces), percent(double(samples.in_traces), double(samples.in_jit_code)),
        with_commas(samples.in_jit_code - samples.in_traces));
  if (samples.samples > 0) {
    std::cout << fmt::format("user stacks: {:.1f} frames on average; unwinding ended:",
                             double(samples.user_frames) / double(samples.samples));
    for (const auto& [reason, count] : samples.unwind_stops)
      std::cout << fmt::format(" {} {} ({}),", reason, with_commas(count), percent(double(count), double(samples.samples)));
    std::cout << "\n";
  }
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
