// The "did you mean" helper (common/suggest.hpp) that configuration and definition documents use
// for unknown keys.
#include "workflowd/common/suggest.hpp"

#include <gtest/gtest.h>

#include <array>

namespace workflowd {
namespace {

TEST(EditDistance, CountsInsertionsDeletionsAndSubstitutions) {
  EXPECT_EQ(EditDistance("", ""), 0u);
  EXPECT_EQ(EditDistance("abc", "abc"), 0u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("abc", ""), 3u);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(EditDistance("sitting", "kitten"), 3u);  // symmetric
  EXPECT_EQ(EditDistance("flaw", "lawn"), 2u);
  EXPECT_EQ(EditDistance("enabled", "enabeld"), 2u);  // a transposition is two edits
  EXPECT_EQ(EditDistance("steps", "step"), 1u);
  EXPECT_EQ(EditDistance("kafka.brokers", "kafka.broker"), 1u);
}

TEST(ClosestMatch, SuggestsTheNearestCandidateWithinTheLimit) {
  constexpr std::array<std::string_view, 4> kKeys = {"name", "enabled", "steps", "trigger"};
  EXPECT_EQ(ClosestMatch("nmae", kKeys, 2), "name");
  EXPECT_EQ(ClosestMatch("enabeld", kKeys, 2), "enabled");
  EXPECT_EQ(ClosestMatch("triggers", kKeys, 2), "trigger");
  // Too far: nothing is suggested rather than a random key.
  EXPECT_EQ(ClosestMatch("provider", kKeys, 2), std::nullopt);
  // The limit is inclusive.
  EXPECT_EQ(ClosestMatch("stpe", kKeys, 1), std::nullopt);
  EXPECT_EQ(ClosestMatch("stpe", kKeys, 2), "steps");
  EXPECT_EQ(ClosestMatch("anything", std::span<const std::string_view>{}, 3), std::nullopt);
}

TEST(ClosestMatch, PrefersTheCloserAndThenTheFirstCandidate) {
  constexpr std::array<std::string_view, 3> kKeys = {"cat", "bat", "car"};
  EXPECT_EQ(ClosestMatch("cas", kKeys, 3), "cat");   // "cat" and "car" are both 1 away
  EXPECT_EQ(ClosestMatch("bet", kKeys, 3), "bat");   // 1 away, before "cat" at 2
  EXPECT_EQ(ClosestMatch("cars", kKeys, 3), "car");  // exact prefix, 1 away
}

}  // namespace
}  // namespace workflowd
