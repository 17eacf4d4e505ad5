// Integration tests for the admin endpoint (daemon/src/admin_endpoint.hpp): /metrics, /healthz
// and /readyz over real sockets on 127.0.0.1 with a real HTTP client, its connection metrics, and
// /healthz under hundreds of slow clients with the daemon's bounds. The exposition is checked by
// the reference parser/linter `promtool check metrics` (Debian package `prometheus`); a missing
// promtool fails the test, it never skips. The HTTP server itself (routing, limits, eviction,
// timeouts) is tested in http_server_test.cpp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
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

#include "admin_endpoint.hpp"
#include "raw_http_client.hpp"
#include "workflowd/metrics/registry.hpp"

namespace workflowd::daemon {
namespace {

using metrics::DefaultLatencyBuckets;
using metrics::Registry;
using nlohmann::json;
using testing::ClosedByServer;
using testing::ConnectFrom;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ReadUntilClosed;
using testing::SendAll;
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

// With the server's default bounds, as the daemon runs it (daemon/src/run.cpp sets only the
// address and port).
std::unique_ptr<AdminEndpoint> StartServer(Registry& registry, HealthProvider liveness = Healthy,
                                           HealthProvider readiness = Healthy,
                                           http::ServerOptions options = {.bind_address = kLoopback,
                                                                          .port = 0}) {
  auto server = std::make_unique<AdminEndpoint>(std::move(options), registry, std::move(liveness),
                                                std::move(readiness));
  server->Start();
  return server;
}

httplib::Client ClientFor(const AdminEndpoint& server) {
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

// --- slow and many clients -------------------------------------------------------------------

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

// --- connection metrics, lanes, lifecycle ----------------------------------------------------

// The server's connection metrics keep the names Prometheus knows: workflowd_admin_connections
// and workflowd_admin_connections_closed_total{reason}, every reason's series from the start.
TEST(AdminHttpTest, ConnectionMetricsKeepTheirPrometheusNames) {
  Registry registry;
  http::ServerOptions options{.bind_address = kLoopback, .port = 0};
  options.request_timeout = 300ms;
  auto server = StartServer(registry, Healthy, Healthy, options);
  const std::string closed = "workflowd_admin_connections_closed_total{reason=\"";
  for (const char* reason : {"request_timeout", "write_timeout", "evicted", "refused"}) {
    EXPECT_EQ(SampleValue(registry, closed + reason + "\"}"), 0) << reason;
  }
  EXPECT_EQ(SampleValue(registry, "workflowd_admin_connections"), 0);

  // A client that sends nothing: open, then closed when its request time is spent.
  const int silent = ConnectFrom(kLoopback, server->port());
  ASSERT_GE(silent, 0);
  for (int i = 0; i < 300 && SampleValue(registry, "workflowd_admin_connections") < 1; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(SampleValue(registry, "workflowd_admin_connections"), 1);
  EXPECT_TRUE(ReadUntilClosed(silent, 3s).closed);
  ::close(silent);
  for (int i = 0; i < 300 && SampleValue(registry, "workflowd_admin_connections") > 0; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(SampleValue(registry, "workflowd_admin_connections"), 0);
  EXPECT_EQ(SampleValue(registry, closed + "request_timeout\"}"), 1);
}

TEST(AdminHttpTest, EveryCloseReasonCountsInItsOwnSeries) {
  Registry registry;
  AdminConnectionMetrics metrics(registry);
  metrics.Opened();
  metrics.Opened();
  metrics.Closed();
  EXPECT_EQ(SampleValue(registry, "workflowd_admin_connections"), 1);
  int times = 1;
  for (http::CloseReason reason :
       {http::CloseReason::kRequestTimeout, http::CloseReason::kWriteTimeout,
        http::CloseReason::kEvicted, http::CloseReason::kRefused}) {
    for (int i = 0; i < times; ++i) metrics.CutOff(reason);
    ++times;
  }
  const std::string closed = "workflowd_admin_connections_closed_total{reason=\"";
  EXPECT_EQ(SampleValue(registry, closed + "request_timeout\"}"), 1);
  EXPECT_EQ(SampleValue(registry, closed + "write_timeout\"}"), 2);
  EXPECT_EQ(SampleValue(registry, closed + "evicted\"}"), 3);
  EXPECT_EQ(SampleValue(registry, closed + "refused\"}"), 4);
}

// /metrics, /healthz and /readyz run on threads of their own: a scrape whose collection hangs
// does not delay the probes.
TEST(AdminHttpTest, AScrapeInProgressDoesNotDelayProbes) {
  Registry registry;
  std::atomic<bool> collecting{false};
  std::atomic<bool> release{false};
  registry.AddCollectCallback([&] {
    collecting = true;
    for (int i = 0; i < 500 && !release; ++i) std::this_thread::sleep_for(10ms);
  });
  auto server = StartServer(registry);
  std::atomic<bool> scraped{false};
  std::thread scrape([&] {
    auto client = ClientFor(*server);
    auto res = client.Get("/metrics");
    EXPECT_TRUE(res && res->status == 200);
    scraped = true;
  });
  struct Release {  // on every way out of the test (a failed ASSERT too)
    std::atomic<bool>& release;
    std::thread& scrape;
    ~Release() {
      release = true;
      scrape.join();
    }
  } release_on_exit{release, scrape};
  for (int i = 0; i < 300 && !collecting; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(collecting.load());
  auto client = ClientFor(*server);
  for (const char* path : {"/healthz", "/readyz"}) {
    const auto start = Clock::now();
    auto res = client.Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 200) << path;
    EXPECT_LT(Clock::now() - start, 1s) << path;
  }
  EXPECT_FALSE(scraped.load());  // the probes were answered while the scrape was collecting
}

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
}

}  // namespace
}  // namespace workflowd::daemon
