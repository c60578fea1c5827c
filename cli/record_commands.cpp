// `jitprof record -- CMD...` and `jitprof info FILE`.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <map>

#include "bundle/bundle.h"
#include "bundle/manifest.h"
#include "commands.h"
#include "common.h"
#include "correlate/profile.h"
#include "jitlog/jitlog.h"
#include "record/record.h"
#include "terminal.h"
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
  if (::isatty(STDERR_FILENO) && !options.quiet) settings.progress = status_line;
  settings.perf = !options.no_perf;
  settings.python_stacks = !options.no_bpf;
  settings.phases = !options.no_phases;
  settings.jitlog = options.jit == "full";
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
  settings.python_stacks = !options.no_bpf;
  if (::isatty(STDERR_FILENO) && !options.quiet) settings.progress = status_line;
  if (!options.quiet) settings.notice = [](const std::string& message) { std::cerr << "jitprof: " << message << "\n"; };
  const record::AttachOutcome outcome = record::attach(settings);
  if (!options.quiet) print_attach_summary(outcome, options.output);
  return 0;
}

namespace {

void print_crash(const json& crash) {
  std::cout << fmt::format("crash: {} in thread {} at {}", crash.value("signal_name", "?"),
                           crash["thread"].value("label", fmt::format("tid {}", crash.value("tid", 0))),
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

void print_sampling(const bundle::Manifest& manifest, const json& info) {
  if (!manifest.perf || manifest.perf->state == bundle::Manifest::Perf::State::Off) {
    std::cout << "perf sampling: off\n";
  } else if (manifest.perf->state == bundle::Manifest::Perf::State::Refused) {
    std::cout << fmt::format("perf sampling: refused: {}\n", manifest.perf->refused);
  } else {
    const bundle::Manifest::Perf& perf = *manifest.perf;
    std::cout << fmt::format("perf sampling: {} at {} Hz: {} samples, {:.0f}/s of target CPU time ({:.3f} s), {} lost\n",
                             perf.event, perf.rate_hz, with_commas(perf.samples.value_or(0)),
                             perf.achieved_hz.value_or(0.0), manifest.target_cpu_s.value_or(0.0),
                             with_commas(perf.lost.value_or(0)));
  }
  if (info["samples"].value("count", std::uint64_t{0}) > 0)
    std::cout << python_stacks_line(info["python_stacks"], info["samples"]["count"].get<std::uint64_t>()) << "\n";
  if (manifest.python_stacks && manifest.python_stacks->unavailable)
    std::cout << fmt::format("  ({} not read: {})\n", manifest.python_stacks->source == "vmprof" ? "shadow stack" : "some",
                             *manifest.python_stacks->unavailable);
  if (!manifest.vmprof) return;
  if (!manifest.vmprof->sampling) {
    std::cout << "vmprof: on for code names only, its sampling off\n";
    return;
  }
  std::cout << fmt::format("vmprof sampling: {} Hz{}", manifest.vmprof->rate_hz,
                           manifest.vmprof->native_frames ? " with native frames" : "");
  const double duration = manifest.duration_s.value_or(0.0);
  if (duration > 0)
    std::cout << fmt::format(", achieved {:.0f} samples/s", info["vmprof"]["samples"].get<double>() / duration);
  std::cout << "\n";
}

void print_manifest(const bundle::Manifest& manifest, const json& info) {
  std::string command;
  for (const auto& word : manifest.command) command += word + " ";
  std::cout << fmt::format("command: {}\n", command);
  if (!manifest.pypy_version.value_or("").empty()) std::cout << fmt::format("interpreter: {}\n", *manifest.pypy_version);
  else if (manifest.vm) std::cout << fmt::format("interpreter: {} (its version not in the files)\n", *manifest.vm);
  // PyPy's own files, uploaded or read here: no recording, no host.
  const bool recorded = !manifest.mode || manifest.mode == "attach";
  const bundle::Manifest::Host host = manifest.host.value_or(bundle::Manifest::Host{"?", "?", "?", "?"});
  if (recorded)
    std::cout << fmt::format("recorded by jitprof {} on {} ({} {})\n",
                             manifest.jitprof_version.empty() ? "?" : manifest.jitprof_version, host.name, host.system,
                             host.release);
  else
    std::cout << fmt::format("made by jitprof {} from PyPy's own files ({})\n",
                             manifest.jitprof_version.empty() ? "?" : manifest.jitprof_version, *manifest.mode);
  if (!manifest.complete())
    std::cout << "state: INCOMPLETE (the recording did not finish; what was written before is below)\n";
  else if (manifest.duration_s || recorded)
    std::cout << fmt::format("duration: {:.3f} s\n", manifest.duration_s.value_or(0.0));
  else
    std::cout << "duration: unknown (only a vmprof profile's start and end times give it)\n";
  if (manifest.recorder_cpu_s && manifest.recorder_peak_rss_kib)
    std::cout << fmt::format("jitprof itself: {:.3f} s of CPU, peak memory {:.1f} MiB\n", *manifest.recorder_cpu_s,
                             double(*manifest.recorder_peak_rss_kib) / 1024);
  print_sampling(manifest, info);
  if (const auto& exit = manifest.exit) {
    if (exit->signal)
      std::cout << fmt::format("exit: killed by {} (status {})\n", exit->signal_name.value_or("?"), exit->code);
    else
      std::cout << fmt::format("exit: status {}\n", exit->code);
  }
}

void print_samples(const json& samples) {
  const auto count = samples["count"].get<std::size_t>();
  if (count == 0) return;
  const auto in_jit = samples["in_jit_code"].get<std::size_t>(), in_traces = samples["in_jitlog_traces"].get<std::size_t>();
  std::cout << fmt::format(
      "perf samples: {} ({} in the kernel), {} in JIT code, of which {} ({}) at an address inside a jitlog "
      "trace and {} in PyPy's JIT helper code, which the jitlog does not describe\n",
      with_commas(count), with_commas(samples["in_kernel"].get<std::size_t>()), with_commas(in_jit),
      with_commas(in_traces), percent(double(in_traces), double(in_jit)), with_commas(in_jit - in_traces));
  std::cout << fmt::format("user stacks: {:.1f} frames on average; unwinding ended:",
                           samples["user_frames"].get<double>() / double(count));
  for (const auto& [reason, stopped] : samples["unwind_stops"].items())
    std::cout << fmt::format(" {} {} ({}),", reason, with_commas(stopped.get<std::size_t>()),
                             percent(stopped.get<double>(), double(count)));
  std::cout << "\n";
}

}  // namespace

int run_info(const ViewOptions& options) {
  const OpenedFile opened = open_file(options.file);
  const bundle::Bundle& read = opened.bundle;
  const correlate::Profile profile = correlate::correlate(read);
  json info = views::info_json(read, profile);
  if (options.json) {
    print_json(std::move(info), options.file);
    return report_diagnostics(options.file, read.warnings, read.error);
  }
  if (opened.format.kind == bundle::FileKind::Bundle)
    std::cout << fmt::format("bundle {} ({} bytes, format {})\n", options.file, with_commas(read.bytes_read), read.version);
  else
    std::cout << fmt::format("{}: {}{} ({} bytes), read as a bundle holding it\n", options.file,
                             bundle::file_kind_name(opened.format.kind), opened.format.gzipped ? ", gzipped" : "",
                             with_commas(read.bytes_read));
  const bundle::ManifestRead manifest = bundle::read_manifest(read);
  if (manifest.manifest)
    print_manifest(*manifest.manifest, info);
  else
    std::cout << fmt::format("manifest: {}\n", read.has(bundle::sections::kManifest) ? manifest.error : "missing");
  if (!info["crash"].is_null()) print_crash(info["crash"]);
  std::cout << "sections:\n";
  for (const auto& section : info["sections"])
    std::cout << fmt::format("  {}  {:>4} frames  {:>12} bytes\n", section["type"].get<std::string>(),
                             section["frames"].get<std::size_t>(), with_commas(section["bytes"].get<std::uint64_t>()));
  print_samples(info["samples"]);
  const json& jitlog = info["jitlog"];
  if (jitlog["present"].get<bool>())
    std::cout << fmt::format("jitlog: {} traces ({} loops, {} bridges)\n", jitlog["traces"].get<std::size_t>(),
                             jitlog["loops"].get<std::size_t>(), jitlog["bridges"].get<std::size_t>());
  else
    std::cout << "jitlog: none (PyPy compiled nothing, or its logs were off)\n";
  const json& vmprof = info["vmprof"];
  if (vmprof["present"].get<bool>())
    std::cout << fmt::format("vmprof: {} samples, {} code objects\n", with_commas(vmprof["samples"].get<std::size_t>()),
                             with_commas(vmprof["code_objects"].get<std::size_t>()));
  else
    std::cout << "vmprof: none\n";
  // Malformed sections make the status 1 too: what was shown is what came before the bad byte.
  const int status = report_diagnostics(options.file, read.warnings, read.error);
  const int jitlog_status = report_diagnostics(options.file + " (jitlog section)", jitlog["diagnostics"]);
  const int vmprof_status = report_diagnostics(options.file + " (vmprof section)", vmprof["diagnostics"]);
  return std::max({status, jitlog_status, vmprof_status});
}

}  // namespace jitprof::cli
