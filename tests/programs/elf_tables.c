// A shared library with one of each thing ElfImage's dynamic-linking tables
// hold: an exported function, a thread-local variable (a DTPMOD64 relocation,
// as libpypy's TLS block has) and an imported function called through the PLT.
#include <stdio.h>

__thread int elf_tables_counter;

int elf_tables_exported(int x) { return x + 1; }

int elf_tables_count(void) {
  puts("counted");
  return ++elf_tables_counter;
}
