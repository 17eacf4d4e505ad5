#include "workflowd/lifecycle/status_poller.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <string_view>
#include <utility>

#include "workflowd/lifecycle/policy.hpp"
#include "workflowd/store/errors.hpp"

namespace workflowd::lifecycle {

using Json = nlohmann::json;

StatusPoller::StatusPoller(PollerOptions options, store::Database& db,
                           const providers::Manager& manager, WorkflowCatalog& catalog,
                           LifecycleMetrics& metrics, const Clock& clock)
    : options_(std::move(options)),
      manager_(manager),
      metrics_(metrics),
      clock_(clock),
      rounds_(db, catalog, metrics, options_.max_in_flight, options_.lease_owner) {}

std::chrono::milliseconds StatusPoller::Spread(std::chrono::milliseconds interval) {
  if (options_.jitter <= 0 || !options_.random) return interval;
  double r;
  {
    std::lock_guard lock(random_mu_);
    r = options_.random();
  }
  const double factor = 1.0 - options_.jitter + 2.0 * options_.jitter * r;
  return std::chrono::milliseconds(
      static_cast<int64_t>(static_cast<double>(interval.count()) * factor));
}

std::optional<store::PollOutcome> StatusPoller::Poll(const store::ExecutionRecord& e,
                                                     const Context& round) {
  if (round.Done()) {
    // The round's time is up: polled in the next one.
    if (options_.gate) options_.gate->ProbeNotMade();
    return std::nullopt;
  }
  auto ctx = Context::Background().WithTimeout(options_.gate ? options_.gate->limits().call_timeout
                                                             : options_.call_timeout);
  TimePoint now = clock_.Now();
  TimePoint started = e.started_at.value_or(e.created_at);
  auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - started);
  const auto interval = PollInterval(age, options_.min_interval, options_.max_interval);
  store::PollOutcome out;
  out.id = e.id;
  out.next_poll_at = now + Spread(interval);
  const char* operation = "create_workflow";
  try {
    std::vector<std::string> steps;
    try {
      auto entry = rounds_.Definition(ctx, e.workflow_id, e.definition_version);
      if (entry) steps = entry->step_order;
    } catch (const providers::ProviderError&) {
      throw;
    } catch (...) {
      const InternalError failure = CurrentInternalError();
      metrics_.internal_errors.WithLabels({"poll", failure.kind}).Inc();
      if (rounds_.NoteUnavailable(failure)) return std::nullopt;
      // The status is still polled without the definition's step order (its steps are then left
      // as they are): the execution's own state must not wait for a definition that no longer
      // loads.
      spdlog::warn(
          "status poll without steps, the definition version could not be loaded: tenant={} "
          "environment={} execution_id={} definition_id={} version={} kind={} error={}",
          e.tenant_id, e.environment_id, e.id, e.workflow_id, e.definition_version, failure.kind,
          failure.message);
    }
    operation = "get_execution_status";
    auto status = manager_.GetExecutionStatus(ctx, e.provider, e.provider_execution_id);
    if (options_.gate) options_.gate->Succeeded();
    std::string state(providers::ToString(status.state));
    if (!providers::IsTerminal(status.state) && e.deadline_at && now >= *e.deadline_at) {
      // The definition's timeout passed: stop it at the engine, then it is timed out here.
      operation = "stop_execution";
      manager_.StopExecution(ctx, e.provider, e.provider_execution_id,
                             "timeout: the workflow definition allows " +
                                 std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                    *e.deadline_at - started)
                                                    .count()) +
                                 "s");
      metrics_.timeouts.Inc();
      status = manager_.GetExecutionStatus(ctx, e.provider, e.provider_execution_id);
      state = "timed_out";
      status.stop_time = status.stop_time.value_or(now);
      status.error = providers::ExecutionError{"Timeout", "execution exceeded its timeout", "", ""};
    } else if (status.state == providers::ExecutionState::kPending) {
      state = "running";  // started at the engine: it is running for us
    }
    out.status = state;
    bool terminal = state != "running";
    if (!status.output.is_null()) out.output = status.output;
    if (status.error) out.error = providers::ToJson(*status.error);
    if (terminal) out.completed_at = status.stop_time.value_or(now);
    out.steps = DeriveSteps(steps, status, state);
    // Only the entries not stored yet: the row counts what earlier polls stored.
    out.history = HistoryRows(status, e.history_count);
    out.history_count = std::max(e.history_count, static_cast<int>(status.history.size()));
    if (options_.back_off_while_unchanged && !terminal &&
        static_cast<int>(status.history.size()) <= e.history_count) {
      out.next_poll_at =
          now + Spread(UnchangedPollInterval(interval, e.poll_count, options_.min_interval,
                                             options_.max_interval));
    }
    return out;
  } catch (const providers::ProviderError& err) {
    if (options_.gate) {
      // An outage counts toward the breaker; any other answer is the engine working.
      if (err.Retryable()) {
        options_.gate->Failed();
      } else {
        options_.gate->Succeeded();
      }
    }
    metrics_.provider_errors.WithLabels({e.provider, operation, providers::ToString(err.code())})
        .Inc();
    if (std::string(operation) == "get_execution_status") {
      metrics_.poll_errors.WithLabels({e.provider}).Inc();
    }
    spdlog::warn(
        "status poll failed: tenant={} environment={} execution_id={} operation={} "
        "code={} error={}",
        e.tenant_id, e.environment_id, e.id, operation, providers::ToString(err.code()),
        err.what());
    if (err.Retryable()) {
      // The engine throttles or is unavailable: polled again later than usual, so that a
      // throttling engine's running executions do not poll it all the faster for it.
      out.next_poll_at = now + Spread(FailedPollInterval(interval, options_.max_interval));
    }
    // Keep it running and poll again later; its deadline still applies.
    return KeepRunning(e, std::move(out), e.error);
  } catch (...) {
    // Not the provider's answer (an answer our side could not handle, memory, a bug): counted,
    // logged and recorded on the execution, which stays running and is polled again after the
    // usual interval, like after a failed poll. A task on the pool must not throw.
    const InternalError failure = CurrentInternalError();
    if (options_.gate) options_.gate->ProbeNotMade();  // no answer of the engine's
    metrics_.internal_errors.WithLabels({"poll", failure.kind}).Inc();
    if (rounds_.NoteUnavailable(failure)) return std::nullopt;
    spdlog::error(
        "status poll failed with an internal error: tenant={} environment={} execution_id={} "
        "operation={} kind={} error={}",
        e.tenant_id, e.environment_id, e.id, operation, failure.kind, failure.message);
    Json error = ErrorJson(failure);
    error["operation"] = operation;
    return KeepRunning(e, std::move(out), std::move(error));
  }
}

