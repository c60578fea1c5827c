// Symbolization with DWARF: function names, source lines and inlined frames of
// a library built with debug information (tests/programs/native_hot.c); and
// ElfImage's dynamic-linking tables (tests/programs/elf_tables.c, libc),
// checked against the dynamic linker and binutils.
#include <dlfcn.h>
#include <elf.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "symbols/elf_image.h"
#include "symbols/symbols.h"

namespace {

using jitprof::symbols::AddressSpace;
using jitprof::symbols::ElfImage;
using jitprof::symbols::kernel_symbols;
using jitprof::symbols::Mapping;

// The line of native_hot.c that holds `marker`.
std::int64_t line_of(const std::string& marker) {
  std::ifstream in(std::string(JITPROF_SOURCE_DIR) + "/tests/programs/native_hot.c");
  std::string line;
  for (std::int64_t number = 1; std::getline(in, line); ++number)
    if (line.find(marker) != std::string::npos) return number;
  return 0;
}

// This process's mappings of `path`, as perf's mmap records would give them.
AddressSpace space_of(const std::string& path) {
  AddressSpace space;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (!line.ends_with(path)) continue;
    std::istringstream fields(line);
    std::string range, permissions, offset;
    fields >> range >> permissions >> offset;
    const std::uint64_t start = std::stoull(range.substr(0, range.find('-')), nullptr, 16);
    const std::uint64_t end = std::stoull(range.substr(range.find('-') + 1), nullptr, 16);
    space.add(Mapping{start, end - start, std::stoull(offset, nullptr, 16), path});
  }
  return space;
}

std::string describe(const jitprof::symbols::Symbol& symbol) {
  std::string text = symbol.name;
  for (const auto& frame : symbol.source)
    text += " > " + frame.function + "@" + frame.file.substr(frame.file.rfind('/') + 1) + ":" + std::to_string(frame.line);
  return text;
}

TEST(Symbolize, NamesInlinedFunctionsWithTheirSourceLines) {
  void* library = dlopen(NATIVE_HOT_LIBRARY, RTLD_NOW);
  ASSERT_NE(library, nullptr) << dlerror();
  const auto spin = reinterpret_cast<std::uint64_t>(dlsym(library, "spin"));
  ASSERT_NE(spin, 0u);
  const AddressSpace space = space_of(NATIVE_HOT_LIBRARY);

  // Every instruction byte of spin's first 64 bytes, as the sampler might see them.
  std::set<std::string> seen;
  for (std::uint64_t address = spin; address < spin + 64; ++address) {
    const auto symbol = space.symbolize(address);
    ASSERT_TRUE(symbol.has_value());
    EXPECT_EQ(symbol->path, NATIVE_HOT_LIBRARY);
    EXPECT_EQ(symbol->name, "spin");
    seen.insert(describe(*symbol));
  }
  const std::string spin_line = std::to_string(line_of("spin: calls mix"));
  const std::string mix_line = std::to_string(line_of("mix: hot line"));
  // The inner loop is mix's code, inlined at spin's call site.
  EXPECT_TRUE(seen.contains("spin > spin@native_hot.c:" + spin_line + " > mix@native_hot.c:" + mix_line))
      << ::testing::PrintToString(seen);
  // The outer loop is spin's own.
  EXPECT_TRUE(seen.contains("spin > spin@native_hot.c:" + spin_line)) << ::testing::PrintToString(seen);
}

TEST(Symbolize, StrippedLibrariesHaveNamesButNoSourceLines) {
  void* library = dlopen(NATIVE_HOT_STRIPPED, RTLD_NOW);
  ASSERT_NE(library, nullptr) << dlerror();
  const auto spin = reinterpret_cast<std::uint64_t>(dlsym(library, "spin"));
  const AddressSpace space = space_of(NATIVE_HOT_STRIPPED);
  for (std::uint64_t address = spin; address < spin + 64; ++address) {
    const auto symbol = space.symbolize(address);
    ASSERT_TRUE(symbol.has_value());
    EXPECT_EQ(symbol->name, "spin");
    EXPECT_EQ(symbol->offset, address - spin);
    EXPECT_TRUE(symbol->source.empty()) << describe(*symbol);
  }
}

