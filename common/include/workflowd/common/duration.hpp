// Durations in the textual form of Go's time.ParseDuration ("30m", "1h30m", "1.5s", "250ms"),
// which is what the provider types' JSON uses for timeouts and retry intervals.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace workflowd {

// Parses a non-negative duration: a sequence of decimal numbers, each with an optional fraction and
// a unit ("ns", "us", "µs", "ms", "s", "m", "h"), e.g. "300ms", "1.5h", "2h45m". "0" alone is
// accepted. Returns nullopt on any syntax error, a negative sign, or overflow.
std::optional<std::chrono::nanoseconds> ParseDuration(std::string_view text);

// Formats compactly with the largest units and no zero components: 30m, 1h30m, 1s, 1.5s, 250ms,
// 0s. The output parses back to the same value with ParseDuration (and with Go's).
std::string FormatDuration(std::chrono::nanoseconds d);

}  // namespace workflowd
