// An HTTP/1.1 server for the daemon's endpoints (the admin endpoint; the REST API): routes and
// handlers (router.hpp) over an event-driven loop of its own (epoll, one thread) that reads and
// bounds every request before a worker runs its handler.
//
// Written for that bound: cpp-httplib 0.11 (Debian's) gave each connection a blocking thread with
// per-read timeouts, so a few clients trickling header lines held every thread and a health probe
// timed out. Here a request has a total time to arrive, connections are capped overall and per
// client address, and handlers run on worker lanes so that slow ones never delay another lane's.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "workflowd/http/message.hpp"
#include "workflowd/http/router.hpp"

namespace workflowd::http {

struct ServerOptions {
  std::string bind_address = "0.0.0.0";
  int port = 0;  // 0: the kernel picks a free port; Server::port() tells which
  // Names the server in its log lines and errors, e.g. "admin HTTP server".
  std::string name = "HTTP server";

  // A request's line, headers and body must all arrive within this time of its first byte (of
  // the connection's start for the first request): a client that trickles is answered 408 and
  // closed, one that sent nothing is closed.
  std::chrono::milliseconds request_timeout{10'000};
  // A kept-alive connection is closed when no next request starts within this time.
  std::chrono::milliseconds idle_timeout{5'000};
  // A response must be taken by the client within this time of being ready.
  std::chrono::milliseconds write_timeout{10'000};
  // Open connections, overall and per client address. When a new connection finds a cap reached,
  // the connection of that scope that has waited longest for its request (idle or still sending
  // it) is closed to make room; when none is, the complete request that has waited longest for a
  // worker is dropped (never handled); only when every one has a request being answered is the
  // new one refused. So slow or idle clients can never lock out a health probe or a scrape.
  std::size_t max_connections = 256;
  std::size_t max_connections_per_address = 32;
  RequestLimits limits;
  // Threads of the default lane (lane 0): the routes mounted without a lane of their own, and the
  // answers without a route (404, 400).
  std::size_t handler_threads = 4;
};

// Why the server closed a connection (or refused one) other than as the end of its exchange.
enum class CloseReason {
  kRequestTimeout,  // the request did not arrive in time (a 408 was sent when part of it had)
  kWriteTimeout,    // the client did not take the response in time
  kEvicted,         // closed to make room under the connection caps
  kRefused,         // no room: every connection had a request in progress
};
// "request_timeout", "write_timeout", "evicted", "refused".
std::string_view CloseReasonName(CloseReason reason) noexcept;

// What the server tells about its connections; called on its event loop thread, so it must be
// quick and must not call back into the server.
class ConnectionMetrics {
 public:
  ConnectionMetrics() = default;
  ConnectionMetrics(const ConnectionMetrics&) = delete;
  ConnectionMetrics& operator=(const ConnectionMetrics&) = delete;
  virtual ~ConnectionMetrics() = default;
  // A connection was admitted.
  virtual void Opened() noexcept = 0;
  // An admitted connection was closed, for whatever reason.
  virtual void Closed() noexcept = 0;
  // The server cut a connection off for `reason` (for kRefused one never admitted). Counted when
  // the decision is made: a 408's connection is Closed() once the 408 is sent.
  virtual void CutOff(CloseReason reason) noexcept = 0;
};

class EventLoop;  // private to http/

// Serves on its own thread between Start() and Stop(). Routes are mounted before Start(); a lane
// gives its routes threads of their own (e.g. a probe's, so slow API handlers never delay it).
// No handler runs after Stop() returned; the handlers and the metrics must outlive the server.
class Server {
 public:
  using LaneId = std::size_t;
  static constexpr LaneId kDefaultLane = 0;

  // `metrics` may be null (nothing is told).
  explicit Server(ServerOptions options, ConnectionMetrics* metrics = nullptr);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // A new lane of `threads` threads (at least 1) that runs its requests in order of arrival.
  // Throws std::logic_error after Start().
  LaneId AddLane(std::size_t threads);

  // Mounts a route on `lane` (see Router::Add). Throws std::invalid_argument for a bad method,
  // pattern, handler or lane, std::logic_error after Start().
  void Handle(const std::string& method, const std::string& path_pattern, Handler handler,
              LaneId lane = kDefaultLane);

  // Binds and starts serving; returns once the server accepts connections. Throws
  // std::runtime_error naming address:port when the bind fails (the port is not shared:
  // SO_REUSEPORT is off), std::logic_error when called twice.
  void Start();
  // Stops accepting, waits for the handlers that are running (requests not yet started are
  // dropped), closes every connection, joins the thread. Idempotent.
  void Stop() noexcept;

  // The bound port after Start() (the picked one when options.port was 0); 0 before.
  int port() const noexcept { return port_; }
  const std::string& bind_address() const noexcept { return options_.bind_address; }

 private:
  ServerOptions options_;
  ConnectionMetrics* metrics_;
  Router router_;
  std::vector<std::size_t> lane_threads_;  // by LaneId
  int port_ = 0;
  bool started_ = false;
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;  // last: destroyed (already joined) before the state it uses
};

}  // namespace workflowd::http
