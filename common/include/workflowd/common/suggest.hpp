// "Did you mean ...?" for unknown names (configuration keys, definition document keys): the
// allowed name closest to a misspelt one by edit distance.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

namespace workflowd {

// The Levenshtein distance between `a` and `b`: how many single-byte insertions, deletions and
// substitutions turn one into the other.
size_t EditDistance(std::string_view a, std::string_view b);

// The candidate closest to `word` when it is at most `max_distance` edits away (the first of
// equally close ones), or nullopt when none is that close: only near misses are worth suggesting.
std::optional<std::string_view> ClosestMatch(std::string_view word,
                                             std::span<const std::string_view> candidates,
                                             size_t max_distance);

}  // namespace workflowd
