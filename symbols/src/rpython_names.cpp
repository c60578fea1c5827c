#include "symbols/rpython_names.h"

#include <capstone/capstone.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <mutex>
#include <unordered_map>

#include "binio/binio.h"
#include "symbols/elf_image.h"

namespace jitprof::symbols {
namespace {

constexpr char kMagic[8] = {'j', 'p', 'r', 'p', 'y', 'n', 'm', 's'};
constexpr std::uint32_t kVersion = 2;
// Longer strings are not RPython's names (its longest are a few hundred bytes).
constexpr std::size_t kMaxName = 1024;

// The NUL-terminated string at a link-time address, if there is one.
std::optional<std::string_view> string_at(const ElfImage& image, std::uint64_t vaddr) {
  const auto bytes = image.bytes_at(vaddr, kMaxName);
  const auto end = std::find(bytes.begin(), bytes.end(), std::uint8_t{0});
  if (end == bytes.end() || end == bytes.begin()) return std::nullopt;
  return std::string_view(reinterpret_cast<const char*>(bytes.data()), static_cast<std::size_t>(end - bytes.begin()));
}

bool is_identifier(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

template <class T>
void append(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}
void append_string(std::string& out, std::string_view text) {
  append(out, static_cast<std::uint32_t>(text.size()));
  out += text;
}

// The records' names, and for each the records' addresses.
struct Records {
  std::vector<std::pair<std::string, std::string>> names;  // (function, C file)
  std::unordered_map<std::uint64_t, std::uint32_t> name_at;  // record address -> index into names
};

// Each record's first two words are relocated pointers to a "*.c" string
// and to a function name.
Records find_records(const ElfImage& image) {
  Records records;
  std::map<std::pair<std::string_view, std::string_view>, std::uint32_t> known;
  const auto& relocations = image.relative_relocations();
  for (std::size_t i = 0; i + 1 < relocations.size(); ++i) {
    if (relocations[i + 1].offset != relocations[i].offset + 8) continue;
    const auto file = string_at(image, relocations[i].addend);
    if (!file || !file->ends_with(".c")) continue;
    const auto function = string_at(image, relocations[i + 1].addend);
    if (!function || !is_identifier(*function)) continue;
    auto [entry, fresh] = known.try_emplace({*function, *file}, static_cast<std::uint32_t>(records.names.size()));
    if (fresh) records.names.emplace_back(*function, *file);
    records.name_at.emplace(relocations[i].offset, entry->second);
  }
  return records;
}

}  // namespace

Component component_of(std::string_view c_file) {
  const auto has = [c_file](std::string_view part) { return c_file.find(part) != std::string_view::npos; };
  if (c_file.starts_with("rpython_memory")) return Component::Gc;
  if (has("optimizeopt")) return Component::JitOptimizer;
  if (has("jit_backend")) return Component::JitBackend;
  if (has("jit_metainterp") || has("jit_codewriter")) return Component::JitMetainterp;
  if (c_file.starts_with("pypy_")) return Component::Interpreter;
  return Component::Runtime;
}

const char* component_name(Component component) {
  switch (component) {
    case Component::Gc: return "gc";
    case Component::JitOptimizer: return "jit-optimizer";
    case Component::JitBackend: return "jit-backend";
    case Component::JitMetainterp: return "jit-metainterp";
    case Component::Interpreter: return "interpreter";
    case Component::Runtime: return "runtime";
  }
  return "runtime";
}

RpythonNames RpythonNames::compute(const ElfImage& libpypy) {
  RpythonNames table;
  const Records records = find_records(libpypy);
  for (const auto& [function, c_file] : records.names)
    table.names_.push_back({function, c_file, component_of(c_file), false});

  csh capstone = 0;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &capstone) != CS_ERR_OK) return table;
  cs_option(capstone, CS_OPT_DETAIL, CS_OPT_ON);
  cs_option(capstone, CS_OPT_SKIPDATA, CS_OPT_ON);  // bytes that decode to nothing do not end the range's scan
  cs_insn* instruction = cs_malloc(capstone);
  // Per range: how many leas load each name, and where the first does.
  struct Vote {
    std::uint32_t count = 0;
    std::uint64_t first = 0;
  };
  std::unordered_map<std::uint32_t, Vote> votes;
  for (const ElfImage::AddressRange& range : libpypy.function_ranges()) {
    if (!table.ranges_.empty() && range.start < table.ranges_.back().start + table.ranges_.back().length) continue;
    votes.clear();
    const auto bytes = libpypy.bytes_at(range.start, range.end - range.start);
    const std::uint8_t* code = bytes.data();
    std::size_t size = bytes.size();
    std::uint64_t address = range.start;
    while (cs_disasm_iter(capstone, &code, &size, &address, instruction)) {
      if (instruction->id != X86_INS_LEA) continue;
      const cs_x86& x86 = instruction->detail->x86;
      if (x86.op_count != 2 || x86.operands[1].type != X86_OP_MEM || x86.operands[1].mem.base != X86_REG_RIP) continue;
      const std::uint64_t target = instruction->address + instruction->size + x86.operands[1].mem.disp;
      const auto record = records.name_at.find(target);
      if (record == records.name_at.end()) continue;
      Vote& vote = votes[record->second];
      if (vote.count++ == 0) vote.first = instruction->address;
    }
    std::uint32_t name = kUnnamed;
    Vote best;
    for (const auto& [candidate, vote] : votes)
      if (vote.count > best.count || (vote.count == best.count && vote.first < best.first)) name = candidate, best = vote;
    table.ranges_.push_back({range.start, static_cast<std::uint32_t>(range.end - range.start), name});
  }
  cs_free(instruction, 1);
  cs_close(&capstone);

