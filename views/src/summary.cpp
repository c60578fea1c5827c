#include "summary.h"

#include <filesystem>

namespace jitprof::views {
namespace {

using correlate::Category;
using correlate::Profile;

// A frame of a native binary: libpypy (any of its components) or another library.
bool is_native_code(const correlate::Frame& frame) {
  switch (frame.category) {
    case Category::Python:
    case Category::JitInlined:
    case Category::JitTrace:
    case Category::JitHelper:
    case Category::JitAnonymous:
    case Category::Kernel: return false;
    default: return !correlate::is_runtime_phase(frame);
  }
}

}  // namespace

Summary summarize(const Profile& profile) {
  Summary summary;
  summary.samples = profile.samples.size();
  for (const auto& sample : profile.samples) {
    const auto& stack = profile.stacks[sample.stack];
    for (std::uint32_t id : profile.python_functions(sample.stack)) {
      const auto& frame = profile.frames[id];
      ++summary.functions[{frame.name, frame.file}].total;
    }
    for (std::uint32_t id : stack) {
      const auto& frame = profile.frames[id];
      if (frame.category != Category::Python && frame.category != Category::JitInlined) continue;
      auto [line, fresh] = summary.first_line.try_emplace({frame.name, frame.file}, frame.line);
      if (!fresh && frame.line > 0 && (line->second == 0 || frame.line < line->second)) line->second = frame.line;
    }
    if (auto leaf = profile.python_leaf(sample.stack)) {
      const auto& frame = profile.frames[*leaf];
      FunctionKey key{frame.name, frame.file};
      ++summary.functions[key].self;
      ++summary.thread_functions[{sample.pid, sample.tid}][key];
    }
    if (sample.trace) ++summary.trace_samples[*sample.trace];
    if (stack.empty()) {
      ++summary.leaf_categories["unknown"];
      continue;
    }
    const auto& leaf = profile.frames[stack.back()];
    ++summary.leaf_categories[correlate::category_name(sample.category)];
    if (is_native_code(leaf)) {
      const std::string library = leaf.file.empty() ? "[unknown]" : std::filesystem::path(leaf.file).filename().string();
      ++summary.native_libraries[library];
      if (leaf.name != library && !leaf.name.starts_with("0x")) {
        NativeFunction& function = summary.native_functions[{leaf.name, leaf.file}];
        ++function.self;
        if (!leaf.source_file.empty()) ++function.lines[{leaf.source_file, leaf.line}];
      }
    }
    if (leaf.category == Category::Kernel) ++summary.native_libraries["[kernel]"];
  }
  return summary;
}

}  // namespace jitprof::views
