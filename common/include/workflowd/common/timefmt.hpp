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

// The years ParseRfc3339 accepts: every instant of them, with any UTC offset, fits TimePoint
// (int64 nanoseconds: 1677-09-21 .. 2262-04-11).
inline constexpr int kMinRfc3339Year = 1678;
inline constexpr int kMaxRfc3339Year = 2261;

// Accepts 'T' or 't' or ' ' between date and time, an optional fraction of up to 9 digits, and
// 'Z'/'z' or a numeric offset. Returns nullopt when the text is not a valid timestamp, and when
// its year is outside kMinRfc3339Year..kMaxRfc3339Year (such an instant does not fit TimePoint;
// it is never wrapped around).
std::optional<TimePoint> ParseRfc3339(std::string_view text);

}  // namespace workflowd
