// Waits for the target on a thread of its own and, when ptrace is allowed,
// catches the registers and stack of a thread that receives a fault signal
// while they still exist. It never stops the target for anything else: each
// signal is passed straight on.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "arch/x86_64.h"

namespace jitprof::record {

struct Fault {
  int signal = 0;
  int code = 0;                      // siginfo si_code
  std::uint64_t fault_address = 0;   // si_addr, for SIGSEGV/SIGBUS/SIGILL/SIGFPE
  pid_t tid = 0;
  arch::Registers registers{};
  std::vector<std::uint8_t> stack;   // bytes from the stack pointer up
};

class CrashWatcher {
 public:
  // `pid` must be a child of this process that has not exec'ed yet.
  explicit CrashWatcher(pid_t pid);
  ~CrashWatcher();
  CrashWatcher(const CrashWatcher&) = delete;
  CrashWatcher& operator=(const CrashWatcher&) = delete;

  bool tracing() const { return tracing_; }
  // Blocks until the target has ended.
  void wait();
  const std::string& trace_error() const { return trace_error_; }
  bool finished() const { return finished_; }
  // After finished(): the wait status, the target's resource usage, and the
  // last fault seen when the target then died by that same signal.
  int status() const { return status_; }
  const rusage& usage() const { return usage_; }
  std::optional<Fault> fatal_fault() const;

 private:
  void run();
  void record_fault(pid_t tid, int signal);

  const pid_t pid_;
  std::promise<void> seized_;
  std::thread thread_;
  std::atomic<bool> finished_{false};
  bool tracing_ = false;
  std::string trace_error_;
  int status_ = 0;
  rusage usage_{};
  std::optional<Fault> last_fault_;
};

}  // namespace jitprof::record
