// Integration tests for the admin HTTP server (metrics/): real sockets on 127.0.0.1, a real HTTP
// client, and the exposition checked by the reference parser/linter `promtool check metrics`
// (Debian package `prometheus`). A missing promtool fails the test; it never skips.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "workflowd/metrics/admin_server.hpp"
#include "workflowd/metrics/registry.hpp"

namespace workflowd::metrics {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr char kLoopback[] = "127.0.0.1";

// --- promtool -------------------------------------------------------------------------------

std::string FindOnPath(const std::string& program) {
  const char* path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe): before any thread
  std::stringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

struct PromtoolResult {
  int exit_status = -1;
  std::string output;  // stdout + stderr
};

// Pipes `exposition` into `promtool check metrics` (stdin via popen) and collects its verdict.
PromtoolResult CheckMetricsWithPromtool(const std::string& promtool,
                                        const std::string& exposition) {
  char output_path[] = "/tmp/workflowd-promtool-XXXXXX";
  const int fd = ::mkstemp(output_path);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  ::close(fd);
  const std::string command = "'" + promtool + "' check metrics >'" + output_path + "' 2>&1";
  FILE* pipe = ::popen(command.c_str(), "w");
  if (pipe == nullptr) throw std::runtime_error("popen failed: " + command);
  std::fwrite(exposition.data(), 1, exposition.size(), pipe);
  const int status = ::pclose(pipe);
  PromtoolResult result;
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(output_path);
  result.output.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  std::remove(output_path);
  return result;
}

std::string RequirePromtool() {
  std::string promtool = FindOnPath("promtool");
  if (promtool.empty()) {
    ADD_FAILURE() << "promtool not found on PATH: it is the reference check of the /metrics "
                     "format. Install it with `apt-get install prometheus` (or run "
                     "scripts/install-deps.sh); there is no need to start the prometheus service.";
  }
  return promtool;
}

// --- fixtures -------------------------------------------------------------------------------

HealthReport Healthy() { return {.ok = true, .checks = {{.name = "process", .ok = true}}}; }

std::unique_ptr<AdminServer> StartServer(Registry& registry, HealthProvider liveness = Healthy,
                                         HealthProvider readiness = Healthy) {
  auto server =
      std::make_unique<AdminServer>(AdminServerOptions{.bind_address = kLoopback, .port = 0},
                                    registry, std::move(liveness), std::move(readiness));
  server->Start();
  return server;
}

httplib::Client ClientFor(const AdminServer& server) {
  httplib::Client client(kLoopback, server.port());
  client.set_connection_timeout(2);
  client.set_read_timeout(5);
  return client;
}

// A registry with every kind of family, labels and values that need escaping.
void FillRegistry(Registry& registry) {
  auto& events = registry.AddCounter("workflowd_events_consumed_total",
                                     "Events consumed from Kafka.\nSecond help line with \\.",
                                     {"tenant", "environment", "topic"});
  events.WithLabels({"t1", "prod", "events"}).Inc(41);
  events.WithLabels({"t1", "prod", "events"}).Inc();
  events.WithLabels({"quote\"back\\slash", "line\nbreak", "ünï©ødé"}).Inc(0.5);
  registry.AddCounter("workflowd_dlq_records_total", "Records sent to the DLQ.");

  registry.AddGauge("workflowd_inflight_executions", "Executions being started.").Set(-1.25);
  auto& lag = registry.AddGauge("workflowd_consumer_lag", "Consumer lag in messages.",
                                {"topic", "partition"});
  registry.AddCollectCallback([&lag] { lag.WithLabels({"events", "0"}).Set(1e9); });

  auto& latency =
      registry.AddHistogram("workflowd_provider_start_seconds", "Provider StartExecution latency.",
                            {"provider"}, DefaultLatencyBuckets());
  for (double v : {0.0004, 0.0005, 0.003, 0.2, 1.0, 12.0}) latency.WithLabels({"mock"}).Observe(v);
  latency.WithLabels({"step\"functions"}).Observe(0.07);
  registry.AddHistogram("workflowd_batch_commit_seconds", "Batch commit latency.",
                        std::vector<double>{0.01, 0.1, 1});
}

json ParseJson(const std::string& body) {
  try {
    return json::parse(body);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON: " << body << " (" << e.what() << ")";
    return json();
  }
}

// --- /metrics -------------------------------------------------------------------------------

TEST(AdminHttpTest, MetricsEndpointPassesPromtool) {
  const std::string promtool = RequirePromtool();
  ASSERT_FALSE(promtool.empty());
  Registry registry;
  FillRegistry(registry);
  auto server = StartServer(registry);
  auto client = ClientFor(*server);

  auto res = client.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& body = res->body;
  EXPECT_THAT(body, HasSubstr("workflowd_admin_scrapes_total 1\n"));
  EXPECT_THAT(body,
              HasSubstr("workflowd_consumer_lag{topic=\"events\",partition=\"0\"} 1000000000\n"));
  EXPECT_THAT(body, HasSubstr("{tenant=\"quote\\\"back\\\\slash\",environment=\"line\\nbreak\""));
  EXPECT_THAT(
      body,
      HasSubstr("workflowd_provider_start_seconds_bucket{provider=\"mock\",le=\"0.0005\"} 2\n"));
  EXPECT_THAT(
      body,
      HasSubstr("workflowd_provider_start_seconds_bucket{provider=\"mock\",le=\"+Inf\"} 6\n"));

  const PromtoolResult verdict = CheckMetricsWithPromtool(promtool, body);
  EXPECT_EQ(verdict.exit_status, 0) << verdict.output << "\n--- exposition ---\n" << body;
  std::string lowered = verdict.output;
  for (char& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  EXPECT_THAT(lowered, Not(HasSubstr("error"))) << verdict.output;

  auto second = client.Get("/metrics");
  ASSERT_TRUE(second);
  EXPECT_THAT(second->body, HasSubstr("workflowd_admin_scrapes_total 2\n"));
}

// Proves the check above can fail: promtool does reject broken or badly named expositions.
TEST(AdminHttpTest, PromtoolRejectsBrokenExpositions) {
  const std::string promtool = RequirePromtool();
  ASSERT_FALSE(promtool.empty());
  EXPECT_NE(CheckMetricsWithPromtool(promtool, "x{a=\"unterminated} 1\n").exit_status, 0);
  EXPECT_NE(CheckMetricsWithPromtool(promtool, "# HELP x h\n# TYPE x counter\nx 1\n").exit_status,
            0);  // lint: counters need _total
  EXPECT_EQ(
      CheckMetricsWithPromtool(promtool, "# HELP x_total h\n# TYPE x_total counter\nx_total 1\n")
          .exit_status,
      0);
}

// --- health ---------------------------------------------------------------------------------

TEST(AdminHttpTest, HealthzAndReadyzReflectTheProviders) {
  Registry registry;
  std::atomic<bool> ready{false};
  auto server = StartServer(registry, Healthy, [&ready] {
    const bool ok = ready.load();
    return HealthReport{.ok = ok,
                        .checks = {{.name = "kafka", .ok = true, .detail = "3 partitions"},
                                   {.name = "postgres", .ok = ok, .detail = ok ? "" : "refused"}}};
  });
  auto client = ClientFor(*server);

  auto live = client.Get("/healthz");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  EXPECT_EQ(live->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(ParseJson(live->body),
            json::parse(R"({"status":"ok","checks":[{"name":"process","ok":true,"detail":""}]})"));

  auto not_ready = client.Get("/readyz");
  ASSERT_TRUE(not_ready);
  EXPECT_EQ(not_ready->status, 503);
  EXPECT_EQ(ParseJson(not_ready->body), json::parse(R"({"status":"unavailable","checks":[
      {"name":"kafka","ok":true,"detail":"3 partitions"},
      {"name":"postgres","ok":false,"detail":"refused"}]})"));

  ready = true;
  auto now_ready = client.Get("/readyz");
  ASSERT_TRUE(now_ready);
  EXPECT_EQ(now_ready->status, 200);
  EXPECT_EQ(ParseJson(now_ready->body)["status"], "ok");
}

TEST(AdminHttpTest, ThrowingOrMissingHealthProviders) {
  Registry registry;
  auto server = StartServer(registry, nullptr, []() -> HealthReport {
    throw std::runtime_error("readiness probe broke");
  });
  auto client = ClientFor(*server);

  auto live = client.Get("/healthz");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);  // no provider: healthy
  EXPECT_EQ(ParseJson(live->body), json::parse(R"({"status":"ok","checks":[]})"));

  auto ready = client.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  const json body = ParseJson(ready->body);
  EXPECT_EQ(body["status"], "unavailable");
  EXPECT_EQ(body["checks"][0]["detail"], "readiness probe broke");
}

// --- routing --------------------------------------------------------------------------------

TEST(AdminHttpTest, UnknownPathIsJson404) {
  Registry registry;
  auto server = StartServer(registry);
  auto client = ClientFor(*server);

  auto res = client.Get("/no/such/path");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  const json body = ParseJson(res->body);
  EXPECT_EQ(body["error"]["code"], "not_found");
  EXPECT_THAT(body["error"]["message"].get<std::string>(), HasSubstr("GET /no/such/path"));
  EXPECT_EQ(body["error"]["details"], json::object());

  auto post = client.Post("/metrics", "x", "text/plain");  // only GET is routed
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 404);
  EXPECT_EQ(ParseJson(post->body)["error"]["code"], "not_found");
}

