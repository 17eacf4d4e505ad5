#include "workflowd/providers/temporal/mapping.hpp"

#include <google/protobuf/any.pb.h>

#include <algorithm>
#include <map>
#include <set>

#include "google/rpc/status.pb.h"
#include "temporal/api/errordetails/v1/message.pb.h"
#include "workflowd/common/timefmt.hpp"
#include "workflowd/matching/field_errors.hpp"

namespace workflowd::providers::temporal {

namespace {

using api::enums::v1::EventType;

constexpr int64_t kMaxStepTimeoutSeconds = int64_t{366} * 24 * 3600;

const Json* Member(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

std::string StringMember(const Json& object, const char* key) {
  const Json* v = Member(object, key);
  return v != nullptr && v->is_string() ? v->get<std::string>() : std::string();
}

// A Temporal name (namespace, task queue, workflow type): non-empty, at most 1000 bytes, no
// control characters.
bool ValidName(const std::string& s) {
  return !s.empty() && s.size() <= 1000 && std::none_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20;
  });
}

void ParseName(const Json& t, const char* key, std::string& out,
               std::vector<std::string>& problems) {
  const Json* v = Member(t, key);
  if (v == nullptr) return;
  const std::string at = std::string("provider_config.temporal.") + key;
  if (!v->is_string() || !ValidName(v->get<std::string>())) {
    problems.push_back(
        at + ": expected a non-empty string of at most 1000 bytes without control characters");
    return;
  }
  out = v->get<std::string>();
}

void ParseSeconds(const Json& t, const char* key, int64_t min, std::chrono::seconds& out,
                  std::vector<std::string>& problems) {
  const Json* v = Member(t, key);
  if (v == nullptr) return;
  if (!v->is_number_integer() || v->get<int64_t>() < min ||
      v->get<int64_t>() > kMaxStepTimeoutSeconds) {
    problems.push_back(std::string("provider_config.temporal.") + key +
                       ": expected an integer from " + std::to_string(min) + " to " +
                       std::to_string(kMaxStepTimeoutSeconds));
    return;
  }
  out = std::chrono::seconds(v->get<int64_t>());
}

Json WorkerRetryPolicy(int64_t max_attempts, int64_t initial_seconds, double coefficient,
                       int64_t max_seconds) {
  return {
      {"maximum_attempts", std::max<int64_t>(max_attempts, 1)},
      {"initial_interval_seconds", std::max<int64_t>(initial_seconds, 1)},
      {"backoff_coefficient", std::max(coefficient, 1.0)},
      {"maximum_interval_seconds", std::max(max_seconds, std::max<int64_t>(initial_seconds, 1))}};
}

Json DefaultRetryPolicy(const WorkflowSpec& spec) {
  if (!spec.retry_policy) return WorkerRetryPolicy(1, 1, 2.0, 1);
  const auto& r = *spec.retry_policy;
  return WorkerRetryPolicy(
      r.max_attempts, std::chrono::duration_cast<std::chrono::seconds>(r.initial_interval).count(),
      r.backoff_rate, std::chrono::duration_cast<std::chrono::seconds>(r.max_interval).count());
}

// A step's own retry_policy in the definitions' form (max_attempts, initial_interval_seconds,
// backoff_coefficient, max_interval_seconds).
Json StepRetryPolicy(const Json& r) {
  auto integer = [&](const char* key, int64_t fallback) {
    const Json* v = Member(r, key);
    return v != nullptr && v->is_number_integer() ? v->get<int64_t>() : fallback;
  };
  const Json* c = Member(r, "backoff_coefficient");
  const double coefficient = c != nullptr && c->is_number() ? c->get<double>() : 2.0;
  const int64_t initial = integer("initial_interval_seconds", 1);
  return WorkerRetryPolicy(integer("max_attempts", 1), initial, coefficient,
                           integer("max_interval_seconds", std::max<int64_t>(initial, 60)));
}

std::string FailureKind(const api::failure::v1::Failure& f) {
  using F = api::failure::v1::Failure;
  switch (f.failure_info_case()) {
    case F::kApplicationFailureInfo:
      return f.application_failure_info().type().empty() ? "ApplicationFailure"
                                                         : f.application_failure_info().type();
    case F::kTimeoutFailureInfo:
      return "TimeoutFailure";
    case F::kCanceledFailureInfo:
      return "CanceledFailure";
    case F::kTerminatedFailureInfo:
      return "TerminatedFailure";
    case F::kServerFailureInfo:
      return "ServerFailure";
    case F::kActivityFailureInfo:
      return "ActivityFailure";
    case F::kChildWorkflowExecutionFailureInfo:
      return "ChildWorkflowFailure";
    default:
      return "Failure";
  }
}

Json FailureJson(const api::failure::v1::Failure& f) {
  const ExecutionError e = ErrorFromFailure(f);
  Json j = {{"code", e.code}, {"message", e.message}};
  if (!e.cause.empty()) j["cause"] = e.cause;
  if (!e.failed_at.empty()) j["failed_at"] = e.failed_at;
  return j;
}

ExecutionEvent Event(const api::history::v1::HistoryEvent& h, const char* type, Json details) {
  details["event_id"] = h.event_id();
  return {ToTimePoint(h.event_time()), type, std::move(details)};
}

}  // namespace

