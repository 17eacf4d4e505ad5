// A provider's gate with a manual steady clock: start slots, the circuit breaker's states (closed,
// open, half-open with one probe, closed again), the drain rate after an outage and the poll
// rate, all by moving the clock.
#include "workflowd/lifecycle/provider_gate.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "workflowd/common/backoff.hpp"
#include "workflowd/metrics/registry.hpp"

namespace workflowd::lifecycle {
namespace {

using namespace std::chrono_literals;

ProviderLimits Limits() {
  ProviderLimits l;
  l.max_in_flight = 4;
  l.breaker_failure_threshold = 3;
  l.breaker_failure_window = 0ms;
  l.breaker_open_interval = 10s;
  l.breaker_drain_rate = 10;
  l.breaker_drain_ramp = 10s;
  return l;
}

TEST(TokenBucket, AdmitsItsRateAndNoMore) {
  ManualSteadyClock clock;
  TokenBucket bucket(5, 5, clock.Now());
  EXPECT_EQ(bucket.Take(100, clock.Now()), 5u);  // starts full: one second's worth
  EXPECT_EQ(bucket.Take(100, clock.Now()), 0u);
  clock.Advance(200ms);
  EXPECT_EQ(bucket.Take(100, clock.Now()), 1u);
  clock.Advance(10s);
  EXPECT_EQ(bucket.Take(100, clock.Now()), 5u);  // never more than the burst
  bucket.Give(2);
  EXPECT_EQ(bucket.Take(100, clock.Now()), 2u);
  TokenBucket unbounded(0, 0, clock.Now());
  EXPECT_EQ(unbounded.Take(1000, clock.Now()), 1000u);
}

TEST(ProviderGate, StartSlotsAreBoundedAndGivenBack) {
  ManualSteadyClock clock;
  metrics::Registry registry;
  ProviderGateMetrics metrics(registry);
  ProviderGate gate("a", Limits(), clock, &metrics);
  EXPECT_EQ(gate.AdmitStarts(3), 3u);
  EXPECT_EQ(gate.AdmitStarts(3), 1u);  // one slot left of four
  EXPECT_EQ(gate.AdmitStarts(3), 0u);
  EXPECT_FALSE(gate.SlotFree());
  EXPECT_EQ(metrics.in_flight.WithLabels({"a"}).Value(), 4);
  gate.ReleaseStart(2);
  EXPECT_TRUE(gate.WaitForSlot(0ms));
  EXPECT_EQ(gate.AdmitStarts(10), 2u);
  gate.ReleaseStart(4);
  EXPECT_EQ(metrics.in_flight.WithLabels({"a"}).Value(), 0);
}

TEST(ProviderGate, ConsecutiveOutageFailuresOpenTheBreakerAndASuccessResetsTheCount) {
  ManualSteadyClock clock;
  metrics::Registry registry;
  ProviderGateMetrics metrics(registry);
  ProviderGate gate("a", Limits(), clock, &metrics);
  EXPECT_EQ(gate.Failed(), CircuitState::kClosed);
  EXPECT_EQ(gate.Failed(), CircuitState::kClosed);
  EXPECT_EQ(gate.Succeeded(), CircuitState::kClosed);  // not consecutive any more
  EXPECT_EQ(gate.Failed(), CircuitState::kClosed);
  EXPECT_EQ(gate.Failed(), CircuitState::kClosed);
  EXPECT_EQ(gate.Failed(), CircuitState::kOpen);
  EXPECT_EQ(metrics.circuit_state.WithLabels({"a", "open"}).Value(), 1);
  EXPECT_EQ(metrics.circuit_state.WithLabels({"a", "closed"}).Value(), 0);
  // Open: no starts, no polls, late failures change nothing.
  EXPECT_EQ(gate.AdmitStarts(4), 0u);
  EXPECT_EQ(gate.AdmitPolls(4), 0u);
  EXPECT_EQ(gate.Failed(), CircuitState::kOpen);
  clock.Advance(9s);
  EXPECT_EQ(gate.AdmitStarts(4), 0u);
}

// Consecutive failures open the breaker only once no call succeeded for failure_window: some
// executions' own retryable failures between the others' successes are not an outage.
TEST(ProviderGate, FailuresOpenTheBreakerOnlyAfterAWindowWithoutSuccess) {
  ManualSteadyClock clock;
  ProviderLimits limits = Limits();
  limits.breaker_failure_window = 5s;
  ProviderGate gate("a", limits, clock);
  gate.Succeeded();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(gate.Failed(), CircuitState::kClosed) << i;
  clock.Advance(3s);
  gate.Succeeded();
  clock.Advance(4s);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(gate.Failed(), CircuitState::kClosed) << i;
  clock.Advance(1s);  // 5 s since the last success
  EXPECT_EQ(gate.Failed(), CircuitState::kOpen);
}

// A gate that has seen no success yet (a replica started or restarted during an outage) opens
// after the threshold at once: waiting a window would spend attempts on its first claims.
TEST(ProviderGate, AGateThatNeverSawASuccessOpensAfterTheThresholdAtOnce) {
  ManualSteadyClock clock;
  ProviderLimits limits = Limits();
  limits.breaker_failure_window = 5s;
  ProviderGate gate("a", limits, clock);
  EXPECT_EQ(gate.Failed(), CircuitState::kClosed);
  EXPECT_EQ(gate.Failed(), CircuitState::kClosed);
  EXPECT_EQ(gate.Failed(), CircuitState::kOpen);
}

TEST(ProviderGate, OneProbeAfterTheIntervalClosesTheBreakerOrOpensItAgain) {
  ManualSteadyClock clock;
  metrics::Registry registry;
  ProviderGateMetrics metrics(registry);
  ProviderGate gate("a", Limits(), clock, &metrics);
  for (int i = 0; i < 3; ++i) gate.Failed();
  clock.Advance(10s);
  bool probe = false;
  EXPECT_EQ(gate.AdmitStarts(4, &probe), 1u);  // one probe
  EXPECT_TRUE(probe);
  EXPECT_EQ(gate.state(), CircuitState::kHalfOpen);
  EXPECT_EQ(gate.AdmitStarts(4), 0u);  // and only one
  EXPECT_EQ(gate.AdmitPolls(4), 0u);
  gate.ReleaseStart();
  EXPECT_EQ(gate.Failed(), CircuitState::kOpen);  // the probe failed
  EXPECT_EQ(metrics.probes.WithLabels({"a", "failure"}).Value(), 1);
  EXPECT_EQ(gate.AdmitStarts(4), 0u);
  clock.Advance(10s);
  EXPECT_EQ(gate.AdmitPolls(4, &probe), 1u);  // a poll may be the probe as well
  EXPECT_TRUE(probe);
  EXPECT_EQ(gate.Succeeded(), CircuitState::kClosed);
  EXPECT_EQ(metrics.probes.WithLabels({"a", "success"}).Value(), 1);
  EXPECT_EQ(metrics.circuit_state.WithLabels({"a", "closed"}).Value(), 1);
  EXPECT_EQ(metrics.circuit_state.WithLabels({"a", "half_open"}).Value(), 0);
}

TEST(ProviderGate, AProbeNeverMadeOrLostCannotKeepTheBreakerHalfOpen) {
  ManualSteadyClock clock;
  ProviderGate gate("a", Limits(), clock);
  for (int i = 0; i < 3; ++i) gate.Failed();
  clock.Advance(10s);
  EXPECT_EQ(gate.AdmitStarts(1), 1u);
  gate.ReleaseStart();
  gate.ProbeNotMade();                 // the round ran out of time before the call
  EXPECT_EQ(gate.AdmitStarts(1), 1u);  // another probe at once
  gate.ReleaseStart();
  // That probe's answer never comes: after another interval a new probe goes.
  EXPECT_EQ(gate.AdmitStarts(1), 0u);
  clock.Advance(10s);
  EXPECT_EQ(gate.AdmitStarts(1), 1u);
  EXPECT_EQ(gate.state(), CircuitState::kHalfOpen);
}

TEST(ProviderGate, ParkedExecutionsDrainAtABoundedRateThatRampsUpToFull) {
  ManualSteadyClock clock;
  ProviderLimits limits = Limits();
  limits.max_in_flight = 1000;
  limits.breaker_drain_rate = 100;
  ProviderGate gate("a", limits, clock);
  for (int i = 0; i < 3; ++i) gate.Failed();
  clock.Advance(10s);
  ASSERT_EQ(gate.AdmitStarts(1), 1u);
  gate.ReleaseStart();
  gate.Succeeded();
  const auto admit = [&] {
    const size_t n = gate.AdmitStarts(1000);
    gate.ReleaseStart(n);  // slots are not what bounds these starts
    return n;
  };
  // Right after closing: a tenth of a second's worth of 100/s, then nothing until tokens accrue.
  EXPECT_EQ(admit(), 10u);
  EXPECT_EQ(admit(), 0u);
  clock.Advance(100ms);
  EXPECT_NEAR(static_cast<double>(admit()), 10, 1);
  // Halfway through the ramp (10 s): 550/s.
  clock.Advance(4900ms);
  admit();
  clock.Advance(100ms);
  EXPECT_NEAR(static_cast<double>(admit()), 55, 1);
  // Past the ramp: every free slot.
  clock.Advance(5s);
  EXPECT_EQ(admit(), 1000u);
}

TEST(ProviderGate, PollsPerSecondAreBounded) {
  ManualSteadyClock clock;
  ProviderLimits limits = Limits();
  limits.polls_per_second = 20;
  ProviderGate gate("a", limits, clock);
  EXPECT_EQ(gate.AdmitPolls(500), 20u);
  EXPECT_EQ(gate.AdmitPolls(500), 0u);
  gate.ReturnPolls(5);  // a claim that found fewer due
  EXPECT_EQ(gate.AdmitPolls(500), 5u);
  clock.Advance(500ms);
  EXPECT_EQ(gate.AdmitPolls(500), 10u);
  ProviderGate unbounded("b", Limits(), clock);
  EXPECT_EQ(unbounded.AdmitPolls(500), 500u);
}

// A claim takes executions beyond the free slots only once calls were timed and while the
// provider is steady: as many in all as its slots start within kPrefetchWindow at the recent call
// latency, which follows the latest calls.
TEST(ProviderGate, PrefetchFollowsTheRecentCallLatencyWhileSteady) {
  ManualSteadyClock clock;
  ProviderGate gate("a", Limits(), clock);  // four slots
  EXPECT_EQ(gate.Prefetch(4, 100), 0u);     // no call timed yet
  auto began = gate.Now();
  clock.Advance(100ms);
  gate.NoteCallTime(began);  // 100 ms a call: four slots start 40 in a second
  EXPECT_EQ(gate.Prefetch(4, 100), 36u);
  EXPECT_EQ(gate.Prefetch(4, 10), 10u);  // no more than wanted
  EXPECT_EQ(gate.Prefetch(0, 100), 0u);  // no slot free now: none
  began = gate.Now();
  clock.Advance(1100ms);
  gate.NoteCallTime(began);              // the latest call weighs a fifth: 0.1 + 0.2 x 1.0 = 0.3 s
  EXPECT_EQ(gate.Prefetch(4, 100), 9u);  // 4 / 0.3 = 13 in a second, 9 beyond the four
  for (int i = 0; i < 3; ++i) gate.Failed();
  ASSERT_EQ(gate.state(), CircuitState::kOpen);
  EXPECT_EQ(gate.Prefetch(4, 100), 0u);  // an outage: none
}

// A prefetched execution's slot: taken when one is free, waited for while its context lasts, and
// refused once the breaker is not closed (the execution is then left due).
TEST(ProviderGate, AcquireStartWaitsForASlotAndGivesUpOnAnOutageOrItsDeadline) {
  ManualSteadyClock clock;
  metrics::Registry registry;
  ProviderGateMetrics metrics(registry);
  ProviderGate gate("a", Limits(), clock, &metrics);
  ASSERT_EQ(gate.AdmitStarts(4), 4u);
  EXPECT_FALSE(gate.AcquireStart(Context::Background().WithTimeout(20ms)));  // none free
  std::thread freer([&] {
    std::this_thread::sleep_for(20ms);
    gate.ReleaseStart();
  });
  EXPECT_TRUE(gate.AcquireStart(Context::Background().WithTimeout(10s)));
  freer.join();
  EXPECT_EQ(metrics.in_flight.WithLabels({"a"}).Value(), 4);
  std::thread opener([&] {
    std::this_thread::sleep_for(20ms);
    for (int i = 0; i < 3; ++i) gate.Failed();
  });
  EXPECT_FALSE(gate.AcquireStart(Context::Background().WithTimeout(10s)));  // the breaker opened
  opener.join();
  gate.ReleaseStart(4);
  EXPECT_FALSE(gate.AcquireStart(Context::Background()));  // open: no slot, however many free
  EXPECT_EQ(metrics.in_flight.WithLabels({"a"}).Value(), 0);
}

}  // namespace
}  // namespace workflowd::lifecycle
