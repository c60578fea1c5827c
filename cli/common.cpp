#include "common.h"

#include <fmt/format.h>

#include <fstream>
#include <iostream>

namespace jitprof::cli {

std::string with_commas(std::uint64_t value) {
  std::string digits = std::to_string(value);
  for (int pos = static_cast<int>(digits.size()) - 3; pos > 0; pos -= 3)
    digits.insert(static_cast<std::size_t>(pos), ",");
  return digits;
}

std::string percent(double part, double whole) {
  if (whole <= 0) return "-";
  return fmt::format("{:.1f}%", 100.0 * part / whole);
}

std::string hex(std::uint64_t value) { return fmt::format("0x{:x}", value); }

int report_diagnostics(const std::string& file, const std::vector<binio::Diagnostic>& warnings,
                       const std::optional<binio::Diagnostic>& error) {
  for (const auto& warning : warnings) std::cerr << fmt::format("jitprof: warning: {}: {}\n", file, warning.message);
  if (!error) return 0;
  std::cerr << fmt::format("jitprof: error: {}: at byte offset {}: {}; showing what was read before it\n", file,
                           error->offset, error->message);
  return 1;
}

nlohmann::json diagnostics_json(const std::vector<binio::Diagnostic>& warnings,
                                const std::optional<binio::Diagnostic>& error) {
  nlohmann::json result = nlohmann::json::object();
  result["warnings"] = nlohmann::json::array();
  for (const auto& warning : warnings)
    result["warnings"].push_back({{"offset", warning.offset}, {"message", warning.message}});
  result["error"] = error ? nlohmann::json{{"offset", error->offset}, {"message", error->message}}
                          : nlohmann::json(nullptr);
  return result;
}

std::optional<std::string> SourceCache::line(const std::string& file, std::int64_t line) {
  auto [entry, inserted] = files_.try_emplace(file);
  if (inserted) {
    std::ifstream in(file);
    if (in) {
      std::vector<std::string> lines;
      for (std::string text; std::getline(in, text);) lines.push_back(std::move(text));
      entry->second = std::move(lines);
    }
  }
  if (!entry->second || line < 1 || static_cast<std::size_t>(line) > entry->second->size()) return std::nullopt;
  const std::string& text = (*entry->second)[static_cast<std::size_t>(line - 1)];
  const auto first = text.find_first_not_of(" \t");
  return first == std::string::npos ? std::string{} : text.substr(first);
}

void SourceCache::remember(const std::string& file, std::uint32_t line, const std::string& text) {
  if (line == 0) return;
  auto& lines = files_[file];
  if (!lines) lines.emplace();
  if (lines->size() < line) lines->resize(line);
  (*lines)[line - 1] = text;
}

}  // namespace jitprof::cli
