#include "systemd_notify.hpp"

#include <systemd/sd-daemon.h>

#include <cstdlib>

namespace workflowd::daemon {

SystemdNotifier::SystemdNotifier() {
  // Read once at startup; nothing in the process calls setenv.
  const char* socket = std::getenv("NOTIFY_SOCKET");  // NOLINT(concurrency-mt-unsafe)
  enabled_ = socket != nullptr && *socket != '\0';
  uint64_t usec = 0;
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_interval_ = std::chrono::microseconds(usec / 2);
  }
}

void SystemdNotifier::Ready(const std::string& status) const {
  if (enabled_) sd_notifyf(0, "READY=1\nSTATUS=%s", status.c_str());
}

void SystemdNotifier::Watchdog() const {
  if (enabled_) sd_notify(0, "WATCHDOG=1");
}

void SystemdNotifier::Stopping(const std::string& status) const {
  if (enabled_) sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status.c_str());
}

void SystemdNotifier::Status(const std::string& status) const {
  if (enabled_) sd_notifyf(0, "STATUS=%s", status.c_str());
}

}  // namespace workflowd::daemon
