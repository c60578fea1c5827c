#include "process_memory.h"

#include <sys/uio.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

namespace jitprof::pypy {

std::vector<MemoryRegion> read_memory_regions(pid_t pid) {
  std::vector<MemoryRegion> regions;
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream fields(line);
    MemoryRegion region;
    std::string range, device;
    fields >> range >> region.permissions >> std::hex >> region.file_offset >> device >> std::dec >> region.inode;
    const std::size_t dash = range.find('-');
    if (!fields || dash == std::string::npos) continue;
    region.start = std::stoull(range.substr(0, dash), nullptr, 16);
    region.end = std::stoull(range.substr(dash + 1), nullptr, 16);
    std::getline(fields >> std::ws, region.path);
    regions.push_back(std::move(region));
  }
  return regions;
}

std::size_t read_memory(pid_t pid, std::uint64_t address, void* out, std::size_t size) {
  const iovec local{out, size};
  const iovec remote{reinterpret_cast<void*>(address), size};
  const ssize_t copied = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (copied >= 0) return static_cast<std::size_t>(copied);
  if (errno == EFAULT) return 0;
  throw std::system_error(errno, std::generic_category(),
                          "cannot read the memory of process " + std::to_string(pid) +
                              (errno == EPERM ? " (run as root or with CAP_SYS_PTRACE)" : ""));
}

std::vector<pid_t> thread_ids(pid_t pid) {
  std::vector<pid_t> tids;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", error)) {
    const std::string name = entry.path().filename().string();
    if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos)
      tids.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return tids;
}

}  // namespace jitprof::pypy
