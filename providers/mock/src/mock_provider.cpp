#include "workflowd/providers/mock/mock_provider.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "workflowd/common/duration.hpp"
#include "workflowd/providers/validation.hpp"

namespace workflowd::providers::mock {

struct MockProvider::WorkflowState {
  WorkflowSpec spec;
  TimePoint created_at;
  std::vector<std::string> steps;     // step ids from definition.steps[].id, in order
  std::optional<Outcome> configured;  // from provider_config.mock
  Faults faults;                      // from provider_config.mock
};

struct MockProvider::ExecutionRecord {
  std::string execution_id;
  std::string execution_name;
  std::string workflow_id;
  SharedJson input;  // the start's input, shared with every status (never copied)
  std::vector<std::string> steps;
  Outcome outcome;
  ExecutionState state = ExecutionState::kRunning;
  TimePoint start_time;
  std::optional<TimePoint> stop_time;
  Json output;
  std::optional<ExecutionError> error;
  std::vector<ExecutionEvent> history;
};

namespace {

[[noreturn]] void Invalid(const std::string& msg) {
  throw ProviderError(ErrorCode::kInvalidSpec, msg);
}

std::vector<std::string> StepIds(const Json& definition) {
  std::vector<std::string> ids;
  if (!definition.is_object()) return ids;
  auto it = definition.find("steps");
  if (it == definition.end() || !it->is_array()) return ids;
  for (const auto& s : *it) {
    if (s.is_object() && s.contains("id") && s["id"].is_string()) {
      ids.push_back(s["id"].get<std::string>());
    }
  }
  return ids;
}

Json StateDetails(const std::string& step) { return Json{{"state", step}}; }

}  // namespace

std::optional<Outcome> OutcomeFromProviderConfig(const Json& provider_config) {
  if (provider_config.is_null()) return std::nullopt;
  if (!provider_config.is_object()) Invalid("provider_config: expected a JSON object");
  auto it = provider_config.find("mock");
  if (it == provider_config.end() || it->is_null()) return std::nullopt;
  const Json& m = *it;
  if (!m.is_object()) Invalid("provider_config.mock: expected a JSON object");
  static const std::set<std::string> kKeys = {"outcome",        "delay",          "output", "error",
                                              "start_failures", "start_timeouts", "latency"};
  for (const auto& [k, _] : m.items()) {
    if (!kKeys.contains(k)) {
      Invalid("provider_config.mock." + k +
              ": unknown key (expected outcome, delay, output, error, start_failures, "
              "start_timeouts or latency)");
    }
  }
  FaultsFromProviderConfig(provider_config);  // validates the fault keys too
  Outcome o;
  std::string kind = m.value("outcome", std::string("succeed"));
  if (kind == "succeed") {
    o.kind = Outcome::Kind::kSucceed;
  } else if (kind == "fail") {
    o.kind = Outcome::Kind::kFail;
  } else if (kind == "run_until_stopped") {
    o.kind = Outcome::Kind::kRunUntilStopped;
  } else {
    Invalid("provider_config.mock.outcome: \"" + kind +
            "\" is not one of succeed, fail, run_until_stopped");
  }
  if (m.contains("delay")) {
    if (!m["delay"].is_string()) Invalid("provider_config.mock.delay: expected e.g. \"2s\"");
    auto d = ParseDuration(m["delay"].get<std::string>());
    if (!d) Invalid("provider_config.mock.delay: not a duration, expected e.g. \"2s\"");
    o.delay = *d;
  }
  if (m.contains("output")) o.output = m["output"];
  if (m.contains("error")) {
    const Json& e = m["error"];
    if (!e.is_object()) Invalid("provider_config.mock.error: expected an object");
    for (const char* key : {"code", "message", "cause", "failed_at"}) {
      if (e.contains(key) && !e[key].is_string()) {
        Invalid(std::string("provider_config.mock.error.") + key + ": expected a string");
      }
    }
    o.error.code = e.value("code", o.error.code);
    o.error.message = e.value("message", o.error.message);
    o.error.cause = e.value("cause", std::string());
    o.error.failed_at = e.value("failed_at", std::string());
  }
  return o;
}

Faults FaultsFromProviderConfig(const Json& provider_config) {
  Faults f;
  if (!provider_config.is_object()) return f;
  auto it = provider_config.find("mock");
  if (it == provider_config.end() || !it->is_object()) return f;
  const Json& m = *it;
  for (const char* key : {"start_failures", "start_timeouts"}) {
    if (!m.contains(key)) continue;
    if (!m[key].is_number_integer() || m[key].get<int64_t>() < 0 || m[key].get<int64_t>() > 100) {
      Invalid(std::string("provider_config.mock.") + key + ": expected an integer from 0 to 100");
    }
    (std::string(key) == "start_failures" ? f.start_failures : f.start_timeouts) =
        m[key].get<int>();
  }
  if (m.contains("latency")) {
    auto d =
        m["latency"].is_string() ? ParseDuration(m["latency"].get<std::string>()) : std::nullopt;
    if (!d) Invalid("provider_config.mock.latency: expected a duration such as \"20ms\"");
    f.latency = *d;
  }
  return f;
}

MockProvider::MockProvider(const Clock& clock) : clock_(clock), created_at_(clock.Now()) {}
MockProvider::~MockProvider() = default;

namespace {

// A hang ends with the call's deadline or cancellation; one with neither ends after this long, so
// that no call hangs for ever.
constexpr std::chrono::minutes kLongestHang{1};

[[noreturn]] void Hang(const Context& ctx, const std::string& what, const std::string& why) {
  ctx.WaitFor(kLongestHang);
  if (ctx.State() == ContextState::kCancelled) {
    throw ProviderError(ErrorCode::kCancelled, what + ": cancelled while the " + why);
  }
  throw ProviderError(ErrorCode::kDeadlineExceeded, what + ": " + why + " until the deadline");
}

}  // namespace

void MockProvider::BeforeCall(const Context& ctx, Operation op, const char* what) {
  ThrowIfDone(ctx, what);
  std::chrono::nanoseconds latency;
  std::optional<ErrorCode> injected;
  CallFault fault;
  {
    std::lock_guard lock(mu_);
    latency = latency_;
    auto it = injected_.find(op);
    if (it != injected_.end() && it->second.first > 0) {
      --it->second.first;
      injected = it->second.second;
    }
    if (planner_) fault = planner_->Next(op, clock_.Now());
  }
  // An engine that is down or throttling answers at once; latency is for the calls it serves.
  if (fault.error) throw ProviderError(*fault.error, std::string(what) + ": " + fault.reason);
  if (fault.hang) Hang(ctx, what, fault.reason);
  latency += fault.latency;
  if (latency.count() > 0 && !ctx.WaitFor(latency)) ThrowIfDone(ctx, what);
  if (injected) {
    throw ProviderError(*injected, std::string(what) + ": injected mock error");
  }
}

void MockProvider::Validate(const Context& ctx, const WorkflowSpec& spec) {
  ThrowIfDone(ctx, "validate");
  if (!spec.definition.is_object()) {
    Invalid(
        "definition: the mock provider expects a JSON object, e.g. {\"steps\":[{\"id\":\"a\"}]}");
  }
  if (auto it = spec.definition.find("steps"); it != spec.definition.end()) {
    if (!it->is_array()) Invalid("definition.steps: expected an array of {\"id\": ...} objects");
    std::set<std::string> seen;
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& s = (*it)[i];
      std::string field = "definition.steps[" + std::to_string(i) + "]";
      if (!s.is_object() || !s.contains("id") || !s["id"].is_string() ||
          s["id"].get<std::string>().empty()) {
        Invalid(field + ": expected an object with a non-empty string \"id\"");
      }
      if (!seen.insert(s["id"].get<std::string>()).second) {
        Invalid(field + ".id: duplicate step id \"" + s["id"].get<std::string>() + "\"");
      }
    }
  }
  OutcomeFromProviderConfig(spec.provider_config);
}

