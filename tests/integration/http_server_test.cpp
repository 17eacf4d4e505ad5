// Integration tests for the HTTP server (http/) with trivial handlers: real sockets on 127.0.0.1,
// cpp-httplib's client and raw sockets. Routing, the lifecycle, and the bounds that keep probes
// answering: the request timeout, the connection caps and their eviction, HTTP/1.1 features and
// the request limits. The admin endpoint's routes on this server are tested in admin_http_test.cpp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "raw_http_client.hpp"
#include "workflowd/http/server.hpp"

namespace workflowd::http {
namespace {

using nlohmann::json;
using testing::ClosedByServer;
using testing::ConnectFrom;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ReadResponses;
using testing::ReadResult;
using testing::ReadUntilClosed;
using testing::SendAll;
using ::testing::StartsWith;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr char kLoopback[] = "127.0.0.1";

// What the server told about its connections (read by the test while the loop writes).
class CountingMetrics final : public ConnectionMetrics {
 public:
  void Opened() noexcept override { ++open_; }
  void Closed() noexcept override { --open_; }
  void CutOff(CloseReason reason) noexcept override {
    ++cut_off_.at(static_cast<std::size_t>(reason));
  }
  int open() const { return open_.load(); }
  int cut_off(CloseReason reason) const { return cut_off_.at(static_cast<std::size_t>(reason)); }

