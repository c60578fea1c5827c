// PyPy's debug log (PYPYLOG) as it arrives, in chunks: a line
// "[<timestamp, hex>] {name" opens a section, "[<timestamp, hex>] name}"
// closes it; sections nest; every other line (what a section prints, e.g.
// jit-backend-dump's hex) is skipped without being kept.
#pragma once

#include <cstdint>
#include <functional>
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
  };
  using OnClosed = std::function<void(const Section&)>;

  // Calls `closed` for each section whose closing line is complete.
  void feed(std::span<const std::uint8_t> bytes, const OnClosed& closed);
  // Sections opened and not closed (yet): a log cut by the process's end.
  std::size_t open_sections() const { return open_.size(); }

 private:
  void line(std::string_view text, const OnClosed& closed);

  std::string partial_;    // the start of a section line the last chunk cut
  bool skipping_ = false;  // inside a line that is no section line
  std::vector<std::pair<std::string, std::uint64_t>> open_;  // name, start
};

}  // namespace jitprof::pypy