CreateWorkflowResult MockProvider::CreateWorkflow(const Context& ctx, const WorkflowSpec& spec) {
  BeforeCall(ctx, Operation::kCreateWorkflow, "create workflow");
  Validate(ctx, spec);
  auto configured = OutcomeFromProviderConfig(spec.provider_config);
  std::lock_guard lock(mu_);
  auto it = workflows_.find(spec.workflow_id);
  CreateWorkflowResult result{spec.workflow_id, kName, {{"workflow_id", spec.workflow_id}}, {}, ""};
  if (it != workflows_.end()) {
    result.created_at = it->second->created_at;
    result.message = "workflow already exists";
    return result;
  }
  auto state = std::make_unique<WorkflowState>();
  state->spec = spec;
  state->created_at = clock_.Now();
  state->steps = StepIds(spec.definition);
  state->configured = std::move(configured);
  state->faults = FaultsFromProviderConfig(spec.provider_config);
  result.created_at = state->created_at;
  result.message = "workflow created";
  workflows_.emplace(spec.workflow_id, std::move(state));
  return result;
}

ExecutionResult MockProvider::StartExecution(const Context& ctx, const std::string& workflow_id,
                                             ExecutionInput input) {
  BeforeCall(ctx, Operation::kStartExecution, "start execution");
  auto problems = ExecutionInputProblems(input);
  if (!problems.empty()) Invalid("invalid execution input: " + problems.front());
  ApplyStartFaults(ctx, workflow_id, input);

  std::lock_guard lock(mu_);
  if (!input.execution_name.empty()) {
    ++Remember(input.execution_name).start_calls;
    if (start_log_.is_open()) start_log_ << input.execution_name << std::endl;
  }
  auto wf = workflows_.find(workflow_id);
  if (wf == workflows_.end()) {
    throw ProviderError(ErrorCode::kWorkflowNotFound,
                        "workflow \"" + workflow_id + "\" not found in the mock provider");
  }
  std::string name = input.execution_name;
  if (name.empty()) {
    name = "mock-exec-" + std::to_string(++generated_names_);
    ++Remember(name).start_calls;
  }
  if (auto existing = names_.find(name);
      existing != names_.end() && !existing->second.execution_id.empty()) {
    const std::string execution_id = existing->second.execution_id;
    auto it = executions_.find(execution_id);
    if (it == executions_.end()) it = Reconstruct(execution_id);  // forgotten (retention)
    if (it == executions_.end()) {
      throw ProviderError(ErrorCode::kAlreadyExists, "execution name \"" + name +
                                                         "\" is already used by a workflow that "
                                                         "no longer exists");
    }
    const auto& e = *it->second;
    if (e.workflow_id != workflow_id) {
      throw ProviderError(
          ErrorCode::kAlreadyExists,
          "execution name \"" + name + "\" is already used by workflow \"" + e.workflow_id + "\"");
    }
    // Idempotent repeat: report the execution that already exists.
    return ExecutionResult{e.execution_id, workflow_id,  kName,
                           e.state,        e.start_time, "execution already started"};
  }

  auto e = std::make_unique<ExecutionRecord>();
  e->start_time = clock_.Now();
  // The id carries everything needed to rebuild the execution elsewhere (see Reconstruct).
  e->execution_id = "mock:" + workflow_id + ":" + name + ":" +
                    std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       e->start_time.time_since_epoch())
                                       .count());
  e->execution_name = name;
  e->workflow_id = workflow_id;
  e->input = SharedJson(std::move(input.input));
  e->steps = wf->second->steps;
  e->outcome = OutcomeFor(name, workflow_id, *wf->second);
  e->history.push_back({e->start_time, "ExecutionStarted", Json{{"name", name}}});
  if (!e->steps.empty()) {
    e->history.push_back({e->start_time, "StateEntered", StateDetails(e->steps.front())});
  }
  Settle(*e, e->start_time);
  ExecutionResult result{e->execution_id,          workflow_id,   kName,
                         ExecutionState::kRunning, e->start_time, "execution started"};
  Remember(name).execution_id = e->execution_id;
  const TimePoint now = e->start_time;
  Retain(std::move(e), now);
  return result;
}

