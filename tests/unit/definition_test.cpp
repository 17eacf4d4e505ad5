// Workflow definitions: parsing, defaults, round trips, every validation rule, step
// dependency cycles and the execution order.
#include "workflowd/definitions/definition.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "workflowd/common/timefmt.hpp"

namespace workflowd::definitions {
namespace {

using nlohmann::json;

// Seed 003 UC-1, verbatim, plus the tenant and environment the API takes from the token and the
// provider (there is no built-in one).
json Uc1() {
  json j = json::parse(R"({
    "name": "Customer Onboarding - Standard",
    "trigger": {
      "type": "event",
      "event_name": "customer.created"
    },
    "steps": [
      {
        "id": "step_1",
        "order": 1,
        "type": "assign_plan",
        "config": {
          "plan_id": "plan_starter",
          "currency": "USD"
        }
      },
      {
        "id": "step_2",
        "order": 2,
        "type": "create_wallet",
        "config": {
          "currency": "USD",
          "conversion_rate": 1.0,
          "initial_credits": 100
        },
        "depends_on": ["step_1"]
      }
    ],
    "enabled": true
  })");
  j["tenant_id"] = "tenant_acme";
  j["environment_id"] = "env_prod";
  j["provider"] = "mock";
  return j;
}

json WithSteps(const std::vector<json>& steps) {
  json j = Uc1();
  j["steps"] = steps;
  return j;
}

json StepJson(const std::string& id, const std::vector<std::string>& depends_on = {},
              int order = 0) {
  json s = {{"id", id}, {"type", "send_email"}, {"order", order}, {"config", json::object()}};
  if (!depends_on.empty()) s["depends_on"] = depends_on;
  return s;
}

FieldErrors ProblemsOf(const json& j) {
  FieldErrors errors;
  DefinitionFromJson(j, errors);
  return errors;
}

// `j` is rejected with a problem at `field` whose message contains `text`.
void ExpectProblem(const json& j, const std::string& field, const std::string& text) {
  const FieldErrors errors = ProblemsOf(j);
  bool found = false;
  for (const FieldError& e : errors) {
    if (e.field == field && e.message.find(text) != std::string::npos) found = true;
  }
  EXPECT_TRUE(found) << "no \"" << field << ": ..." << text << "...\" in: " << errors.ToString();
}

void ExpectValid(const json& j) {
  const FieldErrors errors = ProblemsOf(j);
  EXPECT_TRUE(errors.empty()) << j.dump() << "\n -> " << errors.ToString();
}

// Sets the value at a JSON pointer on a copy of UC-1.
json Uc1With(const std::string& pointer, json value) {
  json j = Uc1();
  j[json::json_pointer(pointer)] = std::move(value);
  return j;
}

TEST(Definition, Uc1ParsesValidatesAndGetsDefaults) {
  const WorkflowDefinition d = DefinitionFromJson(Uc1());
  EXPECT_FALSE(d.id.has_value());
  EXPECT_EQ(d.tenant_id, "tenant_acme");
  EXPECT_EQ(d.environment_id, "env_prod");
  EXPECT_EQ(d.name, "Customer Onboarding - Standard");
  EXPECT_EQ(d.trigger.type, TriggerType::kEvent);
  EXPECT_EQ(d.trigger.event_name, "customer.created");
  EXPECT_EQ(d.trigger.compiled_conditions, nullptr);
  ASSERT_EQ(d.steps.size(), 2u);
  EXPECT_EQ(d.steps[0].id, "step_1");
  EXPECT_EQ(d.steps[0].type, StepType::kAssignPlan);
  EXPECT_EQ(d.steps[1].type, StepType::kCreateWallet);
  EXPECT_EQ(d.steps[1].depends_on, std::vector<std::string>{"step_1"});
  EXPECT_TRUE(d.steps[1].config["conversion_rate"].is_number_float());
  EXPECT_EQ(d.steps[1].config["initial_credits"], 100);
  EXPECT_FALSE(d.steps[1].retry_policy.has_value());
  // Defaults of the product requirements and of this daemon.
  EXPECT_TRUE(d.enabled);
  EXPECT_EQ(d.retry_policy, (RetryPolicy{3, 1, 2.0, 60}));
  EXPECT_EQ(d.timeout_seconds, 3600);
  EXPECT_EQ(d.provider, "mock");
  EXPECT_TRUE(d.provider_config.is_null());
  EXPECT_EQ(d.version, 0);
  EXPECT_EQ(d.status, DefinitionStatus::kPublished);
  EXPECT_FALSE(d.created_at.has_value());
  EXPECT_NO_THROW(ValidateDefinition(d));
}

// No provider by default: a definition that silently ran on the mock engine was recorded as done
// with nothing done.
TEST(Definition, TheProviderIsRequired) {
  json j = Uc1();
  j.erase("provider");
  ExpectProblem(j, "provider",
                "required: definition \"Customer Onboarding - Standard\" names no provider and no "
                "default provider is configured; add \"provider\": \"<engine>\" to it, or set "
                "providers.default");
  ExpectProblem(Uc1With("/provider", nullptr), "provider", "required: definition");
  EXPECT_EQ(WorkflowDefinition{}.provider, "");
}

TEST(Definition, PartialRetryPolicyTakesDefaults) {
  // The product requirements' POST example gives three of the four retry fields.
  const WorkflowDefinition d = DefinitionFromJson(
      Uc1With("/retry_policy",
              {{"max_attempts", 4}, {"initial_interval_seconds", 2}, {"backoff_coefficient", 2}}));
  EXPECT_EQ(d.retry_policy, (RetryPolicy{4, 2, 2.0, 60}));
  const WorkflowDefinition e = DefinitionFromJson(Uc1With("/retry_policy", {{"max_attempts", 7}}));
  EXPECT_EQ(e.retry_policy, (RetryPolicy{7, 1, 2.0, 60}));
}

TEST(Definition, NullMeansNotGiven) {
  json j = Uc1();
  j["description"] = nullptr;
  j["retry_policy"] = nullptr;
  j["provider_config"] = nullptr;
  j["trigger"]["conditions"] = nullptr;
  j["trigger"]["schedule"] = nullptr;
  j["steps"][0]["condition"] = nullptr;
  j["steps"][0]["depends_on"] = nullptr;
  const WorkflowDefinition d = DefinitionFromJson(j);
  EXPECT_EQ(d.retry_policy, RetryPolicy{});
  EXPECT_TRUE(d.steps[0].condition.is_null());
  EXPECT_EQ(d.steps[0].compiled_condition, nullptr);
}

json FullDefinition() {
  json j = Uc1();
  j["id"] = "wf_123";
  j["description"] = "all the fields";
  j["trigger"]["conditions"] = json::parse(R"([
    {"field": "data.customer.country", "op": "eq", "value": "US"},
    {"any": [{"field": "data.seats", "op": "gt", "value": 10}, {"not": {"field": "subject", "op": "exists"}}]}
  ])");
  j["steps"][0]["name"] = "Assign plan";
  j["steps"][0]["retry_policy"] = {{"max_attempts", 5},
                                   {"initial_interval_seconds", 2},
                                   {"backoff_coefficient", 1.5},
                                   {"max_interval_seconds", 30}};
  j["steps"][1]["condition"] = {{"field", "data.currency"}, {"op", "in"}, {"value", {"USD"}}};
  j["enabled"] = false;
  j["timeout_seconds"] = 0;
  j["provider"] = "step-functions";
  j["provider_config"] = {{"role_arn", "arn:aws:iam::123:role/x"}};
  j["version"] = 7;
  j["status"] = "draft";
  j["created_by"] = "admin@acme.test";
  j["created_at"] = "2024-12-19T10:00:00Z";
  j["updated_at"] = "2024-12-19T10:00:00.123456789Z";
  return j;
}

