// Names for the code-object unique ids on PyPy's shadow stacks when nothing
// can run in the target (`jitprof attach`): the target's memory is scanned for
// its code objects (PyCode), whose layout is learned from the ids themselves.
//
// Contract:
// - Only reads the target (process_vm_readv), never stops it: the scan races
//   the moving GC, and code objects freed or moved while it runs may be missed.
// - Nothing of one PyPy build is built in. The layout is learned from
//   `known_ids` (vmprof unique ids seen on shadow stacks: multiples of 4): the
//   GC header word that sits at one fixed distance before many of them is the
//   code type's id; the fields that point to RPython strings give the name
//   (identifier-like) and the file (paths); the first line is the word that is
//   a small positive integer in every object and varies most between them.
// - Scans the target's writable anonymous mappings, its heap and libpypy's
//   writable data, in large chunks, twice (learning, then naming).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace jitprof::pypy {

struct CodeName {
  std::uint64_t unique_id;
  std::string name, file;
  std::uint32_t first_line;
};

// Offsets from the start of a code object (its GC header word).
struct CodeObjectLayout {
  std::uint64_t type_id;  // low half of the GC header word
  std::uint32_t unique_id_offset, name_offset, filename_offset, first_line_offset;
};

struct CodeScan {
  std::vector<CodeName> names;              // sorted by unique id, one per id
  std::optional<CodeObjectLayout> layout;   // nullopt when no layout could be learned
  std::uint64_t bytes_scanned;              // size of the regions scanned (once)
  double seconds;
};

// Names the code objects whose unique id is in `known_ids`, or every code
// object when it is empty (the layout is then learned from all multiples of 4
// below 2^26, which is slower). `progress(bytes_done, bytes_total)` is called
// after each chunk, over both passes. Throws std::system_error when the
// target's memory cannot be read.
CodeScan scan_code_objects(pid_t pid, const std::vector<std::uint64_t>& known_ids,
                           const std::function<void(std::uint64_t, std::uint64_t)>& progress = {});

}  // namespace jitprof::pypy
