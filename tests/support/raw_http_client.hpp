// Raw TCP clients for the HTTP server's tests: connect from a chosen loopback address, send bytes
// as they are (a partial request, a trickle, a pipeline), and read what the server answers and
// whether it closed the connection. cpp-httplib's client cannot send a malformed or unfinished
// request.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace workflowd::testing {

// A TCP connection to 127.0.0.1:port from the loopback address `source` (all of 127.0.0.0/8 is
// local on Linux, so tests can play several client addresses). -1 when the connect fails.
inline int ConnectFrom(const std::string& source, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in local{};
  local.sin_family = AF_INET;
  ::inet_pton(AF_INET, source.c_str(), &local.sin_addr);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof(remote)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

struct ReadResult {
  std::string data;
  bool closed = false;  // the server closed the connection (EOF or reset)
};

// Reads until the server closes the connection or `timeout` passes.
inline ReadResult ReadUntilClosed(int fd, std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  ReadResult result;
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(1, left.count()))) <= 0) continue;
    char buffer[4096];
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) {
      result.closed = true;
      return result;
    }
    result.data.append(buffer, static_cast<std::size_t>(n));
  }
  return result;
}

// Reads until `data` holds one complete response per entry of `bodies` (whether that response
// has a body: a HEAD's has none, whatever its Content-Length), or `timeout` passes.
inline std::string ReadResponses(int fd, const std::vector<bool>& bodies,
                                 std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  std::string data;
  const auto until = Clock::now() + timeout;
  auto complete = [&] {
    std::size_t pos = 0;
    for (const bool body : bodies) {
      const std::size_t head_end = data.find("\r\n\r\n", pos);
      if (head_end == std::string::npos) return false;
      const std::string head = data.substr(pos, head_end - pos);
      const std::size_t cl = head.find("Content-Length: ");
      std::size_t length = 0;
      if (body && cl != std::string::npos) length = std::stoul(head.substr(cl + 16));
      pos = head_end + 4 + length;
      if (data.size() < pos) return false;
    }
    return true;
  };
  while (!complete() && Clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buffer[4096];
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    data.append(buffer, static_cast<std::size_t>(n));
  }
  return data;
}

// True when the server closed `fd` (EOF or reset): a non-blocking peek.
inline bool ClosedByServer(int fd) {
  char byte = 0;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

}  // namespace workflowd::testing