void MockProvider::Settle(ExecutionRecord& e, TimePoint now) const {
  if (IsTerminal(e.state)) return;
  const Outcome& o = e.outcome;
  if (o.kind == Outcome::Kind::kRunUntilStopped) return;
  TimePoint due = e.start_time + std::chrono::duration_cast<WallClock::duration>(o.delay);
  if (now < due) return;

  // Steps: the first was entered at start; walk the rest up to the end or the failing step.
  size_t failed_index = e.steps.size();
  if (o.kind == Outcome::Kind::kFail) {
    failed_index = 0;
    for (size_t i = 0; i < e.steps.size(); ++i) {
      if (e.steps[i] == o.error.failed_at) failed_index = i;
    }
  }
  for (size_t i = 0; i < e.steps.size(); ++i) {
    if (i > 0) e.history.push_back({due, "StateEntered", StateDetails(e.steps[i])});
    if (i == failed_index) break;
    e.history.push_back({due, "StateExited", StateDetails(e.steps[i])});
  }
  e.stop_time = due;
  if (o.kind == Outcome::Kind::kSucceed) {
    e.state = ExecutionState::kSucceeded;
    e.output = o.output.is_null() ? Json{{"result", "ok"}} : o.output;
    e.history.push_back({due, "ExecutionSucceeded", Json::object()});
  } else {
    e.state = ExecutionState::kFailed;
    e.error = o.error;
    if (e.error->failed_at.empty() && failed_index < e.steps.size()) {
      e.error->failed_at = e.steps[failed_index];
    }
    e.history.push_back(
        {due, "ExecutionFailed", Json{{"error", e.error->code}, {"cause", e.error->message}}});
  }
}

