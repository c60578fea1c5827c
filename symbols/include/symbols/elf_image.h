// A mapped ELF file, read once per path and shared: its loadable segments,
// build id, function symbols, the .eh_frame_hdr lookup table the unwinder
// searches, and (on demand) its DWARF source lines.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "symbols/symbols.h"

namespace jitprof::symbols {

class SourceLines;

class ElfImage {
 public:
  struct Segment {
    std::uint64_t vaddr, memsz, offset, filesz;
    bool executable;
  };
  struct FdeTable {
    std::uint64_t header_vaddr;  // .eh_frame_hdr
    std::uint64_t table_vaddr;   // its sorted (initial location, FDE) pairs
    std::uint64_t entries;
  };

  // Nullptr when the file cannot be read or is not a 64-bit ELF file.
  static std::shared_ptr<const ElfImage> open(const std::string& path);
  ~ElfImage();
  ElfImage(const ElfImage&) = delete;
  ElfImage& operator=(const ElfImage&) = delete;

  // Bytes of the file image at a link-time address.
  bool read(std::uint64_t vaddr, void* out, std::size_t count) const;
  // The link-time address of a file offset, through the segment holding it.
  std::optional<std::uint64_t> vaddr_of_offset(std::uint64_t offset) const;
  bool is_executable(std::uint64_t vaddr) const;

  const std::vector<Segment>& segments() const { return segments_; }
  const std::string& path() const { return path_; }
  const std::string& build_id() const { return build_id_; }
  const std::optional<FdeTable>& fde_table() const { return fde_table_; }
  std::uint64_t low() const { return low_; }
  std::uint64_t high() const { return high_; }

  // The function symbol containing (or nearest below) a link-time address,
  // with the address's offset from its start.
  std::optional<std::pair<std::string, std::uint64_t>> symbol_at(std::uint64_t vaddr) const;
  // DWARF source frames at a link-time address, outermost first (SourceLines).
  std::vector<SourceFrame> source_at(std::uint64_t vaddr) const;

 private:
  struct FunctionSymbol {
    std::uint64_t start, size;
    std::string name;
  };

  ElfImage() = default;
  bool load(const std::string& path);
  void load_symbols() const;
  void read_build_id(std::uint64_t offset, std::uint64_t size);
  void parse_eh_frame_header(std::uint64_t vaddr);
  template <class T>
  bool at(std::uint64_t offset, T& out) const;

  void* data_ = MAP_FAILED;
  std::size_t size_ = 0;
  std::string path_;
  std::string build_id_;
  mutable std::once_flag symbols_loaded_;
  mutable std::vector<FunctionSymbol> symbols_;
  mutable std::once_flag source_lines_opened_;
  mutable std::unique_ptr<SourceLines> source_lines_;
  std::vector<Segment> segments_;
  std::optional<FdeTable> fde_table_;
  std::uint64_t low_ = 0, high_ = 0;
};

}  // namespace jitprof::symbols