DefinitionSettings ParseDefinitionSettings(const Json& provider_config,
                                           std::vector<std::string>& problems) {
  DefinitionSettings s;
  const Json* t = Member(provider_config, "temporal");
  if (t == nullptr || t->is_null()) return s;
  if (!t->is_object()) {
    problems.emplace_back("provider_config.temporal: expected an object");
    return s;
  }
  static const std::set<std::string> kKeys = {"namespace",
                                              "task_queue",
                                              "workflow_type",
                                              "step_timeout_seconds",
                                              "heartbeat_timeout_seconds",
                                              "failed_result"};
  for (const auto& [key, value] : t->items()) {
    if (kKeys.count(key) == 0) {
      std::string list;
      for (const auto& k : kKeys) list += (list.empty() ? "" : ", ") + k;
      problems.push_back("provider_config.temporal." + key +
                         ": unknown key (allowed keys: " + list + ")");
    }
  }
  ParseName(*t, "namespace", s.namespace_name, problems);
  ParseName(*t, "task_queue", s.task_queue, problems);
  ParseName(*t, "workflow_type", s.workflow_type, problems);
  ParseSeconds(*t, "step_timeout_seconds", 1, s.step_timeout, problems);
  ParseSeconds(*t, "heartbeat_timeout_seconds", 0, s.heartbeat_timeout, problems);
  if (const Json* r = Member(*t, "failed_result")) {
    const std::string at = "provider_config.temporal.failed_result";
    if (r->is_boolean() && !r->get<bool>()) {
      s.failed_result_field.clear();  // off
    } else if (!r->is_object()) {
      problems.push_back(at + ": expected {field: NAME, values: [...]} or false (rule off)");
    } else {
      const Json* field = Member(*r, "field");
      const Json* values = Member(*r, "values");
      if (field == nullptr || !field->is_string() || field->get<std::string>().empty()) {
        problems.push_back(at + ".field: expected the name of a member of the workflow's result");
      } else {
        s.failed_result_field = field->get<std::string>();
      }
      if (values == nullptr || !values->is_array() || values->empty()) {
        problems.push_back(at +
                           ".values: expected a non-empty list of the values that mean failed");
      } else {
        s.failed_result_values.assign(values->begin(), values->end());
      }
      for (const auto& [key, value] : r->items()) {
        if (key != "field" && key != "values")
          problems.push_back(at + "." + key + ": unknown key (allowed keys: field, values)");
      }
    }
  }
  return s;
}

