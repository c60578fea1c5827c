#include "events.h"

#include <fmt/format.h>
#include <linux/perf_event.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "record_parser.h"

namespace jitprof::sampler {

namespace {

perf_event_attr event_attributes(const Settings& settings) {
  perf_event_attr attr{};
  attr.size = sizeof attr;
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = PERF_COUNT_SW_CPU_CLOCK;
  attr.sample_period = std::max<std::uint64_t>(1, 1'000'000'000ull / settings.rate_hz);  // nanoseconds
  attr.sample_type = kSampleType;
  attr.sample_regs_user = arch::kPerfUserRegisterMask;
  attr.sample_stack_user = settings.user_stack_bytes & ~7u;
  // The kernel's user callchain walks frame pointers, which PyPy's JIT code and
  // libpypy do not keep: user frames come from the registers and stack copy.
  attr.exclude_callchain_user = 1;
  // Threads and processes started later are followed.
  attr.inherit = 1;
  attr.mmap = 1;
  attr.mmap2 = 1;
  attr.comm = 1;
  attr.comm_exec = 1;
  attr.task = 1;
  attr.sample_id_all = 1;
  attr.exclude_hv = 1;
  attr.use_clockid = 1;
  attr.clockid = CLOCK_MONOTONIC;
  attr.watermark = 1;
  attr.wakeup_watermark = static_cast<std::uint32_t>(settings.ring_pages * ::sysconf(_SC_PAGESIZE) / 4);
  return attr;
}

int read_paranoid() {
  std::ifstream in("/proc/sys/kernel/perf_event_paranoid");
  int level = 2;
  in >> level;
  return level;
}

std::string refusal_message(int error) {
  const int paranoid = read_paranoid();
  if (error == EACCES || error == EPERM)
    return fmt::format(
        "perf_event_open was refused ({}; kernel.perf_event_paranoid = {}). Fix: run jitprof as root or with "
        "CAP_PERFMON, or lower the setting: sudo sysctl kernel.perf_event_paranoid=1",
        std::strerror(error), paranoid);
  if (error == ENOSYS)
    return "perf_event_open is not available (ENOSYS: kernel without perf events, or blocked by seccomp in this "
           "container). Fix: allow the perf_event_open syscall in the container's seccomp profile";
  if (error == ENOENT || error == EOPNOTSUPP)
    return fmt::format("the cpu-clock software event is not supported here ({})", std::strerror(error));
  return fmt::format("perf_event_open failed: {}", std::strerror(error));
}

// Opens one event. Unprivileged users may still sample their own processes'
// user space: on refusal, `attr` excludes the kernel from then on.
int open_event(perf_event_attr& attr, pid_t pid, int cpu) {
  const auto open = [&] {
    return static_cast<int>(::syscall(SYS_perf_event_open, &attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC));
  };
  int fd = open();
  if (fd < 0 && (errno == EACCES || errno == EPERM) && !attr.exclude_kernel) {
    attr.exclude_kernel = 1;
    fd = open();
  }
  return fd;
}

std::vector<int> online_cpus() {
  // "0-1,4,6-7"
  std::ifstream in("/sys/devices/system/cpu/online");
  std::string text;
  std::getline(in, text);
  std::vector<int> cpus;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find(',', at);
    if (end == std::string::npos) end = text.size();
    const std::string part = text.substr(at, end - at);
    const std::size_t dash = part.find('-');
    const int first = std::stoi(part.substr(0, dash));
    const int last = dash == std::string::npos ? first : std::stoi(part.substr(dash + 1));
    for (int cpu = first; cpu <= last; ++cpu) cpus.push_back(cpu);
    at = end + 1;
  }
  if (cpus.empty())
    for (long cpu = 0; cpu < ::sysconf(_SC_NPROCESSORS_ONLN); ++cpu) cpus.push_back(static_cast<int>(cpu));
  return cpus;
}

// Threads of a running process, from /proc/PID/task.
std::vector<pid_t> threads_of(pid_t pid) {
  std::vector<pid_t> threads;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), error)) {
    const std::string name = entry.path().filename().string();
    if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) threads.push_back(std::stoi(name));
  }
  std::sort(threads.begin(), threads.end());
  return threads;
}

// `tid`'s events, one per CPU of `cpus`; none when the thread ended meanwhile.
std::vector<int> open_thread_events(perf_event_attr& attr, pid_t tid, const std::vector<int>& cpus,
                                    const OnEventOpen& on_open) {
  std::vector<int> fds;
  for (int cpu : cpus) {
    const int fd = open_event(attr, tid, cpu);
    if (fd < 0) {
      const int error = errno;
      for (int opened : fds) ::close(opened);
      if (error == ESRCH) return {};
      throw SamplerError(refusal_message(error));
    }
    if (on_open) on_open(fd);
    fds.push_back(fd);
  }
  return fds;
}

