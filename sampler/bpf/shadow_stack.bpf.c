// Reads the Python shadow stack of the thread a perf sample interrupted, at
// the sample, and writes it to a ring buffer. Attached to jitprof's own
// cpu-clock events (PERF_EVENT_IOC_SET_BPF), it runs on that thread, in the
// timer interrupt, before the kernel prepares the perf sample: the walk sees
// exactly the stack the sample belongs to. It returns 1 in every case, so the
// ordinary perf sample is always kept.
//
// The shadow stack (PyPy's vmprof stack) is a per-thread linked list of
// {next, value, kind} words whose head sits in a thread-local block of a
// shared library. The block is found through the thread's DTV:
//   fs_base = task->thread.fsbase (glibc's TCB: fs_base + 8 holds the DTV)
//   block   = dtv[modid].pointer = *(dtv + 16 * modid)
// with modid read from the process's DTPMOD64 GOT slot, whose address the
// watching process gives per tgid in `configs`.
//
// Kernel structs are declared with the fields used only; CO-RE relocates them
// against the running kernel's BTF.
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <linux/types.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "shadow_stack_record.h"

struct thread_struct {
  unsigned long fsbase;
} __attribute__((preserve_access_index));

struct task_struct {
  struct thread_struct thread;
} __attribute__((preserve_access_index));

// The kernel's struct pt_regs (the uapi one, from linux/bpf_perf_event.h, names them rip and cs).
struct pt_regs___kernel {
  unsigned long ip;
} __attribute__((preserve_access_index));

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, JITPROF_SHADOW_MAX_PROCESSES);
  __type(key, __u32);  // tgid
  __type(value, struct jitprof_shadow_config);
} configs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, JITPROF_SHADOW_RING_BYTES);
} records SEC(".maps");

// The record being built: too big for the BPF stack.
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct jitprof_shadow_record);
} scratch SEC(".maps");

// Records dropped because the ring buffer was full.
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} dropped SEC(".maps");

// The user IP of the interrupted context, as perf's PERF_SAMPLE_REGS_USER
// takes it (perf_get_regs_user): the interrupt's registers when it came from
// user mode (CS's privilege level 3), otherwise the registers saved at the
// task's last entry into the kernel (task_pt_regs).
static __always_inline __u64 user_ip(struct bpf_perf_event_data* ctx, struct task_struct* task) {
  if ((ctx->regs.cs & 3) == 3) return ctx->regs.rip;
  struct pt_regs___kernel* regs = (struct pt_regs___kernel*)bpf_task_pt_regs(task);
  if (!regs) return 0;
  return BPF_CORE_READ(regs, ip);
}

static __always_inline int read_word(__u64* word, __u64 address) {
  return bpf_probe_read_user(word, sizeof *word, (const void*)address);
}

// Fills `record` after its header; returns the status.
static __always_inline __u8 walk(struct jitprof_shadow_record* record, const struct jitprof_shadow_config* config,
                                 __u64 fsbase) {
  __u64 modid = 0, dtv = 0, block = 0, word = 0;
  if (read_word(&modid, config->dtpmod_slot_address)) return JITPROF_SHADOW_UNREADABLE;
  if (modid == 0) return JITPROF_SHADOW_NOT_READY;  // the library's TLS is not set up yet
  if (read_word(&dtv, fsbase + 8)) return JITPROF_SHADOW_UNREADABLE;
  if (read_word(&block, dtv + 16 * modid)) return JITPROF_SHADOW_UNREADABLE;
  if (block == 0 || block == (__u64)-1) return JITPROF_SHADOW_NOT_READY;  // not allocated in this thread
  if (read_word(&word, block + config->ready_offset)) return JITPROF_SHADOW_UNREADABLE;
  if (word != JITPROF_SHADOW_READY) return JITPROF_SHADOW_NOT_READY;
  if (config->flags & JITPROF_SHADOW_CHECK_IDENT) {
    if (read_word(&word, block + config->ident_offset)) return JITPROF_SHADOW_UNREADABLE;
    if (word != fsbase) return JITPROF_SHADOW_NO_THREAD_BLOCK;
  }
  __u64 node = 0;
  if (read_word(&node, block + config->stack_offset)) return JITPROF_SHADOW_UNREADABLE;
  for (__u32 i = 0; i < JITPROF_SHADOW_MAX_DEPTH; ++i) {
    if (node == 0) return JITPROF_SHADOW_COMPLETE;
    __u64 words[3];  // next, value, kind
    if (bpf_probe_read_user(words, sizeof words, (const void*)node)) return JITPROF_SHADOW_UNREADABLE;
    struct jitprof_shadow_entry* entry = &record->entries[i];
    entry->kind = words[2];
    entry->value = words[1];
    entry->return_address = 0;
    record->header.depth = (__u16)(i + 1);
    if (words[2] == JITPROF_SHADOW_KIND_JITTED &&
        read_word(&entry->return_address, words[1] - 8))
      return JITPROF_SHADOW_UNREADABLE;
    node = words[0];
  }
  return node == 0 ? JITPROF_SHADOW_COMPLETE : JITPROF_SHADOW_TRUNCATED;
}

SEC("perf_event")
int read_shadow_stack(struct bpf_perf_event_data* ctx) {
  const __u64 pid_tgid = bpf_get_current_pid_tgid();
  const __u32 tgid = (__u32)(pid_tgid >> 32);
  const struct jitprof_shadow_config* config = bpf_map_lookup_elem(&configs, &tgid);
  if (!config) return 1;
  const __u32 zero = 0;
  struct jitprof_shadow_record* record = bpf_map_lookup_elem(&scratch, &zero);
  if (!record) return 1;
  struct task_struct* task = bpf_get_current_task_btf();
  record->header.time = bpf_ktime_get_ns();
  record->header.pid = tgid;
  record->header.tid = (__u32)pid_tgid;
  record->header.ip = user_ip(ctx, task);
  record->header.depth = 0;
  record->header.status = walk(record, config, BPF_CORE_READ(task, thread.fsbase));
  __u64 size = sizeof(record->header) + (__u64)record->header.depth * sizeof(struct jitprof_shadow_entry);
  if (size > sizeof(*record)) size = sizeof(*record);  // never: depth <= JITPROF_SHADOW_MAX_DEPTH
  // Like the perf rings' watermark: the reader is woken once a quarter of the
  // ring is used, and otherwise finds the records when it polls anyway.
  const __u64 wakeup = bpf_ringbuf_query(&records, BPF_RB_AVAIL_DATA) >= JITPROF_SHADOW_RING_BYTES / 4
                           ? BPF_RB_FORCE_WAKEUP
                           : BPF_RB_NO_WAKEUP;
  if (bpf_ringbuf_output(&records, record, size, wakeup)) {
    __u64* count = bpf_map_lookup_elem(&dropped, &zero);
    if (count) *count += 1;
  }
  return 1;
}

char LICENSE[] SEC("license") = "GPL";