TEST(AdminHttpTest, MountedRoutesGetPathParamsQueryHeadersAndBody) {
  Registry registry;
  AdminServer server(AdminServerOptions{.bind_address = kLoopback, .port = 0}, registry, Healthy,
                     Healthy);
  server.Handle(
      "GET", "/api/v1/workflows/:workflow_id/executions/:execution_id", [](const HttpRequest& req) {
        json echo = {
            {"method", req.method},
            {"path", req.path},
            {"params", req.path_params},
            {"query", req.query},
            {"tenant", req.headers.count("x-tenant") ? req.headers.at("x-tenant") : "missing"}};
        return HttpResponse{.status = 200, .body = echo.dump(), .headers = {{"X-Echo", "1"}}};
      });
  server.Handle("POST", "/api/v1/workflows", [](const HttpRequest& req) {
    return HttpResponse{
        .status = 422,
        .body = R"({"error":{"code":"validation","message":")" + req.body + R"(","details":{}}})"};
  });
  server.Handle("DELETE", "/api/v1/workflows/:id", [](const HttpRequest& req) -> HttpResponse {
    if (req.path_params.at("id") == "boom") throw std::runtime_error("database exploded");
    return HttpResponse{.status = 404};  // no body: the server fills a JSON error
  });
  server.Handle("GET", "/api/v1/openapi.json",
                [](const HttpRequest&) { return HttpResponse{.body = R"({"openapi":"3.0.3"})"}; });
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

  // A placeholder matches exactly one segment; the dot in the literal is not a regex wildcard.
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

  EXPECT_THROW(server.Handle("GET", "/late", [](const HttpRequest&) { return HttpResponse{}; }),
               std::logic_error);
}

