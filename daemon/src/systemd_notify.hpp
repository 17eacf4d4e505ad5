// The systemd notification protocol (sd_notify via libsystemd): READY=1 once the daemon is actually
// ready, WATCHDOG=1 while it is healthy, STOPPING=1 on shutdown, STATUS= for `systemctl status`.
// Every call is a no-op when not started by systemd with Type=notify (no NOTIFY_SOCKET).
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace workflowd::daemon {

class SystemdNotifier {
 public:
  SystemdNotifier();
  bool enabled() const { return enabled_; }
  // The interval at which WATCHDOG=1 must be sent (half of WatchdogSec), if a watchdog is set.
  std::optional<std::chrono::microseconds> watchdog_interval() const { return watchdog_interval_; }

  void Ready(const std::string& status) const;
  void Watchdog() const;
  void Stopping(const std::string& status) const;
  void Status(const std::string& status) const;

 private:
  bool enabled_ = false;
  std::optional<std::chrono::microseconds> watchdog_interval_;
};

}  // namespace workflowd::daemon
