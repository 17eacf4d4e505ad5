#include "systemd_notify.hpp"

#include <systemd/sd-daemon.h>

#include <cstdlib>

namespace workflowd::daemon {

SystemdNotifier::SystemdNotifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && *socket != '\0';
  uint64_t usec = 0;
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_interval_ = std::chrono::microseconds(usec / 2);
  }
}

void SystemdNotifier::Ready(const std::string& status) {
  if (enabled_) sd_notifyf(0, "READY=1\nSTATUS=%s", status.c_str());
}

void SystemdNotifier::Watchdog() {
  if (enabled_) sd_notify(0, "WATCHDOG=1");
}

void SystemdNotifier::Stopping(const std::string& status) {
  if (enabled_) sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status.c_str());
}

void SystemdNotifier::Status(const std::string& status) {
  if (enabled_) sd_notifyf(0, "STATUS=%s", status.c_str());
}

}  // namespace workflowd::daemon