TEST(AdminHttpTest, HandleRejectsBadMethodsAndPatterns) {
  Registry registry;
  AdminServer server(AdminServerOptions{.bind_address = kLoopback, .port = 0}, registry, Healthy,
                     Healthy);
  auto ok = [](const HttpRequest&) { return HttpResponse{}; };
  EXPECT_THROW(server.Handle("TRACE", "/x", ok), std::invalid_argument);
  EXPECT_THROW(server.Handle("GET", "no-slash", ok), std::invalid_argument);
  EXPECT_THROW(server.Handle("GET", "/a/:", ok), std::invalid_argument);
  EXPECT_THROW(server.Handle("GET", "/a/:id/b/:id", ok), std::invalid_argument);
  EXPECT_THROW(server.Handle("GET", "/a", nullptr), std::invalid_argument);
}

// --- lifecycle ------------------------------------------------------------------------------

TEST(AdminHttpTest, StopClosesTheListenerAndIsIdempotent) {
  Registry registry;
  auto server = StartServer(registry);
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

TEST(AdminHttpTest, StopRightAfterStartDoesNotHang) {
  for (int i = 0; i < 20; ++i) {
    Registry registry;
    auto server = StartServer(registry);
    server->Stop();
  }
  Registry registry;
  { auto destroyed_while_running = StartServer(registry); }  // destructor stops it
}

TEST(AdminHttpTest, TwoServersOnPortZeroGetDifferentPorts) {
  Registry first_registry;
  Registry second_registry;
  auto first = StartServer(first_registry);
  auto second = StartServer(second_registry);
  EXPECT_GT(first->port(), 0);
  EXPECT_GT(second->port(), 0);
  EXPECT_NE(first->port(), second->port());
  auto first_client = ClientFor(*first);
  auto second_client = ClientFor(*second);
  ASSERT_TRUE(first_client.Get("/healthz"));
  ASSERT_TRUE(second_client.Get("/healthz"));
}

TEST(AdminHttpTest, BindingATakenPortThrowsNamingAddressAndPort) {
  Registry first_registry;
  auto first = StartServer(first_registry);
  Registry second_registry;
  AdminServer second(AdminServerOptions{.bind_address = kLoopback, .port = first->port()},
                     second_registry, Healthy, Healthy);
  try {
    second.Start();
    FAIL() << "second server bound port " << first->port() << " that is in use";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("127.0.0.1:" + std::to_string(first->port())));
    EXPECT_THAT(e.what(), HasSubstr("Address already in use"));
  }
  // The first server is unaffected, and the failed one can be destroyed cleanly.
  auto client = ClientFor(*first);
  auto res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(AdminHttpTest, BindingAnUnknownAddressThrows) {
  Registry registry;
  AdminServer server(AdminServerOptions{.bind_address = "203.0.113.7", .port = 0}, registry,
                     Healthy, Healthy);  // TEST-NET-3: not an address of this host
  try {
    server.Start();
    FAIL() << "bound a foreign address";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("203.0.113.7:0"));
  }
}

