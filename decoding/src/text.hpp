// Byte and text helpers of the decoder: header names, content types, names quoted for details.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace workflowd::decoding::detail {

inline constexpr std::string_view kBom = "\xEF\xBB\xBF";
inline constexpr size_t kMaxNameInDetail = 64;

inline char LowerAscii(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  }
  return true;
}

inline bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

inline bool IsCloudEventsHeader(std::string_view key) { return StartsWithIgnoreCase(key, "ce_"); }

inline bool IsContentTypeHeader(std::string_view key) {
  return EqualsIgnoreCase(key, "content-type");
}

inline std::string_view StripBom(std::string_view s) {
  if (s.substr(0, kBom.size()) == kBom) s.remove_prefix(kBom.size());
  return s;
}

// C0 controls, DEL, and C1 controls (U+0080..U+009F, encoded C2 80..C2 9F). Assumes valid UTF-8.
bool HasControlCharacters(std::string_view s);

// CloudEvents attribute names: lowercase ASCII letters and digits.
bool IsValidAttributeName(std::string_view s);

// A name taken from the input, safe and short for a detail message: printable ASCII kept, other
// bytes as \xNN, cut at kMaxNameInDetail bytes.
std::string QuoteName(std::string_view name);

// The media type of a content type, lowercased, without parameters or surrounding spaces.
std::string MediaType(std::string_view content_type);

// application/json, text/json, and any */*+json.
bool IsJsonContentType(std::string_view content_type);

}  // namespace workflowd::decoding::detail
