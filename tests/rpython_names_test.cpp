// Names for a stripped libpypy from RPython's traceback records: on a small
// library shaped like RPython's C (tests/programs/rpython_records.c, exact
// names and components), on this machine's real libpypy (coverage, exported
// functions, the GC), and the on-disk cache of the table.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <unistd.h>

#include "symbols/elf_image.h"
#include "symbols/rpython_names.h"
#include "symbols/symbols.h"

namespace {

namespace fs = std::filesystem;
using jitprof::symbols::AddressSpace;
using jitprof::symbols::Component;
using jitprof::symbols::ElfImage;
using jitprof::symbols::Mapping;
using jitprof::symbols::RpythonNames;

class ScratchDirectory : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("jitprof-rpython-names-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

// The process's default cache (RpythonNames::of and AddressSpace::symbolize
// use it) in the scratch directory, for the fixture's tables.
class RpythonNamesTest : public ScratchDirectory {
 protected:
  void SetUp() override {
    ScratchDirectory::SetUp();
    if (const char* home = std::getenv("XDG_CACHE_HOME")) saved_ = home;
    ::setenv("XDG_CACHE_HOME", (dir_ / "xdg").c_str(), 1);
  }
  void TearDown() override {
    if (saved_) ::setenv("XDG_CACHE_HOME", saved_->c_str(), 1);
    else ::unsetenv("XDG_CACHE_HOME");
    ScratchDirectory::TearDown();
  }
  std::optional<std::string> saved_;
};

std::string shell_output(const std::string& command) {
  std::string output;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[4096];
    for (std::size_t read; (read = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, read);
    ::pclose(pipe);
  }
  return output;
}

// The libpypy pypy3 loads, from ldd.
std::string real_libpypy() {
  const std::string line = shell_output(std::string("ldd '") + JITPROF_PYPY + "' | grep libpypy");
  const std::size_t arrow = line.find("=> ");
  if (arrow == std::string::npos) return {};
  const std::string path = line.substr(arrow + 3, line.find(' ', arrow + 3) - arrow - 3);
  return fs::canonical(path).string();
}

// The whole file at a made-up load address, as one perf mmap record would give it.
constexpr std::uint64_t kLoadAddress = 0x7f0000000000;
AddressSpace space_with(const std::string& path) {
  AddressSpace space;
  space.add(Mapping{kLoadAddress, fs::file_size(path), 0, path});
  return space;
}

TEST(Component, FollowsTheCFileRPythonWroteTheFunctionInto) {
  using jitprof::symbols::component_name;
  using jitprof::symbols::component_of;
  // PyPy 7.3.11's files: rpython_memory_gc.c, rpython_memory_gctransform.c, rpython_memory.c.
  EXPECT_EQ(component_of("rpython_memory_gc.c"), Component::Gc);
  EXPECT_EQ(component_of("rpython_memory_gc_1.c"), Component::Gc);
  EXPECT_EQ(component_of("rpython_memory_gctransform.c"), Component::Gc);
  EXPECT_EQ(component_of("rpython_memory.c"), Component::Gc);
  EXPECT_EQ(component_of("pypy_module_gc.c"), Component::Interpreter);
  EXPECT_EQ(component_of("rpython_jit_metainterp_optimizeopt_3.c"), Component::JitOptimizer);
  EXPECT_EQ(component_of("rpython_jit_backend_x86.c"), Component::JitBackend);
  EXPECT_EQ(component_of("rpython_jit_metainterp_5.c"), Component::JitMetainterp);
  EXPECT_EQ(component_of("rpython_jit_codewriter.c"), Component::JitMetainterp);
  EXPECT_EQ(component_of("pypy_interpreter_pyopcode.c"), Component::Interpreter);
  EXPECT_EQ(component_of("rpython_rlib_rbigint.c"), Component::Runtime);
  EXPECT_EQ(component_of("implement_5.c"), Component::Runtime);
  EXPECT_STREQ(component_name(Component::Gc), "gc");
  EXPECT_STREQ(component_name(Component::JitOptimizer), "jit-optimizer");
  EXPECT_STREQ(component_name(Component::JitBackend), "jit-backend");
  EXPECT_STREQ(component_name(Component::JitMetainterp), "jit-metainterp");
  EXPECT_STREQ(component_name(Component::Interpreter), "interpreter");
  EXPECT_STREQ(component_name(Component::Runtime), "runtime");
}

TEST(IsLibpypy, ByFileNameAlone) {
  using jitprof::symbols::is_libpypy;
  EXPECT_TRUE(is_libpypy("/usr/lib/x86_64-linux-gnu/libpypy3.9-c.so"));
  EXPECT_TRUE(is_libpypy("/opt/pypy/bin/libpypy3.10-c.so"));
  EXPECT_TRUE(is_libpypy("libpypy-c.so"));
  EXPECT_TRUE(is_libpypy("libpypy3-c.so.1.0"));
  EXPECT_FALSE(is_libpypy("/usr/lib/x86_64-linux-gnu/libc.so.6"));
  EXPECT_FALSE(is_libpypy("/usr/bin/pypy3"));
  EXPECT_FALSE(is_libpypy("/usr/lib/pypy3.9/libpypy3.9-c.so.debug.txt"));
  EXPECT_FALSE(is_libpypy("/tmp/libpypy-notes/readme"));
}

TEST_F(RpythonNamesTest, NamesEachFunctionOfAStrippedLibraryByItsRecords) {
  void* library = dlopen(RPYTHON_RECORDS_LIBRARY, RTLD_NOW);
  ASSERT_NE(library, nullptr) << dlerror();
  const auto* functions = static_cast<const std::uint64_t*>(dlsym(library, "rpython_records_functions"));
  ASSERT_NE(functions, nullptr);
  Dl_info info{};
  ASSERT_NE(dladdr(functions, &info), 0);
  const auto base = reinterpret_cast<std::uint64_t>(info.dli_fbase);
  const auto image = ElfImage::open(RPYTHON_RECORDS_LIBRARY);
  ASSERT_NE(image, nullptr);
  ASSERT_TRUE(image->symbol_at(functions[0] - base) == std::nullopt) << "stripped: no symbol for hidden functions";

  struct Expected {
    const char* name;
    const char* component;
  };
  // In the order of rpython_records_functions.
  const Expected expected[] = {
      {"IncrementalMiniMarkGC_minor_collection", "gc"},
      {"OptRewrite_optimize_GUARD_VALUE", "jit-optimizer"},
      {"Assembler386_assemble_loop", "jit-backend"},
      {"MetaInterp_handle_guard_failure", "jit-metainterp"},
      {"CodeWriter_transform_graph", "jit-metainterp"},
      {"PyFrame_dispatch_bytecode", "interpreter"},
      {"rbigint_mul", "runtime"},
      {"W_ListObject_append", "interpreter"},  // its own record twice, an inlined callee's once
      {"", ""},                                // no record, between two C files
      {"cpyext_PyList_Append", "interpreter"},  // exported (AddressSpace names it by its export)
      {"rpython_rlib_rbigint.c@0x", "runtime"},  // no record, between two functions of one C file
      {"rbigint_add", "runtime"},
  };
  const RpythonNames names = RpythonNames::compute(*image);
  const AddressSpace space = space_with(RPYTHON_RECORDS_LIBRARY);
  for (std::size_t i = 0; i < std::size(expected); ++i) {
    const std::uint64_t vaddr = functions[i] - base;
    const auto function = names.function_at(vaddr);
    ASSERT_TRUE(function.has_value()) << i;
    EXPECT_EQ(function->start, vaddr) << i;
    // The library is no libpypy by its file name: AddressSpace names it like any other.
    const auto symbol = space.symbolize(kLoadAddress + vaddr + 1);
    ASSERT_TRUE(symbol.has_value());
    const std::string name(function->name);
    if (std::string_view(expected[i].name).ends_with("@0x")) {
      EXPECT_TRUE(function->by_neighbours);
      EXPECT_EQ(std::stoull(name.substr(name.find('@') + 1), nullptr, 16), vaddr) << name;
      EXPECT_EQ(name.substr(0, name.find('@') + 3), expected[i].name);
    } else {
      EXPECT_EQ(name, expected[i].name) << i;
    }
    EXPECT_EQ(function->component ? component_name(*function->component) : "", std::string(expected[i].component)) << i;
    EXPECT_EQ(symbol->name, i == 9 ? "rpython_records_exported" : "") << i;
  }
}

TEST_F(RpythonNamesTest, LibpypyAddressesTakeExportsInsideThemThenRPythonNames) {
  // The fixture under a libpypy file name: AddressSpace applies libpypy's rule.
  const fs::path copy = dir_ / "libpypy3.9-c.so";
  fs::copy_file(RPYTHON_RECORDS_LIBRARY, copy);
  void* library = dlopen(RPYTHON_RECORDS_LIBRARY, RTLD_NOW);
  ASSERT_NE(library, nullptr) << dlerror();
  const auto* functions = static_cast<const std::uint64_t*>(dlsym(library, "rpython_records_functions"));
  Dl_info info{};
  ASSERT_NE(dladdr(functions, &info), 0);
  const auto base = reinterpret_cast<std::uint64_t>(info.dli_fbase);
  const AddressSpace space = space_with(copy.string());
  const auto gc = space.symbolize(kLoadAddress + functions[0] - base + 2);
  ASSERT_TRUE(gc.has_value());
  EXPECT_EQ(gc->name, "IncrementalMiniMarkGC_minor_collection");
  EXPECT_EQ(gc->component, "gc");
  EXPECT_EQ(gc->offset, 2u);
  const auto unrecorded = space.symbolize(kLoadAddress + functions[8] - base);
  EXPECT_EQ(unrecorded->name, "");
  EXPECT_EQ(unrecorded->component, "");
  const auto exported = space.symbolize(kLoadAddress + functions[9] - base + 1);
  EXPECT_EQ(exported->name, "rpython_records_exported");
  EXPECT_EQ(exported->component, "interpreter");
  EXPECT_TRUE(fs::exists(dir_ / "xdg" / "jitprof" / "libpypy-names" / ElfImage::open(copy)->build_id()));
}

// The real libpypy, its table loaded once for the tests below (from the
// user's default cache when this machine has it, as jitprof record would).
class RealLibpypy : public ScratchDirectory {
 protected:
  static void SetUpTestSuite() {
    path_ = real_libpypy();
    if (path_.empty()) return;
    image_ = ElfImage::open(path_);
    const auto started = std::chrono::steady_clock::now();
    const auto loaded = RpythonNames::load(*image_, RpythonNames::default_cache_directory());
    std::cout << "libpypy's names " << (loaded.from_cache ? "read from the cache" : "computed") << " in "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() << " s\n";
    names_ = loaded.names;
  }
  void SetUp() override {
    ScratchDirectory::SetUp();
    if (path_.empty()) GTEST_SKIP() << "pypy3 loads no libpypy";
    ASSERT_NE(image_, nullptr) << path_;
  }
  static inline std::string path_;
  static inline std::shared_ptr<const ElfImage> image_;
  static inline std::shared_ptr<const RpythonNames> names_;
};

TEST_F(RealLibpypy, MostFunctionsAndNearlyAllCodeAreNamed) {
  const RpythonNames::Coverage coverage = names_->coverage();
  // By their own records alone; the neighbours' C file adds to that.
  const double ranges = double(coverage.named_ranges - coverage.by_neighbours_ranges) / double(coverage.ranges);
  const double bytes = double(coverage.named_bytes - coverage.by_neighbours_bytes) / double(coverage.bytes);
  std::cout << "named by their records: " << ranges * 100 << "% of " << coverage.ranges << " FDE ranges, " << bytes * 100
            << "% of " << coverage.bytes << " code bytes; with the neighbours' C file: " << coverage.named_ranges
            << " ranges, " << coverage.named_bytes << " bytes\n";
  EXPECT_GT(coverage.ranges, 10000u);
  EXPECT_GE(ranges, 0.5);
  EXPECT_GE(bytes, 0.9);
}

TEST_F(RealLibpypy, TheGcFunctionsAreNamedAsGc) {
  std::size_t gc = 0;
  std::string collection;
  for (const ElfImage::AddressRange& range : image_->function_ranges()) {
    const auto function = names_->function_at(range.start);
    if (!function || function->component != Component::Gc) continue;
    ++gc;
    const std::string name(function->name);
    // The minor collection itself when it has a range of its own, else any collection function.
    if (name.find("minor_collection") != std::string::npos ||
        (collection.empty() && name.find("collect") != std::string::npos))
      collection = name + " (" + std::string(function->c_file) + ")";
  }
  std::cout << gc << " GC functions, e.g. " << collection << "\n";
  EXPECT_GT(gc, 100u);
  EXPECT_FALSE(collection.empty());
}

TEST_F(RealLibpypy, AnExportNamesOnlyTheAddressesInsideIt) {
  const auto start = image_->exported_function("PyPyList_Append");
  ASSERT_TRUE(start.has_value());
  const auto at = image_->symbol_at(*start);
  ASSERT_TRUE(at.has_value());
  const AddressSpace space = space_with(path_);
  const auto inside = space.symbolize(kLoadAddress + *start + 4);
  ASSERT_TRUE(inside.has_value());
  EXPECT_EQ(inside->name, "PyPyList_Append");
  EXPECT_EQ(inside->offset, 4u);
  // The first address after it that no export holds: RPython's name, or none.
  std::uint64_t after = *start + 1;
  while (image_->symbol_at(after) && image_->symbol_at(after)->first == "PyPyList_Append") ++after;
  if (image_->symbol_at(after)) GTEST_SKIP() << "another export follows";
  const auto beyond = space.symbolize(kLoadAddress + after);
  ASSERT_TRUE(beyond.has_value());
  std::cout << "PyPyList_Append ends at +" << after - *start << "; after it: '" << beyond->name << "' ("
            << beyond->component << ")\n";
  EXPECT_NE(beyond->name, "PyPyList_Append");
}

TEST_F(RealLibpypy, TheCacheIsReadBackRecomputedWhenCorruptAndOptional) {
  const fs::path cache = dir_ / "cache";
  const auto first = RpythonNames::load(*image_, cache);
  EXPECT_FALSE(first.from_cache);
  ASSERT_TRUE(fs::exists(first.cache_file));
  EXPECT_EQ(first.cache_file, cache / image_->build_id());

  const auto started = std::chrono::steady_clock::now();
  const auto second = RpythonNames::load(*image_, cache);
  std::cout << "cached load: " << std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()
            << " s for " << fs::file_size(first.cache_file) << " bytes\n";
  EXPECT_TRUE(second.from_cache);
  const auto same_answers = [&](const RpythonNames& a, const RpythonNames& b) {
    std::size_t compared = 0;
    const auto ranges = image_->function_ranges();
    for (std::size_t i = 0; i < ranges.size(); i += 97) {
      const std::uint64_t vaddr = ranges[i].start + (ranges[i].end - ranges[i].start) / 2;
      const auto x = a.function_at(vaddr), y = b.function_at(vaddr);
      EXPECT_EQ(x.has_value(), y.has_value());
      if (!x || !y) continue;
      EXPECT_EQ(x->start, y->start);
      EXPECT_EQ(x->end, y->end);
      EXPECT_EQ(x->name, y->name);
      EXPECT_EQ(x->c_file, y->c_file);
      EXPECT_EQ(x->component, y->component);
      ++compared;
    }
    return compared;
  };
  EXPECT_GT(same_answers(*first.names, *second.names), 300u);

  // Bytes flipped in the compressed table: computed again and written anew.
  {
    std::fstream file(first.cache_file, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(fs::file_size(first.cache_file) / 2));
    file.write("garbage!", 8);
  }
  const auto corrupt = RpythonNames::load(*image_, cache);
  EXPECT_FALSE(corrupt.from_cache);
  EXPECT_TRUE(RpythonNames::load(*image_, cache).from_cache) << "rewritten";
  // Cut short, or another build's table under this build id: not taken.
  const std::string bytes = first.names->serialize(image_->build_id());
  EXPECT_TRUE(RpythonNames::parse(bytes, image_->build_id()).has_value());
  EXPECT_FALSE(RpythonNames::parse(std::string_view(bytes).substr(0, bytes.size() - 1), image_->build_id()));
  EXPECT_FALSE(RpythonNames::parse(std::string_view(bytes).substr(0, 20), image_->build_id()));
  EXPECT_FALSE(RpythonNames::parse(first.names->serialize("0123abcd"), image_->build_id()));

  // A cache directory that cannot be made (under a regular file): names all the same.
  std::ofstream(dir_ / "a-file") << "x";
  const auto unwritable = RpythonNames::load(*image_, dir_ / "a-file" / "cache");
  EXPECT_FALSE(unwritable.from_cache);
  EXPECT_GT(same_answers(*first.names, *unwritable.names), 300u);
  EXPECT_FALSE(fs::exists(dir_ / "a-file" / "cache"));
}

}  // namespace
