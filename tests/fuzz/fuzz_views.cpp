// libFuzzer target for everything that reads a bundle's sections after the
// container: the section codecs, the correlator, every view and every export
// (what `jitprof serve` does with an upload). The input is the sections
// themselves, not a bundle file, so that mutations reach the readers instead
// of failing the frames' CRC: records of u32 type (e.g. "JLOG"), u32 length,
// bytes. scripts/mutate-bundles --fuzz-seeds turns recorded bundles into seeds.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sstream>

#include "bundle/bundle.h"
#include "bundle/manifest.h"
#include "bundle/sections.h"
#include "correlate/profile.h"
#include "export/export.h"
#include "fuzz_checks.h"
#include "views/views.h"

namespace {

jitprof::bundle::Bundle sections_of(const std::uint8_t* data, std::size_t size) {
  jitprof::bundle::Bundle read;
  read.version = jitprof::bundle::kFormatVersion;
  std::size_t at = 0;
  while (at + 8 <= size) {
    std::uint32_t type = 0, length = 0;
    std::memcpy(&type, data + at, 4);
    std::memcpy(&length, data + at + 4, 4);
    at += 8;
    const std::size_t take = std::min<std::size_t>(length, size - at);
    read.frames.push_back({{type}, at, std::vector<std::uint8_t>(data + at, data + at + take)});
    at += take;
  }
  read.bytes_read = size;
  return read;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace jitprof;
  const bundle::Bundle read = sections_of(data, size);
  (void)bundle::read_manifest(read);
  const correlate::Profile profile = correlate::correlate(read);
  for (const auto& sample : profile.samples) fuzz::check(sample.stack < profile.stacks.size(), "stack out of range");
  (void)views::info_json(read, profile);
  (void)views::report_json(profile, read, 20);
  const views::CallTree tree = views::call_tree(profile);
  (void)views::call_tree_json(tree.root, 32, 1);
  const auto heats = views::heat_of_traces(profile);
  const views::SourceFiles sources = views::source_files(read, profile.forest);
  for (const jitlog::Trace& trace : profile.forest.traces)
    for (const jitlog::StageKind kind : {jitlog::StageKind::NoOpt, jitlog::StageKind::Opt, jitlog::StageKind::Asm}) {
      if (trace.stage(kind) == nullptr) continue;
      const auto heat = heats.find(trace.id);
      (void)views::trace_json(profile.forest, trace, kind, heat == heats.end() ? nullptr : &heat->second, true, &sources);
    }
  std::ostringstream out;
  exports::write_collapsed(profile, out);
  exports::write_speedscope(profile, "fuzz", out);
  exports::write_firefox(profile, "fuzz", out);
  exports::write_pprof(profile, out);
  return 0;
}
