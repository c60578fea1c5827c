// libFuzzer target for the vmprof profile reader.
//
// Besides "no crash, no sanitizer report" it checks what the reader promises:
// diagnostics point inside the input, samples point inside the frames, and
// feeding the input in chunks gives the same result as feeding it at once.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_checks.h"

#include "vmprof/profile.h"

namespace {

namespace vmp = jitprof::vmprof;

using jitprof::fuzz::check;

void check_invariants(const vmp::Profile& profile, std::size_t size) {
  jitprof::fuzz::check_diagnostics(profile, size);
  for (const auto& sample : profile.samples) {
    check(sample.file_offset < size, "sample offset past the input");
    check(sample.first_frame + sample.depth <= profile.frames.size(), "sample frames out of range");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  const vmp::Profile whole = vmp::parse_profile(input);
  check_invariants(whole, size);

  const vmp::Profile chunked = jitprof::fuzz::read_in_chunks<vmp::ProfileReader>(input);
  check(chunked.samples.size() == whole.samples.size(), "chunked feeding changed the samples");
  check(chunked.frames.size() == whole.frames.size(), "chunked feeding changed the frames");
  check(chunked.code_names.size() == whole.code_names.size(), "chunked feeding changed the code names");
  check(chunked.error.has_value() == whole.error.has_value(), "chunked feeding changed the error");
  if (chunked.error && whole.error) {
    check(chunked.error->offset == whole.error->offset, "chunked feeding moved the error");
  }
  check(chunked.warnings.size() == whole.warnings.size(), "chunked feeding changed the warnings");
  for (std::size_t i = 0; i < whole.warnings.size() && i < chunked.warnings.size(); ++i)
    check(chunked.warnings[i].message == whole.warnings[i].message, "chunked feeding changed a warning");
  return 0;
}