ExecutionStatus MockProvider::StatusOf(const ExecutionRecord& e) const {
  ExecutionStatus s;
  s.execution_id = e.execution_id;
  s.workflow_id = e.workflow_id;
  s.provider_type = kName;
  s.state = e.state;
  s.start_time = e.start_time;
  s.stop_time = e.stop_time;
  s.input = e.input;
  s.output = e.output;
  s.error = e.error;
  s.history = e.history;
  s.metadata = {{"execution_name", e.execution_name}};
  return s;
}

ExecutionStatus MockProvider::GetExecutionStatus(const Context& ctx,
                                                 const std::string& execution_id) {
  BeforeCall(ctx, Operation::kGetExecutionStatus, "get execution status");
  ApplyStatusLatency(ctx, execution_id);
  std::lock_guard lock(mu_);
  auto it = FindOrReconstruct(execution_id);
  if (it == executions_.end()) {
    throw ProviderError(ErrorCode::kExecutionNotFound,
                        "execution \"" + execution_id + "\" not found in the mock provider");
  }
  Settle(*it->second, clock_.Now());
  return StatusOf(*it->second);
}

void MockProvider::StopExecution(const Context& ctx, const std::string& execution_id,
                                 const std::string& reason) {
  BeforeCall(ctx, Operation::kStopExecution, "stop execution");
  std::lock_guard lock(mu_);
  auto it = FindOrReconstruct(execution_id);
  if (it == executions_.end()) {
    throw ProviderError(ErrorCode::kExecutionNotFound,
                        "execution \"" + execution_id + "\" not found in the mock provider");
  }
  ExecutionRecord& e = *it->second;
  TimePoint now = clock_.Now();
  Settle(e, now);
  if (IsTerminal(e.state)) return;  // idempotent; terminal states never change
  e.state = ExecutionState::kCancelled;
  e.stop_time = now;
  e.history.push_back({now, "ExecutionAborted", Json{{"reason", reason}}});
  spdlog::debug("mock execution stopped: execution_id={} reason={}", execution_id, reason);
}

