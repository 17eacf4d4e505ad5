// Under a steady stream of events with a known expected outcome, everything breaks on purpose: the
// daemon is killed with -9 at random points (at least 20 times), the Kafka broker is stopped and
// restarted, PostgreSQL is restarted, and the provider flaps (errors, timeouts, slowness). Then:
// every expected execution exists exactly once in its expected terminal state, nothing else
// exists, the dead-letter topic holds exactly the bad events, and the daemon is ready again
// without a manual step.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "daemon_harness.hpp"
#include "pipeline_events.hpp"

namespace workflowd {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::DaemonHarness;
using testing::Json;
using testing::RunCommand;
using testing::Structured;
using testing::TestProducer;
using testing::TestRecord;

const std::string kBinary = WORKFLOWD_BINARY;
const std::string kServices = WORKFLOWD_SERVICES_SCRIPT;

void Services(const std::string& verb, const std::string& what = "") {
  std::vector<std::string> argv = {"/bin/bash", kServices, verb};
  if (!what.empty()) argv.push_back(what);
  auto [code, out] = RunCommand(argv, {}, 180s);
  ASSERT_EQ(code, 0) << kServices << " " << verb << " " << what << ":\n" << out;
}

std::string Definition(const std::string& id, const std::string& event, const std::string& mock) {
  return "  - id: " + id + "\n    tenant_id: tenant_a\n    environment_id: prod\n    name: " + id +
         "\n    trigger: {type: event, event_name: " + event + "}\n    steps:\n" +
         "      - {id: first, order: 1, type: assign_plan, config: {}}\n" +
         "      - {id: second, order: 2, type: send_email, config: {}, depends_on: [first]}\n" +
         "    retry_policy: {max_attempts: 20, initial_interval_seconds: 1, "
         "backoff_coefficient: 1.5, max_interval_seconds: 3}\n" +
         "    provider_config: {mock: " + mock + "}\n";
}

constexpr size_t kDefaultMaxRecordBytes = 1 << 20;  // kafka.max_record_bytes' default

// A structured CloudEvent of tenant_a/prod whose value is exactly `size` bytes (its data padded).
std::string StructuredOfSize(const std::string& id, size_t size) {
  std::string value =
      Structured(id, "tenant_a", "prod", "order.placed", {{"pad", ""}}).value.value();
  Json j = Json::parse(value);
  j["data"]["pad"] = std::string(size - value.size(), 'p');
  return j.dump();
}

// The n-th bad (or borderline) record: every kind that once stopped a stream, in turn. Adds what
// must come of it to `expected` (executions) or `bad` (key -> dead-letter reason). The large kinds
// come in one turn out of three (they are 1 MiB each).
TestRecord Poison(const std::string& id, int n, std::map<std::string, std::string>& expected,
                  std::map<std::string, std::string>& bad) {
  const std::string key = "poison-" + std::to_string(n);
  const auto dead = [&](std::string reason, std::string value,
                        std::vector<std::pair<std::string, std::string>> headers = {}) {
    bad[key] = std::move(reason);
    return TestRecord{key, std::move(value), std::move(headers)};
  };
  const auto with_nul_in = [&](const std::string& attribute) {
    Json ce =
        Json::parse(Structured(id, "tenant_a", "prod", "order.placed", {{"n", n}}).value.value());
    ce[attribute] =
        attribute == "data" ? Json{{"name", std::string("a\0b", 3)}} : Json(std::string("x\0y", 3));
    return ce.dump();
  };
  // Every attribute of a structured event, and of a binary one (ce_ headers), in turn.
  static const std::vector<std::string> kAttributes = {
      "id",   "source",          "type",       "subject",    "tenantid", "environmentid", "time",
      "data", "datacontenttype", "dataschema", "myextension"};
  static const std::vector<std::string> kHeaders = {
      "ce_id",       "ce_source", "ce_type",          "ce_subject",
      "ce_tenantid", "ce_time",   "ce_environmentid", "ce_myextension"};
  const bool large_turn = (n / 8) % 3 == 0;
  switch (n % 8) {
    case 0:
      return dead("not_json", "{\"broken\": " + std::to_string(n));  // truncated JSON
    case 1:
      return dead("nul_character", with_nul_in(kAttributes[(n / 8) % kAttributes.size()]));
    case 2: {
      std::vector<std::pair<std::string, std::string>> headers = {
          {"ce_specversion", "1.0"},
          {"ce_id", id},
          {"ce_source", "/s"},
          {"ce_type", "order.placed"},
          {"ce_tenantid", "tenant_a"},
          {"ce_environmentid", "prod"},
          {"content-type", "application/json"}};
      const std::string& name = kHeaders[(n / 8) % kHeaders.size()];
      bool replaced = false;
      for (auto& [k, v] : headers) {
        if (k == name) v = std::string("x\0y", 3), replaced = true;
      }
      if (!replaced) headers.emplace_back(name, std::string("x\0y", 3));
      return dead("nul_character", "{}", std::move(headers));
    }
    case 3:  // decoded and matched, refused by PostgreSQL
      return dead("database_rejected",
                  Structured("refused-" + id, "tenant_a", "prod", "order.placed", {{"n", n}})
                      .value.value());
    case 4:  // 0.99 MiB: its dead letter is above librdkafka's default 1,000,000 bytes
      if (large_turn) return dead("not_json", std::string(1038000, 'y'), {{"x-kept", "yes"}});
      return dead("not_json", "not json at all");
    case 5:  // exactly at the record limit: consumed and recorded like any other event; its
             // executions then fail at the start, the input being above the providers' limit
      if (large_turn) {
        expected["steady<-" + id] = "failed";
        expected["flaky<-" + id] = "failed";
        return TestRecord{key, StructuredOfSize(id, kDefaultMaxRecordBytes), {}};
      }
      return dead("not_json", "[");
    case 6:  // one byte above it: too_large, and too large for the dead-letter topic whole
      if (large_turn) {
        return dead("too_large", StructuredOfSize(id, kDefaultMaxRecordBytes + 1),
                    {{"x-kept", "yes"}});
      }
      return dead("not_json", "{\"a\":");
    default:  // the text \u0000 (a backslash and "u0000", no NUL): an event like any other
      expected["steady<-" + id] = "succeeded";
      expected["flaky<-" + id] = "succeeded";
      return TestRecord{
          key,
          Structured(id, "tenant_a", "prod", "order.placed", {{"path", "C:\\u0000"}}).value.value(),
          {}};
  }
}

TEST(Robustness, NothingLostNothingDoubledWhateverBreaks) {
  int chaos_seconds = 40;
  // Read before any thread starts; nothing calls setenv.
  if (const char* s = std::getenv("WORKFLOWD_ROBUSTNESS_SECONDS"))  // NOLINT(concurrency-mt-unsafe)
    chaos_seconds = std::atoi(s);
  DaemonHarness h(kBinary,
                  "dispatch: {lease: 4s, call_timeout: 1s, idle_interval: 50ms}\n"
                  "poll: {min_interval: 100ms, max_interval: 1s}\n"
                  "database: {connect_timeout: 2s}\n"
                  "shutdown_timeout: 10s\n"
                  // The flaky definition's faults are keyed on the attempt number the start
                  // sends, and the mock lets a repeated attempt through only in the process that
                  // failed it: after each of the kills below, a parked start's probe fails again
                  // and waits at the back of the queue for open_interval, so with the circuit
                  // breaker on the flaky backlog drains at about one execution per interval. The
                  // breaker has its own tests (the gate tests, and the two-replica outage test);
                  // here it is off.
                  "providers: {mock: {breaker: {failure_threshold: 0}}}\n");
  h.ApplyDefinitions(
      "definitions:\n" + Definition("steady", "order.placed", "{outcome: succeed, delay: 200ms}") +
      Definition("flaky", "order.placed",
                 "{outcome: succeed, start_failures: 2, start_timeouts: 1, latency: 20ms}") +
      Definition("doomed", "order.cancelled",
                 "{outcome: fail, error: {code: Boom, message: expected, failed_at: second}}"));

  // PostgreSQL refuses the rows of events whose id starts with "refused-" (valid input a
  // downstream system refuses; a CHECK constraint stands in for whatever it may be).
  h.Exec(
      "ALTER TABLE workflow_executions ADD CONSTRAINT robustness_refused "
      "CHECK (trigger_event_id NOT LIKE 'refused-%')");
  // The topic takes records beyond the default 1 MiB record limit (the dead-letter topic keeps
  // the broker's defaults: a too_large record's dead letter is cut to fit).
  testing::CreateTopic(h.brokers(), h.topic(), 4, {{"max.message.bytes", "3145728"}});

  // What must exist at the end: (definition, event) -> terminal state; and the bad records,
  // by their unique key -> dead-letter reason.
  std::map<std::string, std::string> expected;
  std::map<std::string, std::string> bad;
  std::map<std::string, std::string> bad_values;  // key -> value as produced
  std::atomic<bool> feeding{true};
  std::atomic<int> produced{0};
  std::mutex expected_mu;
  std::thread feeder([&] {
    TestProducer producer(h.brokers(), {{"message.max.bytes", "4000000"}});
    std::mt19937 rng(7);
    int poison = 0;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(chaos_seconds);
    for (int i = 0; std::chrono::steady_clock::now() < until; ++i) {
      std::string id = "evt-" + std::to_string(i);
      int kind = static_cast<int>(rng() % 10);
      std::lock_guard lock(expected_mu);
      if (kind < 6) {
        producer.Produce(h.topic(), Structured(id, "tenant_a", "prod", "order.placed", {{"n", i}}));
        expected["steady<-" + id] = "succeeded";
        expected["flaky<-" + id] = "succeeded";
      } else if (kind < 8) {
        producer.Produce(h.topic(), Structured(id, "tenant_a", "prod", "order.cancelled", {}));
        expected["doomed<-" + id] = "failed";
      } else if (kind < 9) {
        producer.Produce(h.topic(),
                         Structured(id, "tenant_a", "dev", "order.placed", {}));  // no match
      } else {
        TestRecord record = Poison(id, poison++, expected, bad);
        if (bad.contains(*record.key)) bad_values[*record.key] = record.value.value_or("");
        producer.Produce(h.topic(), record);
      }
      ++produced;
      std::this_thread::sleep_for(20ms);
    }
    producer.Flush();
    feeding = false;
  });

  // Chaos: kill -9 the daemon again and again; in between, take Kafka and PostgreSQL away.
  std::mt19937 rng(12345);
  int kills = 0;
  bool kafka_done = false, postgres_done = false;
  auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::steady_clock::now() - started; };
  while (feeding || kills < 20) {
    auto daemon = h.Start();
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 1500));
    if (!kafka_done && elapsed() > std::chrono::seconds(chaos_seconds) / 3) {
      Services("stop", "kafka");
      std::this_thread::sleep_for(3s);
      Services("start", "kafka");
      kafka_done = true;
    } else if (!postgres_done && elapsed() > std::chrono::seconds(chaos_seconds) * 2 / 3) {
      Services("restart-postgres");
      postgres_done = true;
    }
    daemon->Signal(SIGKILL);
    daemon->Wait(10s);
    ++kills;
    if (kills > 200) break;
  }
  feeder.join();
  EXPECT_GE(kills, 20);
  EXPECT_TRUE(kafka_done);
  EXPECT_TRUE(postgres_done);

  // Recovery without a manual step: one more start, then everything settles.
  auto daemon = h.Start();
  int want = static_cast<int>(expected.size());
  int settled = h.WaitForCount(
      "SELECT count(*) FROM workflow_executions WHERE status IN ('succeeded', 'failed', "
      "'timed_out', 'cancelled')",
      want, 180s);
  EXPECT_EQ(settled, want) << "after " << kills << " kills, " << produced << " events";

  std::map<std::string, std::string> actual;
  for (const auto& row :
       h.Query("SELECT workflow_id, trigger_event_id, status FROM workflow_executions")) {
    std::string key = row[0].as<std::string>() + "<-" + row[1].as<std::string>();
    EXPECT_TRUE(actual.emplace(key, row[2].as<std::string>()).second) << key << " doubled";
  }
  size_t wrong = 0;
  for (const auto& [key, state] : expected) {
    auto it = actual.find(key);
    if (it == actual.end() || it->second != state) {
      if (++wrong <= 10) {
        ADD_FAILURE() << key << ": expected " << state << ", got "
                      << (it == actual.end() ? "nothing" : it->second);
      }
    }
  }
  for (const auto& [key, state] : actual) {
    EXPECT_TRUE(expected.contains(key)) << "unexpected execution " << key;
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(actual.size(), expected.size());
  EXPECT_EQ(h.BrokenReferences(), 0);
  EXPECT_EQ(h.BrokenHistories(), 0);

  // The dead-letter topic holds exactly the bad records, each with its reason (at-least-once: a
  // crash between the dead letter and the offset commit may write one twice; the source
  // coordinates identify it). Values are kept byte for byte, except a too_large record's, which
  // is cut to fit the dead-letter topic and says so.
  auto dead = testing::ReadTopic(h.brokers(), h.dlq_topic(), bad.size() * 3, 20s);
  std::map<std::string, std::string> dead_reasons;
  std::set<std::string> dead_sources;
  for (const auto& d : dead) {
    const std::string key = d.key.value_or("?");
    const std::string reason = d.Header("workflowd_dlq_reason").value_or("?");
    dead_reasons[key] = reason;
    dead_sources.insert(d.Header("workflowd_source_partition").value_or("") + "/" +
                        d.Header("workflowd_source_offset").value_or(""));
    auto it = bad_values.find(key);
    if (it == bad_values.end()) continue;  // reported below
    const std::string value = d.value.value_or("");
    if (d.Header("workflowd_dlq_truncated")) {
      EXPECT_EQ(reason, "too_large") << key;
      EXPECT_LT(value.size(), it->second.size()) << key;
      EXPECT_EQ(value, it->second.substr(0, value.size())) << key;
    } else {
      EXPECT_TRUE(value == it->second) << key << " (" << reason << ") changed in the dead letter";
    }
  }
  EXPECT_EQ(dead_reasons, bad);
  EXPECT_EQ(dead_sources.size(), bad.size());
  std::map<std::string, int> by_reason;
  for (const auto& [key, reason] : bad) ++by_reason[reason];
  std::cout << "robustness: " << produced << " events, " << expected.size()
            << " executions expected, " << kills << " kills, " << dead.size()
            << " dead letters for " << bad.size() << " bad records (";
  for (const auto& [reason, n] : by_reason) std::cout << reason << " " << n << " ";
  std::cout << ")\n";
  // Every kind of poison was fed, at least once each.
  for (const char* reason : {"not_json", "nul_character", "database_rejected", "too_large"}) {
    EXPECT_GE(by_reason[reason], 1) << reason;
  }

  for (int i = 0; i < 300 && h.Get("/readyz").first != 200; ++i) std::this_thread::sleep_for(100ms);
  auto [ready, body] = h.Get("/readyz");
  EXPECT_EQ(ready, 200) << body;
  daemon->Signal(SIGTERM);
  EXPECT_EQ(daemon->Wait(30s), 0) << daemon->Output();
}

}  // namespace
}  // namespace workflowd
