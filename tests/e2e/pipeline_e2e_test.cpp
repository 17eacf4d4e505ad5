// The event pipeline end to end: the built workflowd binary consuming the real Kafka broker and
// writing the real PostgreSQL, driven only through its CLI, Kafka and its admin endpoint.
#include <gtest/gtest.h>
#include <signal.h>

#include <random>
#include <set>

#include "daemon_harness.hpp"
#include "pipeline_events.hpp"

namespace workflowd {
namespace {

using namespace std::chrono_literals;
using testing::Binary;
using testing::DaemonHarness;
using testing::DefinitionYaml;
using testing::Flat;
using testing::Json;
using testing::Structured;
using testing::TestProducer;
using testing::TestRecord;

const std::string kBinary = WORKFLOWD_BINARY;

std::set<std::string> Pairs(DaemonHarness& h) {
  std::set<std::string> out;
  for (const auto& row : h.Query("SELECT workflow_id, trigger_event_id FROM workflow_executions")) {
    out.insert(row[0].as<std::string>() + "<-" + row[1].as<std::string>());
  }
  return out;
}

TEST(PipelineE2E, EventsOfBothFormatsBecomeExecutionRows) {
  // Dispatch off: the rows stay exactly as the pipeline wrote them.
  DaemonHarness h(kBinary, "dispatch: {enabled: false}\n");
  std::string out = h.ApplyDefinitions(
      "definitions:\n" +
      DefinitionYaml("a-prod-onboarding", "tenant_a", "prod", "customer.created",
                     "        - {field: data.country, op: eq, value: US}\n") +
      DefinitionYaml("a-dev-onboarding", "tenant_a", "dev", "customer.created") +
      DefinitionYaml("b-prod-onboarding", "tenant_b", "prod", "customer.created") +
      DefinitionYaml("a-prod-subscription", "tenant_a", "prod", "subscription.activated"));
  EXPECT_NE(out.find("created a-prod-onboarding v1 tenant_a/prod"), std::string::npos) << out;

  TestProducer producer(h.brokers());
  producer.Produce(h.topic(), Structured("e1", "tenant_a", "prod", "customer.created",
                                         {{"country", "US"}, {"customer_id", "c1"}}));
  producer.Produce(h.topic(),
                   Structured("e2", "tenant_a", "prod", "customer.created", {{"country", "FR"}}));
  producer.Produce(h.topic(),
                   Binary("e3", "tenant_a", "prod", "customer.created", {{"country", "US"}}));
  producer.Produce(h.topic(), Flat("e4", "tenant_b", "prod", "customer.created", {{"x", 1}}));
  producer.Produce(h.topic(), Structured("e5", "tenant_a", "dev", "customer.created", {}));
  producer.Produce(h.topic(), Structured("e6", "tenant_a", "prod", "subscription.activated", {}));
  producer.Produce(h.topic(), TestRecord{"k7", "this is not json", {}});
  Json no_tenant = {{"specversion", "1.0"},
                    {"id", "e8"},
                    {"source", "/x"},
                    {"type", "customer.created"},
                    {"environmentid", "prod"}};
  producer.Produce(h.topic(), TestRecord{"k8", no_tenant.dump(), {}});
  producer.Produce(h.topic(), Structured("e1", "tenant_a", "prod", "customer.created",
                                         {{"country", "US"}}));  // redelivered / replayed
  producer.Flush();

  auto daemon = h.Start();
  ASSERT_GT(h.admin_port(), 0) << daemon->Output();
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions", 5, 60s), 5)
      << daemon->Output();
  EXPECT_EQ(Pairs(h), (std::set<std::string>{"a-prod-onboarding<-e1", "a-prod-onboarding<-e3",
                                             "b-prod-onboarding<-e4", "a-dev-onboarding<-e5",
                                             "a-prod-subscription<-e6"}));
  auto rows = h.Query(
      "SELECT tenant_id, environment_id, status, definition_version, trigger_type, "
      "trigger_event->>'type', trigger_event->'data'->>'customer_id', provider "
      "FROM workflow_executions WHERE trigger_event_id = 'e1'");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0].as<std::string>(), "tenant_a");
  EXPECT_EQ(rows[0][1].as<std::string>(), "prod");
  EXPECT_EQ(rows[0][2].as<std::string>(), "pending");
  EXPECT_EQ(rows[0][3].as<int>(), 1);
  EXPECT_EQ(rows[0][4].as<std::string>(), "event");
  EXPECT_EQ(rows[0][5].as<std::string>(), "customer.created");
  EXPECT_EQ(rows[0][6].as<std::string>(), "c1");
  EXPECT_EQ(rows[0][7].as<std::string>(), "mock");