store::PollOutcome StatusPoller::KeepRunning(const store::ExecutionRecord& e,
                                             store::PollOutcome out, Json error) {
  out.status = "running";
  out.completed_at.reset();
  out.steps.clear();
  out.history.clear();
  out.history_count = e.history_count;
  out.output = e.output;
  out.error = std::move(error);
  return out;
}

namespace {
// How recently every start slot must have been in use for polls to yield to starts.
constexpr std::chrono::milliseconds kStartsSaturatedWithin{1000};
}  // namespace

size_t StatusPoller::RunOnce() {
  const Context round_ctx = rounds_.BeginRound(
      options_.lease, options_.gate ? options_.gate->limits().call_timeout : options_.call_timeout);
  // The breaker open (the rows keep their next_poll_at) or no poll token left: nothing this round.
  bool probe = false;
  const size_t admitted =
      options_.gate ? options_.gate->AdmitPolls(options_.batch_size, &probe) : options_.batch_size;
  if (admitted == 0) {
    more_due_ = false;
    return 0;
  }
  // A burst of starts fills the provider's slots: only the polls overdue by yield_to_starts go.
  const TimePoint now = clock_.Now();
  const bool may_yield = options_.gate && options_.yield_to_starts.count() > 0;
  auto yielding = [&] {
    return may_yield && options_.gate->StartsSaturated(kStartsSaturatedWithin);
  };
  std::optional<TimePoint> due_by;
  if (yielding()) {
    due_by = now - options_.yield_to_starts;
    options_.gate->NotePollsYielded();
  }
  auto round = rounds_.executions().RunPollRound(
      now, options_.lease, admitted,
      [&](const std::vector<store::ExecutionRecord>& executions) {
        std::vector<std::optional<store::PollOutcome>> polled(executions.size());
        rounds_.pool().ParallelFor(executions.size(), [&](size_t i) {
          // A burst of starts that began during the round: the polls not overdue enough are
          // left due (polled again once the burst is over).
          const auto& e = executions[i];
          if (!due_by && e.next_poll_at && *e.next_poll_at > now - options_.yield_to_starts &&
              yielding()) {
            if (probe) options_.gate->ProbeNotMade();  // the half-open breaker's, if this was it
            return;
          }
          polled[i] = Poll(e, round_ctx);
        });
        std::vector<store::PollOutcome> outcomes;
        for (auto& p : polled) {
          if (p) outcomes.push_back(std::move(*p));
        }
        return outcomes;
      },
      options_.provider, due_by);
  const auto& leased = round.executions;
  const auto& outcomes = round.outcomes;
  const auto& transitions = round.transitions;
  if (options_.gate) {
    options_.gate->ReturnPolls(admitted - std::min(admitted, leased.size()));
    if (probe && leased.empty()) options_.gate->ProbeNotMade();  // nothing to probe with
  }
  // A full batch, or polls left for the next round when this one ran out of time.
  more_due_ = leased.size() >= admitted || outcomes.size() < leased.size();
  rounds_.EndRound(round.unstorable, round.stale, "poll",
                   "status poll outcome refused by the database, recorded without the engine's "
                   "output, steps and history");
  if (leased.empty()) return 0;
  std::map<std::string, const store::ExecutionRecord*> by_id;
  for (const auto& e : leased) by_id[e.id] = &e;
  std::map<std::string, const store::PollOutcome*> outcome_by_id;
  for (const auto& o : outcomes) outcome_by_id[o.id] = &o;
  for (const auto& [id, state] : transitions) {
    const auto& e = *by_id.at(id);
    metrics_.transitions.WithLabels({e.provider, state}).Inc();
    const auto* o = outcome_by_id.at(id);
    if (o->completed_at && e.started_at) {
      metrics_.duration.WithLabels({e.provider, state})
          .Observe(std::chrono::duration<double>(*o->completed_at - *e.started_at).count());
    }
    // One line per execution at thousands per second: a success is logged at debug (counted in
    // workflowd_execution_transitions_total), the other ends at info.
    spdlog::log(state == "succeeded" ? spdlog::level::debug : spdlog::level::info,
                "execution {}: tenant={} environment={} definition_id={} execution_id={}", state,
                e.tenant_id, e.environment_id, e.workflow_id, e.id);
  }
  return leased.size();
}

}  // namespace workflowd::lifecycle