TEST(Definition, JsonRoundTrip) {
  for (const json& input : {Uc1(), FullDefinition()}) {
    const WorkflowDefinition first = DefinitionFromJson(input);
    const json canonical = DefinitionToJson(first);
    const WorkflowDefinition second = DefinitionFromJson(canonical);
    EXPECT_EQ(first, second) << canonical.dump(2);
    EXPECT_EQ(DefinitionToJson(second), canonical);
  }
  const WorkflowDefinition full = DefinitionFromJson(FullDefinition());
  EXPECT_EQ(full.id, "wf_123");
  EXPECT_FALSE(full.enabled);
  EXPECT_EQ(full.status, DefinitionStatus::kDraft);
  EXPECT_EQ(full.version, 7);
  EXPECT_EQ(full.timeout_seconds, 0);
  EXPECT_EQ(full.provider_config["role_arn"], "arn:aws:iam::123:role/x");
  ASSERT_TRUE(full.updated_at.has_value());
  EXPECT_EQ(FormatRfc3339(*full.updated_at), "2024-12-19T10:00:00.123456789Z");
  const json out = DefinitionToJson(full);
  EXPECT_EQ(out["created_at"], "2024-12-19T10:00:00Z");
  EXPECT_EQ(out["steps"][0]["retry_policy"]["max_interval_seconds"], 30);
  EXPECT_EQ(out["trigger"]["conditions"], FullDefinition()["trigger"]["conditions"]);
}

