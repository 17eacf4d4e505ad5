// workflowd's sd_notify protocol as systemd sees it (systemd/workflowd.service: Type=notify,
// NotifyAccess=main, WatchdogSec=): the test opens a real AF_UNIX datagram NOTIFY_SOCKET, starts
// the built daemon against the real PostgreSQL and Kafka with NOTIFY_SOCKET, WATCHDOG_USEC and
// WATCHDOG_PID set the way systemd sets them, and reads what arrives, with the sender's pid from
// SCM_CREDENTIALS (NotifyAccess=main only accepts the main process).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "daemon_harness.hpp"

namespace workflowd {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::DaemonHarness;
using testing::RandomSuffix;

const std::string kBinary = WORKFLOWD_BINARY;

// Sets WATCHDOG_PID to the daemon's own pid, as systemd does: the shell execs the daemon, so $$
// is the daemon's pid (sd_watchdog_enabled() ignores WATCHDOG_USEC meant for another process).
const std::vector<std::string> kWatchdogPidLauncher = {
    "/bin/sh", "-c", "WATCHDOG_PID=$$; export WATCHDOG_PID; exec \"$0\" \"$@\""};

struct Notification {
  std::string text;  // "READY=1\nSTATUS=..."
  pid_t sender = -1;
  Clock::time_point at;

  bool Has(const std::string& assignment) const {
    size_t pos = 0;
    while (pos <= text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      if (text.compare(pos, end - pos, assignment) == 0) return true;
      pos = end + 1;
    }
    return false;
  }
};

// The receiving end of NOTIFY_SOCKET, like systemd's: a datagram socket with SO_PASSCRED.
class NotifySocket {
 public:
  NotifySocket() : path_("/tmp/wfd-notify-" + RandomSuffix() + ".sock") {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket(AF_UNIX, SOCK_DGRAM) failed");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("bind " + path_ + ": " +
                               std::error_code(errno, std::generic_category()).message());
    }
    int on = 1;
    if (::setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
      throw std::runtime_error("SO_PASSCRED failed");
    }
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::string& path() const { return path_; }

