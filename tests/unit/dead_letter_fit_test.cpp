// FitDeadLetter: a dead letter too large for the producer's limit is cut to fit, saying so in a
// header; workflowd's own headers always stay.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>

#include "workflowd/consumers/kafka_source.hpp"

namespace workflowd::consumers {
namespace {

TEST(FitDeadLetter, ALetterThatFitsIsUnchanged) {
  DeadLetter letter{"k", std::string(100, 'v'), {{"h", "x"}}};
  DeadLetter copy = letter;
  FitDeadLetter(letter, 1000);
  EXPECT_EQ(letter.value, copy.value);
  EXPECT_EQ(letter.headers, copy.headers);
}

TEST(FitDeadLetter, TheValueIsCutAndTheCutSaidInAHeader) {
  const std::string value(5000, 'v');
  DeadLetter letter{"key", value, {{"x-original", "1"}, {"workflowd_dlq_reason", "too_large"}}};
  FitDeadLetter(letter, 1000);
  size_t total = letter.key->size() + letter.value->size();
  for (const auto& [k, v] : letter.headers) total += k.size() + (v ? v->size() : 0);
  EXPECT_LE(total, 1000u);
  EXPECT_GT(letter.value->size(), 500u);  // as much of the value as fits
  EXPECT_EQ(*letter.value, value.substr(0, letter.value->size()));
  EXPECT_EQ(letter.key, "key");
  std::map<std::string, std::optional<std::string>> h(letter.headers.begin(), letter.headers.end());
  EXPECT_EQ(h["x-original"], "1");  // the original headers stay
  EXPECT_EQ(h["workflowd_dlq_truncated"],
            "value truncated from 5000 to " + std::to_string(letter.value->size()) + " bytes");
}

TEST(FitDeadLetter, HeadersTooLargeForTheLimitAreDroppedButWorkflowdsStay) {
  DeadLetter letter{std::string(300, 'k'),
                    std::string(100, 'v'),
                    {{"x-huge", std::string(5000, 'h')}, {"workflowd_dlq_reason", "too_large"}}};
  FitDeadLetter(letter, 1000);
  std::map<std::string, std::optional<std::string>> h(letter.headers.begin(), letter.headers.end());
  EXPECT_FALSE(h.contains("x-huge"));
  EXPECT_FALSE(letter.key.has_value());
  EXPECT_EQ(h["workflowd_dlq_reason"], "too_large");
  EXPECT_EQ(h["workflowd_dlq_headers_dropped"], "true");
  EXPECT_EQ(*letter.value, std::string(100, 'v'));  // fits once the headers went
  FitDeadLetter(letter, 0);                         // nothing fits: no value at all
  EXPECT_EQ(letter.value, "");
}

TEST(FitDeadLetter, TheProducerLimitFollowsTheConsumers) {
  EXPECT_EQ(DeadLetterMaxBytes(4096), 1'000'000u);  // never below librdkafka's default
  EXPECT_GT(DeadLetterMaxBytes(1 << 20), size_t{1 << 20});
  EXPECT_GT(DeadLetterMaxBytes(8 << 20), size_t{8 << 20});
}

}  // namespace
}  // namespace workflowd::consumers
