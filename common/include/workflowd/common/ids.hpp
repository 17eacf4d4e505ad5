// Identifiers for rows we create (definitions, executions): a prefix and a ULID (48-bit
// millisecond time + 80 random bits, Crockford base32), so ids sort by creation time and are valid
// provider execution names (^[a-zA-Z0-9-_]{1,128}$). And the rule for the tenant and environment
// ids that events and definitions carry.
#pragma once

#include <string>
#include <string_view>

#include "workflowd/common/clock.hpp"

namespace workflowd {

// e.g. NewId("ex_", now) -> "ex_01HZX3J8Q6R8M5W2T4K7N9B1CD". Thread-safe.
std::string NewId(std::string_view prefix, TimePoint now);

// The tenant and environment id rule, one for the event decoder and the definition validator:
// an ASCII letter or digit, then up to 127 letters, digits, '_', '.' or '-'. Their messages quote
// kScopeIdPattern.
inline constexpr std::string_view kScopeIdPattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$";
bool IsValidScopeId(std::string_view id);

}  // namespace workflowd