  // The next datagram, or nothing within `timeout`.
  std::optional<Notification> Receive(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
    char buf[4096];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd_, &msg, 0);
    if (n < 0) return std::nullopt;
    Notification out{std::string(buf, static_cast<size_t>(n)), -1, Clock::now()};
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
        ucred cred{};
        std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
        out.sender = cred.pid;
      }
    }
    return out;
  }

  // Every datagram until one has `assignment` (returned last) or `timeout` passes.
  std::vector<Notification> ReceiveUntil(const std::string& assignment,
                                         std::chrono::milliseconds timeout) {
    std::vector<Notification> got;
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      auto n = Receive(std::max(left, 1ms));
      if (!n) continue;
      got.push_back(*n);
      if (n->Has(assignment)) break;
    }
    return got;
  }

  // Every datagram that arrives within `duration`.
  std::vector<Notification> ReceiveFor(std::chrono::milliseconds duration) {
    std::vector<Notification> got;
    auto deadline = Clock::now() + duration;
    while (Clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (auto n = Receive(std::max(left, 1ms))) got.push_back(*n);
    }
    return got;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

std::string Describe(const std::vector<Notification>& ns) {
  std::string s;
  for (const auto& n : ns) s += "  [pid " + std::to_string(n.sender) + "] " + n.text + "\n";
  return s.empty() ? "  (nothing)\n" : s;
}

TEST(SystemdNotifyE2E, ReadyOnceReadyWatchdogWhileAliveStoppingOnSigterm) {
  DaemonHarness h(kBinary);
  NotifySocket notify;
  auto daemon =
      h.Start({"NOTIFY_SOCKET=" + notify.path(), "WATCHDOG_USEC=2000000"}, kWatchdogPidLauncher);
  const pid_t pid = daemon->pid();

  // READY=1 first, with a STATUS, from the main process, and only once /readyz agrees.
  auto before_ready = notify.ReceiveUntil("READY=1", 60s);
  ASSERT_FALSE(before_ready.empty()) << "no notification within 60s\n" << daemon->Output();
  const Notification& ready = before_ready.back();
  ASSERT_TRUE(ready.Has("READY=1")) << "no READY=1 within 60s; got:\n"
                                    << Describe(before_ready) << daemon->Output();
  // While starting, only watchdog pings may come before READY=1 (the loop is alive).
  for (size_t i = 0; i + 1 < before_ready.size(); ++i) {
    EXPECT_EQ(before_ready[i].text, "WATCHDOG=1") << "notifications before READY=1:\n"
                                                  << Describe(before_ready);
  }
  EXPECT_NE(ready.text.find("STATUS="), std::string::npos) << ready.text;
  EXPECT_EQ(ready.sender, pid) << "READY=1 must come from the main process (NotifyAccess=main)";
  auto [status, body] = h.Get("/readyz");
  EXPECT_EQ(status, 200) << "READY=1 was sent but /readyz says: " << body;

  // WATCHDOG=1 every WATCHDOG_USEC/2 (1s), never more than WATCHDOG_USEC apart, and nothing
  // else (READY=1 is sent once).
  auto window = notify.ReceiveFor(5500ms);
  std::vector<Clock::time_point> pings;
  for (const auto& n : window) {
    EXPECT_EQ(n.text, "WATCHDOG=1") << "unexpected notification while running";
    EXPECT_EQ(n.sender, pid);
    if (n.Has("WATCHDOG=1")) pings.push_back(n.at);
  }
  EXPECT_GE(pings.size(), 3u) << "WATCHDOG=1 should arrive about every second:\n"
                              << Describe(window);
  EXPECT_LE(pings.size(), 12u) << "WATCHDOG=1 far more often than WATCHDOG_USEC/2:\n"
                               << Describe(window);
  for (size_t i = 1; i < pings.size(); ++i) {
    EXPECT_LT(pings[i] - pings[i - 1], 2000ms)
        << "a gap of WATCHDOG_USEC between two pings: systemd would have aborted the service";
  }

  // SIGTERM (systemctl stop): STOPPING=1, then exit 0 within the shutdown bound.
  daemon->Signal(SIGTERM);
  auto stopping = notify.ReceiveUntil("STOPPING=1", 20s);
  ASSERT_FALSE(stopping.empty() || !stopping.back().Has("STOPPING=1"))
      << "no STOPPING=1 after SIGTERM; got:\n"
      << Describe(stopping) << daemon->Output();
  EXPECT_EQ(stopping.back().sender, pid);
  EXPECT_EQ(daemon->Wait(20s), 0) << daemon->Output();
  for (const auto& n : notify.ReceiveFor(200ms)) {
    EXPECT_FALSE(n.Has("READY=1") || n.Has("WATCHDOG=1")) << "after STOPPING=1: " << n.text;
  }
}

// WATCHDOG_USEC meant for another process (WATCHDOG_PID is not the daemon's pid, e.g. inherited
// through a wrapper) must not turn the watchdog on; readiness is still announced.
TEST(SystemdNotifyE2E, NoWatchdogWhenWatchdogPidIsAnotherProcess) {
  DaemonHarness h(kBinary);
  NotifySocket notify;
  auto daemon = h.Start({"NOTIFY_SOCKET=" + notify.path(), "WATCHDOG_USEC=1000000",
                         "WATCHDOG_PID=" + std::to_string(::getpid())});
  auto got = notify.ReceiveUntil("READY=1", 60s);
  ASSERT_TRUE(!got.empty() && got.back().Has("READY=1")) << Describe(got) << daemon->Output();
  auto window = notify.ReceiveFor(2500ms);
  for (const auto& n : window) EXPECT_FALSE(n.Has("WATCHDOG=1")) << Describe(window);
  daemon->Signal(SIGTERM);
  got = notify.ReceiveUntil("STOPPING=1", 20s);
  EXPECT_TRUE(!got.empty() && got.back().Has("STOPPING=1")) << Describe(got);
  EXPECT_EQ(daemon->Wait(20s), 0) << daemon->Output();
}

// Issue 5: READY=1 only when actually ready. With every Kafka broker unreachable /readyz answers
// 503 ("all brokers down"), so systemd must not be told READY=1 either.
// Readiness needs the consumer group to have assigned this replica, i.e. a broker answered.
TEST(SystemdNotifyE2E, NoReadyWhileKafkaIsUnreachable) {
  DaemonHarness h(kBinary);
  NotifySocket notify;
  auto daemon = h.Start({"NOTIFY_SOCKET=" + notify.path(), "WORKFLOWD_KAFKA_BROKERS=127.0.0.1:1"});
  auto window = notify.ReceiveFor(3s);
  for (const auto& n : window) EXPECT_FALSE(n.Has("READY=1")) << Describe(window);
  EXPECT_EQ(h.Get("/readyz").first, 503);
  daemon->Signal(SIGTERM);
  auto got = notify.ReceiveUntil("STOPPING=1", 20s);
  EXPECT_TRUE(!got.empty() && got.back().Has("STOPPING=1")) << Describe(got);
  EXPECT_EQ(daemon->Wait(20s), 0) << daemon->Output();
}

}  // namespace
}  // namespace workflowd
