// How the bundle's JSON sections keep text that is not UTF-8: as the object
// {"hex": "<its bytes>"} where a string would stand. JSON can hold only
// UTF-8, and a bundle must not lose a byte of a path or an argument.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace jitprof::bundle {

// `text` itself when it is UTF-8, else {"hex": its bytes}.
nlohmann::json stored_text(const std::string& text);
// Back: the string, or the bytes of a {"hex"} object; nullopt for anything else.
std::optional<std::string> text_of(const nlohmann::json& value);

// Bytes as lowercase hex digits, and back (nullopt for anything but pairs of them).
std::string hex_of(std::string_view bytes);
std::optional<std::string> bytes_of_hex(std::string_view hex);

}  // namespace jitprof::bundle
