#include "pypy/code_objects.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstring>
#include <map>
#include <span>
#include <unordered_set>

#include "process_memory.h"
#include "symbols/symbols.h"
#include "pypy/thread_locals.h"

namespace jitprof::pypy {
namespace {

constexpr std::size_t kChunkBytes = 8 << 20;
constexpr std::size_t kReachWords = 32;  // fields up to 0x100 bytes from an object's start are considered
constexpr std::uint64_t kUnknownIdLimit = std::uint64_t{1} << 26;
constexpr std::size_t kMaxVotes = 16 << 20;         // bounds the learning pass's memory (128 MiB)
constexpr std::size_t kCandidateLayouts = 16;       // (type id, distance) pairs checked for strings
constexpr std::size_t kSampleObjects = 256;         // per candidate, to find the string and line fields
constexpr std::uint64_t kMaxStringLength = 4096;    // longer names and paths are not believed
constexpr std::uint64_t kMaxFirstLine = 10'000'000;

// RPython's rpy_string: GC header word, hash word, length word, then the bytes.
constexpr std::size_t kStringLengthOffset = 16, kStringCharsOffset = 24;

std::uint32_t low_half(std::uint64_t word) { return static_cast<std::uint32_t>(word); }

class IdFilter {
 public:
  explicit IdFilter(const std::vector<std::uint64_t>& known) : ids_(known.begin(), known.end()) {
    for (std::uint64_t id : known) lowest_ = std::min(lowest_, id), highest_ = std::max(highest_, id);
    if (known.empty()) lowest_ = 4, highest_ = kUnknownIdLimit;
  }
  bool operator()(std::uint64_t word) const {
    return word >= lowest_ && word <= highest_ && word % 4 == 0 && (ids_.empty() || ids_.count(word));
  }

 private:
  std::unordered_set<std::uint64_t> ids_;
  std::uint64_t lowest_ = UINT64_MAX, highest_ = 0;
};

bool worth_scanning(const MemoryRegion& region) {
  if (!region.readable() || !region.writable()) return false;
  return region.path.empty() || region.path == "[heap]" || region.path.starts_with("[anon:") ||
         symbols::is_libpypy(region.path);
}

// Reads the regions chunk by chunk, each chunk with kReachWords words of the
// region on either side, and hands out the words whose address is in the chunk.
class ChunkReader {
 public:
  ChunkReader(pid_t pid, std::vector<MemoryRegion> regions,
              const std::function<void(std::uint64_t, std::uint64_t)>& progress, unsigned passes)
      : pid_(pid), regions_(std::move(regions)), progress_(progress) {
    for (const auto& region : regions_) bytes_ += region.end - region.start;
    total_ = bytes_ * passes;
  }
  std::uint64_t bytes() const { return bytes_; }

  // visit(words, first, end) sees words[first, end) (with their neighbours
  // around them) and returns false to end the pass.
  using Visitor = std::function<bool(std::span<const std::uint64_t>, std::size_t, std::size_t)>;
  void pass(const Visitor& visit) {
    const std::uint64_t pass_start = done_;
    constexpr std::size_t reach = kReachWords * 8;
    std::vector<std::uint64_t> words((kChunkBytes + 2 * reach) / 8);
    for (const auto& region : regions_) {
      for (std::uint64_t chunk = region.start; chunk < region.end; chunk += kChunkBytes) {
        const std::uint64_t from = std::max(region.start, chunk - std::min<std::uint64_t>(chunk, reach));
        const std::uint64_t to = std::min(region.end, chunk + kChunkBytes + reach);
        const std::size_t read = read_memory(pid_, from, words.data(), to - from) / 8;
        const std::size_t first = (chunk - from) / 8;
        const std::size_t end = std::min<std::size_t>(read, (std::min(region.end, chunk + kChunkBytes) - from) / 8);
        const bool more = first >= end || visit({words.data(), read}, first, end);
        done_ += std::min<std::uint64_t>(kChunkBytes, region.end - chunk);
        if (progress_) progress_(done_, total_);
        if (!more) {
          done_ = pass_start + bytes_;
          return;
        }
      }
    }
  }