std::vector<StepPlan> PlanSteps(const WorkflowSpec& spec, const DefinitionSettings& settings,
                                std::vector<std::string>& problems) {
  std::vector<StepPlan> out;
  const Json* steps = Member(spec.definition, "steps");
  if (steps == nullptr || !steps->is_array() || steps->empty()) {
    problems.emplace_back("definition.steps: expected a non-empty list of steps");
    return out;
  }
  const Json default_retry = DefaultRetryPolicy(spec);
  for (size_t i = 0; i < steps->size(); ++i) {
    const Json& s = (*steps)[i];
    const std::string at = "definition.steps[" + std::to_string(i) + "]";
    const std::string id = StringMember(s, "id");
    const std::string type = StringMember(s, "type");
    if (id.empty() || type.empty()) {
      problems.push_back(at + ": expected a step with an id and a type");
      continue;
    }
    StepPlan plan;
    plan.step = {
        {"id", id},
        {"type", type},
        {"config", Member(s, "config") != nullptr ? s["config"] : Json::object()},
        {"depends_on", Member(s, "depends_on") != nullptr ? s["depends_on"] : Json::array()},
        {"start_to_close_timeout_seconds", settings.step_timeout.count()}};
    if (const std::string name = StringMember(s, "name"); !name.empty()) plan.step["name"] = name;
    if (settings.heartbeat_timeout.count() > 0)
      plan.step["heartbeat_timeout_seconds"] = settings.heartbeat_timeout.count();
    const Json* retry = Member(s, "retry_policy");
    plan.step["retry_policy"] =
        retry != nullptr && retry->is_object() ? StepRetryPolicy(*retry) : default_retry;
    if (const Json* c = Member(s, "condition"); c != nullptr && !c->is_null()) {
      matching::FieldErrors errors;
      plan.condition = matching::ParseCondition(*c, at + ".condition", errors);
      for (const auto& e : errors) problems.push_back(e.field + ": " + e.message);
    }
    out.push_back(std::move(plan));
  }
  return out;
}

bool StepConditionHolds(const matching::Condition* condition, const Json& trigger_event) {
  if (condition == nullptr) return true;
  auto text = [&](const char* key) -> std::string_view {
    const Json* v = Member(trigger_event, key);
    if (v == nullptr || !v->is_string()) return {};
    return v->get_ref<const std::string&>();
  };
  matching::EventView view;
  view.id = text("id");
  view.type = text("type");
  view.source = text("source");
  view.subject = text("subject");
  view.tenant = text("tenant");
  view.environment = text("environment");
  view.time = text("time");
  const Json* data = Member(trigger_event, "data");
  view.data = data != nullptr && !data->is_null() ? data : nullptr;
  return matching::Evaluate(*condition, view);
}

Json WorkflowInput(const std::vector<StepPlan>& steps, Json input) {
  Json out = Json::object();
  for (const char* key :
       {"execution_id", "tenant_id", "environment_id", "definition_id", "definition_version"}) {
    if (const Json* v = Member(input, key)) out[key] = *v;
  }
  Json context = Json::object();
  for (const char* key : {"attempt", "start_attempt"}) {
    if (const Json* v = Member(input, key)) context[key] = *v;
  }
  out["context"] = std::move(context);
  Json event = nullptr;
  if (input.is_object() && input.contains("event")) {
    event = std::move(input["event"]);
  } else {
    event = std::move(input);  // an input of another caller: passed as the event
  }
  Json list = Json::array();
  for (const auto& plan : steps) {
    Json step = plan.step;
    const bool run = StepConditionHolds(plan.condition.get(), event);
    step["run"] = run;
    if (!run) step["skip_reason"] = "its condition does not hold for the trigger event";
    list.push_back(std::move(step));
  }
  out["event"] = std::move(event);
  out["steps"] = std::move(list);
  return out;
}

api::common::v1::Payload JsonPayload(const Json& value) {
  api::common::v1::Payload p;
  (*p.mutable_metadata())["encoding"] = "json/plain";
  p.set_data(value.dump(-1, ' ', false, Json::error_handler_t::replace));
  return p;
}

Json PayloadJson(const api::common::v1::Payload& payload) {
  const auto& metadata = payload.metadata();
  auto it = metadata.find("encoding");
  const std::string encoding = it == metadata.end() ? "" : it->second;
  if (encoding == "binary/null") return nullptr;
  if (encoding != "json/plain") {
    throw ProviderError(ErrorCode::kInternal,
                        "temporal: a payload with encoding \"" + encoding +
                            "\" cannot be read (workflowd reads json/plain: use the SDK's default "
                            "data converter, without a payload codec, for workflow results)");
  }
  Json j = Json::parse(payload.data(), nullptr, false);
  if (j.is_discarded()) {
    throw ProviderError(ErrorCode::kInternal, "temporal: a json/plain payload is not valid JSON");
  }
  return j;
}

Json FirstPayloadJson(const api::common::v1::Payloads& payloads) {
  return payloads.payloads().empty() ? Json(nullptr) : PayloadJson(payloads.payloads(0));
}

