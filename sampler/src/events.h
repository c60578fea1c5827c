// Opening the perf events jitprof samples with (one ring per CPU), the
// refusals explained, and what /proc tells of a running process that its
// events never will: the mappings and threads it already has.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "ring.h"
#include "sampler/sampler.h"

namespace jitprof::sampler {

struct Events {
  std::vector<std::unique_ptr<Ring>> rings;  // one per online CPU
  std::vector<pid_t> threads;                // of a running process: those attached to, sorted
  bool kernel_frames = true;                 // false when the kernel allows user space only
};

// Throws SamplerError for settings the events cannot have.
void check_settings(const Settings& settings);

// Called with each event's fd as soon as it is open, before the thread can
// start others that inherit it (to attach a BPF program).
using OnEventOpen = std::function<void(int fd)>;

// Per-CPU events that follow `pid` and every thread and process it starts,
// enabled at its next exec. Throws SamplerError with the cause and the fix
// when the kernel refuses.
Events open_at_exec(pid_t pid, const Settings& settings, const OnEventOpen& on_open = {});

// Events on every thread of the running process `pid`, enabled now; threads
// they start later inherit them. Throws SamplerError as open_at_exec.
Events open_on_threads(pid_t pid, const Settings& settings, const OnEventOpen& on_open = {});

// The executable mappings `pid` has now, as mmap records dated `time`.
std::vector<Mapping> executable_mappings(pid_t pid, std::uint64_t time);

// The names of `pid`'s threads `tids`, as comm records dated `time`.
std::vector<TaskEvent> thread_names(pid_t pid, const std::vector<pid_t>& tids, std::uint64_t time);

// CLOCK_MONOTONIC, the events' clock.
std::uint64_t monotonic_now_ns();

}  // namespace jitprof::sampler
