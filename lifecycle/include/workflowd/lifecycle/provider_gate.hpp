// What a provider (an engine) admits: its own bounded number of starts in flight, its circuit
// breaker, the rate at which its parked executions drain once it answers again, and its polls per
// second. One ProviderGate per provider, shared by every dispatch and poll loop of that provider
// in this replica, so that one engine's slowness or outage never takes another engine's slots.
//
// Breaker: closed (calls flow) -> open after `failure_threshold` consecutive outage failures
// (retryable errors: unavailable, throttled, deadline exceeded; a definition's own, permanent
// errors never count) with no success for `failure_window`: no calls, the provider's executions are
// parked (no attempt spent) -> after `open_interval`, half-open: one probe call is admitted (a lost
// probe is replaced after another interval, so the breaker can never stay stuck) -> the probe
// answers: closed, and the drain bucket admits starts at `drain_rate` per second, ramping up
// linearly to ten times that over `drain_ramp`, then unbounded (each moment's burst: a tenth of a
// second's worth); the probe fails: open again. Time is a SteadyClock, so tests move a manual one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>

#include "workflowd/common/backoff.hpp"
#include "workflowd/common/context.hpp"
#include "workflowd/metrics/registry.hpp"

namespace workflowd::lifecycle {

// A token bucket: `rate` tokens per second up to `burst`; rate 0 means unbounded. Not thread-safe
// (its owner locks).
class TokenBucket {
 public:
  TokenBucket(double rate, double burst, SteadyClock::time_point now);
  // Up to `want` whole tokens, taken.
  size_t Take(size_t want, SteadyClock::time_point now);
  // Gives back `n` tokens taken but not used (up to the burst).
  void Give(size_t n);
  // Changes the rate and the burst (tokens accrued so far at the old rate are kept, up to the new
  // burst).
  void SetRate(double rate, double burst, SteadyClock::time_point now);
  double rate() const { return rate_; }

 private:
  void Refill(SteadyClock::time_point now);
  double rate_;
  double burst_;
  double tokens_;
  SteadyClock::time_point last_;
};

struct ProviderLimits {
  size_t max_in_flight = 16;  // concurrent starts of this provider in this replica
  std::chrono::milliseconds call_timeout{10000};
  // Quick retries of one call on a retryable error, within its call_timeout (1: no retry).
  size_t retry_attempts = 1;
  std::chrono::milliseconds retry_initial_backoff{50};
  std::chrono::milliseconds retry_max_backoff{1000};
  // Consecutive outage failures that open the breaker (0: no breaker) ...
  size_t breaker_failure_threshold = 0;
  // ... once no call has succeeded for this long: a few executions' own retryable failures
  // between other executions' successes are not an outage.
  std::chrono::milliseconds breaker_failure_window{1000};
  std::chrono::milliseconds breaker_open_interval{10000};  // open -> a probe is admitted
  double breaker_drain_rate = 50;                          // starts/s right after closing
  std::chrono::milliseconds breaker_drain_ramp{30000};     // then unbounded after this
  double polls_per_second = 0;                             // 0: unbounded
};

enum class CircuitState { kClosed, kOpen, kHalfOpen };
const char* ToString(CircuitState state);

// The provider metric families (documented in the README's Metrics section).
struct ProviderGateMetrics {
  explicit ProviderGateMetrics(metrics::Registry& r);
  metrics::GaugeFamily& circuit_state;
  metrics::CounterFamily& parked;
  metrics::CounterFamily& probes;
  metrics::GaugeFamily& in_flight;
  metrics::CounterFamily& quick_retries;
  metrics::CounterFamily& polls_yielded;
};

class ProviderGate {
 public:
  // `metrics` may be null (no metrics).
  ProviderGate(std::string provider, ProviderLimits limits, const SteadyClock& clock,
               ProviderGateMetrics* metrics = nullptr);

  const std::string& provider() const { return provider_; }
  const ProviderLimits& limits() const { return limits_; }

