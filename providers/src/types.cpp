#include "workflowd/providers/types.hpp"

#include "workflowd/common/duration.hpp"
#include "workflowd/common/timefmt.hpp"
#include "workflowd/providers/errors.hpp"

namespace workflowd::providers {

std::string_view ToString(ExecutionState state) {
  switch (state) {
    case ExecutionState::kPending:
      return "pending";
    case ExecutionState::kRunning:
      return "running";
    case ExecutionState::kSucceeded:
      return "succeeded";
    case ExecutionState::kFailed:
      return "failed";
    case ExecutionState::kTimedOut:
      return "timed_out";
    case ExecutionState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

std::optional<ExecutionState> ParseExecutionState(std::string_view text) {
  for (auto s : {ExecutionState::kPending, ExecutionState::kRunning, ExecutionState::kSucceeded,
                 ExecutionState::kFailed, ExecutionState::kTimedOut, ExecutionState::kCancelled}) {
    if (ToString(s) == text) return s;
  }
  return std::nullopt;
}

bool IsTerminal(ExecutionState state) {
  return state == ExecutionState::kSucceeded || state == ExecutionState::kFailed ||
         state == ExecutionState::kTimedOut || state == ExecutionState::kCancelled;
}

bool IsAllowedTransition(ExecutionState from, ExecutionState to) {
  if (from == to) return true;
  if (IsTerminal(from)) return false;
  if (from == ExecutionState::kRunning) return to != ExecutionState::kPending;
  return true;  // pending -> running or any terminal state
}

namespace {

// Reads fields of one JSON object, throwing kInvalidSpec with the field's path on a type error.
class Reader {
 public:
  Reader(const Json& j, std::string path) : j_(j), path_(std::move(path)) {
    if (!j_.is_object()) Fail(path_, "expected a JSON object");
  }

  [[noreturn]] static void Fail(const std::string& field, const std::string& what) {
    throw ProviderError(ErrorCode::kInvalidSpec, field + ": " + what);
  }

  std::string Field(const char* key) const { return path_.empty() ? key : path_ + "." + key; }

  const Json* Find(const char* key) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::string String(const char* key) const {
    const Json* v = Find(key);
    if (v == nullptr) return {};
    if (!v->is_string()) Fail(Field(key), "expected a string");
    return v->get<std::string>();
  }

  Json Raw(const char* key) const {
    const Json* v = Find(key);
    return v == nullptr ? Json() : *v;
  }

  std::chrono::nanoseconds Dur(const char* key, std::chrono::nanoseconds fallback) const {
    const Json* v = Find(key);
    if (v == nullptr) return fallback;
    if (!v->is_string()) Fail(Field(key), "expected a duration string such as \"30m\" or \"1s\"");
    auto d = ParseDuration(v->get<std::string>());
    if (!d) {
      Fail(Field(key), "\"" + v->get<std::string>() +
                           "\" is not a duration; use a number with a unit, e.g. \"30m\", \"1s\"");
    }
    return *d;
  }

  TimePoint Time(const char* key) const {
    const Json* v = Find(key);
    if (v == nullptr) return TimePoint{};
    if (!v->is_string()) Fail(Field(key), "expected an RFC 3339 timestamp string");
    auto t = ParseRfc3339(v->get<std::string>());
    if (!t) {
      Fail(Field(key), "\"" + v->get<std::string>() +
                           "\" is not an RFC 3339 timestamp such as \"2026-01-30T10:00:00Z\"");
    }
    return *t;
  }

  std::optional<TimePoint> OptTime(const char* key) const {
    if (Find(key) == nullptr) return std::nullopt;
    return Time(key);
  }

  int Int(const char* key, int fallback) const {
    const Json* v = Find(key);
    if (v == nullptr) return fallback;
    if (!v->is_number_integer()) Fail(Field(key), "expected an integer");
    auto value = v->get<int64_t>();
    if (value < INT32_MIN || value > INT32_MAX) Fail(Field(key), "integer out of range");
    return static_cast<int>(value);
  }

  double Double(const char* key, double fallback) const {
    const Json* v = Find(key);
    if (v == nullptr) return fallback;
    if (!v->is_number()) Fail(Field(key), "expected a number");
    return v->get<double>();
  }

  std::map<std::string, std::string> StringMap(const char* key) const {
    std::map<std::string, std::string> out;
    const Json* v = Find(key);
    if (v == nullptr) return out;
    if (!v->is_object()) Fail(Field(key), "expected an object of strings");
    for (const auto& [k, val] : v->items()) {
      if (!val.is_string()) Fail(Field(key) + "." + k, "expected a string");
      out[k] = val.get<std::string>();
    }
    return out;
  }

  ExecutionState State(const char* key) const {
    auto text = String(key);
    if (text.empty()) return ExecutionState::kPending;
    auto s = ParseExecutionState(text);
    if (!s) {
      Fail(Field(key), "unknown state \"" + text +
                           "\"; expected pending, running, succeeded, failed, timed_out or "
                           "cancelled");
    }
    return *s;
  }

  const std::string& path() const { return path_; }

 private:
  const Json& j_;
  std::string path_;
};

void PutIfNotEmpty(Json& j, const char* key, const std::string& v) {
  if (!v.empty()) j[key] = v;
}

template <typename Map>
void PutMapIfNotEmpty(Json& j, const char* key, const Map& m) {
  if (!m.empty()) j[key] = m;
}

}  // namespace

Json ToJson(const RetryPolicy& v) {
  return Json{{"max_attempts", v.max_attempts},
              {"backoff_rate", v.backoff_rate},
              {"initial_interval", FormatDuration(v.initial_interval)},
              {"max_interval", FormatDuration(v.max_interval)}};
}

RetryPolicy RetryPolicyFromJson(const Json& j) {
  Reader r(j, "retry_policy");
  RetryPolicy p;
  p.max_attempts = r.Int("max_attempts", p.max_attempts);
  p.backoff_rate = r.Double("backoff_rate", p.backoff_rate);
  p.initial_interval = r.Dur("initial_interval", p.initial_interval);
  p.max_interval = r.Dur("max_interval", p.max_interval);
  return p;
}

Json ToJson(const WorkflowSpec& v) {
  Json j{{"workflow_id", v.workflow_id},
         {"provider_type", v.provider_type},
         {"name", v.name},
         {"definition", v.definition}};
  PutIfNotEmpty(j, "description", v.description);
  if (v.timeout.count() != 0) j["timeout"] = FormatDuration(v.timeout);
  if (v.retry_policy) j["retry_policy"] = ToJson(*v.retry_policy);
  PutMapIfNotEmpty(j, "tags", v.tags);
  if (!v.provider_config.is_null()) j["provider_config"] = v.provider_config;
  return j;
}

WorkflowSpec WorkflowSpecFromJson(const Json& j) {
  Reader r(j, "");
  WorkflowSpec s;
  s.workflow_id = r.String("workflow_id");
  s.provider_type = r.String("provider_type");
  s.name = r.String("name");
  s.description = r.String("description");
  s.definition = r.Raw("definition");
  s.timeout = r.Dur("timeout", std::chrono::nanoseconds{0});
  if (r.Find("retry_policy") != nullptr) s.retry_policy = RetryPolicyFromJson(j["retry_policy"]);
  s.tags = r.StringMap("tags");
  s.provider_config = r.Raw("provider_config");
  return s;
}

Json ToJson(const ExecutionInput& v) {
  Json j{{"input", v.input}};
  PutIfNotEmpty(j, "execution_name", v.execution_name);
  PutMapIfNotEmpty(j, "tags", v.tags);
  return j;
}

ExecutionInput ExecutionInputFromJson(const Json& j) {
  Reader r(j, "");
  ExecutionInput in;
  in.execution_name = r.String("execution_name");
  in.input = r.Raw("input");
  in.tags = r.StringMap("tags");
  return in;
}

Json ToJson(const CreateWorkflowResult& v) {
  Json j{{"workflow_id", v.workflow_id},
         {"provider_type", v.provider_type},
         {"resource_ids", v.resource_ids},
         {"created_at", FormatRfc3339(v.created_at)}};
  PutIfNotEmpty(j, "message", v.message);
  return j;
}

CreateWorkflowResult CreateWorkflowResultFromJson(const Json& j) {
  Reader r(j, "");
  CreateWorkflowResult out;
  out.workflow_id = r.String("workflow_id");
  out.provider_type = r.String("provider_type");
  out.resource_ids = r.StringMap("resource_ids");
  out.created_at = r.Time("created_at");
  out.message = r.String("message");
  return out;
}

Json ToJson(const ExecutionResult& v) {
  Json j{{"execution_id", v.execution_id},
         {"workflow_id", v.workflow_id},
         {"provider_type", v.provider_type},
         {"state", ToString(v.state)},
         {"started_at", FormatRfc3339(v.started_at)}};
  PutIfNotEmpty(j, "message", v.message);
  return j;
}

ExecutionResult ExecutionResultFromJson(const Json& j) {
  Reader r(j, "");
  ExecutionResult out;
  out.execution_id = r.String("execution_id");
  out.workflow_id = r.String("workflow_id");
  out.provider_type = r.String("provider_type");
  out.state = r.State("state");
  out.started_at = r.Time("started_at");
  out.message = r.String("message");
  return out;
}

Json ToJson(const ExecutionError& v) {
  Json j{{"code", v.code}, {"message", v.message}};
  PutIfNotEmpty(j, "cause", v.cause);
  PutIfNotEmpty(j, "failed_at", v.failed_at);
  return j;
}

ExecutionError ExecutionErrorFromJson(const Json& j) {
  Reader r(j, "error");
  return ExecutionError{r.String("code"), r.String("message"), r.String("cause"),
                        r.String("failed_at")};
}

Json ToJson(const ExecutionEvent& v) {
  Json j{{"timestamp", FormatRfc3339(v.timestamp)}, {"type", v.type}};
  if (!v.details.is_null()) j["details"] = v.details;
  return j;
}

ExecutionEvent ExecutionEventFromJson(const Json& j) {
  Reader r(j, "history[]");
  return ExecutionEvent{r.Time("timestamp"), r.String("type"), r.Raw("details")};
}

const Json& SharedJson::Null() {
  static const Json null;
  return null;
}

Json ToJson(const ExecutionStatus& v) {
  Json j{{"execution_id", v.execution_id},
         {"workflow_id", v.workflow_id},
         {"provider_type", v.provider_type},
         {"state", ToString(v.state)},
         {"start_time", FormatRfc3339(v.start_time)},
         {"input", v.input.get()}};
  if (v.stop_time) j["stop_time"] = FormatRfc3339(*v.stop_time);
  if (!v.output.is_null()) j["output"] = v.output;
  if (v.error) j["error"] = ToJson(*v.error);
  if (!v.history.empty()) {
    Json h = Json::array();
    for (const auto& e : v.history) h.push_back(ToJson(e));
    j["history"] = std::move(h);
  }
  PutMapIfNotEmpty(j, "metadata", v.metadata);
  return j;
}

ExecutionStatus ExecutionStatusFromJson(const Json& j) {
  Reader r(j, "");
  ExecutionStatus s;
  s.execution_id = r.String("execution_id");
  s.workflow_id = r.String("workflow_id");
  s.provider_type = r.String("provider_type");
  s.state = r.State("state");
  s.start_time = r.Time("start_time");
  s.stop_time = r.OptTime("stop_time");
  s.input = r.Raw("input");
  s.output = r.Raw("output");
  if (r.Find("error") != nullptr) s.error = ExecutionErrorFromJson(j["error"]);
  if (const Json* h = r.Find("history")) {
    if (!h->is_array()) Reader::Fail("history", "expected an array of events");
    for (const auto& e : *h) s.history.push_back(ExecutionEventFromJson(e));
  }
  s.metadata = r.StringMap("metadata");
  return s;
}

}  // namespace workflowd::providers
