// The thread-local block of shadow_stack_tls.c (see there).
#pragma once

#include <stdint.h>

struct shadow_node {
  struct shadow_node* next;
  uint64_t value;
  uint64_t kind;  // 1: code id, 3: JIT frame (value - 8 holds a return address)
};

struct shadow_block {
  uint64_t ready;  // 42 once set up
  uint64_t other[6];
  uint64_t ident;  // pthread_self(), the thread's fs_base
  uint64_t context;
  struct shadow_node* stack;
};

extern __thread struct shadow_block shadow_stack_tls_block;

// This thread's block.
struct shadow_block* shadow_stack_tls_this_thread(void);
