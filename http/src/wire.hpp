// HTTP/1.x on the wire for the server: an incremental request parser with hard limits, and the
// response serializer. Private to http/ (the event loop is its only user).
//
// Written by hand, not taken from a library, because the server must bound the total time a
// request takes to arrive and cap connections per client address while probes keep answering,
// which needs a parser that is fed whatever bytes an event loop has read:
// - cpp-httplib 0.11 (Debian 12's libcpp-httplib-dev) has no such parser: it reads each request
//   on a blocking thread per connection with per-read timeouts, and can do neither bound (a few
//   clients trickling header lines held every thread and /healthz timed out).
// - Boost.Beast's parser (libboost-dev 1.74 in Debian 12) is incremental and could replace this
//   one under the same loop; it is not clearly better here: it would add Boost to the build
//   (nothing else uses it) to replace about 400 tested lines, and the strict rules below would
//   then have to be checked against its own.
// So the parser is kept small and strict, and tests/integration/http_server_test.cpp checks it
// with cpp-httplib's client and raw sockets (pipelining, HEAD, chunked bodies, 100-continue, every
// limit), tests/unit/http_wire_test.cpp byte by byte.
//
// Strict on purpose (a request that could be read two ways is refused): CRLF or LF line ends, no
// obsolete header folding, no space before a header's colon, Content-Length and
// Transfer-Encoding never together, only the `chunked` transfer coding.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "workflowd/http/message.hpp"

namespace workflowd::http::wire {

using Limits = RequestLimits;

struct Request {
  std::string method;
  std::string target;                                        // as sent
  std::string path;                                          // URL-decoded, without the query
  std::vector<std::pair<std::string, std::string>> query;    // decoded, in order
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in order
  std::string body;                                          // de-chunked
  bool keep_alive = false;
};

// Reads one request at a time from a connection's input buffer.
class RequestParser {
 public:
  enum class Status { kIncomplete, kComplete, kError };

  explicit RequestParser(Limits limits) : limits_(limits) {}

  // Parses what `in` holds so far. kComplete: request() is the request and its bytes were erased
  // from the front of `in` (a pipelined next request stays); call Reset() before the next one.
  // kError: error_status() says which 4xx to answer (the connection must then close).
  Status Parse(std::string& in);
  void Reset();

  // Headers are complete, the client asked for `Expect: 100-continue` and the body has not
  // started: it waits for an interim "100 Continue".
  bool WantsContinue() const noexcept { return wants_continue_; }
  Request& request() noexcept { return request_; }
  int error_status() const noexcept { return error_status_; }
  const std::string& error_message() const noexcept { return error_message_; }

 private:
  Status Fail(int status, std::string message);
  Status ParseHead(std::string_view head);
  Status ParseChunked(std::string& in);

  Limits limits_;
  Request request_;
  bool head_done_ = false;
  std::size_t scanned_ = 0;     // bytes of `in` already searched for the end of the head
  std::size_t body_start_ = 0;  // offset of the body in `in` once the head is done
  bool chunked_ = false;
  std::size_t content_length_ = 0;
  std::size_t chunk_pos_ = 0;  // chunked: next unparsed offset in `in`
  bool wants_continue_ = false;
  int error_status_ = 0;
  std::string error_message_;
};

// "%41b+c" -> "Ab+c" (or "Ab c" with plus_as_space); a malformed escape is kept as it is.
std::string DecodeUrl(std::string_view s, bool plus_as_space);
std::string_view ReasonPhrase(int status);

struct Response {
  int status = 200;
  std::string content_type;
  std::string body;
  std::map<std::string, std::string> headers;  // extra headers
};

// Status line, headers (Content-Type, Content-Length, Connection, the extra ones that hold no
// CR/LF) and, unless head_only, the body.
std::string Serialize(const Response& response, bool keep_alive, bool head_only);

}  // namespace workflowd::http::wire
