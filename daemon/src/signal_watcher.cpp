#include "signal_watcher.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>

namespace workflowd::daemon {

SignalWatcher::SignalWatcher(std::atomic<bool>& stop) : stop_(stop), set_{} {
  sigemptyset(&set_);
  sigaddset(&set_, SIGTERM);
  sigaddset(&set_, SIGINT);
  sigaddset(&set_, SIGUSR1);  // used to wake the watcher on shutdown
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  thread_ = std::thread([this] {
    int sig = 0;
    while (sigwait(&set_, &sig) == 0) {
      if (sig == SIGUSR1 && done_) return;
      if (sig == SIGTERM || sig == SIGINT) {
        spdlog::info("received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        stop_ = true;
        return;
      }
    }
  });
}

SignalWatcher::~SignalWatcher() {
  done_ = true;
  pthread_kill(thread_.native_handle(), SIGUSR1);
  thread_.join();
}

}  // namespace workflowd::daemon
