// One CPU's perf ring buffer, mapped into this process: the kernel writes
// records up to data_head, the reader takes them from data_tail and gives the
// space back by moving data_tail past them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace jitprof::sampler {

class Ring {
 public:
  // Takes `fd`, an event opened on `cpu`, and maps its ring of `pages` data
  // pages (a power of two). Throws SamplerError when the kernel refuses.
  Ring(int fd, int cpu, std::size_t pages);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  int fd() const { return fd_; }
  int cpu() const { return cpu_; }

  // Takes `fd`, another thread's event on this ring's CPU, and has it write
  // into this ring. Throws SamplerError when the kernel refuses.
  void follow(int fd);

  // Hands every complete record to `on_record`, header and body as one span
  // (a record that wraps around the ring's end is copied out first), valid
  // during the call only; then gives their space back to the kernel.
  void read(const std::function<void(std::span<const std::uint8_t>)>& on_record);

 private:
  int fd_;
  int cpu_;
  void* base_;
  std::size_t mapped_bytes_;
  std::size_t data_bytes_;
  std::vector<std::uint8_t> scratch_;  // a record that wrapped around, made contiguous
  std::vector<int> followers_;
};

}  // namespace jitprof::sampler
