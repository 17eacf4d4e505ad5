// Runs one round function (dispatch, poll) in a loop on its own thread: again at once while there
// was work, after `idle` when there was none, and with a growing backoff while the database is
// unavailable (logged once per outage).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

namespace workflowd::daemon {

class BackgroundWorker {
 public:
  BackgroundWorker(std::string name, std::function<size_t()> round, std::chrono::milliseconds idle);
  ~BackgroundWorker();

  void Start();
  void Stop() noexcept;
  bool Healthy() const { return healthy_.load(); }

 private:
  void Loop();

  std::string name_;
  std::function<size_t()> round_;
  std::chrono::milliseconds idle_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> healthy_{true};
  std::thread thread_;  // last
};

}  // namespace workflowd::daemon