void MockProvider::DeleteWorkflow(const Context& ctx, const std::string& workflow_id) {
  BeforeCall(ctx, Operation::kDeleteWorkflow, "delete workflow");
  std::lock_guard lock(mu_);
  if (!workflows_.contains(workflow_id)) return;  // idempotent
  TimePoint now = clock_.Now();
  for (auto& [id, e] : executions_) {
    if (e->workflow_id != workflow_id) continue;
    Settle(*e, now);
    if (!IsTerminal(e->state)) {
      throw ProviderError(ErrorCode::kFailedPrecondition, "workflow \"" + workflow_id +
                                                              "\" has running executions (e.g. \"" +
                                                              id + "\"); stop them first");
    }
  }
  workflows_.erase(workflow_id);
}

Outcome MockProvider::OutcomeFor(const std::string& name, const std::string& workflow_id,
                                 const WorkflowState& workflow) const {
  if (auto o = execution_outcomes_.find(name); o != execution_outcomes_.end()) return o->second;
  if (auto w = workflow_outcomes_.find(workflow_id); w != workflow_outcomes_.end()) {
    return w->second;
  }
  if (workflow.configured) return *workflow.configured;
  return default_outcome_;
}

void MockProvider::ApplyStartFaults(const Context& ctx, const std::string& workflow_id,
                                    const ExecutionInput& input) {
  const std::string& name = input.execution_name;
  Faults faults;
  int attempt = 0;
  {
    std::lock_guard lock(mu_);
    auto wf = workflows_.find(workflow_id);
    if (wf == workflows_.end()) return;
    faults = wf->second->faults;
    if (faults.start_failures > 0 || faults.start_timeouts > 0) {
      // The caller's own attempt number when it sends one (workflowd does: "start_attempt"), so
      // the fault sequence is the same whichever replica or process makes the attempt.
      auto it = input.input.is_object() ? input.input.find("start_attempt") : input.input.end();
      if (it != input.input.end() && it->is_number_integer()) {
        attempt = it->get<int>();
        // A call repeated at the same attempt (a quick retry, or a start the caller's circuit
        // breaker parked and makes again once the engine answers) goes through, as on an
        // engine that answers again: each attempt's fault is made once per process.
        NameState& state = Remember(name);
        if (attempt == state.faulted_attempt) {
          attempt = 0;
        } else if (attempt <= faults.start_failures + faults.start_timeouts) {
          state.faulted_attempt = attempt;
        }
      } else {
        attempt = ++Remember(name).fault_attempts;
      }
    }
  }
  if (faults.latency.count() > 0 && !ctx.WaitFor(faults.latency))
    ThrowIfDone(ctx, "start execution");
  if (attempt > 0 && attempt <= faults.start_failures) {
    throw ProviderError(ErrorCode::kUnavailable,
                        "start execution: mock engine unavailable (attempt " +
                            std::to_string(attempt) + " of " + name + ")");
  }
  if (attempt > faults.start_failures && attempt <= faults.start_failures + faults.start_timeouts) {
    if (ctx.Deadline()) ctx.WaitFor(*ctx.Remaining());
    throw ProviderError(ErrorCode::kDeadlineExceeded, "start execution: mock engine timed out");
  }
}

void MockProvider::ApplyStatusLatency(const Context& ctx, const std::string& execution_id) {
  std::chrono::nanoseconds latency{0};
  {
    std::lock_guard lock(mu_);
    auto first = execution_id.find(':', 5);
    if (execution_id.rfind("mock:", 0) != 0 || first == std::string::npos) return;
    auto wf = workflows_.find(execution_id.substr(5, first - 5));
    if (wf == workflows_.end()) return;
    latency = wf->second->faults.latency;
  }
  if (latency.count() > 0 && !ctx.WaitFor(latency)) ThrowIfDone(ctx, "get execution status");
}

MockProvider::ExecutionMap::iterator MockProvider::FindOrReconstruct(
    const std::string& execution_id) {
  auto it = executions_.find(execution_id);
  if (it != executions_.end()) return it;
  return Reconstruct(execution_id);
}