// Per CPU, the first thread's event owns the ring and the others write into it.
void add_to_rings(Events& events, const std::vector<int>& fds, const std::vector<int>& cpus,
                  const Settings& settings) {
  const bool first_thread = events.rings.empty();
  for (std::size_t i = 0; i < cpus.size(); ++i) {
    if (first_thread)
      events.rings.push_back(std::make_unique<Ring>(fds[i], cpus[i], settings.ring_pages));
    else
      events.rings[i]->follow(fds[i]);
  }
}

// "7f2c4a000000-7f2c4a200000 r-xp 00001000 08:01 1234   /usr/lib/x.so", when executable.
std::optional<Mapping> parse_maps_line(const std::string& line) {
  std::istringstream fields(line);
  std::string range, permissions, offset, device, path;
  std::uint64_t inode = 0;
  fields >> range >> permissions >> offset >> device >> inode;
  std::getline(fields >> std::ws, path);
  if (permissions.size() < 4 || permissions[2] != 'x') return std::nullopt;  // as perf: executable mappings only
  Mapping mapping{};
  mapping.start = std::stoull(range.substr(0, range.find('-')), nullptr, 16);
  mapping.length = std::stoull(range.substr(range.find('-') + 1), nullptr, 16) - mapping.start;
  mapping.file_offset = std::stoull(offset, nullptr, 16);
  mapping.major = static_cast<std::uint32_t>(std::stoul(device.substr(0, device.find(':')), nullptr, 16));
  mapping.minor = static_cast<std::uint32_t>(std::stoul(device.substr(device.find(':') + 1), nullptr, 16));
  mapping.inode = inode;
  mapping.prot = (permissions[0] == 'r' ? PROT_READ : 0) | (permissions[1] == 'w' ? PROT_WRITE : 0) | PROT_EXEC;
  mapping.flags = permissions[3] == 's' ? MAP_SHARED : MAP_PRIVATE;
  mapping.path = path.empty() ? "//anon" : path;
  return mapping;
}

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

void check_settings(const Settings& settings) {
  if (settings.rate_hz == 0) throw SamplerError("the sampling rate must be positive");
  if (settings.ring_pages == 0 || !std::has_single_bit(settings.ring_pages))
    throw SamplerError("the ring buffer size must be a power of two pages");
}

Events open_at_exec(pid_t pid, const Settings& settings, const OnEventOpen& on_open) {
  perf_event_attr attr = event_attributes(settings);
  attr.disabled = 1;
  attr.enable_on_exec = 1;
  Events events;
  for (int cpu : online_cpus()) {
    const int fd = open_event(attr, pid, cpu);
    if (fd < 0) throw SamplerError(refusal_message(errno));
    if (on_open) on_open(fd);
    events.rings.push_back(std::make_unique<Ring>(fd, cpu, settings.ring_pages));
  }
  events.kernel_frames = !attr.exclude_kernel;
  return events;
}

Events open_on_threads(pid_t pid, const Settings& settings, const OnEventOpen& on_open) {
  perf_event_attr attr = event_attributes(settings);
  const std::vector<int> cpus = online_cpus();
  Events events;
  // Threads started while these open are found by listing again until no new one appears.
  for (bool found_new = true; found_new;) {
    found_new = false;
    for (pid_t tid : threads_of(pid)) {
      if (std::binary_search(events.threads.begin(), events.threads.end(), tid)) continue;
      found_new = true;
      const std::vector<int> fds = open_thread_events(attr, tid, cpus, on_open);
      if (fds.empty()) continue;
      add_to_rings(events, fds, cpus, settings);
      events.threads.insert(std::upper_bound(events.threads.begin(), events.threads.end(), tid), tid);
    }
  }
  if (events.threads.empty()) throw SamplerError(fmt::format("process {} has no threads left to sample", pid));
  events.kernel_frames = !attr.exclude_kernel;
  return events;
}

std::vector<Mapping> executable_mappings(pid_t pid, std::uint64_t time) {
  std::vector<Mapping> mappings;
  std::ifstream maps(fmt::format("/proc/{}/maps", pid));
  for (std::string line; std::getline(maps, line);) {
    std::optional<Mapping> mapping = parse_maps_line(line);
    if (!mapping) continue;
    mapping->time_ns = time;
    mapping->pid = static_cast<std::uint32_t>(pid);
    mapping->tid = static_cast<std::uint32_t>(pid);
    mappings.push_back(std::move(*mapping));
  }
  return mappings;
}

std::vector<TaskEvent> thread_names(pid_t pid, const std::vector<pid_t>& tids, std::uint64_t time) {
  std::vector<TaskEvent> names;
  for (pid_t tid : tids) {
    TaskEvent comm{};
    comm.kind = TaskEvent::Kind::Comm;
    comm.time_ns = time;
    comm.pid = static_cast<std::uint32_t>(pid);
    comm.tid = static_cast<std::uint32_t>(tid);
    comm.comm = read_line(fmt::format("/proc/{}/task/{}/comm", pid, tid));
    names.push_back(std::move(comm));
  }
  return names;
}

std::uint64_t monotonic_now_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return std::uint64_t(now.tv_sec) * 1'000'000'000u + std::uint64_t(now.tv_nsec);
}

}  // namespace jitprof::sampler