TEST(Definition, ToJsonSpellsOutDefaultsAndOmitsUnset) {
  const json out = DefinitionToJson(DefinitionFromJson(Uc1()));
  EXPECT_EQ(out["enabled"], true);
  EXPECT_EQ(out["retry_policy"], json({{"max_attempts", 3},
                                       {"initial_interval_seconds", 1},
                                       {"backoff_coefficient", 2.0},
                                       {"max_interval_seconds", 60}}));
  EXPECT_EQ(out["timeout_seconds"], 3600);
  EXPECT_EQ(out["provider"], "mock");
  EXPECT_EQ(out["status"], "published");
  EXPECT_EQ(out["version"], 0);
  EXPECT_EQ(out["trigger"], json({{"type", "event"}, {"event_name", "customer.created"}}));
  EXPECT_FALSE(out.contains("id"));
  EXPECT_FALSE(out.contains("provider_config"));
  EXPECT_FALSE(out.contains("created_at"));
  EXPECT_FALSE(out["steps"][0].contains("depends_on"));
  EXPECT_FALSE(out["steps"][0].contains("condition"));
  EXPECT_EQ(out["steps"][1]["depends_on"], json({"step_1"}));
}

TEST(Definition, ConditionsAreCompiled) {
  const WorkflowDefinition d = DefinitionFromJson(FullDefinition());
  ASSERT_NE(d.trigger.compiled_conditions, nullptr);
  EXPECT_EQ(d.trigger.compiled_conditions->path(), "trigger.conditions");
  ASSERT_NE(d.steps[1].compiled_condition, nullptr);
  EXPECT_EQ(d.steps[0].compiled_condition, nullptr);

  const json us = {{"customer", {{"country", "US"}}}, {"seats", 20}, {"currency", "USD"}};
  const json ca = {{"customer", {{"country", "CA"}}}, {"seats", 20}};
  matching::EventView event;
  event.type = "customer.created";
  event.data = &us;
  EXPECT_TRUE(matching::Evaluate(*d.trigger.compiled_conditions, event));
  EXPECT_TRUE(matching::Evaluate(*d.steps[1].compiled_condition, event));
  event.data = &ca;
  EXPECT_FALSE(matching::Evaluate(*d.trigger.compiled_conditions, event));
  EXPECT_FALSE(matching::Evaluate(*d.steps[1].compiled_condition, event));
}

// ---- Structure: unknown keys, types, enum values ----

TEST(DefinitionParse, UnknownKeysAreNamed) {
  json j = Uc1();
  j["trigger"]["evnet_name"] = "customer.created";
  ExpectProblem(j, "trigger.evnet_name",
                "unknown key \"evnet_name\"; did you mean \"event_name\"?");
  ExpectProblem(Uc1With("/nmae", "x"), "nmae", "did you mean \"name\"?");
  ExpectProblem(Uc1With("/tenant", "x"), "tenant", "unknown key \"tenant\"");
  ExpectProblem(Uc1With("/steps/1/dependsOn", json::array()), "steps[1].dependsOn",
                "unknown key \"dependsOn\"");
  ExpectProblem(Uc1With("/retry_policy", {{"max_attempt", 3}}), "retry_policy.max_attempt",
                "did you mean \"max_attempts\"?");
  ExpectProblem(Uc1With("/steps/0/retry_policy", {{"initial_interval", 3}}),
                "steps[0].retry_policy.initial_interval", "unknown key");
  json scheduled = Uc1();
  scheduled["trigger"] = {{"type", "scheduled"},
                          {"schedule", {{"cron", "0 9 * * *"}, {"tz", "UTC"}}}};
  ExpectProblem(scheduled, "trigger.schedule.tz", "unknown key \"tz\"");
  // The message lists what is allowed.
  ExpectProblem(Uc1With("/trigger/filter", 1), "trigger.filter",
                "allowed keys: type, event_name, conditions, schedule");
}

TEST(DefinitionParse, WrongTypes) {
  ExpectProblem(Uc1With("/name", 5), "name", "must be a string");
  ExpectProblem(Uc1With("/enabled", "yes"), "enabled", "must be true or false");
  ExpectProblem(Uc1With("/timeout_seconds", "10"), "timeout_seconds", "must be an integer");
  ExpectProblem(Uc1With("/timeout_seconds", 1.5), "timeout_seconds", "must be an integer");
  ExpectValid(Uc1With("/timeout_seconds", 10.0));  // an integral float is an integer
  ExpectProblem(Uc1With("/retry_policy/backoff_coefficient", "2"),
                "retry_policy.backoff_coefficient", "must be a number");
  ExpectProblem(Uc1With("/trigger", "customer.created"), "trigger", "must be an object");
  ExpectProblem(Uc1With("/steps", {{"id", "x"}}), "steps", "must be a list of steps");
  ExpectProblem(Uc1With("/steps/1", "step_2"), "steps[1]", "must be an object");
  ExpectProblem(Uc1With("/steps/0/config", json::array()), "steps[0].config", "must be an object");
  ExpectProblem(Uc1With("/steps/1/depends_on", "step_1"), "steps[1].depends_on",
                "must be a list of step ids");
  ExpectProblem(Uc1With("/steps/1/depends_on", {"step_1", 2}), "steps[1].depends_on[1]",
                "must be a step id string");
  ExpectProblem(Uc1With("/steps/0/order", "first"), "steps[0].order", "must be an integer");
  ExpectProblem(Uc1With("/provider_config", "x"), "provider_config", "must be an object");
  ExpectProblem(Uc1With("/created_at", "yesterday"), "created_at", "RFC 3339");
  ExpectProblem(Uc1With("/version", json::parse("18446744073709551615")), "version",
                "out of range");
  ExpectProblem(json::array(), "", "must be a JSON object");
}

