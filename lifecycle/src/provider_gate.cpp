#include "workflowd/lifecycle/provider_gate.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace workflowd::lifecycle {

namespace {

// The drain bucket's burst: this many seconds' worth of its rate.
constexpr double kDrainBurst = 0.1;

// The weight of the latest call in the recent call latency.
constexpr double kLatencyWeight = 0.2;
// Calls timed faster than this count as this fast (a clock's resolution; an in-process engine).
constexpr double kFastestCall = 0.001;
// How long AcquireStart sleeps at most between looks at the breaker (which opens without a slot
// being freed).
constexpr std::chrono::milliseconds kAcquireRecheck{50};

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

TokenBucket::TokenBucket(double rate, double burst, SteadyClock::time_point now)
    : rate_(rate), burst_(std::max(1.0, burst)), tokens_(std::max(1.0, burst)), last_(now) {}

void TokenBucket::Refill(SteadyClock::time_point now) {
  if (now > last_) {
    tokens_ = std::min(burst_, tokens_ + rate_ * Seconds(now - last_));
    last_ = now;
  }
}

size_t TokenBucket::Take(size_t want, SteadyClock::time_point now) {
  if (rate_ <= 0) return want;  // unbounded
  Refill(now);
  const auto n = std::min(want, static_cast<size_t>(std::floor(tokens_)));
  tokens_ -= static_cast<double>(n);
  return n;
}

void TokenBucket::Give(size_t n) {
  if (rate_ > 0) tokens_ = std::min(burst_, tokens_ + static_cast<double>(n));
}

void TokenBucket::SetRate(double rate, double burst, SteadyClock::time_point now) {
  Refill(now);
  rate_ = rate;
  burst_ = std::max(1.0, burst);
  tokens_ = std::min(tokens_, burst_);
}

const char* ToString(CircuitState state) {
  switch (state) {
    case CircuitState::kClosed:
      return "closed";
    case CircuitState::kOpen:
      return "open";
    case CircuitState::kHalfOpen:
      return "half_open";
  }
  return "closed";
}

ProviderGateMetrics::ProviderGateMetrics(metrics::Registry& r)
    : circuit_state(r.AddGauge("workflowd_provider_circuit_state",
                               "The circuit breaker's state per provider: 1 for the current "
                               "state (closed, open, half_open), 0 for the others",
                               {"provider", "state"})),
      parked(r.AddCounter("workflowd_lifecycle_parked_total",
                          "Starts that failed because their provider's breaker was open: the "
                          "execution stays pending without spending an attempt, by provider",
                          {"provider"})),
      probes(r.AddCounter("workflowd_provider_probes_total",
                          "Calls admitted as the probe of a half-open breaker, by provider and "
                          "result (success, failure, not_made)",
                          {"provider", "result"})),
      in_flight(r.AddGauge("workflowd_provider_in_flight",
                           "Start slots of a provider in use in this replica", {"provider"})),
      quick_retries(r.AddCounter("workflowd_provider_call_retries_total",
                                 "Provider calls repeated at once after a retryable error "
                                 "(providers.<name>.retry), by provider",
                                 {"provider"})),
      polls_yielded(r.AddCounter("workflowd_provider_poll_rounds_yielded_total",
                                 "Poll rounds that polled only overdue executions because every "
                                 "start slot of the provider was in use (providers.<name>."
                                 "poll_yield), by provider",
                                 {"provider"})) {}

ProviderGate::ProviderGate(std::string provider, ProviderLimits limits, const SteadyClock& clock,
                           ProviderGateMetrics* metrics)
    : provider_(std::move(provider)),
      limits_(limits),
      clock_(clock),
      metrics_(metrics),
      drain_(0, 1, clock.Now()),
      // A second's worth of polls at most in one go.
      polls_(limits.polls_per_second, limits.polls_per_second, clock.Now()) {
  if (metrics_) {
    for (auto s : {CircuitState::kClosed, CircuitState::kOpen, CircuitState::kHalfOpen}) {
      metrics_->circuit_state.WithLabels({provider_, ToString(s)})
          .Set(s == CircuitState::kClosed ? 1 : 0);
    }
    metrics_->parked.WithLabels({provider_});
    for (const char* result : {"success", "failure", "not_made"}) {
      metrics_->probes.WithLabels({provider_, result});
    }
    metrics_->in_flight.WithLabels({provider_}).Set(0);
    metrics_->quick_retries.WithLabels({provider_});
    metrics_->polls_yielded.WithLabels({provider_});
  }
}

void ProviderGate::SetState(CircuitState state, const char* why) {
  if (state == state_) return;
  spdlog::warn("provider {}: circuit {} -> {} ({})", provider_, ToString(state_), ToString(state),
               why);
  if (metrics_) {
    metrics_->circuit_state.WithLabels({provider_, ToString(state_)}).Set(0);
    metrics_->circuit_state.WithLabels({provider_, ToString(state)}).Set(1);
  }
  state_ = state;
}

void ProviderGate::ExportInFlight() {
  if (metrics_) metrics_->in_flight.WithLabels({provider_}).Set(static_cast<double>(in_flight_));
}

void ProviderGate::NoteIfSaturated(SteadyClock::time_point now) {
  if (in_flight_ >= limits_.max_in_flight) saturated_at_ = now;
}

bool ProviderGate::TakeProbe(SteadyClock::time_point now) {
  if (now < probe_at_) return false;
  // One probe per interval: a probe whose answer never comes cannot keep the breaker half-open.
  probe_at_ = now + limits_.breaker_open_interval;
  probe_out_ = true;
  SetState(CircuitState::kHalfOpen, "probing the engine with one call");
  return true;
}

size_t ProviderGate::AdmitStarts(size_t want, bool* probe) {
  std::lock_guard lock(mu_);
  const auto now = clock_.Now();
  size_t n = 0;
  if (probe) *probe = false;
  if (state_ != CircuitState::kClosed) {
    n = want > 0 && in_flight_ < limits_.max_in_flight && TakeProbe(now) ? 1 : 0;
    if (probe) *probe = n > 0;
  } else {
    n = std::min(want, limits_.max_in_flight - std::min(limits_.max_in_flight, in_flight_));
    if (draining_since_) {
      const auto ramp = limits_.breaker_drain_ramp;
      const auto elapsed = now - *draining_since_;
      if (elapsed >= ramp || limits_.breaker_drain_rate <= 0) {
        draining_since_.reset();
      } else {
        // A linear ramp from drain_rate to ten times it, then unbounded; the burst is a tenth of
        // a second's worth (about what a loop that found no token takes after its idle sleep).
        const double fraction = Seconds(elapsed) / Seconds(ramp);
        const double rate = limits_.breaker_drain_rate * (1.0 + 9.0 * fraction);
        drain_.SetRate(rate, rate * kDrainBurst, now);
        n = drain_.Take(n, now);
      }
    }
  }
  in_flight_ += n;
  ExportInFlight();
  NoteIfSaturated(now);
  return n;
}

void ProviderGate::ReleaseStart(size_t n) {
  {
    std::lock_guard lock(mu_);
    in_flight_ -= std::min(n, in_flight_);
    ExportInFlight();
  }
  slot_freed_.notify_all();
}

size_t ProviderGate::Prefetch(size_t admitted, size_t want) const {
  std::lock_guard lock(mu_);
  if (admitted == 0 || state_ != CircuitState::kClosed || draining_since_ || !call_seconds_) {
    return 0;
  }
  const double starts = static_cast<double>(limits_.max_in_flight) *
                        std::chrono::duration<double>(kPrefetchWindow).count() /
                        std::max(*call_seconds_, kFastestCall);
  const double beyond = std::max(0.0, std::floor(starts) - static_cast<double>(admitted));
  return static_cast<size_t>(std::min(static_cast<double>(want), beyond));
}

bool ProviderGate::AcquireStart(const Context& ctx) {
  std::unique_lock lock(mu_);
  for (;;) {
    if (state_ != CircuitState::kClosed || draining_since_) return false;
    if (in_flight_ < limits_.max_in_flight) {
      ++in_flight_;
      ExportInFlight();
      NoteIfSaturated(clock_.Now());
      return true;
    }
    NoteIfSaturated(clock_.Now());  // an execution waits for a slot
    const auto remaining = ctx.Remaining();
    if (ctx.Done() || (remaining && *remaining <= std::chrono::nanoseconds::zero())) return false;
    auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(kAcquireRecheck);
    if (remaining) wait = std::min(wait, *remaining);
    slot_freed_.wait_for(lock, wait);
  }
}

void ProviderGate::NoteCallTime(SteadyClock::time_point began) {
  std::lock_guard lock(mu_);
  const double took = std::max(0.0, Seconds(clock_.Now() - began));
  call_seconds_ = call_seconds_ ? *call_seconds_ + kLatencyWeight * (took - *call_seconds_) : took;
}

size_t ProviderGate::AdmitPolls(size_t want, bool* probe) {
  std::lock_guard lock(mu_);
  const auto now = clock_.Now();
  if (probe) *probe = false;
  if (state_ != CircuitState::kClosed) {
    const bool taken = want > 0 && TakeProbe(now);
    if (probe) *probe = taken;
    return taken ? 1 : 0;
  }
  return polls_.Take(want, now);
}

void ProviderGate::ReturnPolls(size_t n) {
  std::lock_guard lock(mu_);
  polls_.Give(n);
}

CircuitState ProviderGate::Succeeded() {
  std::lock_guard lock(mu_);
  consecutive_failures_ = 0;
  last_success_ = clock_.Now();
  if (state_ == CircuitState::kHalfOpen && probe_out_) {
    probe_out_ = false;
    if (metrics_) metrics_->probes.WithLabels({provider_, "success"}).Inc();
    // The parked executions drain from here, at drain_rate ramping up.
    draining_since_ = clock_.Now();
    drain_ = TokenBucket(limits_.breaker_drain_rate, limits_.breaker_drain_rate * kDrainBurst,
                         clock_.Now());
    SetState(CircuitState::kClosed, "the probe answered; parked executions drain");
  }
  return state_;
}

CircuitState ProviderGate::Failed() {
  std::lock_guard lock(mu_);
  const auto now = clock_.Now();
  if (state_ == CircuitState::kHalfOpen && probe_out_) {
    probe_out_ = false;
    if (metrics_) metrics_->probes.WithLabels({provider_, "failure"}).Inc();
    probe_at_ = now + limits_.breaker_open_interval;
    SetState(CircuitState::kOpen, "the probe failed");
    return state_;
  }
  if (state_ != CircuitState::kClosed) return state_;  // a late answer from before the break
  if (limits_.breaker_failure_threshold > 0 &&
      ++consecutive_failures_ >= limits_.breaker_failure_threshold &&
      (!last_success_ || now - *last_success_ >= limits_.breaker_failure_window)) {
    consecutive_failures_ = 0;
    draining_since_.reset();
    probe_at_ = now + limits_.breaker_open_interval;
    SetState(CircuitState::kOpen, "consecutive retryable failures or timeouts");
  }
  return state_;
}

void ProviderGate::ProbeNotMade() {
  std::lock_guard lock(mu_);
  if (state_ != CircuitState::kHalfOpen || !probe_out_) return;
  probe_out_ = false;
  probe_at_ = clock_.Now();  // another probe may go at once
  if (metrics_) metrics_->probes.WithLabels({provider_, "not_made"}).Inc();
}

void ProviderGate::NoteParked() {
  if (metrics_) metrics_->parked.WithLabels({provider_}).Inc();
}

void ProviderGate::NoteQuickRetry() {
  if (metrics_) metrics_->quick_retries.WithLabels({provider_}).Inc();
}

void ProviderGate::NotePollsYielded() {
  if (metrics_) metrics_->polls_yielded.WithLabels({provider_}).Inc();
}

bool ProviderGate::Steady() const {
  std::lock_guard lock(mu_);
  return state_ == CircuitState::kClosed && !draining_since_;
}

CircuitState ProviderGate::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

bool ProviderGate::SlotFree() const {
  std::lock_guard lock(mu_);
  return in_flight_ < limits_.max_in_flight;
}

bool ProviderGate::StartsSaturated(std::chrono::milliseconds within) const {
  std::lock_guard lock(mu_);
  return saturated_at_ && clock_.Now() - *saturated_at_ <= within;
}

bool ProviderGate::WaitForSlot(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  NoteIfSaturated(clock_.Now());
  return slot_freed_.wait_for(lock, timeout, [&] { return in_flight_ < limits_.max_in_flight; });
}

}  // namespace workflowd::lifecycle
