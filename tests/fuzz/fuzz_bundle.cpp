// libFuzzer target for the bundle container and the sample encoding inside it.
#include <cstddef>
#include <cstdint>
#include <span>

#include "bundle/bundle.h"
#include "bundle/samples.h"
#include "fuzz_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace jitprof;
  const std::span<const std::uint8_t> input(data, size);
  const bundle::Bundle read = bundle::parse_bundle(input);
  fuzz::check_diagnostics(read, size);
  for (const auto& frame : read.frames) fuzz::check(frame.file_offset < size, "frame offset past the input");

  // The same bytes as a sample stream: decoded rows only name stacks that exist.
  const bundle::SampleTable table = bundle::decode_samples(input);
  if (table.error) fuzz::check(table.error->offset <= size, "sample error offset past the input");
  for (const auto& row : table.rows) {
    fuzz::check(row.user_stack == bundle::SampleTable::kNoStack || row.user_stack < table.stacks.size(),
                "user stack out of range");
    fuzz::check(row.kernel_stack == bundle::SampleTable::kNoStack || row.kernel_stack < table.stacks.size(),
                "kernel stack out of range");
  }
  return 0;
}