TEST(DefinitionParse, EnumValues) {
  ExpectProblem(Uc1With("/trigger/type", "webhook"), "trigger.type",
                "unknown trigger type \"webhook\"; valid trigger types: event, scheduled, manual, "
                "api");
  ExpectProblem(Uc1With("/steps/0/type", "charge_card"), "steps[0].type",
                "unknown step type \"charge_card\"; valid step types: assign_plan, create_wallet, "
                "grant_credits, send_email, create_entitlement, update_customer");
  json no_type = Uc1();
  no_type["steps"][0].erase("type");
  ExpectProblem(no_type, "steps[0].type", "required; valid step types: assign_plan");
  json no_trigger_type = Uc1();
  no_trigger_type["trigger"].erase("type");
  ExpectProblem(no_trigger_type, "trigger.type", "required");
  ExpectProblem(Uc1With("/status", "live"), "status",
                "unknown status \"live\"; valid statuses: draft, published, archived");
  for (const char* status : {"draft", "published", "archived"}) {
    ExpectValid(Uc1With("/status", status));
  }
  // An unknown trigger type does not also produce complaints that assume some other type.
  const FieldErrors errors = ProblemsOf(Uc1With("/trigger/type", "webhook"));
  EXPECT_EQ(errors.size(), 1u) << errors.ToString();
}

TEST(DefinitionParse, MissingTrigger) {
  json j = Uc1();
  j.erase("trigger");
  const FieldErrors errors = ProblemsOf(j);
  ASSERT_EQ(errors.size(), 1u) << errors.ToString();
  EXPECT_EQ(errors.items()[0], (FieldError{"trigger", "required"}));
}

TEST(DefinitionParse, DocumentDepthLimit) {
  json deep = "leaf";
  for (int i = 0; i < 100; ++i) deep = json::array({deep});
  ExpectProblem(Uc1With("/steps/0/config", {{"deep", deep}}), "", "nested deeper than 64");
}

// ---- Validation rules ----

TEST(DefinitionValidate, TenantAndEnvironment) {
  for (const char* field : {"tenant_id", "environment_id"}) {
    SCOPED_TRACE(field);
    json missing = Uc1();
    missing.erase(field);
    ExpectProblem(missing, field, "required");
    ExpectProblem(Uc1With(std::string("/") + field, ""), field, "required");
    ExpectProblem(Uc1With(std::string("/") + field, "-tenant"), field, "must match");
    ExpectProblem(Uc1With(std::string("/") + field, "ten ant"), field, "must match");
    ExpectProblem(Uc1With(std::string("/") + field, std::string(129, 'a')), field, "must match");
    ExpectValid(Uc1With(std::string("/") + field, std::string(128, 'a')));
    ExpectValid(Uc1With(std::string("/") + field, "Tenant_1.eu-west"));
  }
}

TEST(DefinitionValidate, Id) {
  ExpectValid(Uc1With("/id", "wf_123"));
  ExpectValid(Uc1With("/id", std::string(64, 'a')));
  ExpectProblem(Uc1With("/id", ""), "id", "must match ^[a-z0-9][a-z0-9_-]{0,63}$");
  ExpectProblem(Uc1With("/id", "WF_123"), "id", "must match");
  ExpectProblem(Uc1With("/id", "_wf"), "id", "must match");
  ExpectProblem(Uc1With("/id", std::string(65, 'a')), "id", "must match");
}

TEST(DefinitionValidate, NameAndDescription) {
  ExpectProblem(Uc1With("/name", ""), "name", "required");
  json no_name = Uc1();
  no_name.erase("name");
  ExpectProblem(no_name, "name", "required");
  ExpectValid(Uc1With("/name", std::string(256, 'n')));
  ExpectProblem(Uc1With("/name", std::string(257, 'n')), "name", "longer than 256 bytes");
  ExpectValid(Uc1With("/description", std::string(1024, 'd')));
  ExpectProblem(Uc1With("/description", std::string(1025, 'd')), "description",
                "longer than 1024 bytes");
  ExpectProblem(Uc1With("/steps/0/name", std::string(257, 'n')), "steps[0].name", "longer than");
}