  // Unnamed ranges between two ranges named from one C file are that file's.
  std::uint32_t previous = kUnnamed;
  for (std::size_t i = 0; i < table.ranges_.size(); ++i) {
    if (table.ranges_[i].name != kUnnamed) {
      previous = table.ranges_[i].name;
      continue;
    }
    std::size_t next = i;
    while (next < table.ranges_.size() && table.ranges_[next].name == kUnnamed) ++next;
    if (previous == kUnnamed || next == table.ranges_.size() ||
        table.names_[previous].c_file != table.names_[table.ranges_[next].name].c_file)
      continue;
    const std::string& c_file = table.names_[previous].c_file;
    table.ranges_[i].name = static_cast<std::uint32_t>(table.names_.size());
    char start[24];
    std::snprintf(start, sizeof start, "@0x%llx", static_cast<unsigned long long>(table.ranges_[i].start));
    table.names_.push_back({c_file + start, c_file, component_of(c_file), true});
  }
  return table;
}

std::optional<RpythonNames::Function> RpythonNames::function_at(std::uint64_t vaddr) const {
  auto after = std::upper_bound(ranges_.begin(), ranges_.end(), vaddr,
                                [](std::uint64_t value, const Range& range) { return value < range.start; });
  if (after == ranges_.begin()) return std::nullopt;
  const Range& range = *std::prev(after);
  if (vaddr >= range.start + range.length) return std::nullopt;
  Function function{range.start, range.start + range.length, {}, {}, std::nullopt};
  if (range.name != kUnnamed) {
    const Name& name = names_[range.name];
    function.name = name.function;
    function.c_file = name.c_file;
    function.component = name.component;
    function.by_neighbours = name.by_neighbours;
  }
  return function;
}

RpythonNames::Coverage RpythonNames::coverage() const {
  Coverage coverage;
  for (const Range& range : ranges_) {
    ++coverage.ranges;
    coverage.bytes += range.length;
    if (range.name == kUnnamed) continue;
    ++coverage.named_ranges;
    coverage.named_bytes += range.length;
    if (!names_[range.name].by_neighbours) continue;
    ++coverage.by_neighbours_ranges;
    coverage.by_neighbours_bytes += range.length;
  }
  return coverage;
}

// magic, version, build id, uncompressed size, then zlib: the names
// (function, C file, whether from the neighbours), then the ranges (start,
// length, name index).
std::string RpythonNames::serialize(std::string_view build_id) const {
  std::string table;
  append(table, static_cast<std::uint32_t>(names_.size()));
  for (const Name& name : names_) {
    append_string(table, name.function);
    append_string(table, name.c_file);
    append(table, static_cast<std::uint8_t>(name.by_neighbours));
  }
  append(table, static_cast<std::uint32_t>(ranges_.size()));
  for (const Range& range : ranges_) {
    append(table, range.start);
    append(table, range.length);
    append(table, range.name);
  }
  uLongf compressed_size = compressBound(static_cast<uLong>(table.size()));
  std::string compressed(compressed_size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(compressed.data()), &compressed_size,
                reinterpret_cast<const Bytef*>(table.data()), static_cast<uLong>(table.size()), Z_BEST_SPEED) != Z_OK)
    return {};
  compressed.resize(compressed_size);
  std::string out(kMagic, sizeof kMagic);
  append(out, kVersion);
  append_string(out, build_id);
  append(out, static_cast<std::uint64_t>(table.size()));
  return out + compressed;
}