 private:
  pid_t pid_;
  std::vector<MemoryRegion> regions_;
  const std::function<void(std::uint64_t, std::uint64_t)>& progress_;
  std::uint64_t bytes_ = 0, total_ = 0, done_ = 0;
};

struct Candidate {
  std::uint32_t type_id;
  std::size_t distance_words;  // from the object's start to its unique id
};

// Pass 1: every word that may be a unique id votes for the low half of each
// word up to kReachWords before it; the code type's header gets one vote per
// distinct id, at the unique id's distance.
std::vector<Candidate> vote_for_layouts(ChunkReader& reader, const IdFilter& is_id) {
  std::vector<std::uint64_t> votes;  // type id << 32 | distance << 24 | low bits of id / 4
  bool full = false;
  reader.pass([&](std::span<const std::uint64_t> words, std::size_t first, std::size_t end) {
    for (std::size_t i = std::max<std::size_t>(first, 1); i < end && !full; ++i) {
      if (!is_id(words[i])) continue;
      for (std::size_t distance = 1; distance <= kReachWords && distance <= i; ++distance)
        if (const std::uint32_t type = low_half(words[i - distance]))
          votes.push_back(std::uint64_t{type} << 32 | distance << 24 | ((words[i] / 4) & 0xffffff));
      if (votes.size() >= kMaxVotes) {
        std::sort(votes.begin(), votes.end());
        votes.erase(std::unique(votes.begin(), votes.end()), votes.end());
        full = votes.size() >= kMaxVotes / 2;
      }
    }
    return !full;
  });
  std::sort(votes.begin(), votes.end());
  votes.erase(std::unique(votes.begin(), votes.end()), votes.end());
  std::vector<std::pair<std::size_t, std::uint64_t>> tallies;  // (distinct ids, key)
  for (std::size_t i = 0; i < votes.size();) {
    std::size_t j = i;
    while (j < votes.size() && votes[j] >> 24 == votes[i] >> 24) ++j;
    tallies.emplace_back(j - i, votes[i] >> 24);
    i = j;
  }
  const std::size_t keep = std::min(kCandidateLayouts, tallies.size());
  std::partial_sort(tallies.begin(), tallies.begin() + static_cast<std::ptrdiff_t>(keep), tallies.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<Candidate> candidates;
  for (std::size_t i = 0; i < keep && tallies[i].first >= 2; ++i)
    candidates.push_back({static_cast<std::uint32_t>(tallies[i].second >> 8), tallies[i].second & 0xff});
  return candidates;
}

// An object's first kReachWords words, from its GC header on.
struct ObjectWords {
  std::array<std::uint64_t, kReachWords> words{};
};

ObjectWords object_at(std::span<const std::uint64_t> words, std::size_t start) {
  ObjectWords object;
  for (std::size_t i = 0; i < kReachWords && start + i < words.size(); ++i) object.words[i] = words[start + i];
  return object;
}

class StringReader {
 public:
  StringReader(pid_t pid, const std::vector<MemoryRegion>& regions) : pid_(pid) {
    for (const auto& region : regions)
      if (region.readable()) readable_.emplace_back(region.start, region.end);
  }
  // An RPython string of printable text (UTF-8 allowed), or nullopt.
  std::optional<std::string> read(std::uint64_t address) const {
    if (address % 8 != 0 || !mapped(address)) return std::nullopt;
    std::array<char, 256> head;
    const std::size_t got = read_memory(pid_, address, head.data(), head.size());
    if (got < kStringCharsOffset) return std::nullopt;
    std::uint64_t length;
    std::memcpy(&length, head.data() + kStringLengthOffset, 8);
    if (length == 0 || length > kMaxStringLength) return std::nullopt;
    std::string text(length, '\0');
    const std::size_t inline_length = std::min<std::size_t>(length, got - kStringCharsOffset);
    std::memcpy(text.data(), head.data() + kStringCharsOffset, inline_length);
    if (inline_length < length &&
        read_memory(pid_, address + kStringCharsOffset + inline_length, text.data() + inline_length,
                    length - inline_length) != length - inline_length)
      return std::nullopt;
    for (unsigned char c : text)
      if (c < 0x20 || c == 0x7f) return std::nullopt;
    return text;
  }

 private:
  bool mapped(std::uint64_t address) const {
    auto after = std::upper_bound(readable_.begin(), readable_.end(), std::make_pair(address, UINT64_MAX));
    return after != readable_.begin() && address < std::prev(after)->second;
  }
  pid_t pid_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> readable_;
};

bool looks_like_file(const std::string& text) {
  return text.find('/') != std::string::npos || text.ends_with(".py") ||
         (text.front() == '<' && text.back() == '>' && text.find(' ') != std::string::npos);
}

bool looks_like_name(const std::string& text) {
  if (text.front() == '<' && text.back() == '>' && text.find(' ') == std::string::npos) return true;  // <module>
  return std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; });
}

struct LearnedLayout {
  CodeObjectLayout layout;
  std::size_t score;  // sample objects with both a name and a file
};

// The string and first-line fields of one candidate, from its sample objects.
std::optional<LearnedLayout> learn_fields(const Candidate& candidate, const std::vector<ObjectWords>& sample,
                                          const StringReader& strings) {
  if (sample.empty()) return std::nullopt;
  std::array<std::size_t, kReachWords> names{}, files{};
  for (const ObjectWords& object : sample) {
    for (std::size_t field = 1; field < kReachWords; ++field) {
      if (field == candidate.distance_words) continue;
      if (const auto text = strings.read(object.words[field])) {
        names[field] += looks_like_name(*text);
        files[field] += looks_like_file(*text);
      }
    }
  }
  const auto file_field = static_cast<std::size_t>(std::max_element(files.begin(), files.end()) - files.begin());
  names[file_field] = 0;
  const auto name_field = static_cast<std::size_t>(std::max_element(names.begin(), names.end()) - names.begin());
  if (files[file_field] * 2 < sample.size() || names[name_field] * 2 < sample.size()) return std::nullopt;

  // The first line is a small positive integer in (nearly) every object and,
  // unlike counts and flags, differs from one function to the next.
  std::optional<std::size_t> line_field;
  std::size_t most_distinct = 0;
  for (std::size_t field = 1; field < kReachWords; ++field) {
    if (field == candidate.distance_words || field == name_field || field == file_field) continue;
    std::unordered_set<std::uint64_t> distinct;
    std::size_t small = 0;
    for (const ObjectWords& object : sample)
      if (object.words[field] >= 1 && object.words[field] <= kMaxFirstLine) ++small, distinct.insert(object.words[field]);
    if (small * 100 >= sample.size() * 95 && distinct.size() > most_distinct)
      line_field = field, most_distinct = distinct.size();
  }
  if (!line_field) return std::nullopt;
  auto offset = [](std::size_t words) { return static_cast<std::uint32_t>(words * 8); };
  return LearnedLayout{{candidate.type_id, offset(candidate.distance_words), offset(name_field), offset(file_field),
                        offset(*line_field)},
                       std::min(names[name_field], files[file_field])};
}

}  // namespace

