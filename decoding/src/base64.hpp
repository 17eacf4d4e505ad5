// Base64 (RFC 4648, standard alphabet) as CloudEvents' data_base64 uses it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace workflowd::decoding::detail {

// Padding optional; no whitespace. nullopt when malformed.
std::optional<std::string> DecodeBase64(std::string_view text);

// With padding, no line breaks.
std::string EncodeBase64(std::string_view bytes);

}  // namespace workflowd::decoding::detail
