// The web viewer's files (web/static), built into the binary: the server
// needs no files besides its data directory, and browsers no CDN.
#pragma once

#include <optional>
#include <string_view>

namespace jitprof::web {

struct Asset {
  std::string_view content_type;
  std::string_view bytes;
};

// By file name ("index.html", "app.js"); nullopt for anything else.
std::optional<Asset> find_asset(std::string_view name);

}  // namespace jitprof::web
