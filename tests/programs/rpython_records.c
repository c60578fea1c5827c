/* Shaped like RPython's generated C: static traceback records {file,
 * funcname, line} whose address each function stores when an error passes
 * through it (PYPY_DEBUG_RECORD_TRACEBACK), in code built without symbols.
 * The test finds the functions through `rpython_records_functions`. */
struct traceback_record {
  const char *file;
  const char *funcname;
  int line;
};

const struct traceback_record *rpython_records_tracebacks[128];
int rpython_records_count;

#define RECORD_TRACEBACK(loc) (rpython_records_tracebacks[rpython_records_count++ & 127] = &(loc))
#define HIDDEN __attribute__((visibility("hidden"), noinline))

static struct traceback_record loc_gc = {"rpython_memory_gc_incminimark.c", "IncrementalMiniMarkGC_minor_collection", 101};
static struct traceback_record loc_optimizer = {"rpython_jit_metainterp_optimizeopt_3.c", "OptRewrite_optimize_GUARD_VALUE", 202};
static struct traceback_record loc_backend = {"rpython_jit_backend_x86_1.c", "Assembler386_assemble_loop", 303};
static struct traceback_record loc_metainterp = {"rpython_jit_metainterp_5.c", "MetaInterp_handle_guard_failure", 404};
static struct traceback_record loc_codewriter = {"rpython_jit_codewriter_1.c", "CodeWriter_transform_graph", 505};
static struct traceback_record loc_interpreter = {"pypy_interpreter_pyopcode.c", "PyFrame_dispatch_bytecode", 606};
static struct traceback_record loc_runtime = {"rpython_rlib_rbigint.c", "rbigint_mul", 707};
static struct traceback_record loc_runtime_2 = {"rpython_rlib_rbigint.c", "rbigint_add", 708};
static struct traceback_record loc_majority = {"pypy_objspace_std_2.c", "W_ListObject_append", 808};
static struct traceback_record loc_inlined = {"rpython_rlib_rstring.c", "StringBuilder_append", 909};
static struct traceback_record loc_exported = {"pypy_module_cpyext_1.c", "cpyext_PyList_Append", 1001};

HIDDEN long gc_function(long x) { if (x < 0) { RECORD_TRACEBACK(loc_gc); return -1; } return x * 2; }
HIDDEN long optimizer_function(long x) { if (x < 0) { RECORD_TRACEBACK(loc_optimizer); return -1; } return x * 3; }
HIDDEN long backend_function(long x) { if (x < 0) { RECORD_TRACEBACK(loc_backend); return -1; } return x * 5; }
HIDDEN long metainterp_function(long x) { if (x < 0) { RECORD_TRACEBACK(loc_metainterp); return -1; } return x * 7; }
HIDDEN long codewriter_function(long x) { if (x < 0) { RECORD_TRACEBACK(loc_codewriter); return -1; } return x * 11; }
HIDDEN long interpreter_function(long x) { if (x < 0) { RECORD_TRACEBACK(loc_interpreter); return -1; } return x * 13; }
HIDDEN long runtime_function(long x) { if (x < 0) { RECORD_TRACEBACK(loc_runtime); return -1; } return x * 17; }
/* No record, between two functions of one C file: that file's. */
HIDDEN long runtime_helper(long x) { return x * 31 + rpython_records_count; }
HIDDEN long runtime_function_2(long x) { if (x < 0) { RECORD_TRACEBACK(loc_runtime_2); return -1; } return x * 37; }

/* Its own record twice, an inlined callee's once: its own name wins. */
HIDDEN long majority_function(long x) {
  if (x < 0) { RECORD_TRACEBACK(loc_majority); return -1; }
  if (x > 1000) { RECORD_TRACEBACK(loc_inlined); return -2; }
  if (x == 7) { RECORD_TRACEBACK(loc_majority); return -3; }
  return x * 19;
}

/* No record: no name. */
HIDDEN long unrecorded_function(long x) { return x * 23 + rpython_records_count; }

/* Exported: its own name, whatever its records say (their component stays). */
__attribute__((visibility("default"), noinline)) long rpython_records_exported(long x) {
  if (x < 0) { RECORD_TRACEBACK(loc_exported); return -1; }
  return x * 29;
}

__attribute__((visibility("default"))) long (*const rpython_records_functions[])(long) = {
    gc_function,         optimizer_function, backend_function, metainterp_function, codewriter_function,
    interpreter_function, runtime_function,  majority_function, unrecorded_function, rpython_records_exported,
    runtime_helper,       runtime_function_2,
};