ExecutionState MapStatus(api::enums::v1::WorkflowExecutionStatus status) {
  using namespace api::enums::v1;  // NOLINT(google-build-using-namespace): enum constants
  switch (status) {
    case WORKFLOW_EXECUTION_STATUS_COMPLETED:
      return ExecutionState::kSucceeded;
    case WORKFLOW_EXECUTION_STATUS_FAILED:
      return ExecutionState::kFailed;
    case WORKFLOW_EXECUTION_STATUS_CANCELED:
    case WORKFLOW_EXECUTION_STATUS_TERMINATED:
      return ExecutionState::kCancelled;
    case WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
      return ExecutionState::kTimedOut;
    default:
      return ExecutionState::kRunning;
  }
}

bool ResultSaysFailed(const Json& result, const DefinitionSettings& settings) {
  if (settings.failed_result_field.empty()) return false;
  const Json* v = Member(result, settings.failed_result_field.c_str());
  if (v == nullptr) return false;
  return std::find(settings.failed_result_values.begin(), settings.failed_result_values.end(),
                   *v) != settings.failed_result_values.end();
}

ExecutionError ErrorFromFailedResult(const Json& result) {
  ExecutionError e;
  e.code = "WorkflowReportedFailure";
  const Json* error = Member(result, "error");
  if (error != nullptr && error->is_string()) {
    e.message = error->get<std::string>();
  } else if (error != nullptr && !error->is_null()) {
    e.message = error->dump(-1, ' ', false, Json::error_handler_t::replace);
  } else {
    e.message = "the workflow completed and its result reports failure";
  }
  e.failed_at = StringMember(result, "failed_step");
  return e;
}

ExecutionError ErrorFromFailure(const api::failure::v1::Failure& failure) {
  ExecutionError e;
  e.code = FailureKind(failure);
  e.message = failure.message();
  std::string stack = failure.stack_trace();
  const api::failure::v1::Failure* f = &failure;
  for (int depth = 0; f->has_cause() && depth < 8; ++depth) {
    const auto& parent = *f;
    f = &f->cause();
    if (parent.has_activity_failure_info() && e.failed_at.empty()) {
      e.failed_at = parent.activity_failure_info().activity_id();
    }
    e.cause += (e.cause.empty() ? "" : " <- ") + FailureKind(*f) + ": " + f->message();
    if (!f->stack_trace().empty()) stack = f->stack_trace();
  }
  if (f->has_activity_failure_info() && e.failed_at.empty()) {
    e.failed_at = f->activity_failure_info().activity_id();
  }
  if (!stack.empty()) e.cause += (e.cause.empty() ? "" : "\n") + stack;
  return e;
}

TimePoint ToTimePoint(const google::protobuf::Timestamp& t) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(
      std::chrono::seconds(t.seconds()) + std::chrono::nanoseconds(t.nanos())));
}

