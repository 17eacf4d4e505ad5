// The admin endpoint: GET /metrics (the registry's Prometheus text format 0.0.4), GET /healthz and
// GET /readyz (the daemon's liveness and readiness reports), on an HTTP server of http/ with the
// README's bounds (10 s per request, 256 connections, 32 per client address). Each of the three
// routes runs on a thread of its own, so a slow scrape never delays a probe.
#pragma once

#include <array>
#include <functional>
#include <string>
#include <vector>

#include "workflowd/http/server.hpp"
#include "workflowd/metrics/registry.hpp"

namespace workflowd::daemon {

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

// The HTTP server's connections in the registry: `workflowd_admin_connections` (open now) and
// `workflowd_admin_connections_closed_total{reason}` (every reason's series from the start).
class AdminConnectionMetrics final : public http::ConnectionMetrics {
 public:
  explicit AdminConnectionMetrics(metrics::Registry& registry);
  void Opened() noexcept override;
  void Closed() noexcept override;
  void CutOff(http::CloseReason reason) noexcept override;

 private:
  metrics::CounterFamily& closed_family_;
  std::array<metrics::Counter*, 4> closed_{};  // by http::CloseReason
  metrics::Gauge& open_;
};

// Serves between Start() and Stop(). Responses: /healthz and /readyz answer 200
// {"status":"ok","checks":[{"name","ok","detail"}...]} or 503 {"status":"unavailable",...}; a
// provider that throws counts as unavailable, an empty one as healthy. Other paths and methods get
// the server's JSON 404 {"error":{"code":"not_found",...}}.
//
// Registers `workflowd_admin_scrapes_total` and the connection metrics in the registry, so one
// AdminEndpoint per registry; the registry and the providers must outlive it.
class AdminEndpoint {
 public:
  // `options`: where to listen and the server's bounds (its name and lanes are the endpoint's).
  AdminEndpoint(http::ServerOptions options, metrics::Registry& registry, HealthProvider liveness,
                HealthProvider readiness);
  AdminEndpoint(const AdminEndpoint&) = delete;
  AdminEndpoint& operator=(const AdminEndpoint&) = delete;

  // See http::Server::Start(): throws std::runtime_error naming address:port when the bind fails.
  void Start() { server_.Start(); }
  void Stop() noexcept { server_.Stop(); }
  int port() const noexcept { return server_.port(); }
  const std::string& bind_address() const noexcept { return server_.bind_address(); }

 private:
  http::Response ServeMetrics();

  metrics::Registry& registry_;
  metrics::Counter& scrapes_;
  AdminConnectionMetrics connection_metrics_;
  HealthProvider liveness_;
  HealthProvider readiness_;
  http::Server server_;  // last: stopped (no handler running) before the state they use goes
};

}  // namespace workflowd::daemon