TEST(DefinitionValidate, EventTrigger) {
  json j = Uc1();
  j["trigger"].erase("event_name");
  ExpectProblem(j, "trigger.event_name", "required for event triggers");
  ExpectProblem(Uc1With("/trigger/event_name", "customer created"), "trigger.event_name",
                "must match");
  ExpectProblem(Uc1With("/trigger/event_name", ".customer"), "trigger.event_name", "must match");
  ExpectProblem(Uc1With("/trigger/event_name", std::string(256, 'e')), "trigger.event_name",
                "must match");
  ExpectValid(Uc1With("/trigger/event_name", std::string(255, 'e')));
  ExpectValid(Uc1With("/trigger/event_name", "com.acme/billing:invoice_paid-v2"));
  ExpectProblem(Uc1With("/trigger/schedule", {{"cron", "* * * * *"}}), "trigger.schedule",
                "only allowed for scheduled triggers");
  ExpectProblem(Uc1With("/trigger/conditions", {{{"field", "data.x"}, {"op", "eq"}}}),
                "trigger.conditions[0].value", "required for op \"eq\"");
  ExpectProblem(Uc1With("/trigger/conditions", {{"field", "data.x"}}), "trigger.conditions",
                "must be a list of conditions");
}

json Scheduled(const std::string& cron, const std::string& timezone = "UTC") {
  json j = Uc1();
  j["trigger"] = {{"type", "scheduled"}, {"schedule", {{"cron", cron}, {"timezone", timezone}}}};
  return j;
}

TEST(DefinitionValidate, ScheduledTrigger) {
  ExpectValid(Scheduled("0 9 * * 1"));
  ExpectValid(Scheduled("*/15 0-6,22-23 1,15 */2 1-5", "Europe/Berlin"));
  ExpectValid(Scheduled("0 0 1 1 0", "America/Argentina/Buenos_Aires"));
  ExpectValid(Scheduled("  30   2 * * 7  ", "Etc/GMT+5"));
  json no_timezone = Uc1();
  no_timezone["trigger"] = {{"type", "scheduled"}, {"schedule", {{"cron", "0 9 * * 1"}}}};
  EXPECT_EQ(DefinitionFromJson(no_timezone).trigger.schedule->timezone, "UTC");

  json no_schedule = Uc1();
  no_schedule["trigger"] = {{"type", "scheduled"}};
  ExpectProblem(no_schedule, "trigger.schedule", "required for scheduled triggers");
  ExpectProblem(Scheduled(""), "trigger.schedule.cron", "required");
  ExpectProblem(Scheduled("0 9 * *"), "trigger.schedule.cron", "must have 5 fields");
  ExpectProblem(Scheduled("0 9 * * * *"), "trigger.schedule.cron", "got 6");
  ExpectProblem(Scheduled("60 9 * * *"), "trigger.schedule.cron", "minute field \"60\"");
  ExpectProblem(Scheduled("0 24 * * *"), "trigger.schedule.cron", "hour field");
  ExpectProblem(Scheduled("0 9 0 * *"), "trigger.schedule.cron", "day-of-month field");
  ExpectProblem(Scheduled("0 9 * 13 *"), "trigger.schedule.cron", "month field");
  ExpectProblem(Scheduled("0 9 * * 8"), "trigger.schedule.cron", "day-of-week field");
  ExpectProblem(Scheduled("5-1 * * * *"), "trigger.schedule.cron", "range start is after");
  ExpectProblem(Scheduled("*/0 * * * *"), "trigger.schedule.cron", "step must be");
  ExpectProblem(Scheduled("1,,2 * * * *"), "trigger.schedule.cron", "empty list element");
  ExpectProblem(Scheduled("MON * * * *"), "trigger.schedule.cron", "expected *");
  ExpectProblem(Scheduled("0 9 * * 1", "Not A Zone"), "trigger.schedule.timezone",
                "not an IANA time zone");
  ExpectProblem(Scheduled("0 9 * * 1", ""), "trigger.schedule.timezone", "not an IANA");

  json with_event = Scheduled("0 9 * * 1");
  with_event["trigger"]["event_name"] = "customer.created";
  ExpectProblem(with_event, "trigger.event_name", "not allowed for scheduled triggers");
  json with_conditions = Scheduled("0 9 * * 1");
  with_conditions["trigger"]["conditions"] = {{{"field", "data.x"}, {"op", "exists"}}};
  ExpectProblem(with_conditions, "trigger.conditions", "not allowed for scheduled triggers");
}

TEST(DefinitionValidate, ManualAndApiTriggers) {
  for (const char* type : {"manual", "api"}) {
    SCOPED_TRACE(type);
    json j = Uc1();
    j["trigger"] = {{"type", type}};
    ExpectValid(j);
    j["trigger"]["conditions"] = {{{"field", "data.customer_id"}, {"op", "exists"}}};
    ExpectValid(j);  // evaluated against the trigger data
    j["trigger"]["event_name"] = "customer.created";
    ExpectProblem(j, "trigger.event_name", std::string("not allowed for ") + type + " triggers");
    json scheduled = Uc1();
    scheduled["trigger"] = {{"type", type}, {"schedule", {{"cron", "* * * * *"}}}};
    ExpectProblem(scheduled, "trigger.schedule", "only allowed for scheduled triggers");
  }
}

