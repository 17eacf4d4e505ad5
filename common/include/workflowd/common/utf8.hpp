// UTF-8 well-formedness (RFC 3629), shared by the event decoder, the definition loader and the
// condition language's messages. Written here rather than taken from a library: the checks are a
// few lines, run per byte on hot paths, and the Debian libraries at hand (simdjson validates whole
// documents only; ICU is far too large a dependency for this) do not offer the per-sequence
// length the callers need to sanitize or locate a bad byte. Tested against Markus Kuhn's UTF-8
// decoder stress cases and Python's codec in tests/unit/common_test.cpp.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace workflowd {

// Length of the well-formed UTF-8 sequence at s[i] (no overlongs, no surrogates, at most
// U+10FFFF), or 0 when it is ill-formed. Requires i < s.size().
size_t Utf8SequenceLength(std::string_view s, size_t i);

bool IsValidUtf8(std::string_view s);

// `s` with each ill-formed byte replaced by U+FFFD.
std::string SanitizeUtf8(std::string_view s);

// The first at most `max_bytes` bytes of `s`, cut at a character boundary (never inside a
// multi-byte sequence), so that the result stays valid UTF-8 when `s` is.
std::string_view Utf8Prefix(std::string_view s, size_t max_bytes);

}  // namespace workflowd
