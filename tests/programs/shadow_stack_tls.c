// A shared library whose thread-local block is shaped like PyPy's
// pypy_threadlocal_s: a `ready` word, other words, the thread's ident and the
// head of a {next, value, kind} list last. Exported and built PIC, it is
// reached with the global-dynamic TLS model: a DTPMOD64 relocation and a slot
// in every thread's DTV, as libpypy's is.
#include "shadow_stack_tls.h"

__attribute__((tls_model("global-dynamic"))) __thread struct shadow_block shadow_stack_tls_block;

struct shadow_block* shadow_stack_tls_this_thread(void) { return &shadow_stack_tls_block; }
