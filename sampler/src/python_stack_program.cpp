#include "python_stack_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <vector>

#include "shadow_stack.skel.h"
#include "shadow_stack_record.h"

namespace jitprof::sampler {

static_assert(sizeof(jitprof_shadow_header) == 32 && sizeof(jitprof_shadow_entry) == 24);
static_assert(JITPROF_SHADOW_COMPLETE == int(PythonStackStatus::Complete) &&
              JITPROF_SHADOW_TRUNCATED == int(PythonStackStatus::Truncated) &&
              JITPROF_SHADOW_NOT_READY == int(PythonStackStatus::NotReady) &&
              JITPROF_SHADOW_NO_THREAD_BLOCK == int(PythonStackStatus::NoThreadBlock) &&
              JITPROF_SHADOW_UNREADABLE == int(PythonStackStatus::Unreadable));

namespace {

// libbpf's last warning, for the one-line reason: it prints nothing itself.
std::mutex libbpf_message_mutex;
std::string libbpf_message;

int keep_libbpf_warning(libbpf_print_level level, const char* format, va_list arguments) {
  if (level != LIBBPF_WARN) return 0;
  char line[512];
  std::vsnprintf(line, sizeof line, format, arguments);
  std::string text = line;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  const std::lock_guard lock(libbpf_message_mutex);
  if (!text.empty()) libbpf_message = text;
  return 0;
}

std::string last_libbpf_message() {
  const std::lock_guard lock(libbpf_message_mutex);
  return libbpf_message;
}

std::string load_failure(int error) {
  const std::string cause = std::strerror(error);
  if (error == EPERM || error == EACCES)
    return fmt::format(
        "Python stacks are off: the kernel refused to load the BPF program ({}). Fix: run jitprof as root or with "
        "CAP_BPF and CAP_PERFMON",
        cause);
  const std::string detail = last_libbpf_message();
  return fmt::format(
      "Python stacks are off: loading the BPF program failed ({}{}{}). Fix: a kernel of 5.15 or later with BTF "
      "(CONFIG_DEBUG_INFO_BTF=y) is needed",
      cause, detail.empty() ? "" : ": ", detail);
}

}  // namespace

std::variant<std::unique_ptr<PythonStackProgram>, std::string> PythonStackProgram::load() {
  if (!std::filesystem::exists("/sys/kernel/btf/vmlinux"))
    return std::string(
        "Python stacks are off: the kernel has no BTF (/sys/kernel/btf/vmlinux is missing). Fix: use a kernel built "
        "with CONFIG_DEBUG_INFO_BTF=y");
  libbpf_set_print(keep_libbpf_warning);
  std::unique_ptr<PythonStackProgram> program(new PythonStackProgram);
  program->skeleton_ = shadow_stack__open();
  if (!program->skeleton_) return load_failure(errno);
  if (const int error = shadow_stack__load(program->skeleton_)) return load_failure(-error);
  program->ring_ = ring_buffer__new(bpf_map__fd(program->skeleton_->maps.records), on_ring_record, program.get(), nullptr);
  if (!program->ring_) return load_failure(errno);
  return program;
}

PythonStackProgram::~PythonStackProgram() {
  if (ring_) ring_buffer__free(ring_);
  if (skeleton_) shadow_stack__destroy(skeleton_);
}

std::optional<std::string> PythonStackProgram::attach(int perf_fd) {
  if (::ioctl(perf_fd, PERF_EVENT_IOC_SET_BPF, bpf_program__fd(skeleton_->progs.read_shadow_stack)) == 0)
    return std::nullopt;
  return fmt::format(
      "Python stacks are off: the kernel refused to attach the BPF program to the perf event ({}). Fix: run jitprof "
      "as root or with CAP_BPF and CAP_PERFMON",
      std::strerror(errno));
}

void PythonStackProgram::watch(pid_t pid, const ShadowStackLayout& layout) {
  jitprof_shadow_config config{};
  config.dtpmod_slot_address = layout.dtpmod_slot_address;
  config.ready_offset = layout.ready_offset;
  config.ident_offset = layout.ident_offset;
  config.stack_offset = layout.stack_offset;
  config.flags = layout.check_ident ? JITPROF_SHADOW_CHECK_IDENT : 0;
  const auto key = static_cast<std::uint32_t>(pid);
  if (bpf_map__update_elem(skeleton_->maps.configs, &key, sizeof key, &config, sizeof config, BPF_ANY) != 0)
    throw SamplerError(fmt::format("cannot watch the Python stacks of process {}: {} (at most {} processes)", pid,
                                   std::strerror(errno), JITPROF_SHADOW_MAX_PROCESSES));
}

void PythonStackProgram::forget(pid_t pid) {
  const auto key = static_cast<std::uint32_t>(pid);
  bpf_map__delete_elem(skeleton_->maps.configs, &key, sizeof key, 0);
}

int PythonStackProgram::epoll_fd() const { return ring_buffer__epoll_fd(ring_); }

void PythonStackProgram::drain(const std::function<void(PythonStackRecord)>& on_record) {
  on_record_ = &on_record;
  ring_buffer__consume(ring_);
  on_record_ = nullptr;
}

int PythonStackProgram::on_ring_record(void* context, void* data, std::size_t size) {
  auto* self = static_cast<PythonStackProgram*>(context);
  jitprof_shadow_header header;
  if (size < sizeof header) return 0;
  std::memcpy(&header, data, sizeof header);
  PythonStackRecord record{header.time, header.pid, header.tid, header.ip,
                           PythonStack{static_cast<PythonStackStatus>(header.status), {}}};
  if (header.status > JITPROF_SHADOW_UNREADABLE) record.stack.status = PythonStackStatus::Unreadable;
  const std::size_t depth = std::min<std::size_t>(header.depth, (size - sizeof header) / sizeof(jitprof_shadow_entry));
  record.stack.entries.reserve(depth);
  const auto* entries = static_cast<const std::uint8_t*>(data) + sizeof header;
  for (std::size_t i = 0; i < depth; ++i) {
    jitprof_shadow_entry entry;
    std::memcpy(&entry, entries + i * sizeof entry, sizeof entry);
    record.stack.entries.push_back({static_cast<std::uint8_t>(entry.kind), entry.value, entry.return_address});
  }
  if (self->on_record_) (*self->on_record_)(std::move(record));
  return 0;
}

std::uint64_t PythonStackProgram::dropped() const {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return 0;
  std::vector<std::uint64_t> per_cpu(static_cast<std::size_t>(cpus));
  const std::uint32_t key = 0;
  if (bpf_map__lookup_elem(skeleton_->maps.dropped, &key, sizeof key, per_cpu.data(),
                           per_cpu.size() * sizeof(std::uint64_t), 0) != 0)
    return 0;
  std::uint64_t total = 0;
  for (std::uint64_t count : per_cpu) total += count;
  return total;
}

PythonStackProgram::RunStats PythonStackProgram::run_stats() const {
  bpf_prog_info info{};
  std::uint32_t size = sizeof info;
  if (bpf_obj_get_info_by_fd(bpf_program__fd(skeleton_->progs.read_shadow_stack), &info, &size) != 0) return {};
  return {info.run_cnt, info.run_time_ns};
}

}  // namespace jitprof::sampler