TEST(DefinitionValidate, StepCount) {
  ExpectProblem(WithSteps({}), "steps", "at least one step is required");
  json no_steps = Uc1();
  no_steps.erase("steps");
  ExpectProblem(no_steps, "steps", "at least one step");
  std::vector<json> steps;
  for (int i = 0; i < 100; ++i) steps.push_back(StepJson("s" + std::to_string(i)));
  ExpectValid(WithSteps(steps));
  steps.push_back(StepJson("s100"));
  ExpectProblem(WithSteps(steps), "steps", "at most 100 steps are allowed, got 101");
}

TEST(DefinitionValidate, StepIds) {
  ExpectProblem(WithSteps({StepJson("")}), "steps[0].id", "required");
  json no_id = StepJson("x");
  no_id.erase("id");
  ExpectProblem(WithSteps({no_id}), "steps[0].id", "required");
  ExpectProblem(WithSteps({StepJson("step 1")}), "steps[0].id", "must match ^[A-Za-z0-9_-]{1,64}$");
  ExpectProblem(WithSteps({StepJson(std::string(65, 's'))}), "steps[0].id", "must match");
  ExpectValid(WithSteps({StepJson(std::string(64, 's'))}));
  ExpectValid(WithSteps({StepJson("Step-1_a")}));
  ExpectProblem(WithSteps({StepJson("a"), StepJson("b"), StepJson("a")}), "steps[2].id",
                "duplicate step id \"a\" (also steps[0])");
}

TEST(DefinitionValidate, StepConfigAndCondition) {
  ExpectValid(Uc1With("/steps/0/config", {{"blob", std::string(60000, 'x')}}));
  ExpectProblem(Uc1With("/steps/0/config", {{"blob", std::string(kMaxStepConfigBytes, 'x')}}),
                "steps[0].config", "too large");
  json no_config = Uc1();
  no_config["steps"][0].erase("config");
  EXPECT_EQ(DefinitionFromJson(no_config).steps[0].config, json::object());
  ExpectProblem(Uc1With("/steps/1/condition", {{"field", "data.x"}, {"op", "like"}, {"value", 1}}),
                "steps[1].condition.op", "unknown op \"like\"");
}

TEST(DefinitionValidate, Dependencies) {
  ExpectProblem(WithSteps({StepJson("a"), StepJson("b", {"c"})}), "steps[1].depends_on[0]",
                "unknown step id \"c\"; step ids: a, b");
  ExpectProblem(WithSteps({StepJson("a"), StepJson("b", {"a", "a"})}), "steps[1].depends_on[1]",
                "duplicate dependency \"a\"");
  ExpectValid(WithSteps({StepJson("a"), StepJson("b", {"a"}), StepJson("c", {"a", "b"})}));
}

// Circular step dependencies are rejected at definition time, with the cycle named.
TEST(DefinitionValidate, SelfDependency) {
  const FieldErrors errors = ProblemsOf(WithSteps({StepJson("a", {"a"})}));
  ASSERT_EQ(errors.size(), 1u) << errors.ToString();
  EXPECT_EQ(errors.items()[0].field, "steps[0].depends_on[0]");
  EXPECT_EQ(errors.items()[0].message,
            "step \"a\" depends on itself (circular dependency: a -> a)");
}

TEST(DefinitionValidate, CycleOfTwo) {
  const FieldErrors errors = ProblemsOf(WithSteps({StepJson("a", {"b"}), StepJson("b", {"a"})}));
  ASSERT_EQ(errors.size(), 1u) << errors.ToString();
  EXPECT_EQ(errors.items()[0], (FieldError{"steps", "circular dependency: a -> b -> a"}));
}

TEST(DefinitionValidate, CycleOfThree) {
  const json j = WithSteps({StepJson("step_a", {"step_b"}), StepJson("step_b", {"step_c"}),
                            StepJson("step_c", {"step_a"})});
  const FieldErrors errors = ProblemsOf(j);
  ASSERT_EQ(errors.size(), 1u) << errors.ToString();
  EXPECT_EQ(errors.ToString(), "steps: circular dependency: step_a -> step_b -> step_c -> step_a");
  EXPECT_EQ(ProblemsOf(j), errors);  // deterministic
  try {
    DefinitionFromJson(j);
    ADD_FAILURE() << "expected ValidationError";
  } catch (const ValidationError& e) {
    EXPECT_NE(std::string(e.what()).find("circular dependency: step_a -> step_b -> step_c -> "
                                         "step_a"),
              std::string::npos);
  }
}

TEST(DefinitionValidate, CycleBehindAnEntryStep) {
  // start -> a -> b -> a: the cycle is reported without the step that leads into it.
  const FieldErrors errors = ProblemsOf(WithSteps(
      {StepJson("start", {"a"}), StepJson("a", {"b"}), StepJson("b", {"a"}), StepJson("c")}));
  EXPECT_EQ(errors.ToString(), "steps: circular dependency: a -> b -> a");
}

