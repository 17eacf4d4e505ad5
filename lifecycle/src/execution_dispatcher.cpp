#include "workflowd/lifecycle/execution_dispatcher.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <string_view>
#include <utility>

#include "workflowd/lifecycle/policy.hpp"
#include "workflowd/store/errors.hpp"

namespace workflowd::lifecycle {

using Json = nlohmann::json;

ExecutionDispatcher::ExecutionDispatcher(DispatcherOptions options, store::Database& db,
                                         const providers::Manager& manager,
                                         WorkflowCatalog& catalog, LifecycleMetrics& metrics,
                                         const Clock& clock, std::function<double()> jitter)
    : options_(std::move(options)),
      manager_(manager),
      metrics_(metrics),
      clock_(clock),
      jitter_(std::move(jitter)),
      rounds_(db, catalog, metrics, options_.max_in_flight, options_.lease_owner) {}

namespace {

// One provider start on the in-flight gauge for as long as it lives, however the start ends.
class InFlightStart {
 public:
  explicit InFlightStart(metrics::Gauge& gauge) : gauge_(gauge) { gauge_.Inc(); }
  ~InFlightStart() { gauge_.Dec(); }
  InFlightStart(const InFlightStart&) = delete;
  InFlightStart& operator=(const InFlightStart&) = delete;

 private:
  metrics::Gauge& gauge_;
};

// The start slots a round took from its provider's gate: each start gives its own back when its
// call ended (so another loop may use it while this round's slowest call runs), the rest are
// given back with the round, whichever way it ends.
class RoundSlots {
 public:
  RoundSlots(ProviderGate* gate, size_t reserved) : gate_(gate), reserved_(reserved) {}
  ~RoundSlots() {
    if (gate_ && reserved_ > used_) gate_->ReleaseStart(reserved_ - used_);
  }
  RoundSlots(const RoundSlots&) = delete;
  RoundSlots& operator=(const RoundSlots&) = delete;
  // The claim took `claimed` executions: the slots reserved beyond them are given back at once,
  // not held while the round's calls run.
  void Claimed(size_t claimed) {
    if (!gate_ || claimed >= reserved_) return;
    gate_->ReleaseStart(reserved_ - claimed);
    reserved_ = claimed;
  }
  void CallEnded() {
    if (!gate_) return;
    ++used_;
    gate_->ReleaseStart();
  }

