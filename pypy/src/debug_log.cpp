#include "pypy/debug_log.h"

#include <algorithm>
#include <charconv>
#include <iterator>

namespace jitprof::pypy {
namespace {

// Section lines are short; a longer one is something else.
constexpr std::size_t kMaxSectionLine = 256;
// A kept section's text (jit-backend-addr has 6 short lines).
constexpr std::size_t kMaxKeptText = 4096;

std::optional<std::uint64_t> hex_after(std::string_view text, std::string_view label) {
  const std::size_t at = text.find(label);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view number = text.substr(at + label.size());
  if (!number.starts_with("0x")) return std::nullopt;
  number.remove_prefix(2);
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), value, 16);
  if (error != std::errc() || end == number.data()) return std::nullopt;
  return value;
}

}  // namespace

void DebugLogReader::feed(std::span<const std::uint8_t> bytes, const OnClosed& closed) {
  std::string_view rest(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  while (!rest.empty()) {
    const std::size_t newline = rest.find('\n');
    const std::string_view piece = rest.substr(0, newline);
    // Only lines that start with '[' can open or close a section; the others
    // are kept for a section that keeps its text.
    if (partial_.empty() && !skipping_ && !piece.starts_with('[')) skipping_ = true;
    if (skipping_ && !open_.empty() && open_.back().keeps_text && open_.back().text.size() < kMaxKeptText)
      open_.back().text.append(piece).append(newline == std::string_view::npos ? "" : "\n");
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
    const std::string_view name = what.substr(1);
    const bool keeps_text =
        std::find(sections_with_text_.begin(), sections_with_text_.end(), name) != sections_with_text_.end();
    open_.push_back(Open{std::string(name), timestamp, keeps_text, {}});
  } else if (what.size() > 1 && what.back() == '}') {
    const std::string_view name = what.substr(0, what.size() - 1);
    const auto opened = std::find_if(open_.rbegin(), open_.rend(), [&](const Open& open) { return open.name == name; });
    if (opened == open_.rend()) return;  // opened before the log started
    closed(Section{name, opened->start, timestamp, opened->text});
    // Sections left open inside it (never seen from PyPy) end with it.
    open_.erase(std::prev(opened.base()), open_.end());
  }
}

std::optional<BackendAddress> parse_backend_address(std::string_view text) {
  BackendAddress found;
  const std::size_t newline = text.find('\n');
  const std::string_view first = text.substr(0, newline);
  if (first.starts_with("Loop ")) {
    const std::size_t open = first.find(" ("), close = first.rfind(") has address ");
    if (open == std::string_view::npos || close == std::string_view::npos || close < open) return std::nullopt;
    const auto [end, error] = std::from_chars(first.data() + 5, first.data() + open, found.number);
    if (error != std::errc() || end != first.data() + open) return std::nullopt;
    found.name = std::string(first.substr(open + 2, close - open - 2));
  } else if (first.starts_with("bridge out of Guard ")) {
    const auto guard = hex_after(first, "Guard ");
    if (!guard) return std::nullopt;
    found.bridge = true;
    found.number = *guard;
  } else {
    return std::nullopt;
  }
  const auto start = hex_after(first, "has address "), end = hex_after(text, "end: ");
  if (!start || !end) return std::nullopt;
  // The gc table lies before the code PyPy names first; samples can land in between.
  found.start = std::min(*start, hex_after(text, "gc table: ").value_or(*start));
  found.end = *end;
  if (found.end <= found.start) return std::nullopt;
  return found;
}

}  // namespace jitprof::pypy
