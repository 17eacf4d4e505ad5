// A tenant's workflow definition: what event starts it, which
// conditions filter it, which steps it runs in which dependency order, and with what retry policy.
//
// The JSON form uses the product requirements' field names exactly (tenant_id, trigger.event_name,
// steps[].depends_on, retry_policy.initial_interval_seconds, ...), because it is both the REST
// API's wire format and what tenants keep in files. Parsing is strict: an unknown key anywhere is
// an error that names the key, so a typo such as "evnet_name" is caught instead of silently
// producing a workflow that never triggers. Every problem is reported at once, as a
// matching::FieldErrors list with JSON paths ("steps[1].depends_on[0]"), the same type the
// condition compiler and the REST API use.
//
// `null` counts as "not given" for every optional field (Go clients send null for nil pointers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "workflowd/common/clock.hpp"
#include "workflowd/matching/condition.hpp"
#include "workflowd/matching/field_errors.hpp"

namespace workflowd::definitions {

using matching::FieldError;
using matching::FieldErrors;
using matching::ValidationError;

// Limits.
inline constexpr size_t kMaxDefinitionJsonBytes = size_t{256} * 1024;
inline constexpr size_t kMaxStepConfigBytes = size_t{64} * 1024;
inline constexpr size_t kMaxSteps = 100;
inline constexpr size_t kMaxNameBytes = 256;
inline constexpr size_t kMaxDescriptionBytes = 1024;
inline constexpr int64_t kMaxTimeoutSeconds = 31536000;  // one year
// Nesting of the whole JSON document; deeper input is refused before anything recurses over it.
inline constexpr int kMaxDocumentDepth = 64;

enum class TriggerType { kEvent, kScheduled, kManual, kApi };
enum class StepType {
  kAssignPlan,
  kCreateWallet,
  kGrantCredits,
  kSendEmail,
  kCreateEntitlement,
  kUpdateCustomer,
};
enum class DefinitionStatus { kDraft, kPublished, kArchived };

const char* ToString(TriggerType type);
const char* ToString(StepType type);
const char* ToString(DefinitionStatus status);
std::optional<TriggerType> TriggerTypeFromString(std::string_view name);
std::optional<StepType> StepTypeFromString(std::string_view name);
std::optional<DefinitionStatus> DefinitionStatusFromString(std::string_view name);

// Seed 003 RetryPolicy, with its defaults. Bounds (ValidateDefinition): max_attempts 1..20,
// initial_interval_seconds 1..3600, backoff_coefficient 1.0..10.0, max_interval_seconds from
// initial_interval_seconds to 86400. A partially given policy takes defaults for the rest.
struct RetryPolicy {
  int64_t max_attempts = 3;
  int64_t initial_interval_seconds = 1;
  double backoff_coefficient = 2.0;
  int64_t max_interval_seconds = 60;

  bool operator==(const RetryPolicy&) const = default;
};

// Only for scheduled triggers: a standard 5-field cron expression (minute hour day-of-month month
// day-of-week; numbers, *, lists, ranges and steps) evaluated in `timezone` (an IANA name).
struct Schedule {
  std::string cron;
  std::string timezone = "UTC";

  bool operator==(const Schedule&) const = default;
};

struct Trigger {
  TriggerType type = TriggerType::kEvent;
  std::string event_name;  // event triggers only, e.g. "customer.created"
  // The conditions exactly as given (a JSON array), kept for storage and for the API to echo,
  // and their compiled form (an implicit "all"); compiled_conditions is null when there are none.
  nlohmann::json conditions = nlohmann::json::array();
  matching::ConditionPtr compiled_conditions;
  std::optional<Schedule> schedule;  // scheduled triggers only

  // Compares the stored form; compiled_conditions is derived from `conditions` and ignored.
  friend bool operator==(const Trigger& a, const Trigger& b);
};

struct Step {
  std::string id;
  int64_t order = 0;
  StepType type = StepType::kAssignPlan;
  std::string name;
  nlohmann::json config = nlohmann::json::object();  // step-type specific, at most 64 KiB
  // Optional condition deciding whether the step runs: raw JSON (null when none) + compiled form.
  nlohmann::json condition;
  matching::ConditionPtr compiled_condition;
  std::optional<RetryPolicy> retry_policy;  // overrides the definition's policy for this step
  std::vector<std::string> depends_on;      // ids of steps that must complete first

