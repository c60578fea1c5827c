#include "sources.h"

#include <filesystem>
#include <fstream>
#include <iterator>

namespace jitprof::record {

std::vector<bundle::SourceFileRecord> source_files(const jitlog::Forest& forest) {
  constexpr std::uintmax_t kMaxFile = 1 << 20, kMaxTotal = 32 << 20;
  std::vector<bundle::SourceFileRecord> sources;
  std::uintmax_t total = 0;
  for (const std::string& file : forest.merge_point_files) {
    std::error_code error;
    const std::uintmax_t size = std::filesystem::file_size(file, error);
    if (error || size > kMaxFile || total + size > kMaxTotal || !std::filesystem::is_regular_file(file, error)) continue;
    std::ifstream in(file, std::ios::binary);
    std::string text{std::istreambuf_iterator<char>(in), {}};
    if (!in && !in.eof()) continue;
    total += size;
    sources.push_back({file, std::move(text)});
  }
  return sources;
}

}  // namespace jitprof::record
