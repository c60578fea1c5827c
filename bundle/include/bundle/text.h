// Text that comes from the target (arguments, paths, function and thread
// names, source files) is bytes, not always UTF-8. Bundles keep every byte
// (bundle/sections.h); JSON for people and other tools shows the bytes that
// are not UTF-8 as U+FFFD, since JSON text is UTF-8.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace jitprof::bundle {

bool is_utf8(std::string_view text);

// A JSON document as text for output (indent < 0: compact).
std::string json_text(const nlohmann::json& document, int indent = -1);

}  // namespace jitprof::bundle
