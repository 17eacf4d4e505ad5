#include "workflowd/common/clock.hpp"

namespace workflowd {

SystemClock& SystemClock::Instance() {
  static SystemClock clock;
  return clock;
}

// 2026-01-30T10:00:00Z: a fixed, readable default start for tests.
ManualClock::ManualClock() : ManualClock(TimePoint(std::chrono::seconds(1769767200))) {}

ManualClock::ManualClock(TimePoint start) : now_(start) {}

TimePoint ManualClock::Now() const {
  std::lock_guard lock(mu_);
  return now_;
}

void ManualClock::Advance(Duration d) {
  std::lock_guard lock(mu_);
  now_ += std::chrono::duration_cast<WallClock::duration>(d);
}

void ManualClock::Set(TimePoint t) {
  std::lock_guard lock(mu_);
  now_ = t;
}

}  // namespace workflowd
