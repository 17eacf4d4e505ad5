// PlanBatch: what a batch of raw Kafka records means (execution rows, dead letters, counts),
// decided without any I/O.
#include "workflowd/pipeline/batch_planner.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "workflowd/common/timefmt.hpp"

namespace workflowd::pipeline {
namespace {

// The event decoding's types and functions (consumers/envelope.hpp).
using decoding::DataNeed;
using decoding::DeadLetter;
using decoding::DeadLetterReason;
using decoding::DecoderConfig;
using decoding::DecodeRecord;
using decoding::DecodeResult;
using decoding::Envelope;
using decoding::EnvelopeFormat;
using decoding::RawHeader;
using decoding::RawRecord;
using decoding::ViewOf;

using Json = nlohmann::json;
using ::testing::ElementsAre;

constexpr std::string_view kTopic = "business-events";
constexpr std::string_view kGroup = "workflowd-test";

TimePoint Now() { return *ParseRfc3339("2026-01-30T10:00:01.5Z"); }

matching::IndexEntry Entry(std::string id, std::string tenant, std::string environment,
                           std::string event, const Json& conditions = Json::array(),
                           int64_t version = 1) {
  matching::IndexEntry e;
  e.definition_id = std::move(id);
  e.version = version;
  e.name = "Name of " + e.definition_id;
  e.provider = "mock";
  e.tenant_id = std::move(tenant);
  e.environment_id = std::move(environment);
  e.event_name = std::move(event);
  if (!conditions.empty()) e.condition = matching::ParseConditionList(conditions, "conditions");
  return e;
}

// acme/prod has two definitions on customer.created (one for US customers only, one for gold
// customers), acme/dev and globex/prod one each.
matching::DefinitionIndex Index() {
  return matching::DefinitionIndex({
      Entry("wf-onboarding", "acme", "prod", "customer.created",
            Json::array({{{"field", "data.customer.country"}, {"op", "eq"}, {"value", "US"}}}), 3),
      Entry("wf-vip", "acme", "prod", "customer.created",
            Json::array({{{"field", "data.customer.tier"}, {"op", "eq"}, {"value", "gold"}}})),
      Entry("wf-dev", "acme", "dev", "customer.created"),
      Entry("wf-globex", "globex", "prod", "invoice.paid",
            Json::array({{{"field", "headers.x-region"}, {"op", "eq"}, {"value", "eu"}}})),
  });
}

// A record that owns the bytes its RawRecord views point into.
struct TestRecord {
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
  int32_t partition = 0;
  int64_t offset = 0;
  RawRecord raw;  // views into the members above
};

class PlanBatchTest : public ::testing::Test {
 protected:
  // Adds a record; the views are filled by Plan() once every record is in place.
  TestRecord& Add(std::optional<std::string> value,
                  std::vector<std::pair<std::string, std::optional<std::string>>> headers = {},
                  std::optional<std::string> key = std::nullopt) {
    auto r = std::make_unique<TestRecord>();
    r->key = std::move(key);
    r->value = std::move(value);
    r->headers = std::move(headers);
    r->partition = static_cast<int32_t>(records_.size() % 3);
    r->offset = 100 + static_cast<int64_t>(records_.size());
    records_.push_back(std::move(r));
    return *records_.back();
  }

  BatchPlan Plan(const DecoderConfig& decoder = {}) {
    std::vector<const RawRecord*> raw;
    for (auto& r : records_) {
      r->raw = RawRecord{};
      r->raw.topic = kTopic;
      r->raw.partition = r->partition;
      r->raw.offset = r->offset;
      if (r->key) r->raw.key = *r->key;
      if (r->value) r->raw.value = *r->value;
      for (const auto& [k, v] : r->headers) {
        RawHeader h{k, std::nullopt};
        if (v) h.value = *v;
        r->raw.headers.push_back(h);
      }
      raw.push_back(&r->raw);
    }
    return PlanBatch(raw, decoder, index_, kGroup, Now());
  }

