// The one pass over a correlated profile's samples that `report` and `diff`
// share: samples per Python function (self and total), per trace, per leaf
// category, native library and function, and thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "correlate/profile.h"

namespace jitprof::views {

struct Count {
  std::uint64_t self = 0, total = 0;
};

struct FunctionKey {
  std::string name, file;
  auto operator<=>(const FunctionKey&) const = default;
};

using ThreadKey = std::pair<std::uint32_t, std::uint32_t>;  // (pid, tid)

struct NativeFunction {
  std::uint64_t self = 0;
  std::map<std::pair<std::string, std::int64_t>, std::uint64_t> lines;  // (source file, line), with debug information
};

struct Summary {
  std::size_t samples = 0;
  std::map<FunctionKey, Count> functions;
  std::map<FunctionKey, std::int64_t> first_line;
  std::map<std::uint64_t, std::uint64_t> trace_samples;  // by trace id
  std::map<std::string, std::uint64_t> leaf_categories;
  std::map<std::string, std::uint64_t> native_libraries;  // leaf frames outside Python and JIT code
  std::map<FunctionKey, NativeFunction> native_functions;  // named leaf frames, by name and library
  std::map<ThreadKey, std::map<FunctionKey, std::uint64_t>> thread_functions;
};

Summary summarize(const correlate::Profile& profile);

}  // namespace jitprof::views
