// What the BPF program (shadow_stack.bpf.c) and the sampler exchange: the
// per-process configuration in the `configs` map and the records in the
// `records` ring buffer. C, for both compilers; little-endian x86-64.
#pragma once

#ifdef __bpf__
#include <linux/types.h>
typedef __u8 jitprof_u8;
typedef __u16 jitprof_u16;
typedef __u32 jitprof_u32;
typedef __u64 jitprof_u64;
#else
#include <stdint.h>
typedef uint8_t jitprof_u8;
typedef uint16_t jitprof_u16;
typedef uint32_t jitprof_u32;
typedef uint64_t jitprof_u64;
#endif

#define JITPROF_SHADOW_MAX_DEPTH 256
#define JITPROF_SHADOW_MAX_PROCESSES 1024
#define JITPROF_SHADOW_RING_BYTES (4 * 1024 * 1024)
#define JITPROF_SHADOW_READY 42
#define JITPROF_SHADOW_KIND_JITTED 3

// jitprof_shadow_config.flags
#define JITPROF_SHADOW_CHECK_IDENT 1u

// Record status, numbered as sampler::PythonStackStatus.
#define JITPROF_SHADOW_COMPLETE 0
#define JITPROF_SHADOW_TRUNCATED 1
#define JITPROF_SHADOW_NOT_READY 2
#define JITPROF_SHADOW_NO_THREAD_BLOCK 3
#define JITPROF_SHADOW_UNREADABLE 4

// Per watched tgid.
struct jitprof_shadow_config {
  jitprof_u64 dtpmod_slot_address;  // the word holding the library's TLS module id
  jitprof_u32 ready_offset, ident_offset, stack_offset;  // in the thread's block
  jitprof_u32 flags;
};

// 32 bytes, then `depth` entries.
struct jitprof_shadow_header {
  jitprof_u64 time;  // bpf_ktime_get_ns: CLOCK_MONOTONIC
  jitprof_u32 pid, tid;
  jitprof_u64 ip;  // user IP of the interrupted context
  jitprof_u16 depth;
  jitprof_u8 status;
  jitprof_u8 reserved[5];
};

struct jitprof_shadow_entry {
  jitprof_u64 kind, value, return_address;  // return_address: the word at value - 8, for kind 3 only
};

struct jitprof_shadow_record {
  struct jitprof_shadow_header header;
  struct jitprof_shadow_entry entries[JITPROF_SHADOW_MAX_DEPTH];  // innermost first
};
