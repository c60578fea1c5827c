// Symbolization with DWARF: function names, source lines and inlined frames of
// a library built with debug information (tests/programs/native_hot.c).
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "symbols/symbols.h"

namespace {

using jitprof::symbols::AddressSpace;
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

}  // namespace
