// Turns SIGTERM / SIGINT into a stop flag.
#pragma once

#include <signal.h>

#include <atomic>
#include <thread>

namespace workflowd::daemon {

// Blocks SIGTERM/SIGINT in every thread and turns them into `stop` from a dedicated thread.
// Constructed before any other thread starts, so that every thread inherits the blocked mask.
class SignalWatcher {
 public:
  explicit SignalWatcher(std::atomic<bool>& stop);
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  std::atomic<bool>& stop_;
  std::atomic<bool> done_{false};
  sigset_t set_;
  std::thread thread_;
};

}  // namespace workflowd::daemon