CodeScan scan_code_objects(pid_t pid, const std::vector<std::uint64_t>& known_ids,
                           const std::function<void(std::uint64_t, std::uint64_t)>& progress) {
  const auto started = std::chrono::steady_clock::now();
  const std::vector<MemoryRegion> all_regions = read_memory_regions(pid);
  std::vector<MemoryRegion> regions;
  std::copy_if(all_regions.begin(), all_regions.end(), std::back_inserter(regions), worth_scanning);
  ChunkReader reader(pid, regions, progress, 3);
  const IdFilter is_id(known_ids);
  const StringReader strings(pid, all_regions);
  CodeScan scan{{}, std::nullopt, reader.bytes(), 0};
  auto finish = [&] {
    scan.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return scan;
  };

  const std::vector<Candidate> candidates = vote_for_layouts(reader, is_id);
  if (candidates.empty()) return finish();

  // Pass 2: a sample of objects for each candidate, ended once all are full.
  std::vector<std::vector<ObjectWords>> samples(candidates.size());
  reader.pass([&](std::span<const std::uint64_t> words, std::size_t first, std::size_t end) {
    for (std::size_t i = first; i < end; ++i) {
      if (!is_id(words[i])) continue;
      for (std::size_t c = 0; c < candidates.size(); ++c) {
        const std::size_t distance = candidates[c].distance_words;
        if (distance <= i && samples[c].size() < kSampleObjects && low_half(words[i - distance]) == candidates[c].type_id)
          samples[c].push_back(object_at(words, i - distance));
      }
    }
    return std::any_of(samples.begin(), samples.end(), [](const auto& s) { return s.size() < kSampleObjects; });
  });
  std::optional<LearnedLayout> best;
  for (std::size_t c = 0; c < candidates.size(); ++c)
    if (auto learned = learn_fields(candidates[c], samples[c], strings); learned && (!best || learned->score > best->score))
      best = learned;
  if (!best) return finish();
  const CodeObjectLayout layout = best->layout;
  scan.layout = layout;

  // Pass 3: every code object of the learned layout; a copy the GC left
  // behind names the same id the same way, so the first one found is kept.
  std::map<std::uint64_t, CodeName> named;
  const std::size_t distance = layout.unique_id_offset / 8;
  reader.pass([&](std::span<const std::uint64_t> words, std::size_t first, std::size_t end) {
    for (std::size_t i = std::max(first, distance); i < end; ++i) {
      if (!is_id(words[i]) || low_half(words[i - distance]) != layout.type_id || named.count(words[i])) continue;
      const ObjectWords object = object_at(words, i - distance);
      const std::uint64_t line = object.words[layout.first_line_offset / 8];
      auto name = strings.read(object.words[layout.name_offset / 8]);
      auto file = strings.read(object.words[layout.filename_offset / 8]);
      if (!name || !file || line < 1 || line > kMaxFirstLine) continue;
      named.emplace(words[i], CodeName{words[i], std::move(*name), std::move(*file), static_cast<std::uint32_t>(line)});
    }
    return true;
  });
  for (auto& [id, name] : named) scan.names.push_back(std::move(name));
  return finish();
}

}  // namespace jitprof::pypy
