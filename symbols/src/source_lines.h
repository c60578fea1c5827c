// Source lines and inlined functions of a binary's addresses, from its DWARF
// debug information (in the file itself, or found by build id under
// /usr/lib/debug). Binaries without debug information give nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "symbols/symbols.h"

struct Dwfl;

namespace jitprof::symbols {

class SourceLines {
 public:
  explicit SourceLines(const std::string& elf_path);
  ~SourceLines();
  SourceLines(const SourceLines&) = delete;
  SourceLines& operator=(const SourceLines&) = delete;

  // Outermost first: the function holding `vaddr` (a link-time address), then
  // each function inlined into it down to the one whose code is at `vaddr`,
  // each with the line it is at. Empty without debug information.
  std::vector<SourceFrame> at(std::uint64_t vaddr);

 private:
  std::mutex mutex_;  // libdw's lookups are not thread-safe on one Dwfl
  Dwfl* dwfl_ = nullptr;
  bool has_dwarf_ = false;
};

}  // namespace jitprof::symbols