 private:
  std::atomic<int> open_{0};
  std::array<std::atomic<int>, 4> cut_off_{};
};

ServerOptions LoopbackOptions() { return ServerOptions{.bind_address = kLoopback, .port = 0}; }

// A probe's route: /healthz and /readyz answer {"status":"ok"} on a lane of their own (as the
// admin endpoint's do), so slow handlers on the default lane never delay them.
void MountProbes(Server& server) {
  const Server::LaneId probes = server.AddLane(1);
  for (const char* path : {"/healthz", "/readyz"}) {
    server.Handle(
        "GET", path, [](const Request&) { return Response{.body = R"({"status":"ok"})"}; }, probes);
  }
}

std::unique_ptr<Server> StartServer(ServerOptions options = LoopbackOptions(),
                                    ConnectionMetrics* metrics = nullptr) {
  auto server = std::make_unique<Server>(std::move(options), metrics);
  MountProbes(*server);
  server->Start();
  return server;
}

httplib::Client ClientFor(const Server& server) {
  httplib::Client client(kLoopback, server.port());
  client.set_connection_timeout(2);
  client.set_read_timeout(5);
  return client;
}

json ParseJson(const std::string& body) {
  try {
    return json::parse(body);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON: " << body << " (" << e.what() << ")";
    return json();
  }
}

// --- routing --------------------------------------------------------------------------------

TEST(HttpServerTest, UnknownPathOrMethodIsJson404) {
  auto server = StartServer();
  auto client = ClientFor(*server);

  auto res = client.Get("/no/such/path");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  const json body = ParseJson(res->body);
  EXPECT_EQ(body["error"]["code"], "not_found");
  EXPECT_THAT(body["error"]["message"].get<std::string>(), HasSubstr("GET /no/such/path"));
  EXPECT_EQ(body["error"]["details"], json::object());

  auto post = client.Post("/healthz", "x", "text/plain");  // only GET is routed
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 404);
  EXPECT_EQ(ParseJson(post->body)["error"]["code"], "not_found");
}

TEST(HttpServerTest, MountedRoutesGetPathParamsQueryHeadersAndBody) {
  Server server(LoopbackOptions());
  server.Handle(
      "GET", "/api/v1/workflows/:workflow_id/executions/:execution_id", [](const Request& req) {
        json echo = {
            {"method", req.method},
            {"path", req.path},
            {"params", req.path_params},
            {"query", req.query},
            {"tenant", req.headers.count("x-tenant") ? req.headers.at("x-tenant") : "missing"}};
        return Response{.status = 200, .body = echo.dump(), .headers = {{"X-Echo", "1"}}};
      });
  server.Handle("POST", "/api/v1/workflows", [](const Request& req) {
    return Response{
        .status = 422,
        .body = R"({"error":{"code":"validation","message":")" + req.body + R"(","details":{}}})"};
  });
  server.Handle("DELETE", "/api/v1/workflows/:id", [](const Request& req) -> Response {
    if (req.path_params.at("id") == "boom") throw std::runtime_error("database exploded");
    return Response{.status = 404};  // no body: the server fills a JSON error
  });
  server.Handle("GET", "/api/v1/openapi.json",
                [](const Request&) { return Response{.body = R"({"openapi":"3.0.3"})"}; });
  server.Start();
  auto client = ClientFor(server);

  auto res = client.Get("/api/v1/workflows/wf-1/executions/ex%2042?limit=10&state=running",
                        httplib::Headers{{"X-Tenant", "t1"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("X-Echo"), "1");
  EXPECT_EQ(ParseJson(res->body), json::parse(R"({
      "method":"GET","path":"/api/v1/workflows/wf-1/executions/ex 42",
      "params":{"workflow_id":"wf-1","execution_id":"ex 42"},
      "query":{"limit":"10","state":"running"},"tenant":"t1"})"));

  // A placeholder matches exactly one segment; the dot in the literal is not a wildcard.
  auto too_deep = client.Get("/api/v1/workflows/wf-1/executions/ex/extra");
  ASSERT_TRUE(too_deep);
  EXPECT_EQ(too_deep->status, 404);
  auto dot = client.Get("/api/v1/openapiXjson");
  ASSERT_TRUE(dot);
  EXPECT_EQ(dot->status, 404);
  auto openapi = client.Get("/api/v1/openapi.json");
  ASSERT_TRUE(openapi);
  EXPECT_EQ(openapi->status, 200);

  auto created = client.Post("/api/v1/workflows", "bad name", "application/json");
  ASSERT_TRUE(created);
  EXPECT_EQ(created->status, 422);  // the handler's own error body is kept
  EXPECT_EQ(ParseJson(created->body)["error"]["message"], "bad name");

  auto missing = client.Delete("/api/v1/workflows/wf-9");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(ParseJson(missing->body)["error"]["code"], "not_found");

  auto boom = client.Delete("/api/v1/workflows/boom");
  ASSERT_TRUE(boom);
  EXPECT_EQ(boom->status, 500);
  const json error = ParseJson(boom->body)["error"];
  EXPECT_EQ(error["code"], "internal");
  EXPECT_THAT(error["message"].get<std::string>(), Not(HasSubstr("database")));  // logged only

  EXPECT_THROW(server.Handle("GET", "/late", [](const Request&) { return Response{}; }),
               std::logic_error);
  EXPECT_THROW(server.AddLane(1), std::logic_error);
}

TEST(HttpServerTest, HandleRejectsBadMethodsPatternsAndLanes) {
  Server server(LoopbackOptions());
  auto ok = [](const Request&) { return Response{}; };
  EXPECT_THROW(server.Handle("TRACE", "/x", ok), std::invalid_argument);
  EXPECT_THROW(server.Handle("GET", "no-slash", ok), std::invalid_argument);
  EXPECT_THROW(server.Handle("GET", "/a/:", ok), std::invalid_argument);
  EXPECT_THROW(server.Handle("GET", "/a/:id/b/:id", ok), std::invalid_argument);
  EXPECT_THROW(server.Handle("GET", "/a", nullptr), std::invalid_argument);
  EXPECT_THROW(server.Handle("GET", "/a", ok, 1), std::invalid_argument);  // no lane 1 yet
  EXPECT_EQ(server.AddLane(2), 1U);
  EXPECT_NO_THROW(server.Handle("GET", "/a", ok, 1));
}

// --- lifecycle ------------------------------------------------------------------------------

TEST(HttpServerTest, StopClosesTheListenerAndIsIdempotent) {
  auto server = StartServer();
  auto client = ClientFor(*server);
  auto before = client.Get("/healthz");
  ASSERT_TRUE(before);
  EXPECT_EQ(before->status, 200);

  server->Stop();
  server->Stop();
  auto after = client.Get("/healthz");
  EXPECT_FALSE(after);
  EXPECT_EQ(after.error(), httplib::Error::Connection) << httplib::to_string(after.error());
  EXPECT_THROW(server->Start(), std::logic_error);  // not restartable
  server.reset();                                   // destructor after Stop(): fine
}

TEST(HttpServerTest, StopRightAfterStartDoesNotHang) {
  for (int i = 0; i < 20; ++i) {
    auto server = StartServer();
    server->Stop();
  }
  { auto destroyed_while_running = StartServer(); }  // destructor stops it
}

TEST(HttpServerTest, TwoServersOnPortZeroGetDifferentPorts) {
  auto first = StartServer();
  auto second = StartServer();
  EXPECT_GT(first->port(), 0);
  EXPECT_GT(second->port(), 0);
  EXPECT_NE(first->port(), second->port());
  auto first_client = ClientFor(*first);
  auto second_client = ClientFor(*second);
  ASSERT_TRUE(first_client.Get("/healthz"));
  ASSERT_TRUE(second_client.Get("/healthz"));
}

TEST(HttpServerTest, BindingATakenPortThrowsNamingAddressAndPort) {
  auto first = StartServer();
  ServerOptions options{.bind_address = kLoopback, .port = first->port(), .name = "test server"};
  Server second(options);
  try {
    second.Start();
    FAIL() << "second server bound port " << first->port() << " that is in use";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("127.0.0.1:" + std::to_string(first->port())));
    EXPECT_THAT(e.what(), HasSubstr("Address already in use"));
    EXPECT_THAT(e.what(), StartsWith("test server "));
  }
  // The first server is unaffected, and the failed one can be destroyed cleanly.
  auto client = ClientFor(*first);
  auto res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(HttpServerTest, BindingAnUnknownAddressThrows) {
  // TEST-NET-3: not an address of this host.
  Server server(ServerOptions{.bind_address = "203.0.113.7", .port = 0});
  try {
    server.Start();
    FAIL() << "bound a foreign address";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("203.0.113.7:0"));
  }
}

// --- slow and many clients -------------------------------------------------------------------

// Headers, then a body, trickled a byte every 100 ms: each request is cut off once the total
// request time is spent (a 408 and the connection closed), however regular the trickle.
TEST(HttpServerSlowClientsTest, TricklingClientIsCutOffAfterTheRequestTimeout) {
  CountingMetrics metrics;
  ServerOptions options = LoopbackOptions();
  options.request_timeout = 1s;
  Server server(options, &metrics);
  MountProbes(server);
  server.Handle("POST", "/upload", [](const Request&) { return Response{}; });
  server.Start();
  for (const std::string& first : {std::string("GET /healthz HTTP/1.1\r\nX-Slow: "),
                                   std::string("POST /upload HTTP/1.1\r\nContent-Length: "
                                               "1000\r\nContent-Type: text/plain\r\n\r\n")}) {
    SCOPED_TRACE(first);
    const int fd = ConnectFrom(kLoopback, server.port());
    ASSERT_GE(fd, 0);
    const auto start = Clock::now();
    ASSERT_TRUE(SendAll(fd, first));
    ReadResult result;
    while (Clock::now() - start < 6s) {
      if (!SendAll(fd, "a")) break;  // the server may have closed already
      result = ReadUntilClosed(fd, 100ms);
      if (!result.data.empty() || result.closed) break;
    }
    if (!result.closed) {
      const ReadResult rest = ReadUntilClosed(fd, 2s);
      result.data += rest.data;
      result.closed = rest.closed;
    }
    const auto took = Clock::now() - start;
    ::close(fd);
    EXPECT_THAT(result.data, StartsWith("HTTP/1.1 408 "));
    EXPECT_THAT(result.data, HasSubstr("\"code\":\"request_timeout\""));
    EXPECT_TRUE(result.closed);
    EXPECT_GE(took, 900ms);
    EXPECT_LT(took, 2500ms);
  }
  EXPECT_EQ(metrics.cut_off(CloseReason::kRequestTimeout), 2);
}

TEST(HttpServerSlowClientsTest, PerAddressCapClosesTheLongestWaitingOrRefusesWhenAllAreBusy) {
  CountingMetrics metrics;
  ServerOptions options = LoopbackOptions();
  options.max_connections_per_address = 4;
  Server server(options, &metrics);
  MountProbes(server);
  std::atomic<int> slow_entered{0};
  std::atomic<bool> release{false};
  server.Handle("GET", "/slow", [&](const Request&) {
    ++slow_entered;
    for (int i = 0; i < 1000 && !release; ++i) std::this_thread::sleep_for(10ms);
    return Response{.body = "{}"};
  });
  server.Start();
  const std::string healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

  // Four idle connections from 127.0.0.2: a fifth from there is served, and the one that waited
  // longest (the first) is closed to make room.
  std::vector<int> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(ConnectFrom("127.0.0.2", server.port()));
  for (int fd : idle) ASSERT_GE(fd, 0);
  const int fifth = ConnectFrom("127.0.0.2", server.port());
  ASSERT_GE(fifth, 0);
  ASSERT_TRUE(SendAll(fifth, healthz));
  EXPECT_THAT(ReadUntilClosed(fifth, 3s).data, StartsWith("HTTP/1.1 200 "));
  EXPECT_TRUE(ReadUntilClosed(idle[0], 3s).closed);
  EXPECT_EQ(metrics.cut_off(CloseReason::kEvicted), 1);
  // Another address is not affected by 127.0.0.2's cap.
  const int other = ConnectFrom("127.0.0.3", server.port());
  ASSERT_TRUE(SendAll(other, healthz));
  EXPECT_THAT(ReadUntilClosed(other, 3s).data, StartsWith("HTTP/1.1 200 "));
  for (int fd : {fifth, other, idle[0], idle[1], idle[2], idle[3]}) ::close(fd);

  // Four connections from 127.0.0.4 whose requests are all being answered: a fifth from there is
  // refused (closed at once), while other clients are still answered.
  std::vector<int> busy;
  for (int i = 0; i < 4; ++i) {
    busy.push_back(ConnectFrom("127.0.0.4", server.port()));
    ASSERT_TRUE(SendAll(busy.back(), "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  }
  for (int i = 0; i < 500 && slow_entered < 4; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(slow_entered.load(), 4);
  const int refused = ConnectFrom("127.0.0.4", server.port());
  ASSERT_GE(refused, 0);  // the kernel completes the handshake; the server then closes it
  const ReadResult refusal = ReadUntilClosed(refused, 3s);
  EXPECT_TRUE(refusal.closed);
  EXPECT_EQ(refusal.data, "");
  ::close(refused);
  EXPECT_EQ(metrics.cut_off(CloseReason::kRefused), 1);
  auto client = ClientFor(server);
  auto live = client.Get("/healthz");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);

  release = true;
  for (int fd : busy) {
    EXPECT_THAT(ReadUntilClosed(fd, 3s).data, StartsWith("HTTP/1.1 200 "));
    ::close(fd);
  }
}

// Complete requests that wait for a busy worker do not lock probes out either: the one that has
// waited longest is dropped (closed, never handled) to make room.
TEST(HttpServerSlowClientsTest, ARequestStillQueuedForAWorkerMakesRoomWhenTheCapIsReached) {
  CountingMetrics metrics;
  ServerOptions options = LoopbackOptions();
  options.max_connections_per_address = 3;
  options.handler_threads = 1;
  Server server(options, &metrics);
  MountProbes(server);
  std::atomic<int> slow_entered{0};
  std::atomic<bool> release{false};
  server.Handle("GET", "/slow", [&](const Request&) {
    ++slow_entered;
    for (int i = 0; i < 1000 && !release; ++i) std::this_thread::sleep_for(10ms);
    return Response{.body = "{}"};
  });
  server.Start();
  const std::string slow = "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  std::vector<int> fds;
  fds.push_back(ConnectFrom("127.0.0.2", server.port()));
  ASSERT_TRUE(SendAll(fds.back(), slow));
  for (int i = 0; i < 500 && slow_entered < 1; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(slow_entered.load(), 1);  // the only worker is busy with the first
  for (int i = 0; i < 2; ++i) {
    fds.push_back(ConnectFrom("127.0.0.2", server.port()));
    ASSERT_TRUE(SendAll(fds.back(), slow));
  }
  // The two queued requests are read (the connections wait for the worker) before the probe.
  for (int i = 0; i < 500 && metrics.open() < 3; ++i) std::this_thread::sleep_for(10ms);
  const int probe = ConnectFrom("127.0.0.2", server.port());
  ASSERT_TRUE(SendAll(probe, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  EXPECT_THAT(ReadUntilClosed(probe, 3s).data, StartsWith("HTTP/1.1 200 "));
  ::close(probe);
  const ReadResult dropped = ReadUntilClosed(fds[1], 3s);  // the longest queued
  EXPECT_TRUE(dropped.closed);
  EXPECT_EQ(dropped.data, "");
  release = true;
  EXPECT_THAT(ReadUntilClosed(fds[0], 3s).data, StartsWith("HTTP/1.1 200 "));
  EXPECT_THAT(ReadUntilClosed(fds[2], 3s).data, StartsWith("HTTP/1.1 200 "));
  EXPECT_EQ(slow_entered.load(), 2);  // the dropped request never reached its handler
  EXPECT_EQ(metrics.cut_off(CloseReason::kEvicted), 1);
  for (int fd : fds) ::close(fd);
}

// Many connections over the overall cap, from several addresses: the open count never passes it,
// the longest-waiting are evicted, and a probe is still answered.
TEST(HttpServerSlowClientsTest, OverallCapEvictsTheLongestWaiting) {
  CountingMetrics metrics;
  ServerOptions options = LoopbackOptions();
  options.max_connections = 8;
  auto server = StartServer(options, &metrics);
  std::vector<int> fds;
  for (int i = 0; i < 12; ++i) {
    fds.push_back(ConnectFrom("127.0.0." + std::to_string(2 + i % 4), server->port()));
    ASSERT_GE(fds.back(), 0);
  }
  const int probe = ConnectFrom("127.0.0.20", server->port());
  ASSERT_TRUE(SendAll(probe, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  EXPECT_THAT(ReadUntilClosed(probe, 3s).data, StartsWith("HTTP/1.1 200 "));
  ::close(probe);
  // The first five were closed to make room for the next ones and the probe, oldest first.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(ReadUntilClosed(fds[i], 3s).closed) << i;
  for (int i = 5; i < 12; ++i) EXPECT_FALSE(ClosedByServer(fds[i])) << i;
  EXPECT_EQ(metrics.cut_off(CloseReason::kEvicted), 5);
  EXPECT_LE(metrics.open(), 8);
  for (int fd : fds) ::close(fd);
}

// What clients of the REST API send besides simple requests: pipelined requests on one kept-alive
// connection, HEAD, a chunked body, `Expect: 100-continue`, and oversized or broken requests.
TEST(HttpServerTest, KeepAlivePipeliningHeadChunkedContinueAndLimits) {
  ServerOptions options = LoopbackOptions();
  options.limits.max_body_bytes = 1000;
  Server server(options);
  MountProbes(server);
  server.Handle("POST", "/echo", [](const Request& req) {
    return Response{.content_type = "text/plain", .body = "got:" + req.body};
  });
  server.Start();

  const int fd = ConnectFrom(kLoopback, server.port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd,
                      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      "HEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
                      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"));
  std::string responses = ReadResponses(fd, {true, false, true}, 3s);
  EXPECT_THAT(responses, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(responses, HasSubstr("\"status\":\"ok\""));
  const std::size_t head = responses.find("HTTP/1.1 200 OK", 1);
  ASSERT_NE(head, std::string::npos);
  const std::size_t echo = responses.find("HTTP/1.1 200 OK", head + 1);
  ASSERT_NE(echo, std::string::npos);
  // HEAD: the GET's headers (its Content-Length), no body.
  EXPECT_THAT(responses.substr(head, echo - head), HasSubstr("Content-Length: "));
  EXPECT_THAT(responses.substr(head, echo - head), Not(HasSubstr("status")));
  EXPECT_THAT(responses.substr(echo), HasSubstr("\r\n\r\ngot:abcde"));

  // Expect: 100-continue gets the interim answer before the body is sent.
  ASSERT_TRUE(SendAll(fd,
                      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                      "Expect: 100-continue\r\n\r\n"));
  EXPECT_EQ(ReadResponses(fd, {false}, 3s), "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(SendAll(fd, "hello"));
  EXPECT_THAT(ReadResponses(fd, {true}, 3s), HasSubstr("\r\n\r\ngot:hello"));
  ::close(fd);

  struct Case {
    std::string request;
    std::string status_line;
    std::string code;
  };
  for (const Case& c : std::vector<Case>{
           {"POST /echo HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", "HTTP/1.1 413 ",
            "payload_too_large"},
           {"GET /healthz HTTP/1.1\r\nX-Big: " + std::string(70000, 'b') + "\r\n\r\n",
            "HTTP/1.1 431 ", "headers_too_large"},
           {"GET /" + std::string(9000, 'p') + " HTTP/1.1\r\n\r\n", "HTTP/1.1 414 ",
            "uri_too_long"},
           {"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 400 ", "bad_request"},
           {"GET /healthz HTTP/1.1\r\nBad Header: 1\r\n\r\n", "HTTP/1.1 400 ", "bad_request"},
           {"BREW /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", "HTTP/1.1 400 ", "bad_request"},
       }) {
    SCOPED_TRACE(c.request.substr(0, 60));
    const int bad = ConnectFrom(kLoopback, server.port());
    ASSERT_GE(bad, 0);
    SendAll(bad, c.request);
    const ReadResult result = ReadUntilClosed(bad, 3s);
    ::close(bad);
    EXPECT_THAT(result.data, StartsWith(c.status_line));
    EXPECT_THAT(result.data, HasSubstr("\"code\":\"" + c.code + "\""));
  }
}

}  // namespace
}  // namespace workflowd::http
