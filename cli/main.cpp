// jitprof: wires the readers to the command line.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <unistd.h>

#include <iostream>

#include "binio/binio.h"
#include "commands.h"
#include "terminal.h"

namespace {

// Accepts "0x1f" as well as decimal ids.
std::uint64_t parse_trace_id(const std::string& text) {
  std::size_t used = 0;
  const std::uint64_t value = std::stoull(text, &used, 0);
  if (used != text.size()) throw std::invalid_argument(text);
  return value;
}

// A view's FILE (which must exist) and --json.
void add_view_options(CLI::App* command, jitprof::cli::ViewOptions& options, const std::string& what) {
  command->add_option("FILE", options.file, what)->required()->check(CLI::ExistingFile);
  command->add_flag("--json", options.json, "print JSON for scripts");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace jitprof::cli;
  // Names from profiled programs reach terminals escaped (cli/terminal.h).
  TerminalText terminal_out(std::cout, STDOUT_FILENO);
  TerminalText terminal_err(std::cerr, STDERR_FILENO);
  CLI::App app{"jitprof: profile PyPy programs across Python code, JIT traces and native code"};
  app.set_version_flag("--version", std::string("jitprof ") + JITPROF_VERSION);
  app.require_subcommand(1);

  JitlogOptions jitlog_options;
  auto* jitlog_cmd = app.add_subcommand("jitlog", "Summarize a PyPy jitlog: traces, ops, links, hottest traces");
  add_view_options(jitlog_cmd, jitlog_options, "jitlog file (JITLOG=... or _jitlog.enable), may be gzipped");
  jitlog_cmd->add_option("--top", jitlog_options.top, "how many of the hottest traces to list")->capture_default_str();

  TraceOptions trace_options;
  std::string trace_id_text;
  std::string stage_text = "opt";
  auto* trace_cmd = app.add_subcommand("trace", "Show one trace: ops, merge points and source, guards and bridges");
  add_view_options(trace_cmd, trace_options, "bundle (*.jprof) or jitlog file, may be gzipped");
  trace_cmd->add_option("ID", trace_id_text, "trace id (decimal or 0x hex), as listed by 'jitprof jitlog'")
      ->required();
  trace_cmd->add_option("--stage", stage_text, "which optimization stage to show")
      ->check(CLI::IsMember({"noopt", "opt", "asm"}))
      ->capture_default_str();
  trace_cmd->add_flag("--asm", trace_options.disassemble,
                      "interleave the disassembled machine code (implies --stage asm unless --stage is given)");
  trace_cmd->add_flag("--diff", trace_options.diff,
                      "show what the optimizer (noopt -> opt) and the backend (opt -> asm) changed");

  ProfileOptions profile_options;
  auto* profile_cmd = app.add_subcommand("profile", "Summarize a vmprof profile: header, samples, top functions");
  add_view_options(profile_cmd, profile_options, "vmprof profile (_vmprof.enable), may be gzipped");
  profile_cmd->add_option("--top", profile_options.top, "how many functions to list")->capture_default_str();

  RecordOptions record_options;
  auto* record_cmd = app.add_subcommand(
      "record", "Run a program under PyPy with its jitlog and vmprof on, and write one bundle file");
  record_cmd->add_option("-o,--output", record_options.output, "bundle to write")->capture_default_str();
  record_cmd->add_option("--rate", record_options.rate_hz, "samples per second of CPU time, per thread")
      ->check(CLI::Range(2u, 1000000u))
      ->capture_default_str();
  record_cmd->add_flag("--pypy", record_options.pypy, "the target is PyPy even if its name does not say so");
  record_cmd->add_flag("--no-pypy", record_options.no_pypy, "do not switch on PyPy's logs");
  record_cmd->add_flag("-q,--quiet", record_options.quiet, "no status line and no summary");
  record_cmd->add_flag("--no-perf", record_options.no_perf,
                       "do not sample with perf_event_open; keep only PyPy's own sampling (vmprof)");
  record_cmd->add_flag("--no-bpf", record_options.no_bpf,
                       "do not read Python stacks from PyPy's shadow stack with a BPF program; join them from "
                       "PyPy's own sampling (vmprof) instead");
  record_cmd->add_flag("--no-phases", record_options.no_phases,
                       "do not time GC and JIT phases with PyPy's own log (PYPYLOG); tell them from libpypy's "
                       "function names only");
  record_cmd->add_option("--jit", record_options.jit,
                         "full: PyPy's jitlog (every trace's IR, machine code and guard counts; its counters slow hot "
                         "loops down); ranges: only the names and code ranges of loops and bridges, from PyPy's log, "
                         "at no cost to the loops (for production)")
      ->check(CLI::IsMember({"full", "ranges"}))
      ->capture_default_str();
  record_cmd->add_flag("--children", record_options.children, "also keep samples of child processes");
  record_cmd->add_option("--web", record_options.web,
                         "upload the bundle to this jitprof server at the end and print its link");
  record_cmd->add_option("--token", record_options.token, "token for --web");
  record_cmd->add_option("COMMAND", record_options.command, "the program and its arguments, after --")->required();
  record_cmd->footer("Example: jitprof record -o app.jprof -- pypy3 app.py ARGS...\n"
                     "jitprof exits with the target's exit status (128 + N when it died by signal N).");

  AttachOptions attach_options;
  auto* attach_cmd = app.add_subcommand(
      "attach", "Sample a PyPy process that is already running, without stopping it, and write one bundle file");
  attach_cmd->add_option("PID", attach_options.pid, "the PyPy process")->required();
  attach_cmd->add_option("-d,--duration", attach_options.duration_s,
                         "seconds to sample (default: until Ctrl-C or the process exits)")
      ->check(CLI::NonNegativeNumber);
  attach_cmd->add_option("-o,--output", attach_options.output, "bundle to write")->capture_default_str();
  attach_cmd->add_option("--rate", attach_options.rate_hz, "samples per second of CPU time, per thread")
      ->check(CLI::Range(2u, 1000000u))
      ->capture_default_str();
  attach_cmd->add_flag("-q,--quiet", attach_options.quiet, "no status line and no summary");
  attach_cmd->add_flag("--no-bpf", attach_options.no_bpf,
                       "do not read Python stacks from PyPy's shadow stack with a BPF program (the report then "
                       "has no Python functions outside a jitlog)");
  attach_cmd->footer(
      "Python stacks are read at each sample from PyPy's shadow stack (a BPF program; needs root or\n"
      "CAP_BPF + CAP_PERFMON), their functions named from the process's memory.\n"
      "JIT code is named from the process's own jitlog when it writes one (started with JITLOG=path);\n"
      "otherwise the hottest JIT code is read from its memory and shown disassembled, without trace names.\n"
      "Example: jitprof attach 1234 --duration 10 -o service.jprof");

  UploadOptions upload_options;
  auto* upload_cmd = app.add_subcommand(
      "upload", "Send a bundle, or PyPy's own jitlog and vmprof profile, to a jitprof server and print its share link");
  upload_cmd
      ->add_option("FILE", upload_options.files,
                   "a bundle (*.jprof); or a PyPy jitlog, a vmprof profile, or one of each from the same run "
                   "(gzipped or not, told apart by their content)")
      ->required()
      ->expected(1, 2)
      ->check(CLI::ExistingFile);
  upload_cmd->add_option("-s,--server", upload_options.server, "the server, e.g. https://jitprof.example.org")
      ->required();
  upload_cmd->add_option("--token", upload_options.token, "upload token, if the server wants one");
  upload_cmd->add_option("--token-file", upload_options.token_file, "read the token from this file")
      ->check(CLI::ExistingFile);
  upload_cmd->add_option("--ca-file", upload_options.ca_file, "HTTPS: also trust this CA certificate (PEM)")
      ->check(CLI::ExistingFile);
  upload_cmd->add_flag("-q,--quiet", upload_options.quiet, "print only the link");

  ServeOptions serve_options;
  auto* serve_cmd = app.add_subcommand("serve", "Run a jitprof server: uploads, a JSON API and the web viewer");
  serve_cmd->add_option("-d,--data", serve_options.data_dir, "directory for bundles and the index (created if missing)")
      ->required();
  serve_cmd->add_option("-l,--listen", serve_options.listen, "HOST:PORT to listen on (port 0: any free port)")
      ->capture_default_str();
  serve_cmd->add_option("--token-file", serve_options.token_file, "tokens, one a line: uploads need one")
      ->check(CLI::ExistingFile);
  serve_cmd->add_flag("--private", serve_options.private_reads, "reading needs a token too");
  serve_cmd->add_option("--max-body-mb", serve_options.max_body_mb, "largest upload accepted, in MiB")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  serve_cmd->add_option("--max-inflated-mb", serve_options.max_inflated_mb,
                        "largest upload once inflated, in MiB (decompression bombs stop there)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  serve_cmd->add_option("--memory-mb", serve_options.memory_mb,
                        "inflated bundles held at once by all requests, in MiB; queries keep half at most")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  serve_cmd->add_option("--threads", serve_options.threads, "worker threads (default: twice the CPUs, at least 4)");
  serve_cmd->add_option("--heavy-threads", serve_options.heavy_threads,
                        "threads for uploads and queries, apart from the workers")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
  serve_cmd->add_option("--max-connections", serve_options.max_connections,
                        "connections open at once (lowered to fit the open-file limit)")
      ->check(CLI::Range(1u, 1u << 20))
      ->capture_default_str();
  serve_cmd->add_flag("-q,--quiet", serve_options.quiet, "no request log");
  serve_cmd->footer("Example: jitprof serve --data /var/lib/jitprof --listen 0.0.0.0:8080 --token-file tokens.txt");

  QueryOptions query_options;
  auto* query_cmd = app.add_subcommand("query", "Ask a bundle a question: traces, guards, methods, ops or samples");
  add_view_options(query_cmd, query_options, "bundle (*.jprof)");
  query_cmd->add_option("QUERY", query_options.text, "e.g. \"traces.contains('call_assembler').hasbridge('*f*')\"")
      ->required();
  query_cmd->add_option("--limit", query_options.limit, "rows to print (the total is always given)")
      ->capture_default_str();
  query_cmd->footer(
      "Collections: traces loops bridges guards methods ops samples (and hot: traces with >= 1% of the samples).\n"
      "Examples:\n"
      "  methods.callsites() > 5\n"
      "  guards.failures() > 1000 and guards.in(hot)\n"
      "  traces.samples() > 1% .sort(samples).limit(10)\n"
      "  ops.name('new_with_vtable').in(hot)\n"
      "  traces.removed('new_with_vtable') > 0\n"
      "The language: docs/query.md");

  ViewOptions info_options;
  auto* info_cmd = app.add_subcommand("info", "Show a bundle's manifest and sections");
  add_view_options(info_cmd, info_options, "bundle (*.jprof)");

  ReportOptions report_options;
  auto* report_cmd = app.add_subcommand(
      "report", "The correlated profile of a bundle: Python functions, hot traces, native code, threads");
  add_view_options(report_cmd, report_options, "bundle (*.jprof) from 'jitprof record'");
  report_cmd->add_option("--top", report_options.top, "rows per table")->capture_default_str();
  report_cmd->footer("How Python stacks are merged from perf, the jitlog and vmprof: see README, 'Correlation'.");

  DiffOptions diff_options;
  auto* diff_cmd = app.add_subcommand(
      "diff", "Compare two recordings of a program: Python functions and JIT traces whose share and time changed");
  diff_cmd->add_option("OLD", diff_options.old_file, "the earlier bundle (*.jprof), e.g. before an optimization")
      ->required()
      ->check(CLI::ExistingFile);
  diff_cmd->add_option("NEW", diff_options.new_file, "the later bundle (*.jprof)")->required()->check(CLI::ExistingFile);
  diff_cmd->add_option("--top", diff_options.top, "rows per table (the largest changes)")->capture_default_str();
  diff_cmd->add_flag("--json", diff_options.json,
                     "print JSON for scripts (with the merged call tree, each frame's old and new samples)");
  diff_cmd->footer(
      "Shares are of each run's own samples; time is samples x that run's sampling period, so a function that\n"
      "got faster shows fewer seconds even when its share stays similar. Traces are matched by what they are\n"
      "(loop or bridge, function, file and line of their first merge point), since trace ids change between runs.\n"
      "Example: jitprof diff before.jprof after.jprof --top 20");

  ExportOptions export_options;
  auto* export_cmd = app.add_subcommand("export", "Write a bundle's profile, or a jitlog's traces, for other tools");
  export_cmd->add_option("FILE", export_options.file, "bundle (*.jprof); for perf-map also a jitlog")
      ->required()
      ->check(CLI::ExistingFile);
  export_cmd->add_option("-f,--format", export_options.format,
                         "collapsed (flamegraph.pl), speedscope (JSON), pprof (gzipped profile.proto), firefox (Firefox Profiler, Gecko JSON), "
                         "perf-map (/tmp/perf-PID.map for perf report), jitdump (for perf inject --jit)")
      ->required()
      ->check(CLI::IsMember({"collapsed", "speedscope", "pprof", "firefox", "perf-map", "jitdump"}));
  export_cmd->add_option("--pid", export_options.pid, "jitdump: the PyPy process the traces ran in");
  export_cmd->add_option("-o,--output", export_options.output, "file to write, - for standard output")
      ->capture_default_str();

  TopOptions top_options;
  auto* top_cmd = app.add_subcommand(
      "top", "A bundle's profile as a call tree, from the outermost frame down, after its threads by name; with "
             "--pid, a live view of a running PyPy process");
  auto* top_file = top_cmd->add_option("FILE", top_options.file, "bundle (*.jprof)")->check(CLI::ExistingFile);
  auto* top_json = top_cmd->add_flag("--json", top_options.json, "print JSON for scripts");
  auto* top_depth = top_cmd->add_option("--depth", top_options.depth, "levels of the tree to show")->capture_default_str();
  auto* top_min = top_cmd->add_option("--min", top_options.min_percent, "leave out branches under this share of samples (%)")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  auto* top_pid = top_cmd->add_option("-p,--pid", top_options.pid,
                                      "sample this running PyPy process (as attach does, never stopping it) and show "
                                      "its Python functions, hot JIT code, where the time goes and threads, refreshed "
                                      "every second");
  top_pid->excludes(top_file)->excludes(top_json)->excludes(top_depth)->excludes(top_min);
  top_cmd->add_option("--rate", top_options.rate_hz, "--pid: samples per second of CPU time, per thread")
      ->check(CLI::Range(2u, 1000000u))
      ->capture_default_str()
      ->needs(top_pid);
  top_cmd->add_option("-d,--duration", top_options.duration_s,
                      "--pid: seconds to watch (default: until q, Ctrl-C or the process exits)")
      ->check(CLI::NonNegativeNumber)
      ->needs(top_pid);
  top_cmd->add_option("-o,--output", top_options.output,
                      "--pid: also write the bundle of the whole session to this file (for info, report, export)")
      ->needs(top_pid);
  top_cmd->add_option("--rows", top_options.rows,
                      "--pid without a terminal: functions, JIT code and threads per snapshot (a terminal shows what fits)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str()
      ->needs(top_pid);
  top_cmd->footer(
      "With --pid: on a terminal the view is redrawn every second (q or Ctrl-C ends it; the process keeps running);\n"
      "otherwise one snapshot is printed per second, each headed by the time and the seconds since the start.\n"
      "%Own/%Total: share of the last second's samples in a function / in it and what it called; OwnTime and\n"
      "TotalTime: CPU seconds since the start.\n"
      "Examples: jitprof top app.jprof --depth 8\n"
      "          jitprof top --pid 1234 -o service.jprof");

  CLI11_PARSE(app, argc, argv);

  try {
    if (*jitlog_cmd) return run_jitlog_summary(jitlog_options);
    if (*trace_cmd) {
      try {
        trace_options.id = parse_trace_id(trace_id_text);
      } catch (const std::exception&) {
        std::cerr << fmt::format("jitprof: error: trace id '{}' is not a number\n", trace_id_text);
        return 2;
      }
      const bool stage_given = trace_cmd->count("--stage") > 0;
      if (trace_options.disassemble && !stage_given) stage_text = "asm";
      trace_options.stage = *jitprof::jitlog::parse_stage_name(stage_text);
      return run_trace(trace_options);
    }
    if (*profile_cmd) return run_profile(profile_options);
    if (*record_cmd) return run_record(record_options);
    if (*attach_cmd) return run_attach(attach_options);
    if (*upload_cmd) return run_upload(upload_options);
    if (*serve_cmd) return run_serve(serve_options);
    if (*info_cmd) return run_info(info_options);
    if (*report_cmd) return run_report(report_options);
    if (*export_cmd) return run_export(export_options);
    if (*top_cmd) {
      if (top_options.pid != 0 || top_cmd->count("--pid") > 0) return run_live_top(top_options);
      if (top_options.file.empty()) {
        std::cerr << "jitprof: error: top needs a bundle FILE or --pid PID\n";
        return 2;
      }
      return run_top(top_options);
    }
    if (*diff_cmd) return run_diff(diff_options);
    if (*query_cmd) return run_query(query_options);
  } catch (const std::exception& error) {
    std::cerr << "jitprof: error: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