  auto dead = testing::ReadTopic(h.brokers(), h.dlq_topic(), 2, 30s);
  ASSERT_EQ(dead.size(), 2u);
  std::set<std::string> reasons;
  for (const auto& d : dead) reasons.insert(d.Header("workflowd_dlq_reason").value_or("?"));
  EXPECT_EQ(reasons, (std::set<std::string>{"not_json", "missing_tenant"}));

  // Metrics reflect the same outcome once the batch is durable.
  std::string consumed = "workflowd_events_consumed_total{topic=\"" + h.topic() + "\"}";
  for (int i = 0; i < 50 && h.Metric(consumed) != 9; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h.Metric(consumed), 9);
  EXPECT_EQ(h.Metric("workflowd_executions_created_total"), 5);
  EXPECT_EQ(h.Metric("workflowd_executions_duplicate_total"), 1);
  // The records waited for the daemon to start: each polled batch observed a positive age,
  // below the test's own length.
  double batches = h.Metric("workflowd_event_age_at_poll_seconds_count");
  EXPECT_GE(batches, 1);
  EXPECT_GT(h.Metric("workflowd_event_age_at_poll_seconds_sum"), 0);
  EXPECT_LT(h.Metric("workflowd_event_age_at_poll_seconds_sum"), 600 * batches);
  EXPECT_EQ(h.Metric("workflowd_events_matched_total"), 6);
  EXPECT_EQ(h.Metric("workflowd_events_unmatched_total"), 1);
  EXPECT_EQ(h.Metric("workflowd_events_dead_lettered_total{reason=\"not_json\"}"), 1);
  EXPECT_EQ(h.Metric("workflowd_events_dead_lettered_total{reason=\"missing_tenant\"}"), 1);
  EXPECT_EQ(h.Metric("workflowd_definitions_loaded"), 4);
  EXPECT_EQ(h.Get("/healthz").first, 200);
  auto [ready, ready_body] = h.Get("/readyz");
  EXPECT_EQ(ready, 200) << ready_body;

  // Graceful stop commits the offsets: a restarted daemon starts after them.
  daemon->Signal(SIGTERM);
  EXPECT_EQ(daemon->Wait(20s), 0) << daemon->Output();
  auto again = h.Start();
  producer.Produce(h.topic(),
                   Structured("e9", "tenant_a", "prod", "customer.created", {{"country", "US"}}));
  producer.Flush();
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions", 6, 60s), 6);
  for (int i = 0; i < 50 && h.Metric(consumed) != 1; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h.Metric(consumed), 1) << "the restarted daemon re-read committed records";
  again->Signal(SIGTERM);
  EXPECT_EQ(again->Wait(20s), 0);
}

TEST(PipelineE2E, TenantAndEnvironmentIsolation) {
  DaemonHarness h(kBinary);
  std::string yaml = "definitions:\n";
  for (std::string t : {"acme", "globex"}) {
    for (std::string e : {"prod", "dev"}) yaml += DefinitionYaml(t + "-" + e, t, e, "order.placed");
  }
  h.ApplyDefinitions(yaml);
  TestProducer producer(h.brokers());
  for (std::string t : {"acme", "globex", "initech"}) {
    for (std::string e : {"prod", "dev", "staging"}) {
      producer.Produce(h.topic(), Structured(t + "-" + e + "-evt", t, e, "order.placed", {}));
    }
  }
  producer.Flush();
  auto daemon = h.Start();
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions", 4, 60s), 4);
  // An event is counted matched or unmatched once its batch's rows are committed: when all nine
  // are counted, no execution can still arrive.
  auto decided = [&] {
    return h.Metric("workflowd_events_matched_total") +
           h.Metric("workflowd_events_unmatched_total");
  };
  for (int i = 0; i < 100 && decided() < 9; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h.Metric("workflowd_events_matched_total"), 4);
  EXPECT_EQ(Pairs(h),
            (std::set<std::string>{"acme-prod<-acme-prod-evt", "acme-dev<-acme-dev-evt",
                                   "globex-prod<-globex-prod-evt", "globex-dev<-globex-dev-evt"}));
  EXPECT_EQ(h.Count("SELECT count(*) FROM workflow_executions e JOIN workflow_definitions d ON "
                    "d.id = e.workflow_id WHERE d.tenant_id <> e.tenant_id OR "
                    "d.environment_id <> e.environment_id"),
            0);
  EXPECT_EQ(h.Metric("workflowd_events_unmatched_total"), 5);
}

