// Reading another process without stopping it: its mappings from
// /proc/PID/maps and its memory through process_vm_readv.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace jitprof::pypy {

struct MemoryRegion {
  std::uint64_t start = 0, end = 0, file_offset = 0, inode = 0;
  std::string permissions;  // "rw-p"
  std::string path;         // empty for anonymous memory, "[heap]", "[stack]", or a file

  bool readable() const { return !permissions.empty() && permissions[0] == 'r'; }
  bool writable() const { return permissions.size() > 1 && permissions[1] == 'w'; }
};

// Empty when the process is gone.
std::vector<MemoryRegion> read_memory_regions(pid_t pid);

// Bytes copied from the target, fewer when the range runs into unmapped
// memory (0 when it starts there). Throws std::system_error when the process
// is gone or may not be read (ptrace access is needed).
std::size_t read_memory(pid_t pid, std::uint64_t address, void* out, std::size_t size);

template <typename T>
std::optional<T> read_value(pid_t pid, std::uint64_t address) {
  T value;
  if (read_memory(pid, address, &value, sizeof value) != sizeof value) return std::nullopt;
  return value;
}

// Kernel ids of the process's threads, from /proc/PID/task.
std::vector<pid_t> thread_ids(pid_t pid);

}  // namespace jitprof::pypy