std::optional<RpythonNames> RpythonNames::parse(std::string_view bytes, std::string_view build_id) {
  const auto as_bytes = [](std::string_view text) {
    return std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  };
  try {
    binio::ByteCursor header(as_bytes(bytes), 0);
    if (header.string(sizeof kMagic) != std::string_view(kMagic, sizeof kMagic) || header.u32le() != kVersion ||
        header.string(header.u32le()) != build_id)
      return std::nullopt;
    const std::uint64_t table_size = header.u64le();
    if (table_size > (std::uint64_t{1} << 32)) return std::nullopt;
    std::string table(table_size, '\0');
    uLongf unpacked = static_cast<uLongf>(table_size);
    const std::string_view packed = bytes.substr(header.position());
    if (uncompress(reinterpret_cast<Bytef*>(table.data()), &unpacked, reinterpret_cast<const Bytef*>(packed.data()),
                   static_cast<uLong>(packed.size())) != Z_OK ||
        unpacked != table_size)
      return std::nullopt;

    RpythonNames names;
    binio::ByteCursor cursor(as_bytes(table), 0);
    for (std::uint32_t count = cursor.u32le(); count > 0; --count) {
      std::string function = cursor.string(cursor.u32le());
      std::string c_file = cursor.string(cursor.u32le());
      const Component component = component_of(c_file);
      const bool by_neighbours = cursor.u8() != 0;
      names.names_.push_back({std::move(function), std::move(c_file), component, by_neighbours});
    }
    for (std::uint32_t count = cursor.u32le(); count > 0; --count) {
      Range range{cursor.u64le(), cursor.u32le(), cursor.u32le()};
      const bool ordered = names.ranges_.empty() || range.start >= names.ranges_.back().start + names.ranges_.back().length;
      if (!ordered || (range.name != kUnnamed && range.name >= names.names_.size())) return std::nullopt;
      names.ranges_.push_back(range);
    }
    if (!cursor.at_end()) return std::nullopt;
    return names;
  } catch (const binio::ParseError&) {
  } catch (const binio::NeedMoreData&) {
  }
  return std::nullopt;
}

std::filesystem::path RpythonNames::default_cache_directory() {
  std::filesystem::path base;
  if (const char* cache = std::getenv("XDG_CACHE_HOME"); cache && *cache) base = cache;
  else if (const char* home = std::getenv("HOME"); home && *home) base = std::filesystem::path(home) / ".cache";
  else base = std::filesystem::temp_directory_path();
  return base / "jitprof" / "libpypy-names";
}

RpythonNames::Loaded RpythonNames::load(const ElfImage& libpypy, const std::filesystem::path& cache_directory,
                                        const std::function<void(const std::filesystem::path&)>& on_compute) {
  Loaded loaded;
  const std::string& build_id = libpypy.build_id();
  if (!build_id.empty()) {
    loaded.cache_file = cache_directory / build_id;
    std::ifstream in(loaded.cache_file, std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (auto cached = parse(bytes, build_id)) {
      loaded.names = std::make_shared<const RpythonNames>(std::move(*cached));
      loaded.from_cache = true;
      return loaded;
    }
  }
  if (on_compute) on_compute(loaded.cache_file);
  loaded.names = std::make_shared<const RpythonNames>(compute(libpypy));
  if (build_id.empty()) return loaded;
  // Written next to its final name, then renamed: a reader sees all or nothing.
  std::error_code error;
  std::filesystem::create_directories(cache_directory, error);
  const std::filesystem::path temporary = loaded.cache_file.string() + ".tmp" + std::to_string(::getpid());
  const std::string bytes = loaded.names->serialize(build_id);
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out || !out.write(bytes.data(), static_cast<std::streamsize>(bytes.size())) || !out.flush()) {
      out.close();
      std::filesystem::remove(temporary, error);
      return loaded;
    }
  }
  std::filesystem::rename(temporary, loaded.cache_file, error);
  if (error) std::filesystem::remove(temporary, error);
  return loaded;
}

namespace {

struct Registry {
  std::mutex mutex;
  // By build id (by path for a file without one).
  std::unordered_map<std::string, std::shared_future<std::shared_ptr<const RpythonNames>>> tables;
};
Registry& registry() {
  static Registry instance;
  return instance;
}
std::string registry_key(const ElfImage& image) { return image.build_id().empty() ? image.path() : image.build_id(); }

}  // namespace

void RpythonNames::prepare(std::shared_ptr<const ElfImage> libpypy,
                           std::function<void(const std::filesystem::path&)> on_compute) {
  Registry& names = registry();
  std::lock_guard lock(names.mutex);
  auto& table = names.tables[registry_key(*libpypy)];
  if (table.valid()) return;
  table = std::async(std::launch::async, [libpypy = std::move(libpypy), on_compute = std::move(on_compute)] {
            return load(*libpypy, default_cache_directory(), on_compute).names;
          }).share();
}

std::shared_ptr<const RpythonNames> RpythonNames::ready(const ElfImage& libpypy) {
  Registry& names = registry();
  std::lock_guard lock(names.mutex);
  const auto table = names.tables.find(registry_key(libpypy));
  if (table == names.tables.end() || table->second.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
    return nullptr;
  return table->second.get();
}

std::shared_ptr<const RpythonNames> RpythonNames::of(const std::shared_ptr<const ElfImage>& libpypy) {
  prepare(libpypy);
  std::shared_future<std::shared_ptr<const RpythonNames>> table;
  {
    Registry& names = registry();
    std::lock_guard lock(names.mutex);
    table = names.tables[registry_key(*libpypy)];
  }
  return table.get();
}

}  // namespace jitprof::symbols
