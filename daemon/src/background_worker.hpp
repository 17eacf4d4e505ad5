// Runs one round function (dispatch, poll) in a loop on its own thread: again at once while the
// round says more work is waiting, else after `idle` (sooner when Wake() says there is new work),
// and with a growing backoff while the database is unavailable (logged once per outage).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace workflowd::daemon {

class BackgroundWorker {
 public:
  // `round` returns true when more work is waiting (a full batch: run again at once), false when
  // it took all there was to take. A round started by Wake() starts no sooner than `wake_gap`
  // after the previous round started: wakes arriving faster are gathered into one round.
  BackgroundWorker(std::string name, std::function<bool()> round, std::chrono::milliseconds idle,
                   std::chrono::milliseconds wake_gap = std::chrono::milliseconds(0));
  ~BackgroundWorker();

  void Start();
  void Stop() noexcept;
  // Ends the current idle wait at once (or the next one, when a round is running): there is work.
  // Thread-safe; waits after a failed round (backoff) are not shortened.
  void Wake();
  bool Healthy() const { return healthy_.load(); }
  // How many idle waits have begun (a round took all there was, then the worker waits for
  // `idle` or a wake): the signal a caller or test waits for to know the worker went idle.
  uint64_t IdleWaits() const { return idle_waits_.load(); }

 private:
  void Loop();

  std::string name_;
  std::function<bool()> round_;
  std::chrono::milliseconds idle_;
  std::chrono::milliseconds wake_gap_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;  // mu_
  std::atomic<bool> healthy_{true};
  std::atomic<uint64_t> idle_waits_{0};
  std::thread thread_;  // last
};

}  // namespace workflowd::daemon
