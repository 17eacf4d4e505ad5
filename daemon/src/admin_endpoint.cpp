#include "admin_endpoint.hpp"

#include <spdlog/spdlog.h>

#include <exception>
#include <nlohmann/json.hpp>
#include <utility>

namespace workflowd::daemon {
namespace {

constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";

constexpr http::CloseReason kCloseReasons[] = {
    http::CloseReason::kRequestTimeout, http::CloseReason::kWriteTimeout,
    http::CloseReason::kEvicted, http::CloseReason::kRefused};

http::Response ServeHealth(const HealthProvider& provider, std::string_view what) {
  HealthReport report{.ok = true, .checks = {}};
  if (provider) {
    try {
      report = provider();
    } catch (const std::exception& e) {
      spdlog::warn("admin http: {} provider failed: {}", what, e.what());
      report = {.ok = false,
                .checks = {{.name = std::string(what), .ok = false, .detail = e.what()}}};
    }
  }
  nlohmann::json checks = nlohmann::json::array();
  for (const HealthCheck& check : report.checks) {
    checks.push_back({{"name", check.name}, {"ok", check.ok}, {"detail", check.detail}});
  }
  const nlohmann::json body = {{"status", report.ok ? "ok" : "unavailable"},
                               {"checks", std::move(checks)}};
  // Bytes that are not UTF-8 (in an exception's message) become U+FFFD instead of throwing.
  return http::Response{.status = report.ok ? 200 : 503,
                        .content_type = "application/json",
                        .body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                        .headers = {}};
}

http::ServerOptions WithAdminDefaults(http::ServerOptions options) {
  options.name = "admin HTTP server";
  // Only answers without a route (404) run on the default lane: the routes have their own.
  options.handler_threads = 1;
  return options;
}

}  // namespace

AdminConnectionMetrics::AdminConnectionMetrics(metrics::Registry& registry)
    : closed_family_(registry.AddCounter(
          "workflowd_admin_connections_closed_total",
          "Admin endpoint connections closed by the server, by reason: request_timeout (the "
          "request did not arrive in time), write_timeout (the client did not take the "
          "response), evicted (closed to make room under the connection caps), refused (no "
          "room: every connection had a request in progress)",
          {"reason"})),
      open_(registry.AddGauge("workflowd_admin_connections",
                              "Open connections on the admin endpoint")) {
  for (http::CloseReason reason : kCloseReasons) {
    closed_.at(static_cast<std::size_t>(reason)) =
        &closed_family_.WithLabels({std::string(http::CloseReasonName(reason))});
  }
}

void AdminConnectionMetrics::Opened() noexcept { open_.Inc(); }

void AdminConnectionMetrics::Closed() noexcept { open_.Dec(); }

void AdminConnectionMetrics::CutOff(http::CloseReason reason) noexcept {
  const auto index = static_cast<std::size_t>(reason);
  if (index < closed_.size()) closed_[index]->Inc();
}

AdminEndpoint::AdminEndpoint(http::ServerOptions options, metrics::Registry& registry,
                             HealthProvider liveness, HealthProvider readiness)
    : registry_(registry),
      scrapes_(registry.AddCounter("workflowd_admin_scrapes_total",
                                   "Requests served on the admin server's /metrics path.")),
      connection_metrics_(registry),
      liveness_(std::move(liveness)),
      readiness_(std::move(readiness)),
      server_(WithAdminDefaults(std::move(options)), &connection_metrics_) {
  const http::Server::LaneId metrics_lane = server_.AddLane(1);
  const http::Server::LaneId health_lane = server_.AddLane(1);
  server_.Handle(
      "GET", "/metrics", [this](const http::Request&) { return ServeMetrics(); }, metrics_lane);
  server_.Handle(
      "GET", "/healthz",
      [this](const http::Request&) { return ServeHealth(liveness_, "liveness"); }, health_lane);
  server_.Handle(
      "GET", "/readyz",
      [this](const http::Request&) { return ServeHealth(readiness_, "readiness"); }, health_lane);
}

http::Response AdminEndpoint::ServeMetrics() {
  scrapes_.Inc();
  std::vector<std::string> collect_errors;
  std::string body = registry_.Serialize(&collect_errors);
  for (const std::string& error : collect_errors) {
    spdlog::warn("admin http: a metrics collect callback failed: {}", error);
  }
  return http::Response{
      .status = 200, .content_type = kMetricsContentType, .body = std::move(body), .headers = {}};
}

}  // namespace workflowd::daemon
