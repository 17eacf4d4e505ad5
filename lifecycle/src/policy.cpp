#include "workflowd/lifecycle/policy.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <new>

#include "workflowd/common/utf8.hpp"
#include "workflowd/matching/field_errors.hpp"
#include "workflowd/store/errors.hpp"

namespace workflowd::lifecycle {

using Json = nlohmann::json;

std::string ProviderWorkflowId(const std::string& definition_id, int64_t version) {
  // FNV-1a, 32 bit (offset basis 2166136261, prime 16777619): a stable, documented hash; only
  // used to keep sanitized ids distinct, not for security.
  uint32_t hash = 2166136261u;
  for (unsigned char c : definition_id) {
    hash ^= c;
    hash *= 16777619u;
  }
  std::string id;
  for (char c : definition_id) {
    char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    id += ((lower >= 'a' && lower <= 'z') || (lower >= '0' && lower <= '9')) ? lower : '-';
  }
  if (id.size() > 96) id.resize(96);
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%08x", hash);
  return id + "-v" + std::to_string(version) + "-" + suffix;
}

providers::WorkflowSpec SpecFor(const definitions::WorkflowDefinition& d) {
  providers::WorkflowSpec spec;
  spec.workflow_id = ProviderWorkflowId(d.id.value_or(""), d.version);
  spec.provider_type = d.provider;
  spec.name = d.name;
  spec.description = d.description.substr(0, 1024);
  Json steps = Json::array();
  std::map<std::string, const definitions::Step*> by_id;
  for (const auto& s : d.steps) by_id[s.id] = &s;
  for (const auto& id : definitions::TopologicalStepOrder(d)) {
    const auto& s = *by_id.at(id);
    Json step = {{"id", s.id}, {"type", definitions::ToString(s.type)}, {"config", s.config}};
    if (!s.name.empty()) step["name"] = s.name;
    if (!s.depends_on.empty()) step["depends_on"] = s.depends_on;
    if (!s.condition.is_null()) step["condition"] = s.condition;
    if (s.retry_policy) {
      step["retry_policy"] = {
          {"max_attempts", s.retry_policy->max_attempts},
          {"initial_interval_seconds", s.retry_policy->initial_interval_seconds},
          {"backoff_coefficient", s.retry_policy->backoff_coefficient},
          {"max_interval_seconds", s.retry_policy->max_interval_seconds}};
    }
    steps.push_back(std::move(step));
  }
  spec.definition = {{"definition_id", d.id.value_or("")},
                     {"version", d.version},
                     {"tenant_id", d.tenant_id},
                     {"environment_id", d.environment_id},
                     {"steps", std::move(steps)}};
  spec.timeout = std::chrono::seconds(d.timeout_seconds);
  providers::RetryPolicy retry;
  retry.max_attempts = static_cast<int>(d.retry_policy.max_attempts);
  retry.backoff_rate = d.retry_policy.backoff_coefficient;
  retry.initial_interval = std::chrono::seconds(d.retry_policy.initial_interval_seconds);
  retry.max_interval = std::chrono::seconds(
      std::max(d.retry_policy.max_interval_seconds, d.retry_policy.initial_interval_seconds));
  spec.retry_policy = retry;
  spec.tags = {{"tenant_id", d.tenant_id},
               {"environment_id", d.environment_id},
               {"definition_id", d.id.value_or("")},
               {"definition_version", std::to_string(d.version)}};
  spec.provider_config = d.provider_config;
  return spec;
}

providers::ExecutionInput InputFor(const store::ExecutionRecord& e, nlohmann::json event) {
  providers::ExecutionInput in;
  in.execution_name = e.id;
  in.input = {{"execution_id", e.id},
              {"tenant_id", e.tenant_id},
              {"environment_id", e.environment_id},
              {"definition_id", e.workflow_id},
              {"definition_version", e.definition_version},
              {"attempt", e.attempt},
              {"start_attempt", e.start_attempts},
              {"event", std::move(event)}};
  in.tags = {{"tenant_id", e.tenant_id}, {"environment_id", e.environment_id}};
  return in;
}

std::chrono::milliseconds RoundCallBudget(std::chrono::milliseconds lease,
                                          std::chrono::milliseconds call_timeout) {
  return std::max(lease - call_timeout, lease / 2);
}

std::chrono::milliseconds StartRetryDelay(const definitions::RetryPolicy& policy, int attempts_made,
                                          double jitter01) {
  double initial_ms = static_cast<double>(policy.initial_interval_seconds) * 1000.0;
  double max_ms =
      static_cast<double>(std::max(policy.max_interval_seconds, policy.initial_interval_seconds)) *
      1000.0;
  double base = initial_ms * std::pow(policy.backoff_coefficient, std::max(0, attempts_made - 1));
  base = std::min(base, max_ms);
  double delay = base / 2.0 + base / 2.0 * std::clamp(jitter01, 0.0, 1.0);
  return std::chrono::milliseconds(static_cast<int64_t>(delay));
}

bool MayRetryStart(const definitions::RetryPolicy& policy, int attempts_made) {
  return attempts_made < policy.max_attempts;
}

std::chrono::milliseconds PollInterval(std::chrono::milliseconds age, std::chrono::milliseconds min,
                                       std::chrono::milliseconds max) {
  return std::clamp(age / 10, min, max);
}

std::chrono::milliseconds FailedPollInterval(std::chrono::milliseconds interval,
                                             std::chrono::milliseconds max) {
  return std::min(std::max(interval * 4, std::chrono::milliseconds(2000)), std::max(interval, max));
}

std::chrono::milliseconds UnchangedPollInterval(std::chrono::milliseconds interval, int polls_made,
                                                std::chrono::milliseconds min,
                                                std::chrono::milliseconds max) {
  const int doublings = std::clamp(polls_made, 0, 20);
  const auto backed_off = min.count() > (max.count() >> doublings)
                              ? max
                              : std::chrono::milliseconds(min.count() << doublings);
  return std::min(std::max(interval, backed_off), std::max(interval, max));
}

Json ErrorJson(const providers::ProviderError& error) {
  return {{"code", providers::ToString(error.code())},
          {"message", error.what()},
          {"retryable", error.Retryable()}};
}

InternalError CurrentInternalError() {
  InternalError out;
  try {
    throw;
  } catch (const store::StoreError& e) {
    out = {"database", SanitizeUtf8(e.what()), e.Retryable()};
  } catch (const matching::ValidationError& e) {
    // Raised by loading a definition version whose document or conditions no longer compile: the
    // same document fails the same way next time.
    out = {"definition", SanitizeUtf8(e.what()), false};
  } catch (const std::bad_alloc&) {
    out = {"memory", "out of memory", true};
  } catch (const std::exception& e) {
    out = {"other", SanitizeUtf8(e.what()), false};
  } catch (...) {
    out = {"other", "unknown exception", false};
  }
  return out;
}

Json ErrorJson(const InternalError& error) {
  return {{"code", "internal_error"},
          {"kind", error.kind},
          {"message", error.message},
          {"retryable", error.retryable}};
}

std::vector<store::StepRecord> DeriveSteps(const std::vector<std::string>& step_order,
                                           const providers::ExecutionStatus& status,
                                           const std::string& final_state) {
  std::map<std::string, store::StepRecord> steps;
  for (const auto& id : step_order) steps[id] = store::StepRecord{id, "pending"};
  for (const auto& event : status.history) {
    if (!event.details.is_object() || !event.details.contains("state") ||
        !event.details["state"].is_string()) {
      continue;
    }
    auto it = steps.find(event.details["state"].get<std::string>());
    if (it == steps.end()) continue;
    if (event.type == "StateEntered") {
      it->second.status = "running";
      it->second.started_at = event.timestamp;
    } else if (event.type == "StateExited") {
      it->second.status = "completed";
      it->second.completed_at = event.timestamp;
      it->second.error = nullptr;
      if (event.details.contains("result")) it->second.output = event.details["result"];
    } else if (event.type == "StateFailed") {
      // Beyond its retries (an engine that retries a step reports each attempt's end elsewhere).
      it->second.status = "failed";
      it->second.completed_at = event.timestamp;
      it->second.error = event.details.contains("error") ? event.details["error"] : Json(nullptr);
    } else if (event.type == "StateSkipped") {
      it->second.status = "skipped";
    }
  }
  Json error = nullptr;
  if (status.error) error = providers::ToJson(*status.error);
  std::optional<TimePoint> end = status.stop_time;
  for (auto& [id, s] : steps) {
    if (final_state == "succeeded") {
      if (s.status == "pending" || s.status == "running") {
        s.status = "completed";
        s.completed_at = end;
      }
    } else if (final_state == "failed" || final_state == "timed_out" ||
               final_state == "cancelled") {
      if (s.status == "running") {
        s.status = "failed";
        s.completed_at = end;
        s.error = error.is_null() ? Json{{"code", final_state}} : error;
      } else if (s.status == "pending") {
        s.status = "skipped";
      }
    }
  }
  std::vector<store::StepRecord> out;
  out.reserve(step_order.size());
  for (const auto& id : step_order) out.push_back(steps[id]);
  return out;
}

std::vector<store::HistoryRecord> HistoryRows(const providers::ExecutionStatus& status,
                                              int from_seq) {
  std::vector<store::HistoryRecord> out;
  for (size_t i = static_cast<size_t>(std::max(from_seq, 0)); i < status.history.size(); ++i) {
    const auto& e = status.history[i];
    out.push_back({static_cast<int>(i), e.type, e.details, e.timestamp});
  }
  return out;
}

}  // namespace workflowd::lifecycle