TEST(Symbolize, ReturnAddressesTakeTheirCallsLine) {
  // A return address is the instruction after the call: its line is the one
  // of the byte before it. Find a line boundary inside spin and check that.
  void* library = dlopen(NATIVE_HOT_LIBRARY, RTLD_NOW);
  ASSERT_NE(library, nullptr) << dlerror();
  const auto spin = reinterpret_cast<std::uint64_t>(dlsym(library, "spin"));
  const AddressSpace space = space_of(NATIVE_HOT_LIBRARY);
  std::size_t boundaries = 0;
  for (std::uint64_t address = spin + 1; address < spin + 64; ++address) {
    const std::string here = describe(*space.symbolize(address));
    const std::string before = describe(*space.symbolize(address - 1));
    if (here == before) continue;
    ++boundaries;
    EXPECT_EQ(describe(*space.symbolize(address, true)), before);
  }
  EXPECT_GE(boundaries, 2u);
}

std::string shell_output(const std::string& command) {
  std::string output;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[4096];
    for (std::size_t read; (read = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, read);
    ::pclose(pipe);
  }
  return output;
}

// The link-time address of a function the dynamic linker found at `address`.
std::uint64_t link_time_address(const ElfImage& elf, const void* address) {
  Dl_info info{};
  EXPECT_NE(dladdr(address, &info), 0);
  // dli_fbase is where the file's start (offset 0) is mapped.
  return reinterpret_cast<std::uint64_t>(address) - reinterpret_cast<std::uint64_t>(info.dli_fbase) +
         elf.vaddr_of_offset(0).value_or(0);
}

TEST(ElfImage, FindsExportedFunctionsByName) {
  void* library = dlopen(ELF_TABLES_LIBRARY, RTLD_NOW);
  ASSERT_NE(library, nullptr) << dlerror();
  const auto elf = ElfImage::open(ELF_TABLES_LIBRARY);
  ASSERT_NE(elf, nullptr);
  EXPECT_EQ(elf->machine(), EM_X86_64);
  const auto exported = elf->exported_function("elf_tables_exported");
  ASSERT_TRUE(exported.has_value());
  EXPECT_EQ(*exported, link_time_address(*elf, dlsym(library, "elf_tables_exported")));
  EXPECT_FALSE(elf->exported_function("puts").has_value()) << "imported, not defined here";
  EXPECT_FALSE(elf->exported_function("elf_tables_counter").has_value()) << "a variable, not a function";
  EXPECT_FALSE(elf->exported_function("no_such_function").has_value());

  void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(libc, nullptr) << dlerror();
  void* getpid = dlsym(libc, "getpid");
  Dl_info info{};
  ASSERT_NE(dladdr(getpid, &info), 0);
  const auto libc_image = ElfImage::open(info.dli_fname);
  ASSERT_NE(libc_image, nullptr) << info.dli_fname;
  EXPECT_EQ(libc_image->exported_function("getpid"), link_time_address(*libc_image, getpid));
}

TEST(ElfImage, ListsRelocationsWithTheirSymbolNames) {
  const auto elf = ElfImage::open(ELF_TABLES_LIBRARY);
  ASSERT_NE(elf, nullptr);
  auto find = [&](std::uint32_t type, const std::string& symbol) -> std::optional<std::uint64_t> {
    for (const auto& relocation : elf->relocations())
      if (relocation.type == type && relocation.symbol == symbol) return relocation.offset;
    return std::nullopt;
  };
  const auto dtpmod = find(R_X86_64_DTPMOD64, "elf_tables_counter");
  ASSERT_TRUE(dtpmod.has_value());
  EXPECT_TRUE(find(R_X86_64_JUMP_SLOT, "puts").has_value());
  // readelf -rW: "Offset Info Type Symbol's Value Symbol's Name + Addend".
  const std::string readelf =
      shell_output(std::string("readelf -rW ") + ELF_TABLES_LIBRARY + " | grep R_X86_64_DTPMOD64");
  ASSERT_FALSE(readelf.empty());
  EXPECT_EQ(*dtpmod, std::stoull(readelf, nullptr, 16)) << readelf;

  const auto tls = elf->program_header(PT_TLS);
  ASSERT_TRUE(tls.has_value());
  EXPECT_EQ(tls->memsz, sizeof(int));
}

