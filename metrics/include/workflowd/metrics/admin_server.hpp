// The admin HTTP server: GET /metrics (Prometheus text format 0.0.4), GET /healthz, GET /readyz,
// and a mount point (Handle) for the REST API's routes on the same port.
//
// An event-driven HTTP/1.1 server of its own (epoll, one thread) that reads and bounds every
// request before a worker runs its handler: cpp-httplib 0.11 (Debian's) gave each connection a
// blocking thread with per-read timeouts, so a few clients trickling header lines held every
// thread and /healthz timed out.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "workflowd/metrics/registry.hpp"

namespace workflowd::metrics {

struct AdminServerOptions {
  std::string bind_address = "0.0.0.0";
  int port = 9090;  // 0: the kernel picks a free port; AdminServer::port() tells which

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
  // it) is closed to make room; only when every one has a request being answered is the new one
  // refused. So slow or idle clients can never lock out a health probe or a scrape.
  std::size_t max_connections = 256;
  std::size_t max_connections_per_address = 32;
  std::size_t max_body_bytes = std::size_t{8} << 20;  // larger: 413
  // Handler threads for mounted routes (REST API); /metrics, /healthz and /readyz have a thread
  // each of their own, so slow API handlers never delay a probe.
  std::size_t api_threads = 4;
};

struct HealthCheck {
  std::string name;
  bool ok = false;
  std::string detail;
};

struct HealthReport {
  bool ok = false;
  std::vector<HealthCheck> checks;
};

using HealthProvider = std::function<HealthReport()>;

struct HttpRequest {
  std::string method;                              // "GET", "POST", ...
  std::string path;                                // URL-decoded, without the query
  std::map<std::string, std::string> path_params;  // ":name" segments of the pattern
  std::map<std::string, std::string> query;        // first value wins for a repeated key
  std::map<std::string, std::string> headers;      // names lower-cased
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::map<std::string, std::string> headers;  // extra headers
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// Serves on its own thread between Start() and Stop().
//
// Responses: /healthz and /readyz answer 200 {"status":"ok","checks":[...]} or 503
// {"status":"unavailable",...}; a provider that throws counts as unavailable. Unknown paths and
// other errors without a body get {"error":{"code","message","details"}}; a handler that throws
// gets a 500 in that shape (the exception is logged, not sent).
//
// Registers `workflowd_admin_scrapes_total` and `workflowd_admin_connections_closed_total{reason}`
// in the registry, so one AdminServer per registry; the registry and the providers must outlive
// the server. No handler runs after Stop() returned.
class AdminServer {
 public:
  // Empty providers count as healthy.
  AdminServer(AdminServerOptions options, Registry& registry, HealthProvider liveness,
              HealthProvider readiness);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Mounts a route; call before Start(). `method` is GET, POST, PUT, PATCH, DELETE or OPTIONS
  // (GET also answers HEAD); `path_pattern` is a literal path whose segments may be `:name`
  // placeholders (matching one non-empty segment), e.g. "/api/v1/workflows/:id". Throws
  // std::invalid_argument for a bad method or pattern, std::logic_error after Start().
  void Handle(const std::string& method, const std::string& path_pattern, HttpHandler handler);

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
  struct Impl;

  AdminServerOptions options_;
  int port_ = 0;
  bool started_ = false;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;  // last: destroyed (already joined) before the state it uses
};

}  // namespace workflowd::metrics
