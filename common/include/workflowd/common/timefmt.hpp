// RFC 3339 timestamps ("2026-01-30T10:00:00Z", "2026-01-30T10:00:00.123+02:00"), as used by
// seed 002's JSON and by CloudEvents' `time` attribute.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "workflowd/common/clock.hpp"

namespace workflowd {

// UTC with a 'Z' suffix; fractional seconds only when non-zero, trimmed (up to nanoseconds).
std::string FormatRfc3339(TimePoint t);

// Accepts 'T' or 't' or ' ' between date and time, an optional fraction of up to 9 digits, and
// 'Z'/'z' or a numeric offset. Returns nullopt when the text is not a valid timestamp.
std::optional<TimePoint> ParseRfc3339(std::string_view text);

}  // namespace workflowd
