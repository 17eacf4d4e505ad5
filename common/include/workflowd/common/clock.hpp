// Time sources. Business logic takes a Clock& so that leases, backoff, timeouts and the mock
// provider's delayed outcomes are tested by moving a ManualClock, not by sleeping.
#pragma once

#include <chrono>
#include <mutex>

namespace workflowd {

using WallClock = std::chrono::system_clock;
using TimePoint = WallClock::time_point;
using Duration = std::chrono::nanoseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time, used for timestamps that are stored or shown.
  virtual TimePoint Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint Now() const override { return WallClock::now(); }
  // A process-wide instance for production wiring.
  static SystemClock& Instance();
};

// A clock that only moves when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimePoint start);
  ManualClock();
  TimePoint Now() const override;
  void Advance(Duration d);
  void Set(TimePoint t);

 private:
  mutable std::mutex mu_;
  TimePoint now_;
};

}  // namespace workflowd
