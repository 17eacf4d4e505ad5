// Deadline and cancellation carried by every call that may block (provider calls, database and
// broker round trips), in the spirit of Go's context.Context: a Context is cheap to copy, derived
// contexts inherit their parent's deadline and cancellation, and cancelling a parent cancels all of
// its children.
#pragma once

#include <chrono>
#include <memory>
#include <optional>

namespace workflowd {

class CancelState;

enum class ContextState {
  kActive,
  kCancelled,
  kDeadlineExceeded,
};

class Context {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;

  // A context that is never cancelled and has no deadline.
  static Context Background();

  // A child whose deadline is the earlier of the parent's and now + timeout.
  Context WithTimeout(std::chrono::nanoseconds timeout) const;
  Context WithDeadline(SteadyTime deadline) const;

  std::optional<SteadyTime> Deadline() const { return deadline_; }
  // Time left before the deadline (zero when past it); nullopt when there is no deadline.
  std::optional<std::chrono::nanoseconds> Remaining() const;

  ContextState State() const;
  bool Done() const { return State() != ContextState::kActive; }

  // Sleeps for `d` unless the context is cancelled or its deadline passes first.
  // Returns true when the full duration elapsed, false when the context ended the wait.
  bool WaitFor(std::chrono::nanoseconds d) const;

 private:
  friend class CancelSource;
  Context(std::shared_ptr<CancelState> cancel, std::optional<SteadyTime> deadline)
      : cancel_(std::move(cancel)), deadline_(deadline) {}

  std::shared_ptr<CancelState> cancel_;  // null for Background()
  std::optional<SteadyTime> deadline_;
};

// Owns the right to cancel a context and every context derived from it.
class CancelSource {
 public:
  CancelSource();
  explicit CancelSource(const Context& parent);
  ~CancelSource();
  CancelSource(const CancelSource&) = delete;
  CancelSource& operator=(const CancelSource&) = delete;

  Context context() const;
  void Cancel() noexcept;

 private:
  std::shared_ptr<CancelState> state_;
  std::optional<Context::SteadyTime> deadline_;
};

const char* ToString(ContextState state);

}  // namespace workflowd
