// `jitprof export FILE --format F -o OUT`.
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "bundle/bundle.h"
#include "commands.h"
#include "common.h"
#include "correlate/profile.h"
#include "export/export.h"

namespace jitprof::cli {

int run_export(const ExportOptions& options) {
  // jitdump: the marker file the process mapped (scripts/pypy-perf.py) holds
  // a header with the time it was made, after exec; the traces load then.
  std::uint64_t marker_time = 0;
  if (options.format == "jitdump" && options.output != "-") {
    std::ifstream marker(options.output, std::ios::binary);
    std::uint8_t header[32] = {};
    if (marker.read(reinterpret_cast<char*>(header), sizeof header) && header[0] == 0x44 && header[1] == 0x54 &&
        header[2] == 0x69 && header[3] == 0x4a)
      for (int i = 0; i < 8; ++i) marker_time |= std::uint64_t{header[24 + i]} << (8 * i);
  }
  std::ofstream file;
  if (options.output != "-") {
    file.open(options.output, std::ios::binary | std::ios::trunc);
    if (!file) {
      std::cerr << fmt::format("jitprof: error: cannot write {}\n", options.output);
      return 1;
    }
  }
  std::ostream& out = options.output == "-" ? std::cout : file;

  if (options.format == "jitdump") {
    const jitlog::Forest forest = load_jitlog(options.file);
    const int status = report_diagnostics(options.file, forest.warnings, forest.error);
    if (options.pid == 0) {
      std::cerr << "jitprof: error: --format jitdump needs --pid: the process the code ran in, as perf recorded it\n";
      return 1;
    }
    if (marker_time == 0)
      std::cerr << fmt::format("jitprof: warning: {} is not the marker jit-PID.dump the process mapped; the traces "
                               "load at time 0, which perf may place before the process's exec\n",
                               options.output);
    exports::write_jitdump(forest, options.pid, marker_time, out);
    return status;
  }
  if (options.format == "perf-map") {
    // From a bundle or from a jitlog PyPy wrote itself (JITLOG=...).
    const jitlog::Forest forest = load_jitlog(options.file);
    int status = report_diagnostics(options.file, forest.warnings, forest.error);
    exports::write_perf_map(forest, out);
    std::size_t traces = 0;
    for (const auto& trace : forest.traces) traces += trace.code.has_value();
    if (options.output != "-")
      std::cerr << fmt::format("jitprof: wrote {} JIT traces to {}\n", traces, options.output);
    return status;
  }

  const auto correlated = load_correlated(options.file, "to export");
  if (!correlated) return 1;
  const correlate::Profile& profile = correlated->profile;
  const int status = correlated->status;
  if (options.format == "collapsed") exports::write_collapsed(profile, out);
  else if (options.format == "pprof") exports::write_pprof(profile, out);
  else if (options.format == "speedscope")
    exports::write_speedscope(profile, std::filesystem::path(options.file).filename().string(), out);
  else if (options.format == "firefox")
    exports::write_firefox(profile, std::filesystem::path(options.file).filename().string(), out);
  out.flush();
  if (!out) {
    std::cerr << fmt::format("jitprof: error: writing {} failed\n", options.output);
    return 1;
  }
  if (options.output != "-")
    std::cerr << fmt::format("jitprof: wrote {} samples as {} to {}\n", profile.samples.size(), options.format,
                             options.output);
  return status;
}

}  // namespace jitprof::cli
