#include "sources.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

namespace jitprof::record {

std::string source_files(const jitlog::Forest& forest) {
  constexpr std::uintmax_t kMaxFile = 1 << 20, kMaxTotal = 32 << 20;
  std::set<std::string> files;
  for (const jitlog::Trace& trace : forest.traces)
    for (const jitlog::Stage& stage : trace.stages)
      for (const jitlog::MergePoint& point : stage.merge_points) files.insert(point.file);
  std::string lines;
  std::uintmax_t total = 0;
  for (const std::string& file : files) {
    std::error_code error;
    const std::uintmax_t size = std::filesystem::file_size(file, error);
    if (error || size > kMaxFile || total + size > kMaxTotal || !std::filesystem::is_regular_file(file, error)) continue;
    std::ifstream in(file, std::ios::binary);
    std::string text{std::istreambuf_iterator<char>(in), {}};
    if (!in && !in.eof()) continue;
    total += size;
    // Python source is text; bytes that are not UTF-8 are replaced rather than refused.
    lines += nlohmann::json{{"file", file}, {"text", text}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  return lines;
}

}  // namespace jitprof::record