  // Compares the stored form; compiled_condition is ignored.
  friend bool operator==(const Step& a, const Step& b);
};

struct WorkflowDefinition {
  std::optional<std::string> id;  // optional on create; assigned by the server
  std::string tenant_id;
  std::string environment_id;
  std::string name;
  std::string description;
  Trigger trigger;
  std::vector<Step> steps;
  bool enabled = true;
  RetryPolicy retry_policy;
  int64_t timeout_seconds = 3600;  // 0 means no timeout
  // The engine that runs it (a provider name registered with the Manager). No default: a definition
  // names its provider, or the loader fills in the configured default (LoadOptions).
  std::string provider;
  nlohmann::json provider_config;  // an object, or null when not given
  int64_t version = 0;             // server managed
  DefinitionStatus status = DefinitionStatus::kPublished;
  std::string created_by;
  std::optional<TimePoint> created_at;
  std::optional<TimePoint> updated_at;

  bool operator==(const WorkflowDefinition&) const = default;
};

// Parses AND validates one definition object: structure (types, unknown keys, enum values),
// conditions (compiled, errors under "trigger.conditions[i]..." / "steps[i].condition..."), then
// every rule of ValidateDefinition. The first form throws ValidationError listing every problem;
// the second appends the problems to `errors` and returns its best effort, which must not be used
// when problems were added.
WorkflowDefinition DefinitionFromJson(const nlohmann::json& json);
WorkflowDefinition DefinitionFromJson(const nlohmann::json& json, FieldErrors& errors);

// The canonical JSON form: every field present with its effective value (defaults filled in),
// except optional ones that are unset (id, trigger.event_name when empty, conditions when empty,
// schedule, step name/condition/retry_policy/depends_on when absent, provider_config, created_at,
// updated_at). DefinitionFromJson(DefinitionToJson(d)) == d.
nlohmann::json DefinitionToJson(const WorkflowDefinition& definition);

// Loads definitions from a file's text: one definition object, a list of them, or
// {"definitions": [...]}, written in JSON or YAML. The format comes from the extension of
// `source_name` (.json, .yaml, .yml) or, failing that, from the first character ('{' or '[' means
// JSON). YAML follows the 1.2 core schema: plain true/false are booleans, plain numbers ("1.0",
// "100", "0x1F") are numbers, ~/null/empty are null, and everything quoted or else is a string
// ("US", "yes", "on" stay strings). Throws ValidationError whose what() names `source_name` and
// whose fields are prefixed by the definition's place ("[1].steps[0].type" for a list,
// "definitions[1]...." for the wrapped form, no prefix for a single object). Two definitions of one
// file with the same tenant, environment and id are rejected.
std::vector<WorkflowDefinition> DefinitionsFromYamlOrJson(std::string_view text,
                                                          std::string_view source_name);

// How DefinitionsFromYamlOrJson reads a file.
struct LoadOptions {
  // The provider of a definition whose "provider" is absent or null (workflowd's
  // providers.default). Empty: such a definition is refused, with a problem at "provider" that
  // says how to name one. What is filled in is stored with the definition, so changing the
  // default later does not move definitions already applied to another engine.
  std::string default_provider;
};
std::vector<WorkflowDefinition> DefinitionsFromYamlOrJson(std::string_view text,
                                                          std::string_view source_name,
                                                          const LoadOptions& options);

// The semantic rules, for a definition built or changed in code (the API sets tenant, environment,
// id and timestamps after parsing): identifiers and sizes, trigger shape, cron syntax, conditions,
// steps (1..100, unique ids, known types, config objects <= 64 KiB, dependencies that exist, no
// self or duplicate dependency, no cycles), retry policy and timeout bounds, provider name, and the
// 256 KiB limit on the canonical JSON. DefinitionProblems returns them; ValidateDefinition throws
// ValidationError when there are any.
FieldErrors DefinitionProblems(const WorkflowDefinition& definition);
void ValidateDefinition(const WorkflowDefinition& definition);

// Why a cron expression is not valid 5-field syntax, or nullopt when it is.
std::optional<std::string> CronSyntaxProblem(std::string_view cron);

// The order to run the steps in: every step after the steps it depends on; among steps that are
// ready at the same time, lower `order` first, then lower id. Dependencies on unknown ids are
// ignored. Throws ValidationError naming the cycle when the dependencies are circular.
std::vector<std::string> TopologicalStepOrder(const WorkflowDefinition& definition);

}  // namespace workflowd::definitions