MockProvider::ExecutionMap::iterator MockProvider::Retain(std::unique_ptr<ExecutionRecord> e,
                                                          TimePoint now) {
  const auto it = executions_.emplace(e->execution_id, std::move(e)).first;
  retained_order_.push_back(it->first);
  // At most two looked at per call, so that a start's work stays bounded; the ones kept (cancelled
  // or unfinished) go to the back of the line.
  for (int i = 0; i < 2 && executions_.size() > retention_ && !retained_order_.empty(); ++i) {
    std::string oldest = std::move(retained_order_.front());
    retained_order_.pop_front();
    auto old = executions_.find(oldest);
    if (old == executions_.end()) continue;
    ExecutionRecord& r = *old->second;
    Settle(r, now);
    if (old != it && IsTerminal(r.state) && r.state != ExecutionState::kCancelled) {
      executions_.erase(old);  // rebuilt from its id when asked for (its name stays known)
    } else {
      retained_order_.push_back(std::move(oldest));
    }
  }
  return it;
}

MockProvider::ExecutionMap::iterator MockProvider::Reconstruct(const std::string& execution_id) {
  // mock:<workflow_id>:<execution_name>:<start_ms>; workflow ids and names contain no ':'.
  if (execution_id.rfind("mock:", 0) != 0) return executions_.end();
  auto first = execution_id.find(':', 5);
  auto last = execution_id.rfind(':');
  if (first == std::string::npos || last == first) return executions_.end();
  std::string workflow_id = execution_id.substr(5, first - 5);
  std::string name = execution_id.substr(first + 1, last - first - 1);
  int64_t start_ms = 0;
  try {
    start_ms = std::stoll(execution_id.substr(last + 1));
  } catch (const std::exception&) {
    return executions_.end();
  }
  auto wf = workflows_.find(workflow_id);
  if (wf == workflows_.end()) return executions_.end();
  // One this instance started and forgot (retention), or, with reconstruction enabled, one that
  // another instance started under a name unknown here.
  const auto state = names_.find(name);
  const bool known = state != names_.end() && !state->second.execution_id.empty();
  const bool forgotten = known && state->second.execution_id == execution_id;
  if (!forgotten && (known || !reconstruct_)) return executions_.end();
  auto e = std::make_unique<ExecutionRecord>();
  e->execution_id = execution_id;
  e->execution_name = name;
  e->workflow_id = workflow_id;
  e->input = SharedJson(Json::object());
  e->steps = wf->second->steps;
  e->outcome = OutcomeFor(name, workflow_id, *wf->second);
  e->start_time = TimePoint(std::chrono::milliseconds(start_ms));
  e->history.push_back({e->start_time, "ExecutionStarted", Json{{"name", name}}});
  if (!e->steps.empty()) {
    e->history.push_back({e->start_time, "StateEntered", StateDetails(e->steps.front())});
  }
  Remember(name).execution_id = execution_id;
  const TimePoint now = clock_.Now();
  Settle(*e, now);
  return Retain(std::move(e), now);
}

MockProvider::NameState& MockProvider::Remember(const std::string& name) {
  const auto [it, inserted] = names_.try_emplace(name);
  if (!inserted) return it->second;
  // At most two older names looked at per new one, so that a call's work stays bounded; the name
  // of an execution whose record is kept stays known (a repeated start must find it) and goes to
  // the back of the line. Erasing other entries leaves `it` valid.
  for (int i = 0; i < 2 && names_.size() > name_retention_ && !name_order_.empty(); ++i) {
    std::string oldest = std::move(name_order_.front());
    name_order_.pop_front();
    const auto old = names_.find(oldest);
    if (old == names_.end()) continue;
    if (!old->second.execution_id.empty() && executions_.contains(old->second.execution_id)) {
      name_order_.push_back(std::move(oldest));
    } else {
      names_.erase(old);
    }
  }
  name_order_.push_back(name);
  return it->second;
}

void MockProvider::EnableReconstruction(bool enabled) {
  std::lock_guard lock(mu_);
  reconstruct_ = enabled;
}

void MockProvider::SetStartLog(const std::string& path) {
  std::lock_guard lock(mu_);
  start_log_.close();
  start_log_.open(path, std::ios::app);
  if (!start_log_) {
    throw ProviderError(ErrorCode::kInvalidSpec, "mock start log " + path + ": cannot open");
  }
}

