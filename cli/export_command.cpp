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
  std::ofstream file;
  if (options.output != "-") {
    file.open(options.output, std::ios::binary | std::ios::trunc);
    if (!file) {
      std::cerr << fmt::format("jitprof: error: cannot write {}\n", options.output);
      return 1;
    }
  }
  std::ostream& out = options.output == "-" ? std::cout : file;

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

  if (!bundle::is_bundle(options.file)) {
    std::cerr << fmt::format("jitprof: error: {} is not a bundle; --format {} needs the samples of 'jitprof record'\n",
                             options.file, options.format);
    return 1;
  }
  const auto correlated = load_correlated(options.file, "to export");
  if (!correlated) return 1;
  const correlate::Profile& profile = correlated->profile;
  const int status = correlated->status;
  if (options.format == "collapsed") exports::write_collapsed(profile, out);
  else if (options.format == "pprof") exports::write_pprof(profile, out);
  else if (options.format == "speedscope")
    exports::write_speedscope(profile, std::filesystem::path(options.file).filename().string(), out);
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
