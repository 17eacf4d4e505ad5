#include "workflowd/metrics/admin_server.hpp"

#include <httplib.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace workflowd::metrics {
namespace {

constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";
constexpr char kJsonContentType[] = "application/json";
constexpr std::size_t kWorkerThreads = 4;
constexpr time_t kKeepAliveTimeoutSeconds = 2;  // bounds how long Stop() waits for idle clients
constexpr time_t kReadTimeoutSeconds = 5;
constexpr time_t kWriteTimeoutSeconds = 5;
constexpr std::size_t kMaxRequestBodyBytes = std::size_t{8} << 20;

// Non-UTF-8 bytes (a decoded path, an exception message) become U+FFFD instead of throwing.
std::string DumpJson(const nlohmann::json& json) {
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string ErrorBody(std::string_view code, std::string_view message) {
  return DumpJson(
      {{"error", {{"code", code}, {"message", message}, {"details", nlohmann::json::object()}}}});
}

struct StatusError {
  std::string code;
  std::string message;
};

// Bodies for errors that httplib produces itself (no route, unparsable request, ...).
StatusError ErrorForStatus(int status) {
  switch (status) {
    case 400:
      return {"bad_request", "malformed HTTP request"};
    case 404:
      return {"not_found", "not found"};
    case 405:
      return {"method_not_allowed", "method not allowed"};
    case 413:
      return {"payload_too_large", "request body too large"};
    case 414:
      return {"uri_too_long", "request URI too long"};
    case 416:
      return {"range_not_satisfiable", "range not satisfiable"};
    case 500:
      return {"internal", "internal error"};
    case 503:
      return {"unavailable", "service unavailable"};
    default:
      return {"http_" + std::to_string(status), "HTTP status " + std::to_string(status)};
  }
}

std::string HostPort(const std::string& host, int port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string ToLower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// httplib 0.11 on Linux sets only SO_REUSEPORT, which lets a second server bind a port that is
// already in use and silently share it. We want a clear bind error instead, and SO_REUSEADDR so a
// restart does not wait for TIME_WAIT.
void AdminSocketOptions(socket_t sock) {
  int yes = 1;
  setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
}

struct CompiledPattern {
  std::string regex;
  std::vector<std::string> param_names;
};

bool IsIdentifier(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

std::string PatternError(const std::string& pattern, std::string_view problem,
                         const std::string& name) {
  std::string message = "route pattern \"";
  message += pattern;
  message += "\": ";
  message += problem;
  message += " \"";
  message += name;
  message += '"';
  return message;
}

// "/api/v1/workflows/:id" -> "/api/v1/workflows/([^/]+)" with param_names {"id"}.
CompiledPattern CompilePattern(const std::string& pattern) {
  if (pattern.empty() || pattern[0] != '/') {
    throw std::invalid_argument("route pattern \"" + pattern + "\" must start with /");
  }
  CompiledPattern compiled;
  std::set<std::string> seen;
  std::size_t pos = 0;
  while (pos < pattern.size()) {
    // pattern[pos] == '/'
    compiled.regex += '/';
    const std::size_t end = std::min(pattern.find('/', pos + 1), pattern.size());
    const std::string segment = pattern.substr(pos + 1, end - pos - 1);
    if (!segment.empty() && segment[0] == ':') {
      const std::string name = segment.substr(1);
      if (!IsIdentifier(name)) {
        throw std::invalid_argument(PatternError(pattern, "bad parameter name", name));
      }
      if (!seen.insert(name).second) {
        throw std::invalid_argument(PatternError(pattern, "duplicate parameter", name));
      }
      compiled.param_names.push_back(name);
      compiled.regex += "([^/]+)";
    } else {
      for (char c : segment) {
        if (std::strchr("\\^$.|?*+()[]{}", c) != nullptr) compiled.regex += '\\';
        compiled.regex += c;
      }
    }
    pos = end;
  }
  return compiled;
}

HttpRequest ToHttpRequest(const httplib::Request& req, const std::vector<std::string>& names) {
  HttpRequest out;
  out.method = req.method;
  out.path = req.path;
  for (std::size_t i = 0; i < names.size() && i + 1 < req.matches.size(); ++i) {
    out.path_params.emplace(names[i], req.matches[i + 1].str());
  }
  for (const auto& [key, value] : req.params) out.query.emplace(key, value);
  for (const auto& [key, value] : req.headers) out.headers.emplace(ToLower(key), value);
  out.body = req.body;
  return out;
}

void ApplyHttpResponse(const HttpResponse& response, httplib::Response& res) {
  res.status = response.status;
  for (const auto& [key, value] : response.headers) res.set_header(key, value);
  res.set_content(response.body, response.content_type.c_str());
}

nlohmann::json HealthJson(const HealthReport& report) {
  nlohmann::json checks = nlohmann::json::array();
  for (const HealthCheck& check : report.checks) {
    checks.push_back({{"name", check.name}, {"ok", check.ok}, {"detail", check.detail}});
  }
  return {{"status", report.ok ? "ok" : "unavailable"}, {"checks", std::move(checks)}};
}

}  // namespace

struct AdminServer::Impl {
  Impl(Registry& registry_in, HealthProvider liveness_in, HealthProvider readiness_in)
      : registry(registry_in),
        scrapes(registry_in.AddCounter("workflowd_admin_scrapes_total",
                                       "Requests served on the admin server's /metrics path.")),
        liveness(std::move(liveness_in)),
        readiness(std::move(readiness_in)) {}

  // Wraps a handler so that an exception becomes a logged 500, never a dropped connection.
  void Mount(const std::string& method, const std::string& regex, httplib::Server::Handler h) {
    auto guarded = [method, h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
      try {
        h(req, res);
      } catch (const std::exception& e) {
        spdlog::error("admin http: {} {} failed: {}", req.method, req.path, e.what());
        res = httplib::Response();
        res.status = 500;
        res.set_content(ErrorBody("internal", "internal error"), kJsonContentType);
      } catch (...) {
        spdlog::error("admin http: {} {} failed with an unknown exception", req.method, req.path);
        res = httplib::Response();
        res.status = 500;
        res.set_content(ErrorBody("internal", "internal error"), kJsonContentType);
      }
    };
    if (method == "GET") {
      server.Get(regex, std::move(guarded));
    } else if (method == "POST") {
      server.Post(regex, std::move(guarded));
    } else if (method == "PUT") {
      server.Put(regex, std::move(guarded));
    } else if (method == "PATCH") {
      server.Patch(regex, std::move(guarded));
    } else if (method == "DELETE") {
      server.Delete(regex, std::move(guarded));
    } else if (method == "OPTIONS") {
      server.Options(regex, std::move(guarded));
    } else {
      throw std::invalid_argument("unsupported HTTP method \"" + method + "\"");
    }
  }

  void ServeHealth(const HealthProvider& provider, std::string_view what, httplib::Response& res) {
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
    res.status = report.ok ? 200 : 503;
    res.set_content(DumpJson(HealthJson(report)), kJsonContentType);
  }

  void ServeMetrics(httplib::Response& res) {
    scrapes.Inc();
    std::vector<std::string> collect_errors;
    const std::string body = registry.Serialize(&collect_errors);
    for (const std::string& error : collect_errors) {
      spdlog::warn("admin http: a metrics collect callback failed: {}", error);
    }
    res.status = 200;
    res.set_content(body, kMetricsContentType);
  }

  Registry& registry;
  Counter& scrapes;
  HealthProvider liveness;
  HealthProvider readiness;
  httplib::Server server;
  std::atomic<bool> listen_returned{false};
};

AdminServer::AdminServer(AdminServerOptions options, Registry& registry, HealthProvider liveness,
                         HealthProvider readiness)
    : options_(std::move(options)),
      impl_(std::make_unique<Impl>(registry, std::move(liveness), std::move(readiness))) {
  httplib::Server& server = impl_->server;
  server.new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
  server.set_socket_options(AdminSocketOptions);
  server.set_keep_alive_timeout(kKeepAliveTimeoutSeconds);
  server.set_read_timeout(kReadTimeoutSeconds);
  server.set_write_timeout(kWriteTimeoutSeconds);
  server.set_payload_max_length(kMaxRequestBodyBytes);

  // Called for every response with status >= 400 (also our own 503s): only fill empty bodies.
  // (Wrapped explicitly: a lambda converts to both of httplib 0.11's set_error_handler overloads.)
  server.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request& req, httplib::Response& res) -> httplib::Server::HandlerResponse {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        StatusError error = ErrorForStatus(res.status);
        if (res.status == 404) error.message = "no route for " + req.method + " " + req.path;
        res.set_content(ErrorBody(error.code, error.message), kJsonContentType);
        return httplib::Server::HandlerResponse::Handled;
      }));
  server.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    spdlog::debug("admin http: {} {} -> {}", req.method, req.path, res.status);
  });

  Impl* impl = impl_.get();
  impl->Mount("GET", "/metrics",
              [impl](const httplib::Request&, httplib::Response& res) { impl->ServeMetrics(res); });
  impl->Mount("GET", "/healthz", [impl](const httplib::Request&, httplib::Response& res) {
    impl->ServeHealth(impl->liveness, "liveness", res);
  });
  impl->Mount("GET", "/readyz", [impl](const httplib::Request&, httplib::Response& res) {
    impl->ServeHealth(impl->readiness, "readiness", res);
  });
}