 private:
  ProviderGate* gate_;
  size_t reserved_;
  std::atomic<size_t> used_{0};
};

}  // namespace

providers::ExecutionResult ExecutionDispatcher::StartAtEngine(const Context& ctx,
                                                              store::ExecutionRecord& e,
                                                              const std::string& workflow_id) {
  const size_t attempts = options_.gate ? options_.gate->limits().retry_attempts : 1;
  auto backoff =
      options_.gate ? options_.gate->limits().retry_initial_backoff : std::chrono::milliseconds(0);
  for (size_t attempt = 1;; ++attempt) {
    try {
      // The trigger event is copied while the call may be repeated, moved into the last one.
      return manager_.StartExecution(
          ctx, e.provider, workflow_id,
          InputFor(e, attempt < attempts ? e.trigger_event : std::move(e.trigger_event)));
    } catch (const providers::ProviderError& err) {
      if (!err.Retryable() || attempt >= attempts || !ctx.WaitFor(backoff)) throw;
      options_.gate->NoteQuickRetry();
      backoff = std::min(backoff * 2, options_.gate->limits().retry_max_backoff);
    }
  }
}

void ExecutionDispatcher::Park(store::DispatchOutcome& out, const store::ExecutionRecord& e,
                               const providers::ProviderError& err) const {
  out.kind = store::DispatchOutcome::Kind::kParked;
  out.error = {{"code", "engine_unavailable"},
               {"parked", true},
               {"provider", e.provider},
               {"message", "parked, waiting for the engine: provider " + e.provider +
                               " is unavailable (its circuit breaker is open); the start is "
                               "made when it answers again, without spending an attempt"},
               {"last_error", ErrorJson(err)}};
  options_.gate->NoteParked();
}

void ExecutionDispatcher::Decide(store::DispatchOutcome& out, const store::ExecutionRecord& e,
                                 const definitions::RetryPolicy& policy, bool retryable) {
  if (retryable && MayRetryStart(policy, e.start_attempts)) {
    double j;
    {
      std::lock_guard lock(jitter_mu_);
      j = jitter_();
    }
    out.kind = store::DispatchOutcome::Kind::kRetry;
    out.next_at = out.at + StartRetryDelay(policy, e.start_attempts, j);
    out.error["attempts"] = e.start_attempts;
  } else {
    out.kind = store::DispatchOutcome::Kind::kFailed;
    if (retryable) out.error["attempts"] = e.start_attempts;
  }
}

store::DispatchOutcome ExecutionDispatcher::Start(store::ExecutionRecord& e, const Context& round) {
  store::DispatchOutcome out;
  out.id = e.id;
  if (round.Done()) {
    // The round's time is up: the row is left as it was, due for the next round.
    out.kind = store::DispatchOutcome::Kind::kNotAttempted;
    if (options_.gate) options_.gate->ProbeNotMade();
    return out;
  }
  const char* operation = "create_workflow";
  std::shared_ptr<const CatalogEntry> entry;
  try {
    InFlightStart in_flight(metrics_.in_flight.WithLabels({e.tenant_id, e.environment_id}));
    auto ctx = Context::Background().WithTimeout(
        options_.gate ? options_.gate->limits().call_timeout : options_.call_timeout);
    entry = rounds_.Definition(ctx, e.workflow_id, e.definition_version);
    out.at = clock_.Now();
    if (!entry) {
      out.kind = store::DispatchOutcome::Kind::kFailed;
      out.error = {{"code", "definition_not_found"},
                   {"message", "definition " + e.workflow_id + " version " +
                                   std::to_string(e.definition_version) + " does not exist"}};
    } else {
      operation = "start_execution";
      // The record's trigger event moves into the input: the round needs it no more.
      auto result = StartAtEngine(ctx, e, entry->spec.workflow_id);
      if (options_.gate) options_.gate->Succeeded();
      out.at = clock_.Now();
      out.kind = store::DispatchOutcome::Kind::kStarted;
      out.provider_execution_id = result.execution_id;
      out.next_at = out.at + options_.first_poll;
      if (entry->definition.timeout_seconds > 0) {
        out.deadline_at = out.at + std::chrono::seconds(entry->definition.timeout_seconds);
      }
    }
  } catch (const providers::ProviderError& err) {
    out.at = clock_.Now();
    out.provider_execution_id.clear();
    out.deadline_at.reset();
    metrics_.provider_errors.WithLabels({e.provider, operation, providers::ToString(err.code())})
        .Inc();
    out.error = ErrorJson(err);
    if (options_.gate) {
      // An outage counts toward the breaker; any other answer (the definition's own failure) is
      // the engine working.
      if (!err.Retryable()) {
        options_.gate->Succeeded();
      } else if (options_.gate->Failed() != CircuitState::kClosed) {
        Park(out, e, err);
        return out;
      }
    }
    Decide(out, e, entry ? entry->definition.retry_policy : definitions::RetryPolicy{},
           err.Retryable());
  } catch (...) {
    // Not the provider's answer: the database, a stored definition that no longer loads, memory
    // or a bug. An internal error of this attempt, recorded on the execution like a provider
    // error; a task on the pool must not throw.
    const InternalError failure = CurrentInternalError();
    if (options_.gate) options_.gate->ProbeNotMade();  // no answer of the engine's
    out.at = clock_.Now();
    out.provider_execution_id.clear();
    out.deadline_at.reset();
    metrics_.internal_errors.WithLabels({"dispatch", failure.kind}).Inc();
    spdlog::error(
        "execution start failed with an internal error: tenant={} environment={} "
        "execution_id={} definition_id={} version={} operation={} kind={} retryable={} error={}",
        e.tenant_id, e.environment_id, e.id, e.workflow_id, e.definition_version, operation,
        failure.kind, failure.retryable, failure.message);
    if (rounds_.NoteUnavailable(failure)) {
      // The database is unavailable: an outage pauses the work instead of burning the
      // execution's attempts. The row is left due and the round ends with a StoreError once
      // the other outcomes are recorded (the dispatch loop then backs off).
      out.kind = store::DispatchOutcome::Kind::kNotAttempted;
      return out;
    }
    out.error = ErrorJson(failure);
    out.error["operation"] = operation;
    Decide(out, e, entry ? entry->definition.retry_policy : definitions::RetryPolicy{},
           failure.retryable);
  }
  return out;
}

void ExecutionDispatcher::Offer(std::vector<std::string> ids) {
  std::lock_guard lock(offered_mu_);
  // Bounded: past a few batches the fair rounds take over anyway (the dispatcher is behind).
  if (offered_.size() >= 4 * options_.batch_size) return;
  if (offered_.empty()) {
    offered_ = std::move(ids);
  } else {
    offered_.insert(offered_.end(), std::make_move_iterator(ids.begin()),
                    std::make_move_iterator(ids.end()));
  }
}

size_t ExecutionDispatcher::RunOnce() {
  const std::chrono::milliseconds call_timeout =
      options_.gate ? options_.gate->limits().call_timeout : options_.call_timeout;
  const Context round_ctx = rounds_.BeginRound(options_.lease, call_timeout);
  // What the provider admits now: with no slot free the loop waits for one (a bounded, real-time
  // wait) and runs again; with the breaker open it sleeps like an idle loop.
  bool probe = false;
  const size_t admitted =
      options_.gate ? options_.gate->AdmitStarts(options_.batch_size, &probe) : options_.batch_size;
  RoundSlots slots(options_.gate, admitted);
  if (admitted == 0) {
    // Every slot busy: run again as soon as one is free (waiting at most fair_interval). The
    // breaker open, or the drain rate after an outage holding starts back: sleep like an idle
    // loop. The offers stay for the next round.
    more_due_ = options_.gate->state() == CircuitState::kClosed && !options_.gate->SlotFree() &&
                options_.gate->WaitForSlot(options_.fair_interval);
    return 0;
  }
  std::vector<std::string> offered;
  {
    std::lock_guard lock(offered_mu_);
    offered.swap(offered_);
  }
  const TimePoint now = clock_.Now();
  const bool fair =
      offered.empty() || more_due_ || now - last_fair_round_ >= options_.fair_interval;
  const auto start = [&](std::vector<store::ExecutionRecord>& executions) {
    slots.Claimed(executions.size());
    std::vector<store::DispatchOutcome> outcomes(executions.size());
    rounds_.pool().ParallelFor(executions.size(), [&](size_t i) {
      outcomes[i] = Start(executions[i], round_ctx);
      slots.CallEnded();
    });
    return outcomes;
  };
  store::DispatchRound round;
  if (fair) {
    last_fair_round_ = now;
    metrics_.dispatch_rounds.WithLabels({"fair"}).Inc();
    round = rounds_.executions().RunDispatchRound(now, options_.lease, admitted,
                                                  options_.per_scope_limit, start,
                                                  options_.provider, options_.other_than);
    round.more =
        round.more || (admitted < options_.batch_size && round.executions.size() >= admitted);
  } else {
    metrics_.dispatch_rounds.WithLabels({"offered"}).Inc();
    // More than a batch offered: the rest is left to the next round, a fair one.
    const bool left_over = offered.size() > options_.batch_size;
    if (left_over) offered.resize(options_.batch_size);
    round = rounds_.executions().RunDispatchRoundFor(offered, now, options_.lease, start,
                                                     options_.provider, admitted);
    round.more = left_over || (admitted < offered.size() && round.executions.size() >= admitted);
  }
  more_due_ = round.more;
  const auto& leased = round.executions;
  if (probe && leased.empty()) options_.gate->ProbeNotMade();  // nothing to probe with
  const auto& outcomes = round.outcomes;
  std::set<std::string> not_as_decided(round.unstorable.begin(), round.unstorable.end());
  not_as_decided.insert(round.stale.begin(), round.stale.end());
  for (size_t i = 0; i < leased.size(); ++i) {
    const auto& e = leased[i];
    const auto& o = outcomes[i];
    // Recorded otherwise (unstorable), or dropped (stale): counted and logged by EndRound.
    if (not_as_decided.contains(e.id)) continue;
    switch (o.kind) {
      case store::DispatchOutcome::Kind::kStarted:
        metrics_.dispatch_attempts.WithLabels({"started"}).Inc();
        metrics_.transitions.WithLabels({e.provider, "running"}).Inc();
        metrics_.start_latency.Observe(std::chrono::duration<double>(o.at - e.created_at).count());
        spdlog::debug(
            "execution started: tenant={} environment={} definition_id={} "
            "execution_id={} provider={} provider_execution_id={}",
            e.tenant_id, e.environment_id, e.workflow_id, e.id, e.provider,
            o.provider_execution_id);
        break;
      case store::DispatchOutcome::Kind::kRetry:
        metrics_.dispatch_attempts.WithLabels({"retry"}).Inc();
        spdlog::info(
            "execution start will be retried: tenant={} environment={} execution_id={} "
            "attempt={} error={}",
            e.tenant_id, e.environment_id, e.id, e.start_attempts, o.error.value("message", ""));
        break;
      case store::DispatchOutcome::Kind::kNotAttempted:
        more_due_ = true;  // still due: the next round takes it at once
        break;
      case store::DispatchOutcome::Kind::kParked:
        // Counted in workflowd_lifecycle_parked_total; the breaker logs its change of state once.
        spdlog::debug(
            "execution start parked: tenant={} environment={} execution_id={} provider={}",
            e.tenant_id, e.environment_id, e.id, e.provider);
        break;
      case store::DispatchOutcome::Kind::kFailed:
        metrics_.dispatch_attempts.WithLabels({"failed"}).Inc();
        metrics_.transitions.WithLabels({e.provider, "failed"}).Inc();
        spdlog::warn(
            "execution failed to start: tenant={} environment={} execution_id={} "
            "error={}",
            e.tenant_id, e.environment_id, e.id,
            o.error.dump(-1, ' ', false, Json::error_handler_t::replace));
        break;
    }
  }
  rounds_.EndRound(round.unstorable, round.stale, "dispatch",
                   "execution start outcome refused by the database, recorded without it");
  return leased.size();
}

}  // namespace workflowd::lifecycle
