// JSON <-> WorkflowDefinition: the strict structural parse (types, unknown keys, enum values) and
// the canonical serialization. The semantic rules live in validation.cpp.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "workflowd/common/suggest.hpp"
#include "workflowd/common/timefmt.hpp"
#include "workflowd/definitions/definition.hpp"

namespace workflowd::definitions {
namespace {

using nlohmann::json;

constexpr std::array<std::pair<std::string_view, TriggerType>, 4> kTriggerTypes = {{
    {"event", TriggerType::kEvent},
    {"scheduled", TriggerType::kScheduled},
    {"manual", TriggerType::kManual},
    {"api", TriggerType::kApi},
}};

constexpr std::array<std::pair<std::string_view, StepType>, 6> kStepTypes = {{
    {"assign_plan", StepType::kAssignPlan},
    {"create_wallet", StepType::kCreateWallet},
    {"grant_credits", StepType::kGrantCredits},
    {"send_email", StepType::kSendEmail},
    {"create_entitlement", StepType::kCreateEntitlement},
    {"update_customer", StepType::kUpdateCustomer},
}};

constexpr std::array<std::pair<std::string_view, DefinitionStatus>, 3> kStatuses = {{
    {"draft", DefinitionStatus::kDraft},
    {"published", DefinitionStatus::kPublished},
    {"archived", DefinitionStatus::kArchived},
}};

template <typename Enum, size_t N>
const char* NameOf(const std::array<std::pair<std::string_view, Enum>, N>& table, Enum value) {
  for (const auto& [name, v] : table) {
    if (v == value) return name.data();
  }
  return "?";
}

template <typename Enum, size_t N>
std::optional<Enum> ValueOf(const std::array<std::pair<std::string_view, Enum>, N>& table,
                            std::string_view name) {
  for (const auto& [n, v] : table) {
    if (n == name) return v;
  }
  return std::nullopt;
}

template <typename Enum, size_t N>
std::string NamesOf(const std::array<std::pair<std::string_view, Enum>, N>& table) {
  std::string out;
  for (const auto& [name, unused] : table) {
    if (!out.empty()) out += ", ";
    out.append(name);
  }
  return out;
}

std::string Quote(std::string_view s) {
  constexpr size_t kMax = 64;
  std::string out = "\"";
  out.append(s.substr(0, kMax));
  if (s.size() > kMax) out += "...";
  out += '"';
  return out;
}

// Reads one JSON object of a known shape, reporting every problem under its path. Unknown keys
// are reported once, at construction, with the closest allowed key as a suggestion.
class ObjectReader {
 public:
  ObjectReader(const json& object, std::string path, FieldErrors& errors,
               std::span<const std::string_view> allowed)
      : object_(object), path_(std::move(path)), errors_(errors) {
    std::string allowed_list;
    for (std::string_view a : allowed) {
      if (!allowed_list.empty()) allowed_list += ", ";
      allowed_list.append(a);
    }
    for (const auto& [key, unused] : object_.items()) {
      if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
      std::string message = "unknown key " + Quote(key);
      // At most 2 edits away: a near miss.
      if (const auto best = ClosestMatch(key, allowed, 2)) {
        message += "; did you mean " + Quote(*best) + "?";
      }
      message += " (allowed keys: " + allowed_list + ")";
      errors_.Add(Path(key), std::move(message));
    }
  }

  std::string Path(std::string_view key) const { return matching::JoinFieldPath(path_, key); }

