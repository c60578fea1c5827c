// PyPy's debug log (PYPYLOG) as it arrives, in chunks: a line
// "[<timestamp, hex>] {name" opens a section, "[<timestamp, hex>] name}"
// closes it; sections nest; every other line (what a section prints, e.g.
// jit-backend-dump's hex) is skipped without being kept, except the lines of
// the sections a reader is asked to keep (jit-backend-addr: where PyPy put a
// loop's or bridge's machine code).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace jitprof::pypy {

class DebugLogReader {
 public:
  struct Section {
    std::string_view name;
    std::uint64_t start = 0, end = 0;  // the log's raw timestamps
    std::string_view text;             // its own lines, for the sections kept; else empty
  };
  explicit DebugLogReader(std::vector<std::string> sections_with_text = {})
      : sections_with_text_(std::move(sections_with_text)) {}
  using OnClosed = std::function<void(const Section&)>;

  // Calls `closed` for each section whose closing line is complete.
  void feed(std::span<const std::uint8_t> bytes, const OnClosed& closed);
  // Sections opened and not closed (yet): a log cut by the process's end.
  std::size_t open_sections() const { return open_.size(); }

 private:
  void line(std::string_view text, const OnClosed& closed);

  struct Open {
    std::string name;
    std::uint64_t start = 0;
    bool keeps_text = false;
    std::string text;
  };

  std::vector<std::string> sections_with_text_;
  std::string partial_;    // the start of a section line the last chunk cut
  bool skipping_ = false;  // inside a line that is no section line
  std::vector<Open> open_;
};

// A jit-backend-addr section's text: "Loop N (NAME) has address A to B
// (bootstrap C)" or "bridge out of Guard 0xD has address A to B", then
// "gc table: G" ... "end: E". Nothing when it is not such a text.
struct BackendAddress {
  bool bridge = false;
  std::uint64_t number = 0;  // the loop's number, or the bridge's guard descr address
  std::string name;          // loops: "function;file:first-current~#index OPCODE"
  std::uint64_t start = 0, end = 0;  // from the gc table (or the first address) to the end
};
std::optional<BackendAddress> parse_backend_address(std::string_view text);

}  // namespace jitprof::pypy
