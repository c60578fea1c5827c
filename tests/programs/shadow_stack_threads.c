// Threads with known shadow stacks in a PyPy-shaped TLS block
// (shadow_stack_tls.c), spinning, for the sampler's BPF program to read.
// Prints the layout a sampler watches it with, then one line per thread with
// the record the program must read from it:
//   layout <dtpmod slot address> <ready offset> <ident offset> <stack offset>
//   stack <name> <tid> <status> <depth> <kind>:<value>:<return address>...
//   ready
// SIGUSR1 starts one more thread ("late"); SIGUSR2 forks a child process
// whose only thread ("child") spins with the stack the main thread built
// just before the fork.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shadow_stack_tls.h"

enum { kMaxDepth = 256 };

// The library's TLS module id, where the program reads it, on a page of its
// own that is never written again (as libpypy's GOT slot, in RELRO): after a
// fork, no copy-on-write fault of the page can hide the word from the reader.
static volatile uint64_t tls_module_page[512] __attribute__((aligned(4096)));
#define tls_module_id tls_module_page[0]

struct spec {
  const char* name;
  unsigned salt;  // makes the thread's values its own
  unsigned depth;
  uint64_t ready;
  int foreign_ident;  // the block names another thread
  int broken;         // the last entry's next points at unmapped memory
  const char* status;
};

static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t set_up;
static volatile uint64_t sink;

struct built {
  struct shadow_node* nodes;
  uint64_t* words;  // [return address, frame word] per JIT entry
};

// Builds the list `spec` describes in this thread's block.
static struct built build(const struct spec* spec) {
  const unsigned salt = spec->salt;
  struct built built = {calloc(spec->depth + 1, sizeof(struct shadow_node)), calloc(2 * (spec->depth + 1), 8)};
  struct shadow_node* nodes = built.nodes;
  for (unsigned i = 0; i < spec->depth; ++i) {
    nodes[i].next = i + 1 < spec->depth ? &nodes[i + 1] : spec->broken ? (struct shadow_node*)16 : NULL;
    nodes[i].kind = i % 3 == 1 ? 3 : 1;
    if (nodes[i].kind == 3) {
      built.words[2 * i] = 0x7f0000000000ull + salt * 0x10000ull + i * 0x10ull;
      nodes[i].value = (uint64_t)(uintptr_t)&built.words[2 * i + 1];
    } else {
      nodes[i].value = salt * 100000ull + 4ull * (i + 1);
    }
  }
  struct shadow_block* block = shadow_stack_tls_this_thread();
  block->ident = spec->foreign_ident ? 0x1234000 : (uint64_t)pthread_self();
  block->stack = spec->depth ? &nodes[0] : NULL;
  block->ready = spec->ready;
  return built;
}

// Prints the record expected of this thread, whose block is `built` as `spec` says.
static void describe(const struct spec* spec, struct built built) {
  pthread_mutex_lock(&print_lock);
  const int reads_entries = spec->ready == 42 && !spec->foreign_ident;
  const unsigned shown = !reads_entries ? 0 : spec->depth < kMaxDepth ? spec->depth : kMaxDepth;
  printf("stack %s %ld %s %u", spec->name, (long)gettid(), spec->status, shown);
  for (unsigned i = 0; i < shown; ++i) {
    const struct shadow_node* node = &built.nodes[i];
    printf(" %lu:%#lx:%#lx", (unsigned long)node->kind, (unsigned long)node->value,
           node->kind == 3 ? (unsigned long)built.words[2 * i] : 0ul);
  }
  printf("\n");
  fflush(stdout);
  pthread_mutex_unlock(&print_lock);
}

// In user code mostly, in the kernel (getppid) now and then.
static void spin(void) {
  for (;;) {
    for (int i = 0; i < 200000; ++i) sink = sink + 1;
    syscall(SYS_getppid);
  }
}

static void* run(void* argument) {
  const struct spec* spec = argument;
  describe(spec, build(spec));
  pthread_barrier_wait(&set_up);
  spin();
  return NULL;
}

static void* run_late(void* argument) {
  describe(argument, build(argument));
  spin();
  return NULL;
}

int main(void) {
  // The id of the library's TLS module, as the dynamic linker assigned it.
  void* library = dlopen("libshadow_stack_tls.so", RTLD_NOW | RTLD_NOLOAD);
  size_t module = 0;
  if (!library || dlinfo(library, RTLD_DI_TLS_MODID, &module) != 0 || module == 0) {
    fprintf(stderr, "no TLS module id: %s\n", dlerror());
    return 1;
  }
  tls_module_id = module;
  printf("layout %#lx %zu %zu %zu\n", (unsigned long)(uintptr_t)&tls_module_id, offsetof(struct shadow_block, ready),
         offsetof(struct shadow_block, ident), offsetof(struct shadow_block, stack));

  // Only the main thread takes the signals.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGUSR1);
  sigaddset(&signals, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &signals, NULL);

  static const struct spec specs[] = {
      {"five", 1, 5, 42, 0, 0, "Complete"},         {"deep", 2, 300, 42, 0, 0, "Truncated"},
      {"empty", 3, 0, 42, 0, 0, "Complete"},        {"notready", 4, 4, 7, 0, 0, "NotReady"},
      {"foreign", 5, 4, 42, 1, 0, "NoThreadBlock"}, {"broken", 6, 3, 42, 0, 1, "Unreadable"},
  };
  const unsigned count = sizeof specs / sizeof specs[0];
  pthread_barrier_init(&set_up, NULL, count + 1);
  for (unsigned i = 0; i < count; ++i) {
    pthread_t thread;
    pthread_create(&thread, NULL, run, (void*)&specs[i]);
  }
  pthread_barrier_wait(&set_up);
  printf("ready\n");
  fflush(stdout);

  static const struct spec late = {"late", 7, 6, 42, 0, 0, "Complete"};
  static const struct spec child = {"child", 8, 2, 42, 0, 0, "Complete"};
  for (;;) {
    int signal = 0;
    sigwait(&signals, &signal);
    if (signal == SIGUSR1) {
      pthread_t thread;
      pthread_create(&thread, NULL, run_late, (void*)&late);
    } else if (signal == SIGUSR2) {
      // The child's only thread has this thread's block, ready from its first instant.
      const struct built built = build(&child);
      fflush(stdout);
      if (fork() == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        describe(&child, built);
        spin();
      }
    }
  }
}
