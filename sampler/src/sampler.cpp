#include "sampler/sampler.h"

#include <asm/perf_regs.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/perf_event.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <filesystem>
#include <optional>
#include <sstream>

namespace jitprof::sampler {

static_assert(arch::kPerfUserRegisterMask ==
                  (((std::uint64_t{1} << (PERF_REG_X86_IP + 1)) - 1) | (std::uint64_t{0xff} << PERF_REG_X86_R8)),
              "arch::Register lists AX..IP and R8..R15 in perf's order");

namespace {

int perf_event_open(perf_event_attr& attr, pid_t pid, int cpu) {
  return static_cast<int>(::syscall(SYS_perf_event_open, &attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC));
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

// Reads fields of a perf record in order, without running past its end.
class RecordReader {
 public:
  RecordReader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool has(std::size_t bytes) const { return pos_ + bytes <= size_; }
  std::uint64_t u64() { return take<std::uint64_t>(); }
  std::uint32_t u32() { return take<std::uint32_t>(); }
  std::span<const std::uint8_t> bytes(std::size_t count) {
    if (!has(count)) throw std::out_of_range("perf record too short");
    std::span<const std::uint8_t> view(data_ + pos_, count);
    pos_ += count;
    return view;
  }
  std::string c_string(std::size_t max) {
    const std::size_t limit = std::min(max, size_ - pos_);
    const auto* start = reinterpret_cast<const char*>(data_ + pos_);
    std::string text(start, strnlen(start, limit));
    pos_ += (text.size() + 8) & ~std::size_t{7};  // NUL-terminated, padded to 8 bytes
    return text;
  }
  std::size_t position() const { return pos_; }
  std::size_t size() const { return size_; }

 private:
  template <class T>
  T take() {
    if (!has(sizeof(T))) throw std::out_of_range("perf record too short");
    T value;
    std::memcpy(&value, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

// Sample-id trailer of non-sample records (sample_id_all): TID, TIME, CPU.
constexpr std::size_t kSampleIdBytes = 8 + 8 + 8;

std::uint64_t trailer_time(const std::uint8_t* record, std::size_t size) {
  if (size < sizeof(perf_event_header) + kSampleIdBytes) return 0;
  std::uint64_t time = 0;
  std::memcpy(&time, record + size - 16, sizeof time);
  return time;
}

}  // namespace

struct Sampler::Ring {
  int fd = -1;
  void* base = MAP_FAILED;
  std::size_t mapped = 0;
  std::size_t data_size = 0;
  std::vector<std::uint8_t> scratch;  // for records that wrap around the ring's end
  std::vector<int> followers;         // more threads' events on this CPU, writing into this ring

  ~Ring() {
    for (int follower : followers) ::close(follower);
    if (base != MAP_FAILED) ::munmap(base, mapped);
    if (fd >= 0) ::close(fd);
  }
  perf_event_mmap_page* page() const { return static_cast<perf_event_mmap_page*>(base); }
  const std::uint8_t* data() const { return static_cast<const std::uint8_t*>(base) + page()->data_offset; }
};

// A record copied out of a ring, waiting to be handed over in time order.
struct Sampler::Pending {
  std::uint64_t time;
  int order;  // at equal times: task and mapping records before samples
  std::optional<Sample> sample;
  std::vector<std::uint8_t> stack;  // the sample's user stack bytes
  std::optional<Mapping> mapping;
  std::optional<TaskEvent> task;
};

namespace {

void check(const Settings& settings) {
  if (settings.rate_hz == 0) throw SamplerError("the sampling rate must be positive");
  if (settings.ring_pages == 0 || !std::has_single_bit(settings.ring_pages))
    throw SamplerError("the ring buffer size must be a power of two pages");
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

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

perf_event_attr Sampler::event_attributes(const Settings& settings) {
  sample_type_ = PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_CPU | PERF_SAMPLE_PERIOD |
                 PERF_SAMPLE_CALLCHAIN | PERF_SAMPLE_REGS_USER | PERF_SAMPLE_STACK_USER;
  perf_event_attr attr{};
  attr.size = sizeof attr;
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = PERF_COUNT_SW_CPU_CLOCK;
  attr.sample_period = std::max<std::uint64_t>(1, 1'000'000'000ull / settings.rate_hz);  // nanoseconds
  attr.sample_type = sample_type_;
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

int Sampler::open_event(perf_event_attr& attr, pid_t pid, int cpu) {
  int fd = perf_event_open(attr, pid, cpu);
  if (fd < 0 && (errno == EACCES || errno == EPERM) && !attr.exclude_kernel) {
    // Unprivileged users may still sample their own processes' user space.
    attr.exclude_kernel = 1;
    kernel_frames_ = false;
    fd = perf_event_open(attr, pid, cpu);
  }
  return fd;
}

void Sampler::map_ring(Ring& ring, int cpu, const Settings& settings) {
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  ring.mapped = (1 + settings.ring_pages) * page;
  ring.data_size = settings.ring_pages * page;
  ring.base = ::mmap(nullptr, ring.mapped, PROT_READ | PROT_WRITE, MAP_SHARED, ring.fd, 0);
  if (ring.base == MAP_FAILED)
    throw SamplerError(fmt::format("cannot map the perf ring buffer of CPU {}: {}", cpu, std::strerror(errno)));
}

std::unique_ptr<Sampler> Sampler::for_process_at_exec(pid_t pid, const Settings& settings) {
  check(settings);
  std::unique_ptr<Sampler> sampler(new Sampler());
  perf_event_attr attr = sampler->event_attributes(settings);
  attr.disabled = 1;
  attr.enable_on_exec = 1;
  for (int cpu : online_cpus()) {
    auto ring = std::make_unique<Ring>();
    ring->fd = sampler->open_event(attr, pid, cpu);
    if (ring->fd < 0) throw SamplerError(refusal_message(errno));
    sampler->map_ring(*ring, cpu, settings);
    sampler->rings_.push_back(std::move(ring));
  }
  sampler->wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return sampler;
}

std::unique_ptr<Sampler> Sampler::for_running_process(pid_t pid, const Settings& settings) {
  check(settings);
  std::unique_ptr<Sampler> sampler(new Sampler());
  perf_event_attr attr = sampler->event_attributes(settings);
  const std::vector<int> cpus = online_cpus();
  for (std::size_t i = 0; i < cpus.size(); ++i) sampler->rings_.push_back(std::make_unique<Ring>());
  // What existed before the events: dated before any sample they see.
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const std::uint64_t before = std::uint64_t(now.tv_sec) * 1'000'000'000u + std::uint64_t(now.tv_nsec);

  // One event per thread and CPU; per CPU, the first thread's event owns the
  // ring and the others write into it. Threads that existing threads start
  // later inherit the events; threads started while these open are found by
  // listing again until no new one appears.
  std::vector<pid_t> attached;
  for (bool found_new = true; found_new;) {
    found_new = false;
    for (pid_t tid : threads_of(pid)) {
      if (std::binary_search(attached.begin(), attached.end(), tid)) continue;
      found_new = true;
      std::vector<int> fds;
      for (std::size_t i = 0; i < cpus.size(); ++i) {
        const int fd = sampler->open_event(attr, tid, cpus[i]);
        if (fd < 0) {
          const int error = errno;
          for (int opened : fds) ::close(opened);
          if (error == ESRCH) break;  // the thread ended meanwhile
          throw SamplerError(refusal_message(error));
        }
        fds.push_back(fd);
      }
      if (fds.size() != cpus.size()) continue;
      for (std::size_t i = 0; i < cpus.size(); ++i) {
        Ring& ring = *sampler->rings_[i];
        if (ring.fd < 0) {
          ring.fd = fds[i];
          sampler->map_ring(ring, cpus[i], settings);
        } else if (::ioctl(fds[i], PERF_EVENT_IOC_SET_OUTPUT, ring.fd) == 0) {
          ring.followers.push_back(fds[i]);
        } else {
          const int error = errno;
          ::close(fds[i]);
          throw SamplerError(fmt::format("cannot share the perf ring of CPU {}: {}", cpus[i], std::strerror(error)));
        }
      }
      attached.insert(std::upper_bound(attached.begin(), attached.end(), tid), tid);
    }
  }
  if (attached.empty()) throw SamplerError(fmt::format("process {} has no threads left to sample", pid));

  // The kernel reports only mappings made from now on; the ones that exist
  // come from /proc, as perf's own synthesized records do.
  std::ifstream maps(fmt::format("/proc/{}/maps", pid));
  for (std::string line; std::getline(maps, line);) {
    // "7f2c4a000000-7f2c4a200000 r-xp 00001000 08:01 1234   /usr/lib/x.so"
    std::istringstream fields(line);
    std::string range, permissions, offset, device, path;
    std::uint64_t inode = 0;
    fields >> range >> permissions >> offset >> device >> inode;
    std::getline(fields >> std::ws, path);
    if (permissions.size() < 3 || permissions[2] != 'x') continue;  // as perf: executable mappings only
    Mapping mapping{};
    mapping.time_ns = before;
    mapping.pid = static_cast<std::uint32_t>(pid);
    mapping.tid = static_cast<std::uint32_t>(pid);
    mapping.start = std::stoull(range.substr(0, range.find('-')), nullptr, 16);
    mapping.length = std::stoull(range.substr(range.find('-') + 1), nullptr, 16) - mapping.start;
    mapping.file_offset = std::stoull(offset, nullptr, 16);
    mapping.major = static_cast<std::uint32_t>(std::stoul(device.substr(0, device.find(':')), nullptr, 16));
    mapping.minor = static_cast<std::uint32_t>(std::stoul(device.substr(device.find(':') + 1), nullptr, 16));
    mapping.inode = inode;
    mapping.prot = (permissions[0] == 'r' ? PROT_READ : 0) | (permissions[1] == 'w' ? PROT_WRITE : 0) | PROT_EXEC;
    mapping.flags = permissions[3] == 's' ? MAP_SHARED : MAP_PRIVATE;
    mapping.path = path.empty() ? "//anon" : path;
    sampler->pending_.push_back({before, 0, std::nullopt, {}, std::move(mapping), std::nullopt});
  }
  for (pid_t tid : attached) {
    TaskEvent comm{};
    comm.kind = TaskEvent::Kind::Comm;
    comm.time_ns = before;
    comm.pid = static_cast<std::uint32_t>(pid);
    comm.tid = static_cast<std::uint32_t>(tid);
    comm.comm = read_line(fmt::format("/proc/{}/task/{}/comm", pid, tid));
    sampler->pending_.push_back({before, 0, std::nullopt, {}, std::nullopt, std::move(comm)});
  }
  sampler->wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return sampler;
}

Sampler::Sampler() = default;

Sampler::~Sampler() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Sampler::start(Listener& listener) {
  reader_ = std::thread([this, &listener] { run(listener); });
}

void Sampler::stop() {
  if (!reader_.joinable()) return;
  stopping_ = true;
  const std::uint64_t one = 1;
  [[maybe_unused]] auto ignored = ::write(wake_fd_, &one, sizeof one);
  reader_.join();
}

Stats Sampler::stats() const {
  Stats stats;
  stats.samples = samples_;
  stats.lost = lost_;
  stats.throttled = throttled_;
  stats.records = records_;
  return stats;
}

void Sampler::run(Listener& listener) {
  std::vector<pollfd> fds;
  for (const auto& ring : rings_) fds.push_back({ring->fd, POLLIN, 0});
  fds.push_back({wake_fd_, POLLIN, 0});
  while (!stopping_) {
    // The timeout bounds how stale the data is when the watermark is not reached.
    ::poll(fds.data(), fds.size(), 100);
    round(listener, false);
  }
  round(listener, true);
}

// Each CPU has its own ring, so a sample can be read before the mmap record
// (in another ring) of the library it runs in. Records are handed over in
// time order, and only up to the earliest moment at which a ring was read:
// anything later may still have an earlier record waiting in another ring.
void Sampler::round(Listener& listener, bool final) {
  std::uint64_t horizon = UINT64_MAX;
  for (const auto& ring : rings_) {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    horizon = std::min(horizon, std::uint64_t(now.tv_sec) * 1'000'000'000u + std::uint64_t(now.tv_nsec));
    drain(*ring);
  }
  std::stable_sort(pending_.begin(), pending_.end(), [](const Pending& a, const Pending& b) {
    return a.time != b.time ? a.time < b.time : a.order < b.order;
  });
  std::size_t handed = 0;
  for (Pending& event : pending_) {
    if (!final && event.time > horizon) break;
    ++handed;
    if (event.sample) {
      event.sample->user_stack = event.stack;
      listener.on_sample(*event.sample);
    } else if (event.mapping) {
      listener.on_mapping(*event.mapping);
    } else if (event.task) {
      listener.on_task(*event.task);
    }
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(handed));
}

void Sampler::drain(Ring& ring) {
  perf_event_mmap_page* header = ring.page();
  const std::uint64_t head = __atomic_load_n(&header->data_head, __ATOMIC_ACQUIRE);
  std::uint64_t tail = header->data_tail;
  const std::uint8_t* data = ring.data();
  const std::size_t mask = ring.data_size - 1;
  while (tail < head) {
    perf_event_header record_header;
    const std::size_t offset = tail & mask;
    // The header itself may wrap: copy it byte-wise.
    for (std::size_t i = 0; i < sizeof record_header; ++i)
      reinterpret_cast<std::uint8_t*>(&record_header)[i] = data[(offset + i) & mask];
    if (record_header.size < sizeof record_header || tail + record_header.size > head) break;
    const std::uint8_t* record = data + offset;
    if (offset + record_header.size > ring.data_size) {
      ring.scratch.resize(record_header.size);
      const std::size_t first = ring.data_size - offset;
      std::memcpy(ring.scratch.data(), data + offset, first);
      std::memcpy(ring.scratch.data() + first, data, record_header.size - first);
      record = ring.scratch.data();
    }
    ++records_;
    try {
      RecordReader in(record + sizeof record_header, record_header.size - sizeof record_header);
      switch (record_header.type) {
        case PERF_RECORD_SAMPLE: {
          Sample sample{};
          sample.ip = in.u64();
          sample.pid = in.u32();
          sample.tid = in.u32();
          sample.time_ns = in.u64();
          sample.cpu = in.u32();
          in.u32();  // reserved
          in.u64();  // period
          const std::uint64_t chain = in.u64();
          if (chain > 4096) throw std::out_of_range("callchain too long");
          for (std::uint64_t i = 0; i < chain; ++i) {
            const std::uint64_t address = in.u64();
            if (address >= PERF_CONTEXT_MAX) continue;  // PERF_CONTEXT_KERNEL/USER markers
            sample.kernel_callchain.push_back(address);
          }
          sample.in_kernel = (record_header.misc & PERF_RECORD_MISC_CPUMODE_MASK) == PERF_RECORD_MISC_KERNEL;
          const std::uint64_t abi = in.u64();
          sample.has_user_registers = abi != PERF_SAMPLE_REGS_ABI_NONE;
          if (sample.has_user_registers)
            for (auto& value : sample.user_registers) value = in.u64();
          const std::uint64_t stack_size = in.u64();
          if (stack_size > 0) {
            const auto stack = in.bytes(stack_size);
            const std::uint64_t valid = in.u64();  // dyn_size: bytes actually copied
            sample.user_stack = stack.first(std::min<std::uint64_t>(valid, stack.size()));
          }
          ++samples_;
          Pending& event = pending_.emplace_back();
          event.time = sample.time_ns;
          event.order = 1;
          event.stack.assign(sample.user_stack.begin(), sample.user_stack.end());
          sample.user_stack = {};
          event.sample = std::move(sample);
          break;
        }
        case PERF_RECORD_MMAP2: {
          Mapping mapping{};
          mapping.pid = in.u32();
          mapping.tid = in.u32();
          mapping.start = in.u64();
          mapping.length = in.u64();
          mapping.file_offset = in.u64();
          mapping.major = in.u32();
          mapping.minor = in.u32();
          mapping.inode = in.u64();
          in.u64();  // inode generation
          mapping.prot = in.u32();
          mapping.flags = in.u32();
          mapping.path = in.c_string(in.size() - in.position() - kSampleIdBytes);
          mapping.time_ns = trailer_time(record, record_header.size);
          pending_.push_back({mapping.time_ns, 0, std::nullopt, {}, std::move(mapping), std::nullopt});
          break;
        }
        case PERF_RECORD_COMM: {
          TaskEvent event{};
          event.kind = (record_header.misc & PERF_RECORD_MISC_COMM_EXEC) ? TaskEvent::Kind::Exec : TaskEvent::Kind::Comm;
          event.pid = in.u32();
          event.tid = in.u32();
          event.comm = in.c_string(in.size() - in.position() - kSampleIdBytes);
          event.time_ns = trailer_time(record, record_header.size);
          pending_.push_back({event.time_ns, 0, std::nullopt, {}, std::nullopt, std::move(event)});
          break;
        }
        case PERF_RECORD_FORK:
        case PERF_RECORD_EXIT: {
          TaskEvent event{};
          event.kind = record_header.type == PERF_RECORD_FORK ? TaskEvent::Kind::Fork : TaskEvent::Kind::Exit;
          event.pid = in.u32();
          event.parent_pid = in.u32();
          event.tid = in.u32();
          event.parent_tid = in.u32();
          event.time_ns = in.u64();
          pending_.push_back({event.time_ns, 0, std::nullopt, {}, std::nullopt, std::move(event)});
          break;
        }
        case PERF_RECORD_LOST:
          in.u64();  // id
          lost_ += in.u64();
          break;
        case PERF_RECORD_THROTTLE:
          ++throttled_;
          break;
        default:
          break;
      }
    } catch (const std::out_of_range&) {
      // A record shorter than its type says: skip it, keep the stream.
    }
    tail += record_header.size;
  }
  __atomic_store_n(&header->data_tail, tail, __ATOMIC_RELEASE);
}

}  // namespace jitprof::sampler
