#include "workflowd/common/context.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace workflowd {

// Shared cancellation flag of one CancelSource, linked to its parent so that a parent's Cancel()
// reaches every descendant.
class CancelState : public std::enable_shared_from_this<CancelState> {
 public:
  bool Cancelled() const {
    std::lock_guard lock(mu_);
    return cancelled_;
  }

  void Cancel() noexcept {
    std::vector<std::weak_ptr<CancelState>> children;
    {
      std::lock_guard lock(mu_);
      if (cancelled_) return;
      cancelled_ = true;
      children.swap(children_);
    }
    cv_.notify_all();
    for (auto& weak : children) {
      if (auto child = weak.lock()) child->Cancel();
    }
  }

  void AddChild(const std::shared_ptr<CancelState>& child) {
    bool cancel_now = false;
    {
      std::lock_guard lock(mu_);
      if (cancelled_) {
        cancel_now = true;
      } else {
        // Drop children that are gone so long-lived parents do not grow without bound.
        std::erase_if(children_, [](const std::weak_ptr<CancelState>& w) { return w.expired(); });
        children_.push_back(child);
      }
    }
    if (cancel_now) child->Cancel();
  }

  // Returns true when `until` was reached, false when cancelled first.
  bool WaitUntil(std::chrono::steady_clock::time_point until) const {
    std::unique_lock lock(mu_);
    return !cv_.wait_until(lock, until, [this] { return cancelled_; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool cancelled_ = false;
  std::vector<std::weak_ptr<CancelState>> children_;
};

Context Context::Background() { return Context(nullptr, std::nullopt); }

Context Context::WithTimeout(std::chrono::nanoseconds timeout) const {
  return WithDeadline(std::chrono::steady_clock::now() + timeout);
}

Context Context::WithDeadline(SteadyTime deadline) const {
  SteadyTime effective = deadline_ ? std::min(*deadline_, deadline) : deadline;
  return Context(cancel_, effective);
}

std::optional<std::chrono::nanoseconds> Context::Remaining() const {
  if (!deadline_) return std::nullopt;
  auto left = *deadline_ - std::chrono::steady_clock::now();
  return std::max(std::chrono::nanoseconds::zero(),
                  std::chrono::duration_cast<std::chrono::nanoseconds>(left));
}

ContextState Context::State() const {
  if (cancel_ && cancel_->Cancelled()) return ContextState::kCancelled;
  if (deadline_ && std::chrono::steady_clock::now() >= *deadline_) {
    return ContextState::kDeadlineExceeded;
  }
  return ContextState::kActive;
}

bool Context::WaitFor(std::chrono::nanoseconds d) const {
  auto until = std::chrono::steady_clock::now() + d;
  bool cut_by_deadline = deadline_ && *deadline_ < until;
  auto wait_until = cut_by_deadline ? *deadline_ : until;
  if (cancel_) {
    if (!cancel_->WaitUntil(wait_until)) return false;
  } else {
    std::this_thread::sleep_until(wait_until);
  }
  return !cut_by_deadline;
}

CancelSource::CancelSource() : state_(std::make_shared<CancelState>()) {}

CancelSource::CancelSource(const Context& parent)
    : state_(std::make_shared<CancelState>()), deadline_(parent.deadline_) {
  if (parent.cancel_) parent.cancel_->AddChild(state_);
}

CancelSource::~CancelSource() = default;

Context CancelSource::context() const { return Context(state_, deadline_); }

void CancelSource::Cancel() noexcept { state_->Cancel(); }

const char* ToString(ContextState state) {
  switch (state) {
    case ContextState::kActive:
      return "active";
    case ContextState::kCancelled:
      return "cancelled";
    case ContextState::kDeadlineExceeded:
      return "deadline exceeded";
  }
  return "unknown";
}

}  // namespace workflowd
