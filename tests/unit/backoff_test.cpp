// Backoff: the delay after each failure doubles up to its maximum, a success starts again from the
// initial delay, and an attempt is due exactly when the clock has moved by the delay.
#include "workflowd/common/backoff.hpp"

#include <gtest/gtest.h>

namespace workflowd {
namespace {

using namespace std::chrono_literals;

TEST(Backoff, DoublesUpToItsMaximumAndStartsAgainAfterASuccess) {
  ManualSteadyClock clock;
  Backoff backoff(clock, 100ms, 500ms);
  EXPECT_EQ(backoff.Failed(), 100ms);
  EXPECT_EQ(backoff.Failed(), 200ms);
  EXPECT_EQ(backoff.Failed(), 400ms);
  EXPECT_EQ(backoff.Failed(), 500ms);  // capped
  EXPECT_EQ(backoff.Failed(), 500ms);
  backoff.Succeeded();
  EXPECT_EQ(backoff.next_delay(), 100ms);
  EXPECT_EQ(backoff.Failed(), 100ms);
}

TEST(Backoff, IsDueOnceTheClockMovedByTheDelay) {
  ManualSteadyClock clock;
  Backoff backoff(clock, 100ms, 5s);
  EXPECT_TRUE(backoff.Due());  // nothing failed yet
  EXPECT_EQ(backoff.Remaining(), 0ms);
  backoff.Failed();
  EXPECT_FALSE(backoff.Due());
  EXPECT_EQ(backoff.Remaining(), 100ms);
  clock.Advance(99ms);
  EXPECT_FALSE(backoff.Due());
  EXPECT_EQ(backoff.Remaining(), 1ms);
  clock.Advance(1ms);
  EXPECT_TRUE(backoff.Due());
  EXPECT_EQ(backoff.Remaining(), 0ms);
  backoff.Failed();  // the second failure waits twice as long
  clock.Advance(199ms);
  EXPECT_FALSE(backoff.Due());
  clock.Advance(1ms);
  EXPECT_TRUE(backoff.Due());
}

TEST(Backoff, RemainingRoundsUpSoThatAWaitOfItEndsWhenDue) {
  ManualSteadyClock clock;
  Backoff backoff(clock, 100ms, 100ms);
  backoff.Failed();
  clock.Advance(std::chrono::microseconds(99'500));
  EXPECT_EQ(backoff.Remaining(), 1ms);
  EXPECT_FALSE(backoff.Due());
}

TEST(Backoff, ASuccessMakesTheNextAttemptDueAtOnce) {
  ManualSteadyClock clock;
  Backoff backoff(clock, 1s, 1s);  // a fixed retry delay
  EXPECT_EQ(backoff.Failed(), 1s);
  EXPECT_EQ(backoff.Failed(), 1s);
  EXPECT_FALSE(backoff.Due());
  backoff.Succeeded();
  EXPECT_TRUE(backoff.Due());
}

TEST(ManualSteadyClock, MovesOnlyWhenTold) {
  ManualSteadyClock clock;
  const auto start = clock.Now();
  EXPECT_EQ(clock.Now(), start);
  clock.Advance(250ms);
  EXPECT_EQ(clock.Now() - start, 250ms);
}

TEST(SteadyClock, SystemFollowsTheSteadyClock) {
  const auto before = std::chrono::steady_clock::now();
  const auto now = SteadyClock::System().Now();
  EXPECT_GE(now, before);
  EXPECT_LE(now, std::chrono::steady_clock::now());
}

}  // namespace
}  // namespace workflowd
