// Retry pacing after a failure, with an injected monotonic clock: the waits of the event pipeline
// (PostgreSQL or the dead-letter topic away), of the background loops (PostgreSQL away) and of the
// matching index's refresher are one type, tested by moving a ManualSteadyClock, not by sleeping.
#pragma once

#include <chrono>
#include <mutex>

namespace workflowd {

// A monotonic time source: std::chrono::steady_clock in production. Unlike Clock (wall time, for
// timestamps that are stored or shown) it never jumps, so it measures waits and durations.
class SteadyClock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~SteadyClock() = default;
  virtual time_point Now() const = 0;
  // std::chrono::steady_clock, for production wiring.
  static const SteadyClock& System();
};

// A steady clock that only moves when told to. Thread-safe.
class ManualSteadyClock final : public SteadyClock {
 public:
  ManualSteadyClock() = default;
  time_point Now() const override;
  void Advance(std::chrono::nanoseconds d);

 private:
  mutable std::mutex mu_;
  time_point now_{};  // mu_
};

// Exponential backoff: after a failure the next attempt is due `initial` later, each further
// failure doubles the delay up to `max`, and a success starts again from `initial`. With
// initial == max it is a fixed retry delay.
class Backoff {
 public:
  Backoff(const SteadyClock& clock, std::chrono::milliseconds initial,
          std::chrono::milliseconds max);

  // A failure: the next attempt is due after the current delay (returned), which then doubles
  // (up to `max`) for the failure after.
  std::chrono::milliseconds Failed();
  // A success: the next failure waits `initial` again; an attempt is due at once.
  void Succeeded();
  // True once the delay of the last failure has passed (and after a success).
  bool Due() const;
  // Time left until the next attempt is due; zero when it is due.
  std::chrono::milliseconds Remaining() const;
  // The delay the next failure will get.
  std::chrono::milliseconds next_delay() const { return next_; }

 private:
  const SteadyClock& clock_;
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  std::chrono::milliseconds next_;
  SteadyClock::time_point due_{};
};

}  // namespace workflowd