  static std::string CloudEvent(const std::string& id, const std::string& tenant,
                                const std::string& environment, const Json& customer,
                                const std::string& type = "customer.created") {
    return Json{{"specversion", "1.0"},
                {"id", id},
                {"source", "crm"},
                {"type", type},
                {"subject", "customers/1"},
                {"time", "2026-01-30T10:00:00.250+01:00"},
                {"tenantid", tenant},
                {"environmentid", environment},
                {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
                {"data", {{"customer", customer}}}}
        .dump();
  }

  static size_t Dead(const BatchPlan& plan, DeadLetterReason reason) {
    return plan.dead_by_reason[static_cast<size_t>(reason)];
  }

  static std::map<std::string, std::optional<std::string>> Headers(const DeadLetter& letter) {
    std::map<std::string, std::optional<std::string>> out;
    for (const auto& [k, v] : letter.headers) out[k] = v;
    return out;
  }

  matching::DefinitionIndex index_ = Index();
  std::vector<std::unique_ptr<TestRecord>> records_;
};

TEST_F(PlanBatchTest, EmptyBatchPlansNothing) {
  BatchPlan plan = Plan();
  EXPECT_EQ(plan.consumed, 0u);
  EXPECT_EQ(plan.decoded, 0u);
  EXPECT_TRUE(plan.executions.empty());
  EXPECT_TRUE(plan.dead_letters.empty());
  EXPECT_TRUE(plan.matches.empty());
}

TEST_F(PlanBatchTest, StructuredCloudEventBecomesAnExecutionWithItsTriggerEvent) {
  Add(CloudEvent("evt-1", "acme", "prod", {{"country", "US"}, {"tier", "bronze"}}),
      {{"x-region", "eu"}}, "customer-1");
  BatchPlan plan = Plan();

  EXPECT_EQ(plan.consumed, 1u);
  EXPECT_EQ(plan.decoded, 1u);
  EXPECT_EQ(plan.matched_events, 1u);
  EXPECT_EQ(plan.unmatched_events, 0u);
  ASSERT_EQ(plan.executions.size(), 1u);
  const store::NewExecution& e = plan.executions[0];
  EXPECT_THAT(e.id, ::testing::StartsWith("ex_"));
  EXPECT_EQ(e.tenant_id, "acme");
  EXPECT_EQ(e.environment_id, "prod");
  EXPECT_EQ(e.workflow_id, "wf-onboarding");
  EXPECT_EQ(e.workflow_name, "Name of wf-onboarding");
  EXPECT_EQ(e.definition_version, 3);
  EXPECT_EQ(e.provider, "mock");
  EXPECT_EQ(e.trigger_type, "event");
  EXPECT_EQ(e.trigger_event_id, "evt-1");

  const Json expected = {
      {"id", "evt-1"},
      {"type", "customer.created"},
      {"source", "crm"},
      {"subject", "customers/1"},
      {"time", "2026-01-30T10:00:00.250+01:00"},
      {"tenant", "acme"},
      {"environment", "prod"},
      {"format", "cloudevents_structured"},
      {"data", {{"customer", {{"country", "US"}, {"tier", "bronze"}}}}},
      {"extensions", {{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}},
      {"kafka", {{"topic", kTopic}, {"partition", 0}, {"offset", 100}}}};
  EXPECT_EQ(e.trigger_event, expected) << e.trigger_event.dump(2);

  ASSERT_EQ(plan.matches.size(), 1u);
  EXPECT_EQ(plan.matches[0].tenant, "acme");
  EXPECT_EQ(plan.matches[0].environment, "prod");
  EXPECT_EQ(plan.matches[0].event_id, "evt-1");
  EXPECT_EQ(plan.matches[0].event_type, "customer.created");
  EXPECT_EQ(plan.matches[0].definition_id, "wf-onboarding");
  EXPECT_EQ(plan.matches[0].execution_id, e.id);
  EXPECT_TRUE(plan.dead_letters.empty());
}

TEST_F(PlanBatchTest, BinaryModeAndFlatEventsMatchToo) {
  Add(R"({"invoice":{"id":77}})", {{"ce_specversion", "1.0"},
                                   {"ce_id", "evt-bin"},
                                   {"ce_source", "billing"},
                                   {"ce_type", "invoice.paid"},
                                   {"ce_tenantid", "globex"},
                                   {"ce_environmentid", "prod"},
                                   {"content-type", "application/json"},
                                   {"x-region", "eu"}});
  Add(R"({"id":12345,"event_name":"customer.created","tenant_id":"acme",)"
      R"("environment_id":"dev","timestamp":1769767200000,"data":{"customer":{}}})");
  BatchPlan plan = Plan();

  ASSERT_EQ(plan.executions.size(), 2u);
  const auto& binary = plan.executions[0];
  EXPECT_EQ(binary.workflow_id, "wf-globex");
  EXPECT_EQ(binary.trigger_event_id, "evt-bin");
  EXPECT_EQ(binary.trigger_event["format"], "cloudevents_binary");
  EXPECT_EQ(binary.trigger_event["datacontenttype"], "application/json");
  EXPECT_EQ(binary.trigger_event["data"], (Json{{"invoice", {{"id", 77}}}}));
  EXPECT_FALSE(binary.trigger_event.contains("extensions"));

  const auto& flat = plan.executions[1];
  EXPECT_EQ(flat.workflow_id, "wf-dev");
  EXPECT_EQ(flat.tenant_id, "acme");
  EXPECT_EQ(flat.environment_id, "dev");
  EXPECT_EQ(flat.trigger_event_id, "12345");  // an integer id becomes its decimal string
  EXPECT_EQ(flat.trigger_event["format"], "flat");
  EXPECT_EQ(flat.trigger_event["time"], "2026-01-30T10:00:00Z");  // epoch ms, rendered RFC 3339
  EXPECT_EQ(flat.trigger_event["kafka"]["offset"], 101);
  EXPECT_EQ(flat.trigger_event["kafka"]["partition"], 1);
  EXPECT_FALSE(flat.trigger_event.contains("subject"));
  EXPECT_EQ(plan.matched_events, 2u);
}

TEST_F(PlanBatchTest, OneEventMatchingTwoDefinitionsGivesTwoRows) {
  Add(CloudEvent("evt-2", "acme", "prod", {{"country", "US"}, {"tier", "gold"}}));
  BatchPlan plan = Plan();

  EXPECT_EQ(plan.matched_events, 1u);  // counted once per event
  ASSERT_EQ(plan.executions.size(), 2u);
  EXPECT_EQ(plan.executions[0].workflow_id, "wf-onboarding");  // index order: definition id
  EXPECT_EQ(plan.executions[1].workflow_id, "wf-vip");
  EXPECT_EQ(plan.executions[0].trigger_event_id, "evt-2");
  EXPECT_EQ(plan.executions[1].trigger_event_id, "evt-2");
  EXPECT_NE(plan.executions[0].id, plan.executions[1].id);
  EXPECT_EQ(plan.executions[0].trigger_event, plan.executions[1].trigger_event);
  EXPECT_EQ(plan.matches.size(), 2u);
}

TEST_F(PlanBatchTest, UnmatchedEventsPlanNoRows) {
  // Conditions fail; another environment; another tenant; an event name nobody triggers on.
  Add(CloudEvent("evt-fr", "acme", "prod", {{"country", "FR"}, {"tier", "silver"}}));
  Add(CloudEvent("evt-staging", "acme", "staging", {{"country", "US"}, {"tier", "gold"}}));
  Add(CloudEvent("evt-globex", "globex", "prod", {{"country", "US"}, {"tier", "gold"}}));
  Add(CloudEvent("evt-other", "acme", "prod", {{"country", "US"}}, "customer.deleted"));
  // globex's condition is on a header this record lacks.
  Add(R"({"invoice":{}})", {{"ce_specversion", "1.0"},
                            {"ce_id", "evt-us"},
                            {"ce_source", "billing"},
                            {"ce_type", "invoice.paid"},
                            {"ce_tenantid", "globex"},
                            {"ce_environmentid", "prod"},
                            {"x-region", "us"}});
  BatchPlan plan = Plan();

  EXPECT_EQ(plan.consumed, 5u);
  EXPECT_EQ(plan.decoded, 5u);
  EXPECT_EQ(plan.unmatched_events, 5u);
  EXPECT_EQ(plan.matched_events, 0u);
  EXPECT_TRUE(plan.executions.empty());
  EXPECT_TRUE(plan.matches.empty());
  EXPECT_TRUE(plan.dead_letters.empty());
}

TEST_F(PlanBatchTest, DeadLetterCarriesTheOriginalRecordAndReasonHeaders) {
  std::string value = R"({"specversion":"1.0","id":"evt-x","source":"crm",)"
                      R"("type":"customer.created","environmentid":"prod"})";
  TestRecord& r = Add(value, {{"x-trace", "abc"}, {"x-null", std::nullopt}}, "the-key");
  r.partition = 2;
  r.offset = 4242;
  BatchPlan plan = Plan();

  EXPECT_TRUE(plan.executions.empty());
  EXPECT_EQ(plan.decoded, 0u);
  EXPECT_EQ(plan.unmatched_events, 0u);
  ASSERT_EQ(plan.dead_letters.size(), 1u);
  const DeadLetter& d = plan.dead_letters[0];
  EXPECT_EQ(d.key, "the-key");
  EXPECT_EQ(d.value, value);
  // The original headers first, in order and with their null value, then ours.
  ASSERT_GE(d.headers.size(), 2u);
  EXPECT_EQ(d.headers[0], (std::pair<std::string, std::optional<std::string>>{"x-trace", "abc"}));
  EXPECT_EQ(d.headers[1],
            (std::pair<std::string, std::optional<std::string>>{"x-null", std::nullopt}));
  auto h = Headers(d);
  EXPECT_EQ(h["workflowd_dlq_reason"], "missing_tenant");
  ASSERT_TRUE(h["workflowd_dlq_detail"].has_value());
  EXPECT_THAT(*h["workflowd_dlq_detail"], ::testing::HasSubstr("tenantid"));
  EXPECT_EQ(h["workflowd_source_topic"], std::string(kTopic));
  EXPECT_EQ(h["workflowd_source_partition"], "2");
  EXPECT_EQ(h["workflowd_source_offset"], "4242");
  EXPECT_EQ(h["workflowd_consumer_group"], std::string(kGroup));
  ASSERT_TRUE(h["workflowd_failed_at"].has_value());
  EXPECT_EQ(ParseRfc3339(*h["workflowd_failed_at"]), Now());
  EXPECT_EQ(d.headers.size(), 2u + 7u);
  EXPECT_EQ(Dead(plan, DeadLetterReason::kMissingTenant), 1u);
}

TEST_F(PlanBatchTest, TombstoneDeadLetterKeepsItsNullValueAndKey) {
  Add(std::nullopt, {}, "deleted-customer");
  BatchPlan plan = Plan();
  ASSERT_EQ(plan.dead_letters.size(), 1u);
  EXPECT_EQ(plan.dead_letters[0].key, "deleted-customer");
  EXPECT_FALSE(plan.dead_letters[0].value.has_value());
  EXPECT_EQ(Headers(plan.dead_letters[0])["workflowd_dlq_reason"], "empty_value");
  EXPECT_EQ(Dead(plan, DeadLetterReason::kEmptyValue), 1u);
}

TEST_F(PlanBatchTest, CountsEveryOutcomeByReason) {
  Add(CloudEvent("evt-ok", "acme", "prod", {{"country", "US"}}));    // matched
  Add("not json at all");                                            // not_json
  Add("[1, 2, 3]");                                                  // not_object
  Add("{\"half\": ");                                                // not_json
  Add(R"({"specversion":"0.3","id":"a","source":"s","type":"t"})");  // unsupported_specversion
  Add(R"({"event_name":"customer.created","tenant_id":"acme","environment_id":"prod"})");  // no id
  Add(CloudEvent("evt-fr", "acme", "prod", {{"country", "FR"}}));  // unmatched
  Add(R"({"specversion":"1.0","id":"b","source":"s","type":"customer.created",)"
      R"("tenantid":"acme corp","environmentid":"prod"})");  // invalid_attribute
  Add("");                                                   // empty_value
  BatchPlan plan = Plan();

  EXPECT_EQ(plan.consumed, 9u);
  EXPECT_EQ(plan.decoded, 2u);
  EXPECT_EQ(plan.matched_events, 1u);
  EXPECT_EQ(plan.unmatched_events, 1u);
  EXPECT_EQ(plan.executions.size(), 1u);
  EXPECT_EQ(plan.dead_letters.size(), 7u);
  EXPECT_EQ(Dead(plan, DeadLetterReason::kNotJson), 2u);
  EXPECT_EQ(Dead(plan, DeadLetterReason::kNotObject), 1u);
  EXPECT_EQ(Dead(plan, DeadLetterReason::kUnsupportedSpecversion), 1u);
  EXPECT_EQ(Dead(plan, DeadLetterReason::kMissingId), 1u);
  EXPECT_EQ(Dead(plan, DeadLetterReason::kInvalidAttribute), 1u);
  EXPECT_EQ(Dead(plan, DeadLetterReason::kEmptyValue), 1u);
  EXPECT_EQ(Dead(plan, DeadLetterReason::kNone), 0u);
  size_t total = 0;
  for (size_t n : plan.dead_by_reason) total += n;
  EXPECT_EQ(total, plan.dead_letters.size());
  // consumed = decoded + dead letters; decoded = matched + unmatched.
  EXPECT_EQ(plan.consumed, plan.decoded + plan.dead_letters.size());
  EXPECT_EQ(plan.decoded, plan.matched_events + plan.unmatched_events);
  // Dead letters keep batch order: the reason of the n-th one is the n-th bad record's.
  std::vector<std::string> reasons;
  for (const auto& d : plan.dead_letters) reasons.push_back(*Headers(d)["workflowd_dlq_reason"]);
  EXPECT_THAT(reasons, ElementsAre("not_json", "not_object", "not_json", "unsupported_specversion",
                                   "missing_id", "invalid_attribute", "empty_value"));
}

TEST_F(PlanBatchTest, DuplicateEventIdInOneBatchPlansTwoRowsForTheDatabaseToDeduplicate) {
  // The planner does not deduplicate: both records give a row with the same (workflow_id,
  // trigger_event_id); the unique key makes the second insert a no-op (ON CONFLICT DO NOTHING).
  Add(CloudEvent("evt-dup", "acme", "prod", {{"country", "US"}}));
  Add(CloudEvent("evt-dup", "acme", "prod", {{"country", "US"}}));
  BatchPlan plan = Plan();

  EXPECT_EQ(plan.matched_events, 2u);
  ASSERT_EQ(plan.executions.size(), 2u);
  EXPECT_EQ(plan.executions[0].workflow_id, plan.executions[1].workflow_id);
  EXPECT_EQ(plan.executions[0].trigger_event_id, "evt-dup");
  EXPECT_EQ(plan.executions[1].trigger_event_id, "evt-dup");
  EXPECT_NE(plan.executions[0].id, plan.executions[1].id);
  // They differ only in their Kafka coordinates.
  EXPECT_EQ(plan.executions[0].trigger_event["kafka"]["offset"], 100);
  EXPECT_EQ(plan.executions[1].trigger_event["kafka"]["offset"], 101);
}

TEST_F(PlanBatchTest, DecoderConfigIsHonoured) {
  // A flat envelope with a custom mapping; in cloudevents mode the same record is a dead letter.
  std::string value = R"({"meta":{"id":"m-1","name":"customer.created","t":"acme","e":"prod"},)"
                      R"("payload":{"customer":{"country":"US"}}})";
  Add(value);
  DecoderConfig flat;
  flat.mode = DecoderConfig::Mode::kFlat;
  flat.flat.id = "meta.id";
  flat.flat.type = "meta.name";
  flat.flat.tenant = "meta.t";
  flat.flat.environment = "meta.e";
  flat.flat.data = "payload";
  BatchPlan plan = Plan(flat);
  ASSERT_EQ(plan.executions.size(), 1u);
  EXPECT_EQ(plan.executions[0].trigger_event_id, "m-1");
  EXPECT_EQ(plan.executions[0].workflow_id, "wf-onboarding");

  DecoderConfig cloudevents;
  cloudevents.mode = DecoderConfig::Mode::kCloudEvents;
  plan = Plan(cloudevents);
  EXPECT_TRUE(plan.executions.empty());
  EXPECT_EQ(Dead(plan, DeadLetterReason::kUnknownFormat), 1u);

  DecoderConfig small;
  small.max_record_bytes = 16;
  plan = Plan(small);
  EXPECT_EQ(Dead(plan, DeadLetterReason::kTooLarge), 1u);
}

TEST_F(PlanBatchTest, AppendAddsEverything) {
  Add(CloudEvent("evt-a", "acme", "prod", {{"country", "US"}, {"tier", "gold"}}));
  Add("garbage");
  BatchPlan first = Plan();
  records_.clear();
  Add(CloudEvent("evt-b", "acme", "prod", {{"country", "FR"}}));
  Add("[]");
  BatchPlan second = Plan();

  first.Append(std::move(second));
  EXPECT_EQ(first.consumed, 4u);
  EXPECT_EQ(first.decoded, 2u);
  EXPECT_EQ(first.matched_events, 1u);
  EXPECT_EQ(first.unmatched_events, 1u);
  EXPECT_EQ(first.executions.size(), 2u);
  EXPECT_EQ(first.matches.size(), 2u);
  EXPECT_EQ(first.dead_letters.size(), 2u);
  EXPECT_EQ(Dead(first, DeadLetterReason::kNotJson), 1u);
  EXPECT_EQ(Dead(first, DeadLetterReason::kNotObject), 1u);
}

TEST_F(PlanBatchTest, SourcesNameTheRecordOfEachExecution) {
  Add(CloudEvent("evt-a", "acme", "prod", {{"country", "US"}, {"tier", "gold"}}));
  Add(CloudEvent("evt-b", "acme", "dev", {}));
  BatchPlan plan = Plan();
  ASSERT_EQ(plan.executions.size(), 3u);
  ASSERT_EQ(plan.sources.size(), 3u);
  EXPECT_TRUE(plan.sources[0].Is(records_[0]->raw));
  EXPECT_TRUE(plan.sources[1].Is(records_[0]->raw));
  EXPECT_TRUE(plan.sources[2].Is(records_[1]->raw));
  EXPECT_FALSE(plan.sources[2].Is(records_[0]->raw));
}

TEST_F(PlanBatchTest, DeadLetterRecordReplacesItsExecutionsWithItsDeadLetter) {
  Add(CloudEvent("evt-a", "acme", "prod", {{"country", "US"}, {"tier", "gold"}}), {},
      std::string("key-a"));
  Add(CloudEvent("evt-b", "acme", "dev", {}));
  BatchPlan plan = Plan();
  ASSERT_EQ(plan.executions.size(), 3u);
  const std::string kept_id = plan.executions[2].id;

  size_t removed = plan.DeadLetterRecord(records_[0]->raw, DeadLetterReason::kDatabaseRejected,
                                         "PostgreSQL refused it (SQLSTATE 22P05)", kGroup, Now());
  EXPECT_EQ(removed, 2u);
  ASSERT_EQ(plan.executions.size(), 1u);
  ASSERT_EQ(plan.sources.size(), 1u);
  EXPECT_EQ(plan.executions[0].id, kept_id);
  EXPECT_TRUE(plan.sources[0].Is(records_[1]->raw));
  ASSERT_EQ(plan.matches.size(), 1u);
  EXPECT_EQ(plan.matches[0].execution_id, kept_id);
  EXPECT_EQ(plan.matched_events, 1u);
  EXPECT_EQ(Dead(plan, DeadLetterReason::kDatabaseRejected), 1u);
  ASSERT_EQ(plan.dead_letters.size(), 1u);
  const DeadLetter& letter = plan.dead_letters[0];
  EXPECT_EQ(letter.key, "key-a");
  EXPECT_EQ(letter.value, records_[0]->value);
  auto headers = Headers(letter);
  EXPECT_EQ(headers["workflowd_dlq_reason"], "database_rejected");
  EXPECT_EQ(headers["workflowd_dlq_detail"], "PostgreSQL refused it (SQLSTATE 22P05)");
  EXPECT_EQ(headers["workflowd_source_offset"], std::to_string(records_[0]->offset));
}

TEST(TriggerEventJson, OmitsAbsentOptionalAttributes) {
  Envelope e;
  e.id = "evt-1";
  e.type = "t";
  e.source = "s";
  e.tenant = "acme";
  e.environment = "prod";
  e.format = EnvelopeFormat::kFlat;
  RawRecord r;
  r.topic = "events";
  r.partition = 7;
  r.offset = 9;
  Json j = TriggerEventJson(e, r);
  EXPECT_EQ(j, (Json{{"id", "evt-1"},
                     {"type", "t"},
                     {"source", "s"},
                     {"tenant", "acme"},
                     {"environment", "prod"},
                     {"format", "flat"},
                     {"data", nullptr},
                     {"kafka", {{"topic", "events"}, {"partition", 7}, {"offset", 9}}}}))
      << j.dump();
}

// Events without candidate definitions skip building their data, yet bad ones are dead-lettered
// exactly as before; events with candidates get their data for conditions and trigger_event.
TEST_F(PlanBatchTest, DataIsBuiltOnlyForEventsWithCandidatesAndValidatedForAll) {
  const std::string no_candidates_bad_data =
      R"({"specversion":"1.0","id":"evt-bad","source":"crm","type":"page.viewed",)"
      R"("tenantid":"acme","environmentid":"prod","data":{"customer":})";
  const std::string no_candidates_bad_utf8 =
      R"({"specversion":"1.0","id":"evt-utf8","source":"crm","type":"page.viewed",)"
      R"("tenantid":"acme","environmentid":"prod","data":{"customer":")"
      "\xC3\x28"
      R"("}})";
  const std::string no_candidates_bad_base64 =
      R"({"specversion":"1.0","id":"evt-b64","source":"crm","type":"page.viewed",)"
      R"("tenantid":"acme","environmentid":"prod","datacontenttype":"application/json",)"
      R"("data_base64":"e30x"})";
  Add(no_candidates_bad_data);
  Add(no_candidates_bad_utf8);
  Add(no_candidates_bad_base64);
  // No candidates, fine: decoded, unmatched.
  Add(CloudEvent("evt-other", "acme", "prod", {{"country", "US"}}, "customer.deleted"));
  // Candidates: both conditions read the data; one holds.
  Add(CloudEvent("evt-gold", "acme", "prod", {{"country", "FR"}, {"tier", "gold"}, {"n", 18}}));
  // Candidates whose conditions fail on the data.
  Add(CloudEvent("evt-fr", "acme", "prod", {{"country", "FR"}, {"tier", "silver"}}));
  BatchPlan plan = Plan();

