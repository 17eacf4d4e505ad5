// PostgreSQL going away while events flow: the daemon pauses, reports not ready, keeps everything
// uncommitted, and resumes by itself when the database is back. Runs serially: it stops the shared
// PostgreSQL server.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>

#include "daemon_harness.hpp"
#include "pipeline_events.hpp"

namespace workflowd {
namespace {

using namespace std::chrono_literals;
using testing::DaemonHarness;
using testing::DefinitionYaml;
using testing::RunCommand;
using testing::Structured;
using testing::TestProducer;

const std::string kBinary = WORKFLOWD_BINARY;
const std::string kServices = WORKFLOWD_SERVICES_SCRIPT;

void Services(const std::string& verb, const std::string& what) {
  auto [code, out] = RunCommand({"/bin/bash", kServices, verb, what}, {}, 120s);
  ASSERT_EQ(code, 0) << kServices << " " << verb << " " << what << ":\n" << out;
}

TEST(PipelineOutageE2E, PausesWhilePostgresIsDownAndResumesByItself) {
  DaemonHarness h(kBinary);
  h.ApplyDefinitions("definitions:\n" +
                     DefinitionYaml("onboarding", "tenant_a", "prod", "customer.created"));
  auto daemon = h.Start();
  TestProducer producer(h.brokers());
  for (int i = 0; i < 50; ++i) {
    producer.Produce(h.topic(), Structured("a-" + std::to_string(i), "tenant_a", "prod",
                                           "customer.created", {}));
  }
  producer.Flush();
  ASSERT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions", 50, 60s), 50);

  Services("stop", "postgres");
  for (int i = 0; i < 50; ++i) {
    producer.Produce(h.topic(), Structured("b-" + std::to_string(i), "tenant_a", "prod",
                                           "customer.created", {}));
  }
  producer.Flush();
  // The batch cannot be recorded: consumption pauses and readiness says why.
  for (int i = 0; i < 100 && h.Metric("workflowd_consumer_paused") != 1; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(h.Metric("workflowd_consumer_paused"), 1);
  auto [status, body] = h.Get("/readyz");
  EXPECT_EQ(status, 503) << body;
  EXPECT_NE(body.find("database"), std::string::npos) << body;
  EXPECT_EQ(h.Get("/healthz").first, 200);  // alive: degraded, not dead
  EXPECT_GT(h.Metric("workflowd_database_errors_total{operation=\"record_batch\"}"), 0);

  Services("start", "postgres");
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions", 100, 90s), 100)
      << daemon->Output();
  for (int i = 0; i < 100 && h.Get("/readyz").first != 200; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h.Get("/readyz").first, 200);
  EXPECT_EQ(h.Metric("workflowd_consumer_paused"), 0);
  daemon->Signal(SIGTERM);
  EXPECT_EQ(daemon->Wait(20s), 0) << daemon->Output();
}

}  // namespace
}  // namespace workflowd