  // The value under `key`, or nullptr when absent or null.
  const json* Find(std::string_view key) const {
    const auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  void Error(std::string_view key, std::string message) {
    errors_.Add(Path(key), std::move(message));
  }

  void String(std::string_view key, std::string& out) {
    const json* v = Find(key);
    if (!v) return;
    if (!v->is_string()) {
      Error(key, std::string("must be a string, got ") + v->type_name());
      return;
    }
    out = v->get<std::string>();
  }

  void OptionalString(std::string_view key, std::optional<std::string>& out) {
    const json* v = Find(key);
    if (!v) return;
    std::string s;
    String(key, s);
    if (v->is_string()) out = std::move(s);
  }

  void Bool(std::string_view key, bool& out) {
    const json* v = Find(key);
    if (!v) return;
    if (!v->is_boolean()) {
      Error(key, std::string("must be true or false, got ") + v->type_name());
      return;
    }
    out = v->get<bool>();
  }

  // Integers; an integral float (3.0) is accepted, since YAML and some JSON encoders write those.
  void Int(std::string_view key, int64_t& out) {
    const json* v = Find(key);
    if (!v) return;
    if (v->is_number_unsigned()) {
      if (v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        Error(key, "integer out of range");
        return;
      }
      out = static_cast<int64_t>(v->get<uint64_t>());
    } else if (v->is_number_integer()) {
      out = v->get<int64_t>();
    } else if (v->is_number_float()) {
      const double d = v->get<double>();
      if (d != std::trunc(d) || !(d >= -9.2e18 && d <= 9.2e18)) {
        Error(key, "must be an integer, got " + v->dump());
        return;
      }
      out = static_cast<int64_t>(d);
    } else {
      Error(key, std::string("must be an integer, got ") + v->type_name());
    }
  }

  void Double(std::string_view key, double& out) {
    const json* v = Find(key);
    if (!v) return;
    if (!v->is_number()) {
      Error(key, std::string("must be a number, got ") + v->type_name());
      return;
    }
    out = v->get<double>();
  }

  void Object(std::string_view key, json& out) {
    const json* v = Find(key);
    if (!v) return;
    if (!v->is_object()) {
      Error(key, std::string("must be an object, got ") + v->type_name());
      return;
    }
    out = *v;
  }

  void Timestamp(std::string_view key, std::optional<TimePoint>& out) {
    const json* v = Find(key);
    if (!v) return;
    if (v->is_string()) {
      if (const std::optional<TimePoint> t = ParseRfc3339(v->get_ref<const std::string&>())) {
        out = *t;
        return;
      }
    }
    Error(key, "must be an RFC 3339 timestamp such as \"2024-12-19T10:00:00Z\"");
  }

  // A string naming an enum value; reports unknown names with the valid ones.
  template <typename Enum, size_t N>
  bool EnumValue(std::string_view key,
                 const std::array<std::pair<std::string_view, Enum>, N>& table,
                 std::string_view what, std::string_view plural, Enum& out, bool required) {
    const json* v = Find(key);
    if (!v) {
      if (required) Error(key, "required; valid " + std::string(plural) + ": " + NamesOf(table));
      return !required;
    }
    if (v->is_string()) {
      if (const std::optional<Enum> e = ValueOf(table, v->get_ref<const std::string&>())) {
        out = *e;
        return true;
      }
      Error(key, "unknown " + std::string(what) + " " + Quote(v->get_ref<const std::string&>()) +
                     "; valid " + std::string(plural) + ": " + NamesOf(table));
      return false;
    }
    Error(key, "must be a string; valid " + std::string(plural) + ": " + NamesOf(table));
    return false;
  }

 private:
  const json& object_;
  std::string path_;
  FieldErrors& errors_;
};

constexpr std::array<std::string_view, 17> kDefinitionKeys = {
    "id",         "tenant_id",       "environment_id", "name",         "description",
    "trigger",    "steps",           "enabled",        "retry_policy", "timeout_seconds",
    "provider",   "provider_config", "version",        "status",       "created_by",
    "created_at", "updated_at"};
constexpr std::array<std::string_view, 4> kTriggerKeys = {"type", "event_name", "conditions",
                                                          "schedule"};
constexpr std::array<std::string_view, 2> kScheduleKeys = {"cron", "timezone"};
constexpr std::array<std::string_view, 8> kStepKeys = {
    "id", "order", "type", "name", "config", "condition", "retry_policy", "depends_on"};
constexpr std::array<std::string_view, 4> kRetryKeys = {
    "max_attempts", "initial_interval_seconds", "backoff_coefficient", "max_interval_seconds"};

RetryPolicy ParseRetryPolicy(const json& j, const std::string& path, FieldErrors& errors) {
  RetryPolicy p;
  ObjectReader r(j, path, errors, kRetryKeys);
  r.Int("max_attempts", p.max_attempts);
  r.Int("initial_interval_seconds", p.initial_interval_seconds);
  r.Double("backoff_coefficient", p.backoff_coefficient);
  r.Int("max_interval_seconds", p.max_interval_seconds);
  return p;
}

Trigger ParseTrigger(const json& j, FieldErrors& errors) {
  Trigger t;
  const std::string path = "trigger";
  ObjectReader r(j, path, errors, kTriggerKeys);
  r.EnumValue("type", kTriggerTypes, "trigger type", "trigger types", t.type, /*required=*/true);
  r.String("event_name", t.event_name);
  if (const json* c = r.Find("conditions")) {
    if (!c->is_array()) {
      r.Error("conditions", "must be a list of conditions");
    } else {
      t.conditions = *c;
      if (!c->empty()) {
        t.compiled_conditions = matching::ParseConditionList(*c, r.Path("conditions"), errors);
      }
    }
  }
  if (const json* s = r.Find("schedule")) {
    if (!s->is_object()) {
      r.Error("schedule",
              std::string("must be an object {\"cron\", \"timezone\"}, got ") + s->type_name());
    } else {
      Schedule schedule;
      ObjectReader sr(*s, r.Path("schedule"), errors, kScheduleKeys);
      sr.String("cron", schedule.cron);
      sr.String("timezone", schedule.timezone);
      t.schedule = std::move(schedule);
    }
  }
  return t;
}

Step ParseStep(const json& j, const std::string& path, FieldErrors& errors) {
  Step s;
  if (!j.is_object()) {
    errors.Add(path, std::string("must be an object, got ") + j.type_name());
    return s;
  }
  ObjectReader r(j, path, errors, kStepKeys);
  r.String("id", s.id);
  r.Int("order", s.order);
  r.EnumValue("type", kStepTypes, "step type", "step types", s.type, /*required=*/true);
  r.String("name", s.name);
  r.Object("config", s.config);
  if (const json* c = r.Find("condition")) {
    s.condition = *c;
    s.compiled_condition = matching::ParseCondition(*c, r.Path("condition"), errors);
  }
  if (const json* p = r.Find("retry_policy")) {
    if (p->is_object()) {
      s.retry_policy = ParseRetryPolicy(*p, r.Path("retry_policy"), errors);
    } else {
      r.Error("retry_policy", std::string("must be an object, got ") + p->type_name());
    }
  }
  if (const json* d = r.Find("depends_on")) {
    if (!d->is_array()) {
      r.Error("depends_on", std::string("must be a list of step ids, got ") + d->type_name());
    } else {
      for (size_t i = 0; i < d->size(); ++i) {
        const json& dep = (*d)[i];
        if (dep.is_string()) {
          s.depends_on.push_back(dep.get<std::string>());
        } else {
          errors.Add(r.Path("depends_on") + "[" + std::to_string(i) + "]",
                     "must be a step id string");
        }
      }
    }
  }
  return s;
}

// Maximum nesting of a JSON value, computed without recursion so hostile input cannot overflow
// the stack. Stops counting once `limit` is exceeded.
int DepthExceeds(const json& root, int limit) {
  std::vector<std::pair<const json*, int>> stack = {{&root, 1}};
  while (!stack.empty()) {
    const auto [node, depth] = stack.back();
    stack.pop_back();
    if (depth > limit) return depth;
    if (node->is_structured()) {
      for (const json& child : *node) stack.emplace_back(&child, depth + 1);
    }
  }
  return 0;
}

// Drops problems that only echo a structural problem already reported: the semantic pass sees the
// parser's placeholders (an empty id for a step that was not an object, the default trigger type
// when the given one was unknown) and would otherwise add noise.
bool EchoesStructuralProblem(const FieldError& e, const FieldErrors& structural) {
  for (const FieldError& s : structural) {
    if (s == e) return true;
    if (e.field.starts_with(s.field) &&
        (e.field.size() == s.field.size() || e.field[s.field.size()] == '.' ||
         e.field[s.field.size()] == '[')) {
      return true;
    }
  }
  if (e.field.starts_with("trigger") && structural.HasField("trigger.type")) return true;
  return false;
}

}  // namespace

const char* ToString(TriggerType type) { return NameOf(kTriggerTypes, type); }
const char* ToString(StepType type) { return NameOf(kStepTypes, type); }
const char* ToString(DefinitionStatus status) { return NameOf(kStatuses, status); }
std::optional<TriggerType> TriggerTypeFromString(std::string_view name) {
  return ValueOf(kTriggerTypes, name);
}
std::optional<StepType> StepTypeFromString(std::string_view name) {
  return ValueOf(kStepTypes, name);
}
std::optional<DefinitionStatus> DefinitionStatusFromString(std::string_view name) {
  return ValueOf(kStatuses, name);
}

bool operator==(const Trigger& a, const Trigger& b) {
  return a.type == b.type && a.event_name == b.event_name && a.conditions == b.conditions &&
         a.schedule == b.schedule;
}

bool operator==(const Step& a, const Step& b) {
  return a.id == b.id && a.order == b.order && a.type == b.type && a.name == b.name &&
         a.config == b.config && a.condition == b.condition && a.retry_policy == b.retry_policy &&
         a.depends_on == b.depends_on;
}

WorkflowDefinition DefinitionFromJson(const nlohmann::json& j, FieldErrors& errors) {
  WorkflowDefinition d;
  if (!j.is_object()) {
    errors.Add("",
               std::string("a workflow definition must be a JSON object, got ") + j.type_name());
    return d;
  }
  if (DepthExceeds(j, kMaxDocumentDepth) != 0) {
    errors.Add("", "nested deeper than " + std::to_string(kMaxDocumentDepth) + " levels");
    return d;
  }
  const size_t bytes = j.dump(-1, ' ', false, json::error_handler_t::replace).size();
  if (bytes > kMaxDefinitionJsonBytes) {
    errors.Add("", "definition too large: " + std::to_string(bytes) + " bytes of JSON, at most " +
                       std::to_string(kMaxDefinitionJsonBytes));
    return d;
  }

  FieldErrors structural;
  ObjectReader r(j, "", structural, kDefinitionKeys);
  r.OptionalString("id", d.id);
  r.String("tenant_id", d.tenant_id);
  r.String("environment_id", d.environment_id);
  r.String("name", d.name);
  r.String("description", d.description);
  if (const json* t = r.Find("trigger")) {
    if (t->is_object()) {
      d.trigger = ParseTrigger(*t, structural);
    } else {
      r.Error("trigger", std::string("must be an object, got ") + t->type_name());
    }
  } else {
    r.Error("trigger", "required");
  }
  if (const json* steps = r.Find("steps")) {
    if (steps->is_array()) {
      for (size_t i = 0; i < steps->size(); ++i) {
        d.steps.push_back(ParseStep((*steps)[i], "steps[" + std::to_string(i) + "]", structural));
      }
    } else {
      r.Error("steps", std::string("must be a list of steps, got ") + steps->type_name());
    }
  }
  r.Bool("enabled", d.enabled);
  if (const json* p = r.Find("retry_policy")) {
    if (p->is_object()) {
      d.retry_policy = ParseRetryPolicy(*p, "retry_policy", structural);
    } else {
      r.Error("retry_policy", std::string("must be an object, got ") + p->type_name());
    }
  }
  r.Int("timeout_seconds", d.timeout_seconds);
  r.String("provider", d.provider);
  r.Object("provider_config", d.provider_config);
  r.Int("version", d.version);
  r.EnumValue("status", kStatuses, "status", "statuses", d.status, /*required=*/false);
  r.String("created_by", d.created_by);
  r.Timestamp("created_at", d.created_at);
  r.Timestamp("updated_at", d.updated_at);

  // The semantic pass recompiles the conditions; its problems repeat the parser's exactly and are
  // dropped below.
  const FieldErrors semantic = DefinitionProblems(d);
  errors.Append(structural);
  for (const FieldError& e : semantic) {
    if (!EchoesStructuralProblem(e, structural)) errors.Add(e.field, e.message);
  }
  return d;
}

WorkflowDefinition DefinitionFromJson(const nlohmann::json& json) {
  FieldErrors errors;
  WorkflowDefinition d = DefinitionFromJson(json, errors);
  if (!errors.empty()) throw ValidationError(std::move(errors), "invalid workflow definition");
  return d;
}

namespace {

json RetryPolicyToJson(const RetryPolicy& p) {
  return {{"max_attempts", p.max_attempts},
          {"initial_interval_seconds", p.initial_interval_seconds},
          {"backoff_coefficient", p.backoff_coefficient},
          {"max_interval_seconds", p.max_interval_seconds}};
}

}  // namespace

nlohmann::json DefinitionToJson(const WorkflowDefinition& d) {
  json trigger = {{"type", ToString(d.trigger.type)}};
  if (!d.trigger.event_name.empty()) trigger["event_name"] = d.trigger.event_name;
  if (!d.trigger.conditions.is_null() && !d.trigger.conditions.empty()) {
    trigger["conditions"] = d.trigger.conditions;
  }
  if (d.trigger.schedule) {
    trigger["schedule"] = {{"cron", d.trigger.schedule->cron},
                           {"timezone", d.trigger.schedule->timezone}};
  }

  json steps = json::array();
  for (const Step& s : d.steps) {
    json step = {
        {"id", s.id}, {"order", s.order}, {"type", ToString(s.type)}, {"config", s.config}};
    if (!s.name.empty()) step["name"] = s.name;
    if (!s.condition.is_null()) step["condition"] = s.condition;
    if (s.retry_policy) step["retry_policy"] = RetryPolicyToJson(*s.retry_policy);
    if (!s.depends_on.empty()) step["depends_on"] = s.depends_on;
    steps.push_back(std::move(step));
  }

  json out = {
      {"tenant_id", d.tenant_id},
      {"environment_id", d.environment_id},
      {"name", d.name},
      {"description", d.description},
      {"trigger", std::move(trigger)},
      {"steps", std::move(steps)},
      {"enabled", d.enabled},
      {"retry_policy", RetryPolicyToJson(d.retry_policy)},
      {"timeout_seconds", d.timeout_seconds},
      {"provider", d.provider},
      {"version", d.version},
      {"status", ToString(d.status)},
      {"created_by", d.created_by},
  };
  if (d.id) out["id"] = *d.id;
  if (!d.provider_config.is_null()) out["provider_config"] = d.provider_config;
  if (d.created_at) out["created_at"] = FormatRfc3339(*d.created_at);
  if (d.updated_at) out["updated_at"] = FormatRfc3339(*d.updated_at);
  return out;
}

}  // namespace workflowd::definitions
