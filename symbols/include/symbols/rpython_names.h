// Names for the functions of PyPy's stripped libpypy, and the part of PyPy's
// runtime each belongs to.
//
// RPython's traceback macro leaves, for each generated C function that can
// raise, static records {const char *file; const char *funcname; int line}
// in the data segment, and the function's code takes their address with a
// RIP-relative lea. The records are found through their relocations (two
// consecutive R_X86_64_RELATIVE pointers: a "*.c" string, then a name),
// Capstone finds the leas, and each lea names the .eh_frame range (FDE) it is
// in. With inlining, a range holds its callees' records too: it takes the
// name most of its leas load (on a tie, the one loaded first), so a range
// may carry an inlined callee's name, whose component is still right.
//
// Functions that cannot raise have no record (the GC's sweeping loops, for
// one). The linker keeps each C file's functions together, so a range
// without records whose nearest named neighbours on both sides come from one
// C file is that file's: it is named "<file>@0x<start>" with the file's
// component.
//
// Computing the table takes seconds for libpypy: it is cached on disk per
// build id ($XDG_CACHE_HOME/jitprof/libpypy-names/<build id>).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace jitprof::symbols {

class ElfImage;

// The part of PyPy a libpypy function belongs to, from the C file RPython
// generated it into.
enum class Component : std::uint8_t {
  // rpython_memory*: the GC (rpython_memory_gc*.c), the helpers its transform
  // adds (allocation, root walking: rpython_memory_gctransform*.c) and the
  // address stacks its tracing uses (rpython_memory.c).
  Gc,
  JitOptimizer,   // *optimizeopt*
  JitBackend,     // *jit_backend*
  JitMetainterp,  // *jit_metainterp*, *jit_codewriter*: tracing, resume, blackhole (guard failures)
  Interpreter,    // pypy_*
  Runtime,        // the rest: rpython_rlib, rtyper, translator, implement_*.c, ...
};
Component component_of(std::string_view c_file);
// "gc", "jit-optimizer", "jit-backend", "jit-metainterp", "interpreter", "runtime".
const char* component_name(Component component);

class RpythonNames {
 public:
  struct Function {
    std::uint64_t start = 0, end = 0;  // link-time [start, end), an FDE's range
    std::string_view name;             // RPython's C function name, "<file>@0x<start>" when only the
                                       // file is known; empty when neither is
    std::string_view c_file;
    std::optional<Component> component;  // with a name
    bool by_neighbours = false;          // the name says only the file, from the neighbouring ranges
  };
  struct Coverage {
    std::size_t ranges = 0, named_ranges = 0, by_neighbours_ranges = 0;  // named_ranges counts both kinds
    std::uint64_t bytes = 0, named_bytes = 0, by_neighbours_bytes = 0;
  };
  // How load() got the table.
  struct Loaded {
    std::shared_ptr<const RpythonNames> names;
    bool from_cache = false;
    std::filesystem::path cache_file;  // empty when the file has no build id
  };

  // Reads the file's records and code (seconds for libpypy).
  static RpythonNames compute(const ElfImage& libpypy);
  // From `cache_directory`/<build id> when that holds a valid table for this
  // build id; else computed (calling `on_compute` first, with the cache
  // file's path) and written there atomically. A directory that cannot be
  // written only costs the next run the computation.
  static Loaded load(const ElfImage& libpypy, const std::filesystem::path& cache_directory,
                     const std::function<void(const std::filesystem::path&)>& on_compute = {});
  // $XDG_CACHE_HOME/jitprof/libpypy-names, else ~/.cache/jitprof/libpypy-names.
  static std::filesystem::path default_cache_directory();

  // One table per build id for the whole process, loaded from the default
  // cache directory on a thread of its own: prepare() starts that (once; the
  // image must stay open until it is done), ready() answers without waiting
  // (nullptr until loaded), of() waits for it (preparing it when needed).
  static void prepare(std::shared_ptr<const ElfImage> libpypy,
                      std::function<void(const std::filesystem::path&)> on_compute = {});
  static std::shared_ptr<const RpythonNames> ready(const ElfImage& libpypy);
  static std::shared_ptr<const RpythonNames> of(const std::shared_ptr<const ElfImage>& libpypy);

  // The FDE range containing a link-time address, named or not.
  std::optional<Function> function_at(std::uint64_t vaddr) const;
  Coverage coverage() const;

  // The cache file's bytes: a header with a version and the build id, then
  // the table, zlib-compressed. parse() takes only what serialize() wrote
  // for this build id.
  std::string serialize(std::string_view build_id) const;
  static std::optional<RpythonNames> parse(std::string_view bytes, std::string_view build_id);

 private:
  static constexpr std::uint32_t kUnnamed = ~std::uint32_t{0};
  struct Range {
    std::uint64_t start;
    std::uint32_t length;
    std::uint32_t name;  // index into names_, or kUnnamed
  };
  struct Name {
    std::string function, c_file;
    Component component;
    bool by_neighbours;
  };
  std::vector<Range> ranges_;  // by start
  std::vector<Name> names_;
};

}  // namespace jitprof::symbols
