#include "ring.h"

#include <fmt/format.h>
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sampler/sampler.h"

namespace jitprof::sampler {

Ring::Ring(int fd, int cpu, std::size_t pages) : fd_(fd), cpu_(cpu) {
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  // One page of control (perf_event_mmap_page) before the data pages.
  mapped_bytes_ = (1 + pages) * page;
  data_bytes_ = pages * page;
  base_ = ::mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (base_ == MAP_FAILED) {
    const int error = errno;
    ::close(fd_);
    throw SamplerError(fmt::format("cannot map the perf ring buffer of CPU {}: {}", cpu_, std::strerror(error)));
  }
}

Ring::~Ring() {
  for (int follower : followers_) ::close(follower);
  ::munmap(base_, mapped_bytes_);
  ::close(fd_);
}

void Ring::follow(int fd) {
  if (::ioctl(fd, PERF_EVENT_IOC_SET_OUTPUT, fd_) != 0) {
    const int error = errno;
    ::close(fd);
    throw SamplerError(fmt::format("cannot share the perf ring of CPU {}: {}", cpu_, std::strerror(error)));
  }
  followers_.push_back(fd);
}

void Ring::read(const std::function<void(std::span<const std::uint8_t>)>& on_record) {
  auto* control = static_cast<perf_event_mmap_page*>(base_);
  const std::uint64_t head = __atomic_load_n(&control->data_head, __ATOMIC_ACQUIRE);
  std::uint64_t tail = control->data_tail;
  const std::uint8_t* data = static_cast<const std::uint8_t*>(base_) + control->data_offset;
  const std::size_t mask = data_bytes_ - 1;
  while (tail < head) {
    const std::size_t offset = tail & mask;
    // The header itself may wrap: copy it byte by byte.
    perf_event_header header;
    for (std::size_t i = 0; i < sizeof header; ++i)
      reinterpret_cast<std::uint8_t*>(&header)[i] = data[(offset + i) & mask];
    if (header.size < sizeof header || tail + header.size > head) break;
    const std::uint8_t* record = data + offset;
    if (offset + header.size > data_bytes_) {
      scratch_.resize(header.size);
      const std::size_t first = data_bytes_ - offset;
      std::memcpy(scratch_.data(), record, first);
      std::memcpy(scratch_.data() + first, data, header.size - first);
      record = scratch_.data();
    }
    on_record({record, header.size});
    tail += header.size;
  }
  __atomic_store_n(&control->data_tail, tail, __ATOMIC_RELEASE);
}

}  // namespace jitprof::sampler