TEST(DefinitionValidate, DiamondIsNotACycle) {
  const json j = WithSteps({StepJson("top"), StepJson("left", {"top"}), StepJson("right", {"top"}),
                            StepJson("bottom", {"left", "right"})});
  ExpectValid(j);
  EXPECT_EQ(TopologicalStepOrder(DefinitionFromJson(j)),
            (std::vector<std::string>{"top", "left", "right", "bottom"}));
}

json RetryPolicyJson(int64_t attempts, int64_t initial, double coefficient, int64_t max) {
  return {{"max_attempts", attempts},
          {"initial_interval_seconds", initial},
          {"backoff_coefficient", coefficient},
          {"max_interval_seconds", max}};
}

TEST(DefinitionValidate, RetryPolicyBounds) {
  for (const std::string pointer : {"/retry_policy", "/steps/0/retry_policy"}) {
    const std::string field = pointer == "/retry_policy" ? "retry_policy" : "steps[0].retry_policy";
    SCOPED_TRACE(field);
    ExpectValid(Uc1With(pointer, RetryPolicyJson(1, 1, 1.0, 1)));
    ExpectValid(Uc1With(pointer, RetryPolicyJson(20, 3600, 10.0, 86400)));
    ExpectProblem(Uc1With(pointer, RetryPolicyJson(0, 1, 2, 60)), field + ".max_attempts",
                  "must be between 1 and 20, got 0");
    ExpectProblem(Uc1With(pointer, RetryPolicyJson(21, 1, 2, 60)), field + ".max_attempts",
                  "got 21");
    ExpectProblem(Uc1With(pointer, RetryPolicyJson(3, 0, 2, 60)),
                  field + ".initial_interval_seconds", "must be between 1 and 3600");
    ExpectProblem(Uc1With(pointer, RetryPolicyJson(3, 3601, 2, 86400)),
                  field + ".initial_interval_seconds", "got 3601");
    ExpectProblem(Uc1With(pointer, RetryPolicyJson(3, 1, 0.99, 60)), field + ".backoff_coefficient",
                  "must be between 1.0 and 10.0");
    ExpectProblem(Uc1With(pointer, RetryPolicyJson(3, 1, 10.5, 60)), field + ".backoff_coefficient",
                  "got 10.5");
    ExpectProblem(Uc1With(pointer, RetryPolicyJson(3, 10, 2, 5)), field + ".max_interval_seconds",
                  "must be at least initial_interval_seconds (10), got 5");
    ExpectProblem(Uc1With(pointer, RetryPolicyJson(3, 1, 2, 86401)),
                  field + ".max_interval_seconds", "must be at most 86400");
  }
  // A lone initial interval above the default maximum is caught against the default.
  ExpectProblem(Uc1With("/retry_policy", {{"initial_interval_seconds", 120}}),
                "retry_policy.max_interval_seconds", "must be at least initial_interval_seconds");
}

TEST(DefinitionValidate, TimeoutProviderVersion) {
  ExpectValid(Uc1With("/timeout_seconds", 0));
  ExpectValid(Uc1With("/timeout_seconds", 31536000));
  ExpectProblem(Uc1With("/timeout_seconds", -1), "timeout_seconds", "must be between 0");
  ExpectProblem(Uc1With("/timeout_seconds", 31536001), "timeout_seconds", "got 31536001");
  ExpectValid(Uc1With("/provider", "step-functions"));
  ExpectValid(Uc1With("/provider", "temporal"));
  for (const char* bad : {"Mock", "a--b", "-mock", "mock-", "mock_1", "mo ck"}) {
    ExpectProblem(Uc1With("/provider", bad), "provider", "must match ^[a-z0-9]+(-[a-z0-9]+)*$");
  }
  ExpectProblem(Uc1With("/provider", ""), "provider", "required: definition");
  ExpectProblem(Uc1With("/version", -1), "version", "must not be negative");
}

TEST(DefinitionValidate, WholeDefinitionSize) {
  std::vector<json> steps;
  for (int i = 0; i < 5; ++i) {
    json s = StepJson("s" + std::to_string(i));
    s["config"] = {{"blob", std::string(60000, 'x')}};
    steps.push_back(s);
  }
  ExpectProblem(WithSteps(steps), "", "definition too large");
  steps.pop_back();
  ExpectValid(WithSteps(steps));

  // The same rule applies to a definition built in code.
  WorkflowDefinition d = DefinitionFromJson(Uc1());
  for (int i = 0; i < 5; ++i) {
    Step s;
    s.id = "big" + std::to_string(i);
    s.type = StepType::kSendEmail;
    s.config = {{"blob", std::string(60000, 'x')}};
    d.steps.push_back(s);
  }
  EXPECT_TRUE(DefinitionProblems(d).HasField(""));
}

