#include "bundle/text.h"

#include "text_codec.h"

namespace jitprof::bundle {

bool is_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    std::size_t length = 0;
    std::uint32_t point = 0, least = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    }
    if ((lead & 0xe0) == 0xc0) length = 2, point = lead & 0x1f, least = 0x80;
    else if ((lead & 0xf0) == 0xe0) length = 3, point = lead & 0x0f, least = 0x800;
    else if ((lead & 0xf8) == 0xf0) length = 4, point = lead & 0x07, least = 0x10000;
    else return false;
    if (i + length > text.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      point = point << 6 | (next & 0x3f);
    }
    // Overlong forms, UTF-16 surrogates and points past U+10FFFF are not UTF-8.
    if (point < least || (point >= 0xd800 && point <= 0xdfff) || point > 0x10ffff) return false;
    i += length;
  }
  return true;
}

std::string json_text(const nlohmann::json& document, int indent) {
  return document.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string hex_of(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (const char c : bytes) {
    hex += kDigits[static_cast<unsigned char>(c) >> 4];
    hex += kDigits[static_cast<unsigned char>(c) & 15];
  }
  return hex;
}

std::optional<std::string> bytes_of_hex(std::string_view hex) {
  const auto digit = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string bytes;
  bytes.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int high = digit(hex[i]), low = digit(hex[i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    bytes += static_cast<char>(high << 4 | low);
  }
  return bytes;
}

nlohmann::json stored_text(const std::string& text) {
  if (is_utf8(text)) return text;
  return {{"hex", hex_of(text)}};
}

std::optional<std::string> text_of(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (!value.is_object() || value.size() != 1 || !value.contains("hex") || !value["hex"].is_string()) return std::nullopt;
  return bytes_of_hex(value["hex"].get_ref<const std::string&>());
}

}  // namespace jitprof::bundle
