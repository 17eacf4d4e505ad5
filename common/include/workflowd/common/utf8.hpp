// UTF-8 well-formedness (RFC 3629), the one implementation for the whole daemon: the event decoder,
// the definition loader, the condition language's messages, the metrics. IsValidUtf8 is
// simdjson's validate_utf8 (SIMD, already a dependency): 15x faster than a byte-by-byte check on
// a 390-byte text, 2x on a 16-byte header (measured 2026-12-07: 102 vs 1,736 ns and 15 vs 35 ns;
// utfcpp's utf8::is_valid took 1,866 and 38 ns, no gain); `decode_bench --only decode --shape
// binary` (ten headers, 300 bytes of text): 1,590 -> 1,280 ns per event, medians of 3 in turn.
// Utf8SequenceLength stays written here: neither library offers the length of one sequence, which
// SanitizeUtf8 (one U+FFFD per bad byte) and the loader (locating a bad byte) need. Tested against
// Markus Kuhn's UTF-8 decoder stress cases and Python's codec in tests/unit/common_test.cpp.
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
