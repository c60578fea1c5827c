#include "pypy/debug_log.h"

#include <algorithm>
#include <charconv>
#include <iterator>

namespace jitprof::pypy {
namespace {

// Section lines are short; a longer one is something else.
constexpr std::size_t kMaxSectionLine = 256;

}  // namespace

void DebugLogReader::feed(std::span<const std::uint8_t> bytes, const OnClosed& closed) {
  std::string_view rest(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  while (!rest.empty()) {
    const std::size_t newline = rest.find('\n');
    const std::string_view piece = rest.substr(0, newline);
    // Only lines that start with '[' can open or close a section.
    if (partial_.empty() && !skipping_ && !piece.starts_with('[')) skipping_ = true;
    if (!skipping_) {
      if (partial_.size() + piece.size() > kMaxSectionLine) {
        skipping_ = true;
        partial_.clear();
      } else {
        partial_.append(piece);
      }
    }
    if (newline == std::string_view::npos) return;
    if (!skipping_) line(partial_, closed);
    partial_.clear();
    skipping_ = false;
    rest.remove_prefix(newline + 1);
  }
}

void DebugLogReader::line(std::string_view text, const OnClosed& closed) {
  const std::size_t bracket = text.find("] ");
  if (bracket == std::string_view::npos || bracket < 2) return;
  std::uint64_t timestamp = 0;
  const auto [end, error] = std::from_chars(text.data() + 1, text.data() + bracket, timestamp, 16);
  if (error != std::errc() || end != text.data() + bracket) return;
  const std::string_view what = text.substr(bracket + 2);
  if (what.size() > 1 && what.front() == '{') {
    open_.emplace_back(std::string(what.substr(1)), timestamp);
  } else if (what.size() > 1 && what.back() == '}') {
    const std::string_view name = what.substr(0, what.size() - 1);
    const auto opened = std::find_if(open_.rbegin(), open_.rend(), [&](const auto& open) { return open.first == name; });
    if (opened == open_.rend()) return;  // opened before the log started
    closed(Section{name, opened->second, timestamp});
    // Sections left open inside it (never seen from PyPy) end with it.
    open_.erase(std::prev(opened.base()), open_.end());
  }
}

}  // namespace jitprof::pypy