TEST(ElfImage, FindsPltStubsByImportedFunction) {
  const auto elf = ElfImage::open(ELF_TABLES_LIBRARY);
  ASSERT_NE(elf, nullptr);
  const auto stub = elf->plt_stub("puts");
  ASSERT_TRUE(stub.has_value());
  EXPECT_EQ(elf->plt_function(*stub), "puts");
  EXPECT_FALSE(elf->plt_function(*stub + 1).has_value());
  EXPECT_FALSE(elf->plt_stub("elf_tables_exported").has_value()) << "called directly, if at all";
  // objdump -d labels each stub "<puts@plt>:".
  const std::string objdump = shell_output(std::string("objdump -d ") + ELF_TABLES_LIBRARY + " | grep '<puts@plt>:'");
  ASSERT_FALSE(objdump.empty());
  EXPECT_EQ(*stub, std::stoull(objdump, nullptr, 16)) << objdump;
  EXPECT_TRUE(elf->is_executable(*stub));
  EXPECT_EQ(elf->bytes_at(*stub, 16).size(), 16u);
}

TEST(ElfImage, OpenSaysWhyAFileHasNoImage) {
  int error = -1;
  EXPECT_EQ(ElfImage::open("/nonexistent/libnothing.so", &error), nullptr);
  EXPECT_EQ(error, ENOENT);
  error = -1;
  EXPECT_EQ(ElfImage::open(std::string(JITPROF_SOURCE_DIR) + "/tests/symbols_test.cpp", &error), nullptr);
  EXPECT_EQ(error, 0) << "read, but not an ELF file";
}

TEST(KernelSymbols, NamesEachAddressByTheNearestFunctionAtOrBelowIt) {
  const std::string path = ::testing::TempDir() + "/kallsyms";
  std::ofstream(path) << "ffffffff81000000 T _stext\n"
                         "ffffffff81000100 D some_data\n"          // not a function: skipped
                         "ffffffff81000200 t do_syscall_64\n"
                         "ffffffff81000200 T alias_b\n"            // two names at one address: the greater
                         "0000000000000000 T hidden_by_kptr_restrict\n"
                         "ffffffffc0000000 t ext4_read\t[ext4]\n"  // a module's: its name without the module
                         "ffffffff81000050 W weak_one\n";          // out of order, as modules' are
  const auto named = kernel_symbols({0xffffffff81000010, 0xffffffff81000150, 0xffffffff81000208, 0xffffffff81000204,
                                     0xffffffffc0000004, 0xffffffff80ffffff, 0xffffffff81000010},
                                    path);
  std::map<std::uint64_t, std::string> names;
  for (const auto& [address, symbol] : named) {
    EXPECT_EQ(symbol.path, "[kernel.kallsyms]");
    names[address] = symbol.name + "+" + std::to_string(symbol.offset);
  }
  EXPECT_EQ(names, (std::map<std::uint64_t, std::string>{{0xffffffff81000010, "_stext+16"},
                                                         {0xffffffff81000150, "weak_one+256"},
                                                         {0xffffffff81000204, "do_syscall_64+4"},
                                                         {0xffffffff81000208, "do_syscall_64+8"},
                                                         {0xffffffffc0000004, "ext4_read+4"}}))
      << "below the first function: no name";
  EXPECT_TRUE(kernel_symbols({0xffffffff81000010}, ::testing::TempDir() + "/no-such-kallsyms").empty());
}

}  // namespace
