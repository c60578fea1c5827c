// Hostile inputs for the server's tests, made by code rather than kept as
// opaque files: decompression bombs in a valid bundle container or in gzip,
// and bundles whose manifest a server must refuse.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "bundle/bundle.h"

namespace jitprof::testing {

// A well-formed bundle (a manifest, then `frames` JLOG frames) whose frames
// each inflate to `frame_bytes` zeros: a few hundred kB on disk.
inline void write_bundle_bomb(const std::filesystem::path& path, int frames, std::size_t frame_bytes) {
  bundle::BundleWriter writer(path, 9);
  writer.append(bundle::sections::kManifest, std::string(R"({"jitprof_version":"0.1.0","state":"complete"})"));
  const std::vector<std::uint8_t> zeros(frame_bytes, 0);
  for (int i = 0; i < frames; ++i) writer.append(bundle::sections::kJitlog, zeros);
}

// `members` gzip members of `member_bytes` zeros each, one after the other
// (gzip readers treat them as one stream).
inline void write_gzip_zeros(const std::filesystem::path& path, int members, std::size_t member_bytes) {
  const std::filesystem::path member = path.string() + ".member";
  gzFile out = gzopen(member.c_str(), "wb9");
  if (out == nullptr) throw std::runtime_error("cannot write " + member.string());
  const std::vector<char> zeros(1 << 20, 0);
  for (std::size_t written = 0; written < member_bytes; written += zeros.size())
    gzwrite(out, zeros.data(), static_cast<unsigned>(std::min(zeros.size(), member_bytes - written)));
  gzclose(out);
  std::ifstream in(member, std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(in), {}};
  std::ofstream joined(path, std::ios::binary);
  for (int i = 0; i < members; ++i) joined << bytes;
  std::filesystem::remove(member);
}

// A bundle with only a manifest frame holding `manifest` as it is.
inline void write_bundle_with_manifest(const std::filesystem::path& path, const std::string& manifest) {
  bundle::BundleWriter writer(path);
  writer.append(bundle::sections::kManifest, manifest);
}

}  // namespace jitprof::testing
