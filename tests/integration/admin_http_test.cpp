// Integration tests for the admin HTTP server (metrics/): real sockets on 127.0.0.1, a real HTTP
// client, and the exposition checked by the reference parser/linter `promtool check metrics`
// (Debian package `prometheus`). A missing promtool fails the test; it never skips.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "workflowd/metrics/admin_server.hpp"
#include "workflowd/metrics/registry.hpp"

namespace workflowd::metrics {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

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

}  // namespace
}  // namespace workflowd::metrics
