#include "crash_watcher.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

#include <cerrno>
#include <future>
#include <cstring>

namespace jitprof::record {
namespace {

constexpr std::size_t kStackBytes = 16384;

bool is_fault_signal(int signal) {
  return signal == SIGSEGV || signal == SIGBUS || signal == SIGILL || signal == SIGFPE || signal == SIGABRT ||
         signal == SIGTRAP || signal == SIGSYS;
}

bool is_stopping_signal(int signal) {
  return signal == SIGSTOP || signal == SIGTSTP || signal == SIGTTIN || signal == SIGTTOU;
}

}  // namespace

CrashWatcher::CrashWatcher(pid_t pid) : pid_(pid) {
  // All ptrace requests must come from the thread that attached, so the
  // watcher thread seizes the target itself; the constructor waits for that.
  auto attached = seized_.get_future();
  thread_ = std::thread([this] {
    // No PTRACE_O_EXITKILL: if jitprof dies, the kernel detaches and the target runs on.
    if (::ptrace(PTRACE_SEIZE, pid_, nullptr, reinterpret_cast<void*>(long{PTRACE_O_TRACECLONE})) == 0)
      tracing_ = true;
    else
      trace_error_ = std::strerror(errno);
    seized_.set_value();
    run();
  });
  attached.wait();
}

CrashWatcher::~CrashWatcher() { wait(); }

void CrashWatcher::wait() {
  if (thread_.joinable()) thread_.join();
}

std::optional<Fault> CrashWatcher::fatal_fault() const {
  if (!finished_ || !WIFSIGNALED(status_) || !last_fault_ || last_fault_->signal != WTERMSIG(status_))
    return std::nullopt;
  return last_fault_;
}

void CrashWatcher::record_fault(pid_t tid, int signal) {
  Fault fault;
  fault.signal = signal;
  fault.tid = tid;
  siginfo_t info{};
  if (::ptrace(PTRACE_GETSIGINFO, tid, nullptr, &info) == 0) {
    fault.code = info.si_code;
    if (signal != SIGABRT && signal != SIGTRAP) fault.fault_address = reinterpret_cast<std::uint64_t>(info.si_addr);
  }
  user_regs_struct regs{};
  if (::ptrace(PTRACE_GETREGS, tid, nullptr, &regs) != 0) return;
  fault.registers = arch::from_ptrace(regs);
  fault.stack.resize(kStackBytes);
  // The stack may end before kStackBytes: shrink until the read succeeds.
  for (std::size_t size = kStackBytes; size >= 512; size /= 2) {
    iovec local{fault.stack.data(), size};
    iovec remote{reinterpret_cast<void*>(regs.rsp), size};
    const ssize_t got = ::process_vm_readv(pid_, &local, 1, &remote, 1, 0);
    if (got > 0) {
      fault.stack.resize(static_cast<std::size_t>(got));
      break;
    }
    if (size == 512) fault.stack.clear();
  }
  last_fault_ = std::move(fault);
}

void CrashWatcher::run() {
  while (true) {
    int raw = 0;
    rusage usage{};
    const pid_t who = ::wait4(tracing_ ? -1 : pid_, &raw, tracing_ ? __WALL : 0, &usage);
    if (who < 0) {
      if (errno == EINTR) continue;
      break;  // ECHILD: nothing left to wait for
    }
    if (WIFEXITED(raw) || WIFSIGNALED(raw)) {
      if (who == pid_) {
        status_ = raw;
        usage_ = usage;
        break;
      }
      continue;  // one of the target's threads ended
    }
    if (!WIFSTOPPED(raw)) continue;
    const int signal = WSTOPSIG(raw);
    const int event = raw >> 16;
    if (event == PTRACE_EVENT_STOP) {
      // A group stop (Ctrl-Z, SIGSTOP) must stay a stop; other event stops just go on.
      ::ptrace(is_stopping_signal(signal) ? PTRACE_LISTEN : PTRACE_CONT, who, nullptr, nullptr);
      continue;
    }
    if (event != 0) {  // clone and the like
      ::ptrace(PTRACE_CONT, who, nullptr, nullptr);
      continue;
    }
    if (is_fault_signal(signal)) record_fault(who, signal);
    ::ptrace(PTRACE_CONT, who, nullptr, reinterpret_cast<void*>(static_cast<long>(signal)));
  }
  finished_ = true;
}

}  // namespace jitprof::record
