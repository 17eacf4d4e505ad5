// What a handler of the HTTP server sees and answers: a request read and bounded in full (method,
// path, query, headers, body) and a response (status, headers, body). No socket, no wire format.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>

namespace workflowd::http {

// Bounds of one request, enforced while it arrives (before any handler runs); a request over one
// of them is answered with the status named and its connection is closed.
struct RequestLimits {
  std::size_t max_request_line = 8192;                // longer: 414
  std::size_t max_header_bytes = 64 << 10;            // request line + headers; more: 431
  std::size_t max_headers = 100;                      // more: 431
  std::size_t max_body_bytes = std::size_t{8} << 20;  // more: 413
};

struct Request {
  std::string method;                              // "GET", "POST", ... (HEAD reaches GET routes)
  std::string path;                                // URL-decoded, without the query
  std::map<std::string, std::string> path_params;  // ":name" segments of the route's pattern
  std::map<std::string, std::string> query;        // decoded; first value wins for a repeated key
  std::map<std::string, std::string> headers;      // names lower-cased; first value wins
  std::string body;                                // de-chunked
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;  // an error status (>= 400) without a body gets a JSON error body
  // Extra headers. Content-Length, Connection and Transfer-Encoding are the server's (ignored
  // here), and so is Content-Type when content_type is set; a header holding CR or LF is dropped.
  std::map<std::string, std::string> headers;
};

// Runs on one of the server's worker threads, never on its event loop. An exception it throws is
// logged and answered with a 500 whose body does not reveal it.
using Handler = std::function<Response(const Request&)>;

}  // namespace workflowd::http