void MockProvider::SetDefaultOutcome(Outcome outcome) {
  std::lock_guard lock(mu_);
  default_outcome_ = std::move(outcome);
}

void MockProvider::SetWorkflowOutcome(const std::string& workflow_id, Outcome outcome) {
  std::lock_guard lock(mu_);
  workflow_outcomes_[workflow_id] = std::move(outcome);
}

void MockProvider::SetExecutionOutcome(const std::string& execution_name, Outcome outcome) {
  std::lock_guard lock(mu_);
  execution_outcomes_[execution_name] = std::move(outcome);
}

void MockProvider::SetLatency(std::chrono::nanoseconds latency) {
  std::lock_guard lock(mu_);
  latency_ = latency;
}

void MockProvider::InjectErrors(Operation op, int count, ErrorCode code) {
  std::lock_guard lock(mu_);
  injected_[op] = {count, code};
}

void MockProvider::ChangeMisbehaviour(const std::function<void(Misbehaviour&)>& change) {
  std::lock_guard lock(mu_);
  Misbehaviour m = planner_ ? planner_->misbehaviour() : Misbehaviour{};
  change(m);
  if (auto problems = MisbehaviourProblems(m); !problems.empty()) {
    Invalid("mock misbehaviour: " + problems.front());
  }
  if (!m.Any() && !m.seed) {
    planner_.reset();  // back to the fast path
  } else if (planner_) {
    planner_->Set(std::move(m));
  } else {
    planner_ = std::make_unique<MisbehaviourPlanner>(std::move(m), created_at_);
  }
}

void MockProvider::SetMisbehaviour(Misbehaviour misbehaviour) {
  ChangeMisbehaviour([&](Misbehaviour& m) { m = std::move(misbehaviour); });
}

Misbehaviour MockProvider::GetMisbehaviour() const {
  std::lock_guard lock(mu_);
  return planner_ ? planner_->misbehaviour() : Misbehaviour{};
}

void MockProvider::SetCallLatency(Latency latency) {
  ChangeMisbehaviour([&](Misbehaviour& m) { m.latency = latency; });
}

void MockProvider::SetCallLatency(Operation op, Latency latency) {
  ChangeMisbehaviour(
      [&](Misbehaviour& m) { m.operation_latency.at(static_cast<size_t>(op)) = latency; });
}

void MockProvider::SetHangRatio(double ratio) {
  ChangeMisbehaviour([&](Misbehaviour& m) { m.hang_ratio = ratio; });
}

void MockProvider::SetOutages(std::vector<Outage> outages) {
  ChangeMisbehaviour([&](Misbehaviour& m) { m.outages = std::move(outages); });
}

void MockProvider::SetMaxCallsPerSecond(double calls_per_second) {
  ChangeMisbehaviour([&](Misbehaviour& m) { m.max_calls_per_second = calls_per_second; });
}

void MockProvider::SetSeed(uint64_t seed) {
  ChangeMisbehaviour([&](Misbehaviour& m) { m.seed = seed; });
}

int MockProvider::StartCalls(const std::string& execution_name) const {
  std::lock_guard lock(mu_);
  auto it = names_.find(execution_name);
  return it == names_.end() ? 0 : it->second.start_calls;
}

size_t MockProvider::ExecutionCount() const {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(std::count_if(
      names_.begin(), names_.end(), [](const auto& n) { return !n.second.execution_id.empty(); }));
}

size_t MockProvider::KnownNameCount() const {
  std::lock_guard lock(mu_);
  return names_.size();
}

size_t MockProvider::RetainedCount() const {
  std::lock_guard lock(mu_);
  return executions_.size();
}

void MockProvider::SetRetention(size_t executions) {
  std::lock_guard lock(mu_);
  retention_ = std::max<size_t>(1, executions);
}

void MockProvider::SetNameRetention(size_t names) {
  std::lock_guard lock(mu_);
  name_retention_ = std::max<size_t>(1, names);
}

bool MockProvider::HasWorkflow(const std::string& workflow_id) const {
  std::lock_guard lock(mu_);
  return workflows_.contains(workflow_id);
}

}  // namespace workflowd::providers::mock
