// RFC 3339 timestamps ("2026-01-30T10:00:00Z", "2026-01-30T10:00:00.123+02:00"), as used in the
// daemon's JSON documents and by CloudEvents' `time` attribute.
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

// Written here rather than with Howard Hinnant's date library (libhowardhinnant-date-dev), whose
// date::parse("%FT%TZ") is neither RFC 3339's grammar nor fast: it takes one-digit months, days
// and hours, a sign before the year and two-digit years, and refuses 't', a leap second and more
// than 9 fraction digits; through an istringstream it took 2,900 ns against 48 ns here for the
// decoder's `time` attribute (measured 2026-12-07). Checked against Python's datetime on a
// generated table (tests/unit/testdata/rfc3339).
//
// Accepts 'T' or 't' or ' ' between date and time, an optional fraction (nanoseconds: digits after
// the ninth are ignored), and 'Z'/'z' or a numeric offset (a leap second, :60, counts as :59).
// Returns nullopt when the text is not a valid timestamp, and when its year is outside
// kMinRfc3339Year..kMaxRfc3339Year (such an instant does not fit TimePoint; it is never wrapped
// around).
std::optional<TimePoint> ParseRfc3339(std::string_view text);

}  // namespace workflowd
