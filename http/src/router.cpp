#include "workflowd/http/router.hpp"

#include <spdlog/spdlog.h>

#include <cctype>
#include <exception>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <utility>

namespace workflowd::http {
namespace {

constexpr char kJsonContentType[] = "application/json";

struct StatusError {
  std::string code;
  std::string message;
};

// Bodies for errors that no handler described (no route, unparsable request, ...).
StatusError ErrorForStatus(int status) {
  switch (status) {
    case 400:
      return {"bad_request", "malformed HTTP request"};
    case 404:
      return {"not_found", "not found"};
    case 405:
      return {"method_not_allowed", "method not allowed"};
    case 408:
      return {"request_timeout", "the request was not received in time"};
    case 413:
      return {"payload_too_large", "request body too large"};
    case 414:
      return {"uri_too_long", "request URI too long"};
    case 416:
      return {"range_not_satisfiable", "range not satisfiable"};
    case 431:
      return {"headers_too_large", "request headers too large"};
    case 500:
      return {"internal", "internal error"};
    case 501:
      return {"not_implemented", "not implemented"};
    case 503:
      return {"unavailable", "service unavailable"};
    case 505:
      return {"http_version_not_supported", "HTTP version not supported"};
    default:
      return {"http_" + std::to_string(status), "HTTP status " + std::to_string(status)};
  }
}

bool IsKnownMethod(std::string_view method) {
  for (const char* known : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}) {
    if (method == known) return true;
  }
  return false;
}

bool IsIdentifier(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

std::string PatternError(const std::string& pattern, std::string_view problem,
                         std::string_view name) {
  std::string message = "route pattern \"";
  message += pattern;
  message += "\": ";
  message += problem;
  message += " \"";
  message += name;
  message += '"';
  return message;
}

// The segments of a path that starts with '/': "/a/b" -> {"a", "b"}, "/" -> {""}, "/a/" ->
// {"a", ""}.
std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> segments;
  std::size_t pos = 0;  // path[pos] == '/'
  while (pos < path.size()) {
    const std::size_t end = std::min(path.find('/', pos + 1), path.size());
    segments.push_back(path.substr(pos + 1, end - pos - 1));
    pos = end;
  }
  return segments;
}

}  // namespace

std::string ErrorBody(std::string_view code, std::string_view message) {
  const nlohmann::json body = {
      {"error", {{"code", code}, {"message", message}, {"details", nlohmann::json::object()}}}};
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Response ErrorResponse(int status, std::string_view message) {
  const StatusError error = ErrorForStatus(status);
  return Response{.status = status,
                  .content_type = kJsonContentType,
                  .body = ErrorBody(error.code, message.empty() ? error.message : message),
                  .headers = {}};
}

void Router::Add(const std::string& method, const std::string& pattern, Handler handler,
                 std::size_t lane) {
  if (!IsKnownMethod(method) || method == "HEAD") {
    throw std::invalid_argument("unsupported HTTP method \"" + method + "\"");
  }
  if (!handler) throw std::invalid_argument("empty handler for " + method + " " + pattern);
  if (pattern.empty() || pattern[0] != '/') {
    throw std::invalid_argument("route pattern \"" + pattern + "\" must start with /");
  }
  Route route{.method = method, .pattern = pattern, .segments = {}, .handler = {}, .lane = lane};
  std::set<std::string_view> seen;
  for (std::string_view segment : SplitPath(pattern)) {
    if (!segment.empty() && segment[0] == ':') {
      const std::string_view name = segment.substr(1);
      if (!IsIdentifier(name)) {
        throw std::invalid_argument(PatternError(pattern, "bad parameter name", name));
      }
      if (!seen.insert(name).second) {
        throw std::invalid_argument(PatternError(pattern, "duplicate parameter", name));
      }
      route.segments.push_back(Segment{.text = std::string(name), .param = true});
    } else {
      route.segments.push_back(Segment{.text = std::string(segment), .param = false});
    }
  }
  route.handler = std::move(handler);
  routes_.push_back(std::move(route));
}

const Router::Route* Router::Find(std::string_view method, std::string_view path,
                                  std::map<std::string, std::string>* params) const {
  if (method == "HEAD") method = "GET";
  if (path.empty() || path[0] != '/') return nullptr;  // "*" (OPTIONS) matches no route
  const std::vector<std::string_view> segments = SplitPath(path);
  for (const Route& route : routes_) {
    if (route.method != method || route.segments.size() != segments.size()) continue;
    bool match = true;
    for (std::size_t i = 0; i < segments.size() && match; ++i) {
      const Segment& expected = route.segments[i];
      match = expected.param ? !segments[i].empty() : segments[i] == expected.text;
    }
    if (!match) continue;
    if (params != nullptr) {
      for (std::size_t i = 0; i < segments.size(); ++i) {
        if (route.segments[i].param) {
          params->emplace(route.segments[i].text, std::string(segments[i]));
        }
      }
    }
    return &route;
  }
  return nullptr;
}

std::size_t Router::LaneFor(std::string_view method, std::string_view path) const {
  const Route* route = Find(method, path, nullptr);
  return route == nullptr ? 0 : route->lane;
}

Response Router::Respond(Request request) const {
  Response res;
  const Route* route = nullptr;
  if (!IsKnownMethod(request.method)) {
    res.status = 400;
  } else {
    request.path_params.clear();
    route = Find(request.method, request.path, &request.path_params);
    if (route == nullptr) res.status = 404;
  }
  if (route != nullptr) {
    try {
      res = route->handler(request);
    } catch (const std::exception& e) {
      spdlog::error("http: {} {} failed: {}", request.method, request.path, e.what());
      res = Response{.status = 500, .body = ErrorBody("internal", "internal error")};
    } catch (...) {
      spdlog::error("http: {} {} failed with an unknown exception", request.method, request.path);
      res = Response{.status = 500, .body = ErrorBody("internal", "internal error")};
    }
  }
  if (res.status >= 400 && res.body.empty()) {
    const std::string message =
        res.status == 404 ? "no route for " + request.method + " " + request.path : "";
    Response error = ErrorResponse(res.status, message);
    res.body = std::move(error.body);
    res.content_type = std::move(error.content_type);
  }
  spdlog::debug("http: {} {} -> {}", request.method, request.path, res.status);
  return res;
}

}  // namespace workflowd::http
