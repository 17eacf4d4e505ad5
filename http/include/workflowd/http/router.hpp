// Routes a request to its handler by method and path pattern, and gives every error the JSON
// body {"error":{"code","message","details"}}. No sockets and no threads: the server (server.hpp)
// asks it which lane runs a request and then has a worker call Respond().
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "workflowd/http/message.hpp"

namespace workflowd::http {

class Router {
 public:
  // Adds a route. `method` is GET, POST, PUT, PATCH, DELETE or OPTIONS (GET also answers HEAD);
  // `pattern` is a literal path whose segments may be `:name` placeholders, each matching one
  // non-empty segment, e.g. "/api/v1/workflows/:id". `lane`: which of the server's worker lanes
  // runs it. The first route added that matches a request answers it. Throws
  // std::invalid_argument for a bad method, a bad pattern or an empty handler.
  void Add(const std::string& method, const std::string& pattern, Handler handler,
           std::size_t lane = 0);

  // The lane of the route that answers method + path; 0 when none does (Respond() then answers
  // without a handler).
  std::size_t LaneFor(std::string_view method, std::string_view path) const;

  // Answers `request` (its path_params are filled from the route): a method the router does not
  // know is 400, no route is 404 naming method and path, a handler's exception is 500 (logged,
  // not sent), and an error status without a body gets the JSON error body of its status.
  // Never throws for a handler's exception.
  Response Respond(Request request) const;

  bool empty() const noexcept { return routes_.empty(); }

 private:
  struct Segment {
    std::string text;  // the literal, or the parameter's name
    bool param = false;
  };
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<Segment> segments;
    Handler handler;
    std::size_t lane = 0;
  };

  // The matching route (nullptr when none); fills `params` when given.
  const Route* Find(std::string_view method, std::string_view path,
                    std::map<std::string, std::string>* params) const;

  std::vector<Route> routes_;
};

// {"error":{"code":code,"message":message,"details":{}}}; bytes that are not UTF-8 (a decoded
// path in the message) become U+FFFD.
std::string ErrorBody(std::string_view code, std::string_view message);

// A JSON error response for `status` with the code of that status ("not_found" for 404,
// "request_timeout" for 408, "payload_too_large" for 413, ...) and `message`, or the status's own
// message when it is empty. The router and the server answer with it when no handler gave a body.
Response ErrorResponse(int status, std::string_view message = {});

}  // namespace workflowd::http
