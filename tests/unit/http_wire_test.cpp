// Hermetic tests of the HTTP server's request parser and response serializer (http/src/wire.hpp):
// requests fed whole and a byte at a time, pipelining, and the strict refusals. The same parser
// behind real sockets is tested in tests/integration/http_server_test.cpp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "wire.hpp"

namespace workflowd::http::wire {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using Pairs = std::vector<std::pair<std::string, std::string>>;

struct Outcome {
  RequestParser::Status status = RequestParser::Status::kIncomplete;
  int error_status = 0;
  Request request;
  std::string rest;  // what stays in the buffer
};

// Feeds `bytes` whole, or one byte at a time, until the parser is done or the bytes run out.
Outcome ParseAll(const std::string& bytes, bool byte_by_byte, Limits limits = {}) {
  RequestParser parser(limits);
  Outcome out;
  std::string in;
  for (std::size_t i = 0; i < bytes.size();) {
    const std::size_t n = byte_by_byte ? 1 : bytes.size();
    in.append(bytes, i, n);
    i += n;
    out.status = parser.Parse(in);
    if (out.status != RequestParser::Status::kIncomplete) break;
  }
  out.error_status = parser.error_status();
  out.request = parser.request();
  out.rest = in;
  return out;
}

class WireParseTest : public ::testing::TestWithParam<bool> {};

TEST_P(WireParseTest, RequestLineHeadersQueryAndBody) {
  const Outcome out = ParseAll(
      "\r\nPOST http://host:1/a%20b/c?x=1&y=two+words&x=2&flag#frag HTTP/1.1\r\n"
      "Host: h\r\nX-Name:  padded value \t\r\nContent-Length: 5\r\n\r\nhello"
      "GET /next HTTP/1.1\r\n",
      GetParam());
  ASSERT_EQ(out.status, RequestParser::Status::kComplete);
  EXPECT_EQ(out.request.method, "POST");
  EXPECT_EQ(out.request.path, "/a b/c");
  EXPECT_EQ(out.request.query, (Pairs{{"x", "1"}, {"y", "two words"}, {"x", "2"}, {"flag", ""}}));
  EXPECT_EQ(out.request.headers,
            (Pairs{{"host", "h"}, {"x-name", "padded value"}, {"content-length", "5"}}));
  EXPECT_EQ(out.request.body, "hello");
  EXPECT_TRUE(out.request.keep_alive);
  if (!GetParam()) {
    EXPECT_EQ(out.rest, "GET /next HTTP/1.1\r\n");  // pipelined: left for later
  }
}

TEST_P(WireParseTest, ChunkedBodyWithExtensionsAndTrailers) {
  const Outcome out =
      ParseAll("POST /u HTTP/1.1\nTransfer-Encoding: Chunked\n\n3;x=y\nabc\n2\r\nde\r\n0\nT: 1\n\n",
               GetParam());
  ASSERT_EQ(out.status, RequestParser::Status::kComplete);
  EXPECT_EQ(out.request.body, "abcde");
  EXPECT_EQ(out.rest, "");
}

TEST_P(WireParseTest, KeepAliveByVersionAndConnectionHeader) {
  EXPECT_FALSE(ParseAll("GET / HTTP/1.0\r\n\r\n", GetParam()).request.keep_alive);
  EXPECT_TRUE(
      ParseAll("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", GetParam()).request.keep_alive);
  EXPECT_FALSE(
      ParseAll("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", GetParam()).request.keep_alive);
}

TEST_P(WireParseTest, StrictRefusals) {
  struct Case {
    std::string request;
    int status;
  };
  for (const Case& c : std::vector<Case>{
           {"GET / HTTP/1.1\r\nX: 1\r\n folded\r\n\r\n", 400},
           {"GET / HTTP/1.1\r\nX : 1\r\n\r\n", 400},
           {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
           {"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
           {"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
           {"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
           {"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
           {"GET / HTTP/2.0\r\n\r\n", 505},
           {"GET / FTP/1.0\r\n\r\n", 400},
           {"GET  / HTTP/1.1\r\n\r\n", 400},
           {"GET relative HTTP/1.1\r\n\r\n", 400},
           {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
           {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX", 400},
       }) {
    SCOPED_TRACE(c.request);
    const Outcome out = ParseAll(c.request, GetParam());
    EXPECT_EQ(out.status, RequestParser::Status::kError);
    EXPECT_EQ(out.error_status, c.status);
  }
}

TEST_P(WireParseTest, Limits) {
  const Limits limits{
      .max_request_line = 32, .max_header_bytes = 128, .max_headers = 3, .max_body_bytes = 10};
  auto status = [&](const std::string& request) {
    return ParseAll(request, GetParam(), limits).error_status;
  };
  EXPECT_EQ(status("GET /" + std::string(40, 'a') + " HTTP/1.1\r\n\r\n"), 414);
  EXPECT_EQ(status("GET / HTTP/1.1\r\nX: " + std::string(200, 'a') + "\r\n\r\n"), 431);
  EXPECT_EQ(status("GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n"), 431);
  EXPECT_EQ(status("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n"), 413);
  EXPECT_EQ(status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n"
                   "5\r\nabcde\r\n0\r\n\r\n"),
            413);
  EXPECT_EQ(status("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789"), 0);  // at the limit
}

INSTANTIATE_TEST_SUITE_P(WholeAndByteByByte, WireParseTest, ::testing::Bool());

TEST(WireTest, ExpectContinueUntilTheBodyStarts) {
  RequestParser parser(Limits{});
  std::string in = "PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
  EXPECT_EQ(parser.Parse(in), RequestParser::Status::kIncomplete);
  EXPECT_TRUE(parser.WantsContinue());
  in += "a";
  EXPECT_EQ(parser.Parse(in), RequestParser::Status::kIncomplete);
  EXPECT_FALSE(parser.WantsContinue());
  in += "bc";
  EXPECT_EQ(parser.Parse(in), RequestParser::Status::kComplete);
  EXPECT_EQ(parser.request().body, "abc");
  parser.Reset();
  std::string http10 = "PUT /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
  EXPECT_EQ(parser.Parse(http10), RequestParser::Status::kIncomplete);
  EXPECT_FALSE(parser.WantsContinue());  // HTTP/1.0 clients do not wait for it
}

TEST(WireTest, DecodeUrl) {
  EXPECT_EQ(DecodeUrl("%41b+c", false), "Ab+c");
  EXPECT_EQ(DecodeUrl("%41b+c", true), "Ab c");
  EXPECT_EQ(DecodeUrl("100%", false), "100%");
  EXPECT_EQ(DecodeUrl("%zz%4", false), "%zz%4");
}

TEST(WireTest, SerializeFramesTheResponseAndDropsUnsafeHeaders) {
  const Response res{.status = 201,
                     .content_type = "application/json",
                     .body = "{}",
                     .headers = {{"Location", "/x/1"},
                                 {"X-Split", "a\r\nInjected: 1"},
                                 {"Content-Length", "99"},
                                 {"Connection", "upgrade"},
                                 {"Bad Name", "1"}}};
  const std::string out = Serialize(res, true, false);
  EXPECT_THAT(out, StartsWith("HTTP/1.1 201 Created\r\n"));
  EXPECT_THAT(out, HasSubstr("Content-Type: application/json\r\nContent-Length: 2\r\n"
                             "Connection: keep-alive\r\nLocation: /x/1\r\n\r\n{}"));
  EXPECT_THAT(out, Not(HasSubstr("Injected")));
  EXPECT_THAT(out, Not(HasSubstr("99")));
  EXPECT_THAT(out, Not(HasSubstr("upgrade")));
  EXPECT_THAT(out, Not(HasSubstr("Bad Name")));

  const std::string head = Serialize(res, false, true);
  EXPECT_THAT(head, HasSubstr("Content-Length: 2\r\nConnection: close\r\n"));
  EXPECT_THAT(head, Not(HasSubstr("{}")));
  const std::string no_content = Serialize(Response{.status = 204, .body = "x"}, true, false);
  EXPECT_EQ(no_content, "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
}

}  // namespace
}  // namespace workflowd::http::wire
