#include "workflowd/common/backoff.hpp"

#include <algorithm>

namespace workflowd {

namespace {

class SystemSteadyClock final : public SteadyClock {
 public:
  time_point Now() const override { return std::chrono::steady_clock::now(); }
};

}  // namespace

const SteadyClock& SteadyClock::System() {
  static const SystemSteadyClock clock;
  return clock;
}

SteadyClock::time_point ManualSteadyClock::Now() const {
  std::lock_guard lock(mu_);
  return now_;
}

void ManualSteadyClock::Advance(std::chrono::nanoseconds d) {
  std::lock_guard lock(mu_);
  now_ += std::chrono::duration_cast<time_point::duration>(d);
}

Backoff::Backoff(const SteadyClock& clock, std::chrono::milliseconds initial,
                 std::chrono::milliseconds max)
    : clock_(clock), initial_(initial), max_(std::max(initial, max)), next_(initial) {}

std::chrono::milliseconds Backoff::Failed() {
  const std::chrono::milliseconds delay = next_;
  due_ = clock_.Now() + delay;
  next_ = std::min(next_ * 2, max_);
  return delay;
}

void Backoff::Succeeded() {
  next_ = initial_;
  due_ = {};
}

bool Backoff::Due() const { return clock_.Now() >= due_; }

std::chrono::milliseconds Backoff::Remaining() const {
  const auto left = due_ - clock_.Now();
  if (left <= SteadyClock::time_point::duration::zero()) return std::chrono::milliseconds(0);
  // Rounded up: a wait of Remaining() ends at or after the due time, never just before it.
  return std::chrono::ceil<std::chrono::milliseconds>(left);
}

}  // namespace workflowd
