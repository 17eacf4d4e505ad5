#include "text.hpp"

namespace workflowd::decoding::detail {

bool HasControlCharacters(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) return true;
    if (c == 0xC2 && i + 1 < s.size()) {
      const auto next = static_cast<unsigned char>(s[i + 1]);
      if (next >= 0x80 && next <= 0x9F) return true;
    }
  }
  return false;
}

bool IsValidAttributeName(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

std::string QuoteName(std::string_view name) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  for (size_t i = 0; i < name.size() && i < kMaxNameInDetail; ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c >= 0x20 && c < 0x7F && c != '\'' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  if (name.size() > kMaxNameInDetail) out += "...";
  out += '\'';
  return out;
}

std::string MediaType(std::string_view content_type) {
  const size_t semicolon = content_type.find(';');
  std::string_view media = content_type.substr(0, semicolon);
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.remove_prefix(1);
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  std::string out(media);
  for (char& c : out) c = LowerAscii(c);
  return out;
}

bool IsJsonContentType(std::string_view content_type) {
  const std::string media = MediaType(content_type);
  if (media == "application/json" || media == "text/json") return true;
  const size_t slash = media.find('/');
  return slash != std::string::npos && media.size() > slash + 1 + 5 && media.ends_with("+json");
}

}  // namespace workflowd::decoding::detail