  // How many starts a claim may take now, at most `want`, reserved as slots: each is given back by
  // ReleaseStart (once its call ended, or unused). 0 while the breaker is open; 1 when a probe is
  // due (half-open: that start is the probe); else the free slots, bounded by the drain bucket
  // after an outage.
  // `probe` (when given) says whether the admitted start is the half-open breaker's probe.
  size_t AdmitStarts(size_t want, bool* probe = nullptr);
  void ReleaseStart(size_t n = 1);
  // How many executions a claim may take beyond the `admitted` ones (AdmitStarts), at most
  // `want`: while the provider is steady, as many as its slots can start within kPrefetchWindow
  // at its recent call latency (NoteCallTime); none before a call was timed, nor during an
  // outage, a probe or the drain after it. A round holds its leases on them while they wait for
  // a slot (AcquireStart): a claim's cost (the walk over the tenant x environment scopes) is then
  // shared by a whole batch even when a fast engine's slots are few.
  size_t Prefetch(size_t admitted, size_t want) const;
  // A start slot for one prefetched execution, waiting (real time) until one is free: false once
  // `ctx` is done or the provider is no longer steady (that execution is then left due, not
  // started). A slot taken is given back by ReleaseStart.
  bool AcquireStart(const Context& ctx);
  // A call that began at `began` (Now()) ended, answered or not: its time feeds the recent call
  // latency Prefetch goes by (an average weighted toward the latest calls).
  void NoteCallTime(SteadyClock::time_point began);
  SteadyClock::time_point Now() const { return clock_.Now(); }
  // How long a prefetched execution may wait for its slot, and the time a claim's prefetched
  // executions should take to start at the recent call latency.
  static constexpr std::chrono::milliseconds kPrefetchWindow{1000};
  static constexpr std::chrono::milliseconds kPrefetchWait{3000};
  // How many polls a claim may take now, at most `want`: 0 while the breaker is open, 1 as a
  // probe, else bounded by polls_per_second (tokens taken; ReturnPolls gives back those a claim
  // did not use).
  size_t AdmitPolls(size_t want, bool* probe = nullptr);
  void ReturnPolls(size_t n);

  // The outcome of one call. Success: the engine answered (a permanent error is an answer too).
  // Failure: an outage failure (retryable error or timeout), after the quick retries. Returns the
  // breaker's state once it is counted: a failure that leaves it not closed parks its execution.
  CircuitState Succeeded();
  CircuitState Failed();
  // A probe that was admitted but never made (the round ran out of time, or the call failed on
  // our side): another may go at once.
  void ProbeNotMade();
  // Counts an execution parked (workflowd_lifecycle_parked_total) and a call repeated after a
  // retryable error (workflowd_provider_call_retries_total).
  void NoteParked();
  void NoteQuickRetry();
  // Counts a poll round that left the polls due less than its yield time ago waiting
  // (workflowd_provider_poll_rounds_yielded_total).
  void NotePollsYielded();

  CircuitState state() const;
  // Closed and not draining after an outage: the provider answers as usual.
  bool Steady() const;
  bool SlotFree() const;
  // Whether every start slot was in use at some moment within the last `within` (a burst of starts
  // keeps the provider saturated): then a provider's polls may yield to its starts
  // (PollerOptions::yield_to_starts).
  bool StartsSaturated(std::chrono::milliseconds within) const;
  // Waits (real time, at most `timeout`) until a start slot is free; true when one is.
  bool WaitForSlot(std::chrono::milliseconds timeout);

 private:
  // mu_ held. Moves open -> half-open when the interval passed (admitting the probe).
  bool TakeProbe(SteadyClock::time_point now);
  void SetState(CircuitState state, const char* why);  // mu_ held
  void ExportInFlight();                               // mu_ held
  void NoteIfSaturated(SteadyClock::time_point now);   // mu_ held: every slot in use now?

  const std::string provider_;
  const ProviderLimits limits_;
  const SteadyClock& clock_;
  ProviderGateMetrics* metrics_;
  mutable std::mutex mu_;
  std::condition_variable slot_freed_;
  size_t in_flight_ = 0;
  CircuitState state_ = CircuitState::kClosed;
  size_t consecutive_failures_ = 0;
  // None yet: a replica that starts (or restarts) during an outage opens its breaker after the
  // first failure_threshold failures, without waiting a window for a success it never saw.
  std::optional<SteadyClock::time_point> last_success_;
  SteadyClock::time_point probe_at_{};  // open / half-open: when a (new) probe may go
  bool probe_out_ = false;              // half-open: a probe was admitted, no answer yet
  std::optional<SteadyClock::time_point> draining_since_;  // closed after an outage
  TokenBucket drain_;
  TokenBucket polls_;
  std::optional<double> call_seconds_;                   // the recent call latency (NoteCallTime)
  std::optional<SteadyClock::time_point> saturated_at_;  // the last moment every slot was in use
};

}  // namespace workflowd::lifecycle