std::vector<ExecutionEvent> MapHistory(
    const google::protobuf::RepeatedPtrField<api::history::v1::HistoryEvent>& events) {
  using namespace api::enums::v1;  // NOLINT(google-build-using-namespace): enum constants
  std::vector<ExecutionEvent> out;
  std::map<int64_t, std::pair<std::string, std::string>> activities;  // scheduled id -> step, type
  auto step_of = [&](int64_t scheduled_id) -> Json {
    auto it = activities.find(scheduled_id);
    if (it == activities.end()) return {{"state", ""}};
    return {{"state", it->second.first}, {"step_type", it->second.second}};
  };
  // An activity that failed or timed out: its step failed with the activity's failure.
  auto step_failed = [&](const api::history::v1::HistoryEvent& h, int64_t scheduled_id,
                         const api::failure::v1::Failure& failure) {
    Json d = step_of(scheduled_id);
    d["error"] = FailureJson(failure);
    out.push_back(Event(h, "StateFailed", std::move(d)));
  };
  for (const auto& h : events) {
    switch (h.event_type()) {
      case EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: {
        const auto& a = h.workflow_execution_started_event_attributes();
        out.push_back(Event(h, "ExecutionStarted",
                            {{"workflow_type", a.workflow_type().name()},
                             {"task_queue", a.task_queue().name()},
                             {"attempt", a.attempt()}}));
        break;
      }
      case EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: {
        const auto& a = h.activity_task_scheduled_event_attributes();
        activities[h.event_id()] = {a.activity_id(), a.activity_type().name()};
        out.push_back(Event(h, "StateEntered",
                            {{"state", a.activity_id()}, {"step_type", a.activity_type().name()}}));
        break;
      }
      case EVENT_TYPE_ACTIVITY_TASK_STARTED: {
        const auto& a = h.activity_task_started_event_attributes();
        Json d = step_of(a.scheduled_event_id());
        d["attempt"] = a.attempt();
        if (a.has_last_failure()) d["last_failure"] = FailureJson(a.last_failure());
        out.push_back(Event(h, "StepAttemptStarted", std::move(d)));
        break;
      }
      case EVENT_TYPE_ACTIVITY_TASK_COMPLETED: {
        const auto& a = h.activity_task_completed_event_attributes();
        Json d = step_of(a.scheduled_event_id());
        try {
          d["result"] = FirstPayloadJson(a.result());
        } catch (const ProviderError& e) {
          d["result_unreadable"] = e.what();
        }
        out.push_back(Event(h, "StateExited", std::move(d)));
        break;
      }
      case EVENT_TYPE_ACTIVITY_TASK_FAILED: {
        const auto& a = h.activity_task_failed_event_attributes();
        step_failed(h, a.scheduled_event_id(), a.failure());
        break;
      }
      case EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: {
        const auto& a = h.activity_task_timed_out_event_attributes();
        step_failed(h, a.scheduled_event_id(), a.failure());
        break;
      }
      case EVENT_TYPE_ACTIVITY_TASK_CANCELED: {
        const auto& a = h.activity_task_canceled_event_attributes();
        Json d = step_of(a.scheduled_event_id());
        d["error"] = {{"code", "CanceledFailure"}, {"message", "the step was cancelled"}};
        out.push_back(Event(h, "StateFailed", std::move(d)));
        break;
      }
      case EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: {
        Json result;
        try {
          result = FirstPayloadJson(h.workflow_execution_completed_event_attributes().result());
        } catch (const ProviderError&) {
          result = nullptr;
        }
        // Steps the worker skipped, and a step that reported failure in its result (its activity
        // completed), appear only in the run's result.
        if (const Json* steps = Member(result, "steps"); steps != nullptr && steps->is_object()) {
          for (const auto& [id, step] : steps->items()) {
            const std::string status = StringMember(step, "status");
            if (status == "skipped") {
              out.push_back(Event(h, "StateSkipped",
                                  {{"state", id}, {"reason", StringMember(step, "reason")}}));
            } else if (status == "failed") {
              const Json* error = Member(step, "error");
              out.push_back(
                  Event(h, "StateFailed",
                        {{"state", id},
                         {"error",
                          {{"code", "StepReportedFailure"},
                           {"message", error != nullptr && error->is_string()
                                           ? error->get<std::string>()
                                           : std::string("the step reported failure")}}}}));
            }
          }
        }
        // Completed: succeeded, or failed by its result (the definition's failed_result rule).
        out.push_back(Event(h, "ExecutionCompleted", Json::object()));
        break;
      }
      case EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        out.push_back(Event(
            h, "ExecutionFailed",
            {{"error", FailureJson(h.workflow_execution_failed_event_attributes().failure())}}));
        break;
      case EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        out.push_back(Event(h, "ExecutionTimedOut", Json::object()));
        break;
      case EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
        out.push_back(
            Event(h, "ExecutionCancelRequested",
                  {{"cause", h.workflow_execution_cancel_requested_event_attributes().cause()}}));
        break;
      case EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
        out.push_back(Event(h, "ExecutionCancelled", Json::object()));
        break;
      case EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        out.push_back(
            Event(h, "ExecutionTerminated",
                  {{"reason", h.workflow_execution_terminated_event_attributes().reason()}}));
        break;
      case EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        out.push_back(Event(
            h, "ExecutionContinuedAsNew",
            {{"new_run_id",
              h.workflow_execution_continued_as_new_event_attributes().new_execution_run_id()}}));
        break;
      default:
        break;  // workflow tasks, timers, markers, signals: bookkeeping of the worker
    }
  }
  return out;
}