  EXPECT_EQ(plan.consumed, 6u);
  EXPECT_EQ(plan.decoded, 3u);
  EXPECT_EQ(plan.matched_events, 1u);
  EXPECT_EQ(plan.unmatched_events, 2u);
  EXPECT_EQ(Dead(plan, DeadLetterReason::kNotJson), 2u);
  EXPECT_EQ(Dead(plan, DeadLetterReason::kInvalidData), 1u);
  ASSERT_EQ(plan.dead_letters.size(), 3u);
  // The same reasons and details as decoding each record on its own.
  for (size_t i = 0; i < 3; ++i) {
    const DecodeResult alone = DecodeRecord(records_[i]->raw, {});
    const auto headers = Headers(plan.dead_letters[i]);
    EXPECT_EQ(headers.at("workflowd_dlq_reason"), std::string(ToString(alone.reason)));
    EXPECT_EQ(headers.at("workflowd_dlq_detail"), alone.detail);
    EXPECT_EQ(plan.dead_letters[i].value, records_[i]->value);
  }

  ASSERT_EQ(plan.executions.size(), 1u);
  const store::NewExecution& e = plan.executions[0];
  EXPECT_EQ(e.workflow_id, "wf-vip");
  EXPECT_EQ(e.trigger_event_id, "evt-gold");
  EXPECT_EQ(e.trigger_event.at("data"),
            (Json{{"customer", {{"country", "FR"}, {"tier", "gold"}, {"n", 18}}}}));
  EXPECT_TRUE(e.trigger_event.at("data")["customer"]["n"].is_number_unsigned());
  EXPECT_EQ(e.trigger_event.at("extensions"),
            (Json{{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}));
}

// Conditions read only some top-level members of the payload: matching builds just those, and a
// matched event's trigger_event still holds the whole payload, exactly as sent.
TEST_F(PlanBatchTest, MatchingBuildsOnlyTheMembersConditionsReadTriggerEventGetsAll) {
  auto event = [](const std::string& id, const std::string& tier) {
    return Json{{"specversion", "1.0"},
                {"id", id},
                {"source", "crm"},
                {"type", "customer.created"},
                {"tenantid", "acme"},
                {"environmentid", "prod"},
                {"data",
                 {{"customer", {{"tier", tier}, {"country", "FR"}}},
                  {"order", {{"lines", {1, 2, 3}}, {"total", 12.5}}},
                  {"note", "line\nbreak"}}}}
        .dump();
  };
  Add(event("evt-gold", "gold"));
  Add(event("evt-silver", "silver"));
  BatchPlan plan = Plan();
  EXPECT_EQ(plan.matched_events, 1u);
  EXPECT_EQ(plan.unmatched_events, 1u);
  ASSERT_EQ(plan.executions.size(), 1u);
  EXPECT_EQ(plan.executions[0].workflow_id, "wf-vip");
  EXPECT_EQ(plan.executions[0].trigger_event.at("data"),
            Json::parse(event("evt-gold", "gold")).at("data"));

  // The decoder itself: members asked for, of an object payload only.
  const std::vector<std::vector<std::string>> members = {{"absent"}, {"customer"}};
  const std::function<DataNeed(const Envelope&)> need = [&](const Envelope&) {
    return DataNeed{DataNeed::Kind::kMembers, members};
  };
  DecodeResult partial;
  DecodeRecord(records_[0]->raw, {}, need, partial);
  ASSERT_TRUE(partial.ok()) << partial.detail;
  EXPECT_TRUE(partial.envelope->data_partial);
  EXPECT_EQ(partial.envelope->data, (Json{{"customer", {{"tier", "gold"}, {"country", "FR"}}}}));
  // Another record decoded into the same result starts clean.
  DecodeRecord(records_[1]->raw, {}, need, partial);
  EXPECT_EQ(partial.envelope->data, (Json{{"customer", {{"tier", "silver"}, {"country", "FR"}}}}));
  // Paths below a member: only what they reach; a value that is not an object where a path goes
  // on (the array `lines`, the string `note`) is whole; a path into an absent member adds nothing.
  const std::vector<std::vector<std::string>> nested = {{"customer", "tier"},
                                                        {"customer", "zip", "code"},
                                                        {"note", "first"},
                                                        {"order", "lines", "0"}};
  const std::function<DataNeed(const Envelope&)> need_nested = [&](const Envelope&) {
    return DataNeed{DataNeed::Kind::kMembers, nested};
  };
  DecodeRecord(records_[0]->raw, {}, need_nested, partial);
  ASSERT_TRUE(partial.ok()) << partial.detail;
  EXPECT_TRUE(partial.envelope->data_partial);
  EXPECT_EQ(partial.envelope->data, (Json{{"customer", {{"tier", "gold"}}},
                                          {"order", {{"lines", {1, 2, 3}}}},
                                          {"note", "line\nbreak"}}));
  // A path that ends at a member wins over the longer ones below it: the member is whole.
  const std::vector<std::vector<std::string>> overlapping = {{"order"}, {"order", "total"}};
  const std::function<DataNeed(const Envelope&)> need_overlapping = [&](const Envelope&) {
    return DataNeed{DataNeed::Kind::kMembers, overlapping};
  };
  DecodeRecord(records_[0]->raw, {}, need_overlapping, partial);
  EXPECT_EQ(partial.envelope->data, (Json{{"order", {{"lines", {1, 2, 3}}, {"total", 12.5}}}}));
  const std::string array_payload =
      R"({"specversion":"1.0","id":"a","source":"s","type":"customer.created",)"
      R"("tenantid":"acme","environmentid":"prod","data":[1,{"customer":2}]})";
  RawRecord raw;
  raw.topic = kTopic;
  raw.value = array_payload;
  DecodeResult whole;
  DecodeRecord(raw, {}, need, whole);
  ASSERT_TRUE(whole.ok()) << whole.detail;
  EXPECT_FALSE(whole.envelope->data_partial);
  EXPECT_EQ(whole.envelope->data, Json::parse(R"([1,{"customer":2}])"));
}

TEST(TriggerEventJson, MovingTheEnvelopeGivesTheSameDocument) {
  Envelope e;
  e.id = "evt-1";
  e.type = "t";
  e.source = "s";
  e.subject = "sub";
  e.tenant = "acme";
  e.environment = "prod";
  e.time_text = "2026-01-30T10:00:00Z";
  e.data_content_type = "application/json";
  e.data = Json::parse(R"({"a":[1,{"b":"c"}],"n":null})");
  e.extensions["traceparent"] = "tp";
  e.extensions["priority"] = 3;
  RawRecord r;
  r.topic = "events";
  r.partition = 7;
  r.offset = 9;
  const Json copied = TriggerEventJson(e, r);
  EXPECT_EQ(copied.at("data"), e.data);
  EXPECT_EQ(copied.at("extensions"), (Json{{"traceparent", "tp"}, {"priority", 3}}));
  Envelope moved_from = e;
  const Json moved = TriggerEventJson(std::move(moved_from), r);
  EXPECT_EQ(moved, copied) << moved.dump();
  // The attributes stay for the rows built after the document (what is checked here is exactly
  // the use after the move).
  EXPECT_EQ(moved_from.id, "evt-1");  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(moved_from.tenant, "acme");
}

// The planner decodes record i+1 before it finishes record i, with two decoders in turn, and
// builds a matched event's data from the parse it matched on. Whatever the mix and order of
// records (dead letters next to each other, first or last, events with and without candidates,
// data, data_base64 or none, every format), it must plan exactly what decoding each record alone
// and matching it gives.
TEST_F(PlanBatchTest, AgreesRecordByRecordWithDecodingEachAloneAndMatching) {
  uint64_t state = 12345;
  const auto next = [&state](uint64_t n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (state >> 33) % n;
  };
  // data_base64 payloads, encoded outside (Python's base64): {"customer":{"country":C,"tier":T}},
  // "plain text" and the non-UTF-8 bytes ff fe 01.
  const std::map<std::pair<std::string, std::string>, std::string> kCustomerBase64 = {
      {{"US", "gold"}, "eyJjdXN0b21lciI6eyJjb3VudHJ5IjoiVVMiLCJ0aWVyIjoiZ29sZCJ9fQ=="},
      {{"US", "silver"}, "eyJjdXN0b21lciI6eyJjb3VudHJ5IjoiVVMiLCJ0aWVyIjoic2lsdmVyIn19"},
      {{"FR", "gold"}, "eyJjdXN0b21lciI6eyJjb3VudHJ5IjoiRlIiLCJ0aWVyIjoiZ29sZCJ9fQ=="},
      {{"FR", "silver"}, "eyJjdXN0b21lciI6eyJjb3VudHJ5IjoiRlIiLCJ0aWVyIjoic2lsdmVyIn19"}};
  // A structured CloudEvent of acme without data; the cases add what they need.
  const auto structured = [](const std::string& id, const std::string& environment) {
    return Json{{"specversion", "1.0"},       {"id", id},           {"source", "crm"},
                {"type", "customer.created"}, {"tenantid", "acme"}, {"environmentid", environment}};
  };
  for (int i = 0; i < 400; ++i) {
    const std::string id = "evt-" + std::to_string(i);
    const Json customer = {
        {"country", next(2) ? "US" : "FR"}, {"tier", next(2) ? "gold" : "silver"}, {"n", i}};
    switch (next(11)) {
      case 0:
        Add(CloudEvent(id, "acme", "prod", customer));
        break;
      case 1:
        Add(next(2) ? "{\"half\": " : "not json");
        break;
      case 2:
        Add(next(2) ? std::optional<std::string>() : std::optional<std::string>(""));
        break;
      case 3:
        Add(customer.dump(), {{"ce_specversion", "1.0"},
                              {"ce_id", id},
                              {"ce_source", "billing"},
                              {"ce_type", next(2) ? "invoice.paid" : "customer.created"},
                              {"ce_tenantid", next(2) ? "globex" : "acme"},
                              {"ce_environmentid", next(2) ? "prod" : "dev"},
                              {"x-region", next(2) ? "eu" : "us"}});
        break;
      case 4: {
        Json event = structured(id, next(2) ? "prod" : "dev");
        event["datacontenttype"] = "application/json";
        event["data_base64"] = kCustomerBase64.at({customer["country"], customer["tier"]});
        Add(event.dump());
        break;
      }
      case 5:
        Add(CloudEvent(id, "acme", "prod", customer, "page.viewed"));
        break;
      case 6:
        Add(Json{{"id", i},
                 {"event_name", "customer.created"},
                 {"tenant_id", "acme"},
                 {"environment_id", next(2) ? "prod" : "dev"},
                 {"data", {{"customer", customer}}}}
                .dump());
        break;
      case 7: {
        Json event = structured(id, "dev");
        event["datacontenttype"] = "text/plain";
        event["data_base64"] = next(2) ? "cGxhaW4gdGV4dA==" : "//4B";
        Add(event.dump());
        break;
      }
      case 8:
        Add(structured(id, next(2) ? "prod" : "dev").dump());
        break;
      case 9:
        Add(CloudEvent(id, "acme corp", "prod", customer));  // invalid tenant
        break;
      default:
        Add(CloudEvent(id, "acme", "prod", Json{{"country", "US"}, {"tier", "gold"}}));
        break;
    }
  }
  const BatchPlan plan = Plan();

  size_t dead = 0, executions = 0, matched_events = 0, unmatched = 0;
  std::vector<matching::Header> header_storage;
  for (size_t i = 0; i < records_.size(); ++i) {
    SCOPED_TRACE("record " + std::to_string(i));
    const RawRecord& raw = records_[i]->raw;
    const DecodeResult alone = DecodeRecord(raw, {});
    if (!alone.ok()) {
      ASSERT_LT(dead, plan.dead_letters.size());
      const auto headers = Headers(plan.dead_letters[dead]);
      EXPECT_EQ(headers.at("workflowd_dlq_reason"), std::string(ToString(alone.reason)));
      EXPECT_EQ(headers.at("workflowd_dlq_detail"), alone.detail);
      EXPECT_EQ(plan.dead_letters[dead].value, records_[i]->value);
      ++dead;
      continue;
    }
    std::vector<const matching::IndexEntry*> matched;
    index_.Match(ViewOf(*alone.envelope, header_storage), matched);
    if (matched.empty()) {
      ++unmatched;
      continue;
    }
    ++matched_events;
    const Json trigger_event = TriggerEventJson(*alone.envelope, raw);
    for (const matching::IndexEntry* entry : matched) {
      ASSERT_LT(executions, plan.executions.size());
      const store::NewExecution& e = plan.executions[executions];
      EXPECT_EQ(e.workflow_id, entry->definition_id);
      EXPECT_EQ(e.workflow_name, entry->name);
      EXPECT_EQ(e.definition_version, entry->version);
      EXPECT_EQ(e.trigger_event_id, alone.envelope->id);
      EXPECT_EQ(e.tenant_id, alone.envelope->tenant);
      EXPECT_EQ(e.trigger_event, trigger_event);
      EXPECT_EQ(e.trigger_event.dump(), trigger_event.dump());
      ++executions;
    }
  }
  EXPECT_EQ(plan.dead_letters.size(), dead);
  EXPECT_EQ(plan.executions.size(), executions);
  EXPECT_EQ(plan.matched_events, matched_events);
  EXPECT_EQ(plan.unmatched_events, unmatched);
  EXPECT_EQ(plan.decoded, matched_events + unmatched);
  // The mix reached every outcome.
  EXPECT_GT(dead, 20u);
  EXPECT_GT(matched_events, 50u);
  EXPECT_GT(unmatched, 50u);
}

}  // namespace
}  // namespace workflowd::pipeline