AdminServer::~AdminServer() { Stop(); }

void AdminServer::Handle(const std::string& method, const std::string& path_pattern,
                         HttpHandler handler) {
  if (started_) throw std::logic_error("AdminServer::Handle must be called before Start()");
  if (!handler) throw std::invalid_argument("empty handler for " + method + " " + path_pattern);
  CompiledPattern compiled = CompilePattern(path_pattern);
  impl_->Mount(method, compiled.regex,
               [names = std::move(compiled.param_names), handler = std::move(handler)](
                   const httplib::Request& req, httplib::Response& res) {
                 ApplyHttpResponse(handler(ToHttpRequest(req, names)), res);
               });
}

void AdminServer::Start() {
  if (started_) throw std::logic_error("AdminServer::Start called twice");
  httplib::Server& server = impl_->server;
  const std::string& host = options_.bind_address;
  if (options_.port < 0 || options_.port > 65535) {
    throw std::runtime_error("admin HTTP server: invalid port " + std::to_string(options_.port));
  }
  errno = 0;
  int bound_port = -1;
  if (options_.port == 0) {
    bound_port = server.bind_to_any_port(host);
  } else if (server.bind_to_port(host, options_.port)) {
    bound_port = options_.port;
  }
  if (bound_port <= 0) {
    const int error = errno;
    std::string message = "admin HTTP server cannot bind to " + HostPort(host, options_.port);
    message += ": ";
    message += error != 0 ? std::generic_category().message(error)
                          : "the address cannot be resolved or used";
    throw std::runtime_error(message);
  }
  started_ = true;
  port_ = bound_port;

  Impl* impl = impl_.get();
  thread_ = std::thread([impl] {
    impl->server.listen_after_bind();
    impl->listen_returned.store(true);
  });
  // httplib's stop() is a no-op until listen has started, so wait for it: a Stop() right after
  // Start() must not leave the thread listening forever.
  while (!server.is_running() && !impl->listen_returned.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!server.is_running()) {
    thread_.join();
    throw std::runtime_error("admin HTTP server on " + HostPort(host, port_) +
                             " stopped right after starting");
  }
  spdlog::info("admin HTTP server listening on {}", HostPort(host, port_));
}

void AdminServer::Stop() noexcept {
  if (!thread_.joinable()) return;
  try {
    impl_->server.stop();
    thread_.join();
    spdlog::info("admin HTTP server on {} stopped", HostPort(options_.bind_address, port_));
  } catch (...) {
    // join() only throws on a broken invariant (self-join); nothing sensible to do in a noexcept
    // stop path but to leave.
  }
}

}  // namespace workflowd::metrics