std::vector<std::string> ErrorDetailTypes(const grpc::Status& status) {
  std::vector<std::string> out;
  google::rpc::Status details;
  if (status.error_details().empty() || !details.ParseFromString(status.error_details()))
    return out;
  for (const auto& any : details.details()) {
    const std::string& url = any.type_url();
    out.push_back(url.substr(url.rfind('/') + 1));
  }
  return out;
}

std::optional<AlreadyStarted> AlreadyStartedOf(const grpc::Status& status) {
  google::rpc::Status details;
  if (status.error_details().empty() || !details.ParseFromString(status.error_details()))
    return std::nullopt;
  for (const auto& any : details.details()) {
    api::errordetails::v1::WorkflowExecutionAlreadyStartedFailure f;
    if (any.type_url().ends_with(
            "/temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure") &&
        f.ParseFromString(any.value())) {
      return AlreadyStarted{f.start_request_id(), f.run_id()};
    }
  }
  return std::nullopt;
}

ProviderError ErrorFromStatus(const grpc::Status& status, const std::string& operation,
                              const std::string& target, ErrorCode not_found) {
  const std::vector<std::string> types = ErrorDetailTypes(status);
  auto has = [&](const char* name) {
    return std::find(types.begin(), types.end(),
                     std::string("temporal.api.errordetails.v1.") + name) != types.end();
  };
  const std::string said = "temporal " + operation + " (" + target +
                           "): " + std::to_string(static_cast<int>(status.error_code())) + " " +
                           status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return {ErrorCode::kUnavailable,
              said +
                  " (is the Temporal frontend running at this address, and does its TLS "
                  "setting match providers.temporal.tls?)"};
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::DATA_LOSS:
    // We cancel no call of ours (a caller's end is its deadline): a cancelled call is the
    // network's or a proxy's doing, and a start whose answer was lost so may have made its run.
    case grpc::StatusCode::CANCELLED:
      return {ErrorCode::kUnavailable, said};
    case grpc::StatusCode::UNIMPLEMENTED:
      return {ErrorCode::kUnavailable,
              said +
                  " (is providers.temporal.address a Temporal frontend, of version 1.24 or "
                  "later?)"};
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return {ErrorCode::kUnavailable,
              said +
                  " (check providers.temporal.api_key_file or the mTLS certificate, and the "
                  "namespace's permissions)"};
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      // Too large a message stays too large: not an engine asking us to slow down.
      if (status.error_message().find("larger than max") != std::string::npos) {
        return {ErrorCode::kInvalidSpec, said};
      }
      return {ErrorCode::kThrottled, said};
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return {ErrorCode::kDeadlineExceeded, said};
    case grpc::StatusCode::INVALID_ARGUMENT:
      // Unregistered search attributes refuse every start: the cluster's setup, not this
      // execution's, so executions wait for it to be fixed instead of failing.
      if (status.error_message().find("earch attribute") != std::string::npos) {
        return {ErrorCode::kUnavailable,
                said +
                    " (register the search attributes WorkflowdTenant, WorkflowdEnvironment and "
                    "WorkflowdDefinition as Keyword in the namespace, or set "
                    "providers.temporal.search_attributes: false)"};
      }
      return {ErrorCode::kInvalidSpec, said};
    case grpc::StatusCode::NOT_FOUND:
      if (has("NamespaceNotFoundFailure") ||
          status.error_message().find("amespace") != std::string::npos) {
        return {ErrorCode::kUnavailable,
                said +
                    " (the namespace does not exist in this cluster: check "
                    "providers.temporal.namespace or the definition's "
                    "provider_config.temporal.namespace)"};
      }
      return {not_found, said};
    case grpc::StatusCode::ALREADY_EXISTS:
      return {ErrorCode::kAlreadyExists, said};
    case grpc::StatusCode::FAILED_PRECONDITION:
      if (has("NamespaceNotActiveFailure") || has("NamespaceInvalidStateFailure") ||
          has("ClientVersionNotSupportedFailure") || has("ServerVersionNotSupportedFailure")) {
        return {ErrorCode::kUnavailable, said};  // a failover or an upgrade: it passes
      }
      return {ErrorCode::kFailedPrecondition, said};
    default:
      return {ErrorCode::kInternal, said};
  }
}

}  // namespace workflowd::providers::temporal