// --- slow and many clients -------------------------------------------------------------------

// A TCP connection to 127.0.0.1:port from the loopback address `source` (all of 127.0.0.0/8 is
// local on Linux, so tests can play several client addresses). -1 when the connect fails.
int ConnectFrom(const std::string& source, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in local{};
  local.sin_family = AF_INET;
  ::inet_pton(AF_INET, source.c_str(), &local.sin_addr);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, kLoopback, &remote.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof(remote)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

struct ReadResult {
  std::string data;
  bool closed = false;  // the server closed the connection (EOF or reset)
};

// Reads until the server closes the connection or `timeout` passes.
ReadResult ReadUntilClosed(int fd, std::chrono::milliseconds timeout) {
  ReadResult result;
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(1, left.count()))) <= 0) continue;
    char buffer[4096];
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) {
      result.closed = true;
      return result;
    }
    result.data.append(buffer, static_cast<std::size_t>(n));
  }
  return result;
}

// Reads until `data` holds one complete response per entry of `bodies` (whether that response
// has a body: a HEAD's has none, whatever its Content-Length), or `timeout` passes.
std::string ReadResponses(int fd, const std::vector<bool>& bodies,
                          std::chrono::milliseconds timeout) {
  std::string data;
  const auto until = Clock::now() + timeout;
  auto complete = [&] {
    std::size_t pos = 0;
    for (const bool body : bodies) {
      const std::size_t head_end = data.find("\r\n\r\n", pos);
      if (head_end == std::string::npos) return false;
      const std::string head = data.substr(pos, head_end - pos);
      const std::size_t cl = head.find("Content-Length: ");
      std::size_t length = 0;
      if (body && cl != std::string::npos) length = std::stoul(head.substr(cl + 16));
      pos = head_end + 4 + length;
      if (data.size() < pos) return false;
    }
    return true;
  };
  while (!complete() && Clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buffer[4096];
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    data.append(buffer, static_cast<std::size_t>(n));
  }
  return data;
}