TEST(DefinitionValidate, CollectsSeveralProblemsAtOnce) {
  json j = Uc1();
  j["tenant_id"] = "bad tenant";
  j["trigger"]["evnet_name"] = "x";
  j["trigger"]["conditions"] = {{{"field", "data.x"}, {"op", "equals"}, {"value", 1}}};
  j["retry_policy"] = {{"max_attempts", 0}};
  j["steps"].push_back(StepJson("step_3", {"step_4"}));
  j["steps"].push_back(StepJson("step_4", {"step_3"}));
  j["steps"][0]["type"] = "charge";
  const FieldErrors errors = ProblemsOf(j);
  EXPECT_EQ(errors.size(), 6u) << errors.ToString();
  for (const char* field : {"tenant_id", "trigger.evnet_name", "trigger.conditions[0].op",
                            "retry_policy.max_attempts", "steps[0].type", "steps"}) {
    EXPECT_TRUE(errors.HasField(field)) << field << " missing from " << errors.ToString();
  }
  try {
    DefinitionFromJson(j);
    ADD_FAILURE() << "expected ValidationError";
  } catch (const ValidationError& e) {
    EXPECT_EQ(e.errors(), errors);
    EXPECT_NE(std::string(e.what()).find("6 problems"), std::string::npos) << e.what();
  }
}

TEST(DefinitionValidate, CodeBuiltDefinitions) {
  WorkflowDefinition d;
  d.tenant_id = "t1";
  d.environment_id = "prod";
  d.name = "built in code";
  d.provider = "mock";
  d.trigger.event_name = "customer.created";
  Step step;
  step.id = "only";
  d.steps.push_back(step);
  EXPECT_NO_THROW(ValidateDefinition(d));
  d.trigger.conditions = {{{"field", "nope"}, {"op", "exists"}}};
  const FieldErrors errors = DefinitionProblems(d);
  ASSERT_EQ(errors.size(), 1u) << errors.ToString();
  EXPECT_EQ(errors.items()[0].field, "trigger.conditions[0].field");
  EXPECT_THROW(ValidateDefinition(d), ValidationError);
}

// ---- Execution order ----

TEST(TopologicalStepOrder, FollowsDependenciesThenOrderThenId) {
  WorkflowDefinition d = DefinitionFromJson(WithSteps({
      StepJson("email", {"wallet"}, 3),
      StepJson("wallet", {"plan"}, 2),
      StepJson("plan", {}, 1),
      StepJson("b_audit", {}, 5),
      StepJson("a_audit", {}, 5),
      StepJson("credits", {"wallet"}, 0),
  }));
  EXPECT_EQ(TopologicalStepOrder(d),
            (std::vector<std::string>{"plan", "wallet", "credits", "email", "a_audit", "b_audit"}));
  // Seed UC-1: sequential by depends_on.
  EXPECT_EQ(TopologicalStepOrder(DefinitionFromJson(Uc1())),
            (std::vector<std::string>{"step_1", "step_2"}));
}

TEST(TopologicalStepOrder, RefusesCycles) {
  WorkflowDefinition d = DefinitionFromJson(Uc1());
  d.steps[0].depends_on = {"step_2"};
  try {
    TopologicalStepOrder(d);
    ADD_FAILURE() << "expected ValidationError";
  } catch (const ValidationError& e) {
    EXPECT_EQ(e.errors().ToString(), "steps: circular dependency: step_1 -> step_2 -> step_1");
  }
  d.steps[0].depends_on = {"step_1"};
  EXPECT_THROW(TopologicalStepOrder(d), ValidationError);
}

TEST(Cron, Syntax) {
  for (const char* ok : {"* * * * *", "0 0 * * *", "59 23 31 12 7", "0-59/5 */2 1-31/3 1,6,12 0-6",
                         "5/10 * * * *"}) {
    EXPECT_EQ(CronSyntaxProblem(ok), std::nullopt) << ok;
  }
  for (const char* bad : {"", "* * * *", "@daily", "-1 * * * *", "* * * * * *", "1-2-3 * * * *",
                          "*/ * * * *", "1, * * * *", "a * * * *", "* * * JAN *", "*/60 * * * *"}) {
    EXPECT_NE(CronSyntaxProblem(bad), std::nullopt) << bad;
  }
}

TEST(Enums, NamesRoundTrip) {
  for (const char* name : {"event", "scheduled", "manual", "api"}) {
    EXPECT_STREQ(ToString(*TriggerTypeFromString(name)), name);
  }
  for (const char* name : {"assign_plan", "create_wallet", "grant_credits", "send_email",
                           "create_entitlement", "update_customer"}) {
    EXPECT_STREQ(ToString(*StepTypeFromString(name)), name);
  }
  for (const char* name : {"draft", "published", "archived"}) {
    EXPECT_STREQ(ToString(*DefinitionStatusFromString(name)), name);
  }
  EXPECT_FALSE(StepTypeFromString("Assign_Plan").has_value());
}

}  // namespace
}  // namespace workflowd::definitions