TEST(PipelineE2E, EveryKindOfBadInputGoesToTheDeadLetterTopic) {
  DaemonHarness h(kBinary, "kafka: {max_record_bytes: 4096}\n");
  h.ApplyDefinitions("definitions:\n" +
                     DefinitionYaml("onboarding", "tenant_a", "prod", "customer.created"));
  auto ce = [](const Json& patch) {
    Json j = {{"specversion", "1.0"},   {"id", "x"},
              {"source", "/s"},         {"type", "customer.created"},
              {"tenantid", "tenant_a"}, {"environmentid", "prod"}};
    j.merge_patch(patch);
    return j.dump();
  };
  struct Bad {
    std::string reason;
    TestRecord record;
  };
  std::vector<Bad> bad = {
      {"not_json", {"k", "{\"specversion\": \"1.0\", \"id\":", {}}},
      {"not_object", {"k", "[1, 2, 3]", {}}},
      {"empty_value", {"k", "", {}}},
      {"missing_id", {"k", ce({{"id", nullptr}}), {}}},
      {"missing_type", {"k", ce({{"type", nullptr}}), {}}},
      {"missing_source", {"k", ce({{"source", nullptr}}), {}}},
      {"missing_tenant", {"k", ce({{"tenantid", nullptr}}), {}}},
      {"missing_environment", {"k", ce({{"environmentid", nullptr}}), {}}},
      {"wrong_type", {"k", ce({{"id", Json::object()}}), {}}},
      {"invalid_time", {"k", ce({{"time", "yesterday"}}), {}}},
      {"unsupported_specversion", {"k", ce({{"specversion", "0.3"}}), {}}},
      {"invalid_attribute", {"k", ce({{"tenantid", "bad tenant!"}}), {}}},
      {"too_large", {"k", ce({{"data", std::string(5000, 'x')}}), {}}},
      {"too_deep", {"k", std::string(100, '[') + std::string(100, ']'), {}}},
      {"invalid_data",
       {"k",
        "{not json",
        {{"ce_specversion", "1.0"},
         {"ce_id", "d"},
         {"ce_source", "/s"},
         {"ce_type", "customer.created"},
         {"ce_tenantid", "tenant_a"},
         {"ce_environmentid", "prod"},
         {"content-type", "application/json"}}}},
      {"duplicate_header",
       {"k",
        "{}",
        {{"ce_specversion", "1.0"},
         {"ce_id", "a"},
         {"ce_id", "b"},
         {"ce_source", "/s"},
         {"ce_type", "customer.created"},
         {"ce_tenantid", "tenant_a"},
         {"ce_environmentid", "prod"}}}},
  };
  TestProducer producer(h.brokers());
  int good = 0;
  for (size_t i = 0; i < bad.size(); ++i) {
    producer.Produce(h.topic(), Structured("good-" + std::to_string(good++), "tenant_a", "prod",
                                           "customer.created", {}));
    producer.Produce(h.topic(), bad[i].record);
  }
  producer.Produce(h.topic(), Structured("good-" + std::to_string(good++), "tenant_a", "prod",
                                         "customer.created", {}));
  producer.Flush();
  auto daemon = h.Start();
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions", good, 60s), good);
  auto dead = testing::ReadTopic(h.brokers(), h.dlq_topic(), bad.size(), 30s);
  ASSERT_EQ(dead.size(), bad.size());
  std::multiset<std::string> want, got;
  for (const auto& b : bad) want.insert(b.reason);
  for (const auto& d : dead) {
    std::string reason = d.Header("workflowd_dlq_reason").value_or("?");
    got.insert(reason);
    // The original record is kept byte for byte, with where it came from.
    bool found = false;
    for (const auto& b : bad) found = found || (b.reason == reason && b.record.value == d.value);
    EXPECT_TRUE(found) << reason;
    EXPECT_EQ(d.Header("workflowd_source_topic"), h.topic());
    EXPECT_TRUE(d.Header("workflowd_source_offset").has_value());
    EXPECT_TRUE(d.Header("workflowd_source_partition").has_value());
    EXPECT_EQ(d.Header("workflowd_consumer_group"), h.group());
    EXPECT_FALSE(d.Header("workflowd_dlq_detail").value_or("").empty());
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(h.Get("/healthz").first, 200);  // bad input never stops the daemon
  daemon->Signal(SIGTERM);
  EXPECT_EQ(daemon->Wait(20s), 0);
}

// Records a stream meets in production that used to stop it, with the default limits
// (kafka.max_record_bytes 1 MiB, the broker's default message.max.bytes): valid JSON holding NUL
// (PostgreSQL refuses \u0000 in jsonb), a row the database refuses for a reason of its own (a
// CHECK constraint here), a 0.99 MiB dead letter (above librdkafka's default 1,000,000 bytes), and
// a 1.5 MiB record whose dead letter the dead-letter topic refuses whole. Each goes to the
// dead-letter topic with its reason; every good event around them becomes its execution.
TEST(PipelineE2E, PoisonRecordsNeverStopThePartitionWithTheDefaultLimits) {
  DaemonHarness h(kBinary);
  h.ApplyDefinitions("definitions:\n" +
                     DefinitionYaml("onboarding", "tenant_a", "prod", "customer.created"));
  h.Exec(
      "ALTER TABLE workflow_executions ADD CONSTRAINT test_refuses_one_event "
      "CHECK (trigger_event_id <> 'refused-by-the-database')");
  // The source topic takes records of up to 3 MiB; the dead-letter topic keeps the defaults.
  testing::CreateTopic(h.brokers(), h.topic(), 1, {{"max.message.bytes", "3145728"}});

  const auto ce = [](const std::string& id, const Json& patch) {
    Json j = {{"specversion", "1.0"},   {"id", id},
              {"source", "/s"},         {"type", "customer.created"},
              {"tenantid", "tenant_a"}, {"environmentid", "prod"}};
    j.merge_patch(patch);
    return TestRecord{"k-" + id, j.dump(), {}};
  };
  struct Bad {
    std::string reason;
    TestRecord record;
  };
  const std::string huge(size_t{1536} * 1024, 'x');
  std::vector<Bad> bad = {
      {"nul_character", ce("nul-data", {{"data", {{"name", std::string("a\0b", 3)}}}})},
      {"nul_character", ce("nul-subject", {{"subject", std::string("s\0", 2)}})},
      {"nul_character", ce("nul-extension", {{"myext", std::string("\0", 1)}})},
      {"nul_character",
       {"k",
        "{}",
        {{"ce_specversion", "1.0"},
         {"ce_id", "nul-header"},
         {"ce_source", "/s"},
         {"ce_type", "customer.created"},
         {"ce_subject", std::string("a\0b", 3)},
         {"ce_tenantid", "tenant_a"},
         {"ce_environmentid", "prod"}}}},
      {"database_rejected",
       Structured("refused-by-the-database", "tenant_a", "prod", "customer.created", {{"n", 1}})},
      {"not_json", {"k-big", std::string(1038000, 'y'), {{"x-kept", "yes"}}}},  // 0.99 MiB
      {"too_large", {"k-huge", huge, {{"x-kept", "yes"}}}},
  };
  TestProducer producer(h.brokers(), {{"message.max.bytes", "4000000"}});
  int good = 0;
  auto produce_good = [&] {
    producer.Produce(h.topic(), Structured("good-" + std::to_string(good++), "tenant_a", "prod",
                                           "customer.created", {{"n", good}}));
  };
  for (const auto& b : bad) {
    produce_good();
    producer.Produce(h.topic(), b.record);
  }
  // A good event just below the record limit, and one whose data holds the text \u0000 (a
  // backslash and "u0000", no NUL).
  producer.Produce(h.topic(), Structured("good-large", "tenant_a", "prod", "customer.created",
                                         {{"blob", std::string(1000000, 'z')}}));
  producer.Produce(h.topic(), Structured("good-backslash", "tenant_a", "prod", "customer.created",
                                         {{"path", "C:\\u0000"}}));
  produce_good();
  producer.Flush();

  auto daemon = h.Start();
  const int want_rows = good + 2;
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions", want_rows, 60s), want_rows);
  auto dead = testing::ReadTopic(h.brokers(), h.dlq_topic(), bad.size(), 60s);
  ASSERT_EQ(dead.size(), bad.size());
  std::multiset<std::string> want, got;
  for (const auto& b : bad) want.insert(b.reason);
  for (const auto& d : dead) {
    const std::string reason = d.Header("workflowd_dlq_reason").value_or("?");
    got.insert(reason);
    EXPECT_FALSE(d.Header("workflowd_dlq_detail").value_or("").empty()) << reason;
    if (reason == "too_large") {
      // Too large for the dead-letter topic whole: a prefix of the value, the original headers,
      // and a header that says so.
      EXPECT_EQ(d.Header("x-kept"), "yes");
      ASSERT_TRUE(d.value.has_value());
      EXPECT_LT(d.value->size(), huge.size());
      EXPECT_EQ(*d.value, huge.substr(0, d.value->size()));
      EXPECT_NE(d.Header("workflowd_dlq_truncated").value_or("").find("truncated from 1572864"),
                std::string::npos);
    } else {
      // Everything else is kept byte for byte.
      bool found = false;
      for (const auto& b : bad) found = found || (b.reason == reason && b.record.value == d.value);
      EXPECT_TRUE(found) << reason;
      EXPECT_FALSE(d.Header("workflowd_dlq_truncated").has_value()) << reason;
    }
    if (reason == "database_rejected") {
      EXPECT_NE(d.Header("workflowd_dlq_detail").value_or("").find("23514"), std::string::npos);
    }
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(h.Count("SELECT count(*) FROM workflow_executions WHERE trigger_event_id IN "
                    "('good-large', 'good-backslash')"),
            2);
  EXPECT_EQ(h.Metric("workflowd_events_dead_lettered_total{reason=\"nul_character\"}"), 4);
  EXPECT_EQ(h.Metric("workflowd_events_dead_lettered_total{reason=\"database_rejected\"}"), 1);
  EXPECT_EQ(h.Get("/healthz").first, 200);  // bad input never stops the daemon
  daemon->Signal(SIGTERM);
  EXPECT_EQ(daemon->Wait(20s), 0) << daemon->Output();
}

// kill -9 at random points while events flow: every matching event ends with exactly one
// execution, none missing, none doubled.
TEST(PipelineE2E, SurvivesRepeatedKillNine) {
  DaemonHarness h(kBinary);
  h.ApplyDefinitions("definitions:\n" +
                     DefinitionYaml("onboarding", "tenant_a", "prod", "customer.created") +
                     DefinitionYaml("audit", "tenant_a", "prod", "customer.created"));
  constexpr int kEvents = 1500;
  std::atomic<bool> producing{true};
  std::thread feeder([&] {
    TestProducer producer(h.brokers());
    for (int i = 0; i < kEvents; ++i) {
      producer.Produce(h.topic(), Structured("evt-" + std::to_string(i), "tenant_a", "prod",
                                             "customer.created", {{"n", i}}));
      if (i % 50 == 0) std::this_thread::sleep_for(150ms);
    }
    producer.Flush();
    producing = false;
  });
  // Each cycle waits until the daemon made progress, then kills it at a random moment, so the
  // kills land mid-batch, between a commit and the next, during rebalances...
  std::mt19937 rng(12345);
  int kills = 0;
  int last_count = 0;
  while (producing || kills < 8) {
    auto daemon = h.Start();
    for (int i = 0; i < 300; ++i) {
      int now = h.Count("SELECT count(*) FROM workflow_executions");
      if (now > last_count || now == 2 * kEvents) {
        last_count = now;
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 400));
    daemon->Signal(SIGKILL);
    daemon->Wait(10s);
    ++kills;
    if (kills > 40) break;
  }
  feeder.join();
  auto last = h.Start();
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions", 2 * kEvents, 120s),
            2 * kEvents)
      << "after " << kills << " kills";
  EXPECT_EQ(h.Count("SELECT count(*) FROM (SELECT workflow_id, trigger_event_id FROM "
                    "workflow_executions GROUP BY 1, 2 HAVING count(*) > 1) d"),
            0);
  EXPECT_EQ(h.Count("SELECT count(DISTINCT trigger_event_id) FROM workflow_executions"), kEvents);
  EXPECT_GE(kills, 8);
  last->Signal(SIGTERM);
  EXPECT_EQ(last->Wait(20s), 0);
}

TEST(PipelineE2E, DefinitionChangesReachARunningDaemon) {
  DaemonHarness h(kBinary);
  h.ApplyDefinitions("definitions:\n" +
                     DefinitionYaml("onboarding", "tenant_a", "prod", "customer.created"));
  auto daemon = h.Start();
  TestProducer producer(h.brokers());
  producer.Produce(h.topic(), Structured("before", "tenant_a", "prod", "invoice.paid", {}));
  producer.Flush();
  for (int i = 0; i < 100 && h.Metric("workflowd_events_unmatched_total") != 1; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  // A new definition applied while running is matched without a restart (LISTEN/NOTIFY).
  h.ApplyDefinitions("definitions:\n" +
                     DefinitionYaml("invoices", "tenant_a", "prod", "invoice.paid"));
  for (int i = 0; i < 100 && h.Metric("workflowd_definitions_loaded") != 2; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(h.Metric("workflowd_definitions_loaded"), 2);
  producer.Produce(h.topic(), Structured("after", "tenant_a", "prod", "invoice.paid", {}));
  producer.Flush();
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions", 1, 60s), 1);
  EXPECT_EQ(Pairs(h), (std::set<std::string>{"invoices<-after"}));
  daemon->Signal(SIGTERM);
  EXPECT_EQ(daemon->Wait(20s), 0);
}

}  // namespace
}  // namespace workflowd