// True when the server closed `fd` (EOF or reset): a non-blocking peek.
bool ClosedByServer(int fd) {
  char byte = 0;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

// The value of one sample of the registry's exposition; -1 when absent.
double SampleValue(Registry& registry, const std::string& sample) {
  const std::string exposition = registry.Serialize();
  const std::size_t at = exposition.find("\n" + sample + " ");
  if (at == std::string::npos) return -1;
  return std::stod(exposition.substr(at + sample.size() + 2));
}

// The issue's attack: clients that send a request line and then one header line a second, and
// clients that connect and send nothing, from several addresses, far more than the connection
// caps. /healthz must keep answering within a second, again and again, while they stay.
TEST(AdminHttpSlowClientsTest, HealthzAnswersWithinASecondWhileHundredsOfSlowClientsStay) {
  Registry registry;
  auto server = StartServer(registry);  // default caps: 256 connections, 32 per address
  struct SlowClient {
    std::string source;
    bool trickles = false;
    int fd = -1;
  };
  std::vector<SlowClient> clients;
  for (int a = 0; a < 10; ++a) {  // 300 tricklers from 127.0.0.2 .. 127.0.0.11
    for (int i = 0; i < 30; ++i) clients.push_back({"127.0.0." + std::to_string(2 + a), true});
  }
  for (int a = 0; a < 2; ++a) {  // 40 silent ones from 127.0.0.12 and 127.0.0.13
    for (int i = 0; i < 20; ++i) clients.push_back({"127.0.0." + std::to_string(12 + a), false});
  }
  const int port = server->port();
  auto open = [port](SlowClient& c) {
    c.fd = ConnectFrom(c.source, port);
    if (c.fd >= 0 && c.trickles) SendAll(c.fd, "GET /healthz HTTP/1.1\r\nHost: workflowd\r\n");
  };
  for (SlowClient& c : clients) open(c);
  for (const SlowClient& c : clients) ASSERT_GE(c.fd, 0) << "cannot connect from " << c.source;

  // They stay: one header line a second each, and a connection the server dropped is opened
  // again at once.
  std::atomic<bool> done{false};
  std::atomic<int> reopened{0};
  std::thread pressure;
  // Stops the pressure on every way out of the test (a failed ASSERT too).
  struct StopPressure {
    std::atomic<bool>& done;
    std::thread& pressure;
    std::vector<SlowClient>& clients;
    ~StopPressure() {
      done = true;
      if (pressure.joinable()) pressure.join();
      for (SlowClient& c : clients) {
        if (c.fd >= 0) ::close(c.fd);
        c.fd = -1;
      }
    }
  } stop_pressure{done, pressure, clients};
  pressure = std::thread([&] {
    while (!done) {
      for (SlowClient& c : clients) {
        if (c.fd < 0 || ClosedByServer(c.fd)) {
          if (c.fd >= 0) ::close(c.fd);
          open(c);
          ++reopened;
        } else if (c.trickles) {
          ::send(c.fd, "X-Slow: 1\r\n", 11, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
      }
      for (int i = 0; i < 20 && !done; ++i) std::this_thread::sleep_for(50ms);
    }
  });

  for (int probe = 0; probe < 10; ++probe) {
    httplib::Client client(kLoopback, server->port());
    client.set_connection_timeout(2);
    client.set_read_timeout(2);
    const auto start = Clock::now();
    auto res = client.Get("/healthz");
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    ASSERT_TRUE(res) << "probe " << probe << ": " << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 200);
    EXPECT_LT(took, 1000ms) << "probe " << probe;
    auto metrics = client.Get("/metrics");
    ASSERT_TRUE(metrics) << "probe " << probe << ": " << httplib::to_string(metrics.error());
    EXPECT_EQ(metrics->status, 200);
    std::this_thread::sleep_for(300ms);
  }
  // The caps held and made room by closing the longest-waiting connections.
  EXPECT_LE(SampleValue(registry, "workflowd_admin_connections"), 256);
  EXPECT_GT(SampleValue(registry, "workflowd_admin_connections_closed_total{reason=\"evicted\"}"),
            0);
  EXPECT_GT(reopened.load(), 0);
}

// Headers, then a body, trickled a byte every 100 ms: each request is cut off once the total
// request time is spent (a 408 and the connection closed), however regular the trickle.
TEST(AdminHttpSlowClientsTest, TricklingClientIsCutOffAfterTheRequestTimeout) {
  Registry registry;
  AdminServerOptions options{.bind_address = kLoopback, .port = 0};
  options.request_timeout = 1s;
  AdminServer server(options, registry, Healthy, Healthy);
  server.Handle("POST", "/upload", [](const HttpRequest&) { return HttpResponse{}; });
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
  EXPECT_EQ(
      SampleValue(registry, "workflowd_admin_connections_closed_total{reason=\"request_timeout\"}"),
      2);
}

TEST(AdminHttpSlowClientsTest, PerAddressCapClosesTheLongestWaitingOrRefusesWhenAllAreBusy) {
  Registry registry;
  AdminServerOptions options{.bind_address = kLoopback, .port = 0};
  options.max_connections_per_address = 4;
  AdminServer server(options, registry, Healthy, Healthy);
  std::atomic<int> slow_entered{0};
  std::atomic<bool> release{false};
  server.Handle("GET", "/slow", [&](const HttpRequest&) {
    ++slow_entered;
    for (int i = 0; i < 1000 && !release; ++i) std::this_thread::sleep_for(10ms);
    return HttpResponse{.body = "{}"};
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
  EXPECT_EQ(SampleValue(registry, "workflowd_admin_connections_closed_total{reason=\"evicted\"}"),
            1);
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
  EXPECT_EQ(SampleValue(registry, "workflowd_admin_connections_closed_total{reason=\"refused\"}"),
            1);
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
TEST(AdminHttpSlowClientsTest, ARequestStillQueuedForAWorkerMakesRoomWhenTheCapIsReached) {
  Registry registry;
  AdminServerOptions options{.bind_address = kLoopback, .port = 0};
  options.max_connections_per_address = 3;
  options.api_threads = 1;
  AdminServer server(options, registry, Healthy, Healthy);
  std::atomic<int> slow_entered{0};
  std::atomic<bool> release{false};
  server.Handle("GET", "/slow", [&](const HttpRequest&) {
    ++slow_entered;
    for (int i = 0; i < 1000 && !release; ++i) std::this_thread::sleep_for(10ms);
    return HttpResponse{.body = "{}"};
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
  for (int i = 0; i < 500 && SampleValue(registry, "workflowd_admin_connections") < 3; ++i) {
    std::this_thread::sleep_for(10ms);
  }
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
  for (int fd : fds) ::close(fd);
}

// What clients of the REST API send besides simple requests: pipelined requests on one kept-alive
// connection, HEAD, a chunked body, `Expect: 100-continue`, and oversized or broken requests.
TEST(AdminHttpTest, KeepAlivePipeliningHeadChunkedContinueAndLimits) {
  Registry registry;
  AdminServerOptions options{.bind_address = kLoopback, .port = 0};
  options.max_body_bytes = 1000;
  AdminServer server(options, registry, Healthy, Healthy);
  server.Handle("POST", "/echo", [](const HttpRequest& req) {
    return HttpResponse{.content_type = "text/plain", .body = "got:" + req.body};
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
}  // namespace workflowd::metrics
