// `jitprof top --pid PID`: a live view of a running PyPy process. Sampling
// is attach's (record::attach); live::Top counts each second's samples; this
// file only draws: on a terminal a full-screen view redrawn every second
// (alternate screen, cursor hidden, both restored however it ends), else one
// plain-text snapshot per second for pipes and files.
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "common.h"
#include "live/top.h"
#include "record/record.h"
#include "terminal.h"

namespace jitprof::cli {
namespace {

double thread_cpu_s() {
  timespec now{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return double(now.tv_sec) + double(now.tv_nsec) / 1e9;
}

double process_cpu_s() {
  rusage self{};
  ::getrusage(RUSAGE_SELF, &self);
  const auto seconds = [](const timeval& time) { return double(time.tv_sec) + double(time.tv_usec) / 1e6; };
  return seconds(self.ru_utime) + seconds(self.ru_stime);
}

// What jitprof itself spent, shown in each snapshot's header.
struct OwnCost {
  double refresh_ms = 0;      // correlating and counting the interval's samples, and drawing
  double main_thread_ms = 0;  // the main thread over the interval: also naming code, writing the bundle
  double cpu_share = 0;       // the whole process (sampler threads too) over the interval, in CPUs
};

std::string function_label(const live::FunctionRow& row) {
  const std::string file = std::filesystem::path(row.file).filename().string();
  if (file.empty()) return row.name;
  return row.line > 0 ? fmt::format("{} ({}:{})", row.name, file, row.line) : fmt::format("{} ({})", row.name, file);
}

std::string seconds(std::uint64_t samples, double seconds_per_sample) {
  return fmt::format("{:.2f}s", double(samples) * seconds_per_sample);
}

std::vector<std::string> snapshot_lines(const live::Snapshot& snapshot, const OwnCost& cost, std::size_t rows) {
  std::vector<std::string> lines;
  std::string command;
  for (const auto& word : snapshot.command) command += (command.empty() ? "" : " ") + word;
  const std::tm now = fmt::gmtime(std::time(nullptr));
  lines.push_back(fmt::format("=== jitprof top: PID {} ({}) at {:%Y-%m-%d %H:%M:%S} UTC, {:.1f} s elapsed ===",
                              snapshot.pid, command, now, snapshot.elapsed_s));
  const double last = double(snapshot.samples.last), all = double(snapshot.samples.all);
  lines.push_back(fmt::format("samples: {} in the last {:.1f} s, {} in all; jitprof: {:.1f} ms CPU for this refresh, "
                              "{:.1f} ms on its main thread, {:.1f}% of a CPU in all",
                              with_commas(snapshot.samples.last), snapshot.interval_s, with_commas(snapshot.samples.all),
                              cost.refresh_ms, cost.main_thread_ms, 100 * cost.cpu_share));
  std::string shares = "where the time goes (last / all):";
  for (std::size_t i = 0; i < snapshot.shares.size(); ++i)
    shares += fmt::format("{} {} {} / {}", i ? "," : "", snapshot.shares[i].label,
                          percent(double(snapshot.shares[i].samples.last), last),
                          percent(double(snapshot.shares[i].samples.all), all));
  lines.push_back(shares);
  lines.push_back("");
  lines.push_back(fmt::format("{:>7} {:>7} {:>9} {:>9}  {}", "%Own", "%Total", "OwnTime", "TotalTime", "Function (file:line)"));
  for (std::size_t i = 0; i < std::min(rows, snapshot.functions.size()); ++i) {
    const live::FunctionRow& row = snapshot.functions[i];
    lines.push_back(fmt::format("{:>7} {:>7} {:>9} {:>9}  {}", percent(double(row.self.last), last),
                                percent(double(row.total.last), last), seconds(row.self.all, snapshot.seconds_per_sample),
                                seconds(row.total.all, snapshot.seconds_per_sample), function_label(row)));
  }
  if (snapshot.unnamed_code_objects > 0)
    lines.push_back(fmt::format("({} code objects not found in the process's memory yet: shown as \"code #ID\")",
                                snapshot.unnamed_code_objects));
  lines.push_back("");
  lines.push_back(fmt::format("{:>7} {:>7}  {}", "last", "all", "hot JIT code (samples in it or called from it)"));
  for (std::size_t i = 0; i < std::min(rows, snapshot.jit.size()); ++i)
    lines.push_back(fmt::format("{:>7} {:>7}  {}", percent(double(snapshot.jit[i].samples.last), last),
                                percent(double(snapshot.jit[i].samples.all), all), snapshot.jit[i].label));
  lines.push_back("");
  lines.push_back(fmt::format("{:>7} {:>7}  {}", "last", "all", "threads (busiest function in the last interval)"));
  for (std::size_t i = 0; i < std::min(rows, snapshot.threads.size()); ++i) {
    const live::ThreadRow& thread = snapshot.threads[i];
    lines.push_back(fmt::format("{:>7} {:>7}  {} {}  {}", percent(double(thread.samples.last), last),
                                percent(double(thread.samples.all), all), thread.tid,
                                thread.name.empty() ? "?" : thread.name, thread.top_function));
  }
  return lines;
}

// `line` cut to `width` columns (counted as UTF-8 characters: names are mostly ASCII).
std::string fit(const std::string& line, std::size_t width) {
  std::size_t columns = 0;
  for (std::size_t at = 0; at < line.size(); ++at) {
    if ((static_cast<unsigned char>(line[at]) & 0xc0) == 0x80) continue;
    if (columns++ == width) return line.substr(0, at);
  }
  return line;
}

// The terminal while the view is shown: alternate screen, no cursor, keys
// read one at a time without echo; all restored when it ends, however it ends.
class Screen {
 public:
  Screen() {
    keys_ = ::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &saved_) == 0;
    if (keys_) {
      termios raw = saved_;
      raw.c_lflag &= ~tcflag_t(ICANON | ECHO);
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      ::tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    TerminalText::control(std::cout, "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J");
    std::cout.flush();
  }
  ~Screen() {
    TerminalText::control(std::cout, "\x1b[?25h\x1b[?1049l");
    std::cout.flush();
    if (keys_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  Screen(const Screen&) = delete;
  Screen& operator=(const Screen&) = delete;

  void draw(const std::vector<std::string>& lines) {
    winsize size{};
    const bool known = ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_row > 0 && size.ws_col > 0;
    const std::size_t height = known ? size.ws_row : 24, width = known ? size.ws_col : 80;
    TerminalText::control(std::cout, "\x1b[H");
    for (std::size_t i = 0; i < std::min(lines.size(), height - 1); ++i) {
      std::cout << fit(lines[i], width);
      TerminalText::control(std::cout, "\x1b[K\r\n");
    }
    std::cout << fit("q or Ctrl-C: quit (the process keeps running)", width);
    TerminalText::control(std::cout, "\x1b[K\x1b[J");
    std::cout.flush();
  }

  // Whether q was pressed since the last call.
  bool quit_pressed() {
    if (!keys_) return false;
    char key = 0;
    bool quit = false;
    while (::read(STDIN_FILENO, &key, 1) == 1) quit = quit || key == 'q' || key == 'Q';
    return quit;
  }

 private:
  bool keys_ = false;
  termios saved_{};
};

}  // namespace

int run_live_top(const TopOptions& options) {
  const bool terminal = ::isatty(STDOUT_FILENO);
  live::Top top;
  std::vector<std::string> notices;
  std::optional<Screen> screen;
  double main_cpu = thread_cpu_s(), all_cpu = process_cpu_s(), last_elapsed = 0;

  record::AttachOptions settings;
  settings.pid = options.pid;
  settings.output = options.output;
  settings.duration_s = options.duration_s;
  settings.rate_hz = options.rate_hz;
  // On a terminal the messages wait until the screen is restored.
  settings.notice = [&](const std::string& message) {
    if (screen) notices.push_back(message);
    else std::cerr << "jitprof: " << message << "\n";
  };
  settings.on_interval = [&](const bundle::Bundle& frames, double elapsed_s) {
    // Once attached: a refusal (no such process, not PyPy, no permission) leaves the screen as it was.
    if (terminal && !screen) screen.emplace();
    const double refresh_start = thread_cpu_s();
    top.add(frames, elapsed_s);
    const live::Snapshot snapshot = top.snapshot(terminal ? 50 : options.rows);
    OwnCost cost;
    cost.refresh_ms = 1e3 * (thread_cpu_s() - refresh_start);
    cost.main_thread_ms = 1e3 * (refresh_start - main_cpu);
    const double now_cpu = process_cpu_s();
    cost.cpu_share = elapsed_s > last_elapsed ? (now_cpu - all_cpu) / (elapsed_s - last_elapsed) : 0;
    all_cpu = now_cpu;
    last_elapsed = elapsed_s;
    bool go_on = true;
    if (screen) {
      winsize size{};
      const std::size_t height = ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_row > 0 ? size.ws_row : 24;
      // Three lists share what the header leaves.
      screen->draw(snapshot_lines(snapshot, cost, height > 20 ? (height - 14) / 3 : 2));
      go_on = !screen->quit_pressed();
    } else {
      for (const std::string& line : snapshot_lines(snapshot, cost, options.rows)) std::cout << line << "\n";
      std::cout << std::endl;
    }
    main_cpu = thread_cpu_s();
    return go_on;
  };
  const record::AttachOutcome outcome = record::attach(settings);
  screen.reset();
  for (const std::string& message : notices) std::cerr << "jitprof: " << message << "\n";
  print_attach_summary(outcome, options.output);
  return 0;
}

}  // namespace jitprof::cli
