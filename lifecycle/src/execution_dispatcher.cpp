#include "workflowd/lifecycle/execution_dispatcher.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "workflowd/lifecycle/policy.hpp"
#include "workflowd/store/errors.hpp"

namespace workflowd::lifecycle {

using Json = nlohmann::json;

LeasedOffer OfferOf(const store::PendingLease& lease,
                    const std::vector<store::NewExecution>& executions,
                    const std::vector<bool>& inserted) {
  LeasedOffer offer;
  offer.lease = lease.owner;
  offer.expires_at = lease.expires_at;
  for (size_t i = 0; i < executions.size() && i < inserted.size(); ++i) {
    if (!inserted[i]) continue;
    const store::NewExecution& n = executions[i];
    store::ExecutionRecord e;
    e.id = n.id;
    e.tenant_id = n.tenant_id;
    e.environment_id = n.environment_id;
    e.workflow_id = n.workflow_id;
    e.workflow_name = n.workflow_name;
    e.definition_version = n.definition_version;
    e.provider = n.provider;
    e.trigger_type = n.trigger_type;
    e.trigger_event_id = n.trigger_event_id;
    e.trigger_event = n.trigger_event;
    e.status = "pending";
    e.start_attempts = 1;  // the attempt about to be made, as a claim reads it
    e.created_at = lease.leased_at;
    offer.executions.push_back(std::move(e));
  }
  return offer;
}

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

std::vector<std::string> IdsOf(const std::vector<store::ExecutionRecord>& executions) {
  std::vector<std::string> ids;
  ids.reserve(executions.size());
  for (const auto& e : executions) ids.push_back(e.id);
  return ids;
}

// The start slots a round took from its provider's gate: each start gives its own back when its
// call ended (so another loop may use it while this round's slowest call runs), the rest are
// given back with the round, whichever way it ends. Executions claimed beyond the reserved slots
// (ProviderGate::Prefetch) take a slot of the gate's when their turn comes (AcquireStart).
class RoundSlots {
 public:
  RoundSlots(ProviderGate* gate, size_t reserved) : gate_(gate), reserved_(reserved) {}
  ~RoundSlots() {
    if (gate_ && reserved_ > taken_) gate_->ReleaseStart(reserved_ - taken_);
  }
  RoundSlots(const RoundSlots&) = delete;
  RoundSlots& operator=(const RoundSlots&) = delete;
  // The claim took `claimed` executions: the slots reserved beyond them are given back at once,
  // not held while the round's calls run. Before any Take.
  void Claimed(size_t claimed) {
    if (!gate_ || claimed >= reserved_) return;
    gate_->ReleaseStart(reserved_ - claimed);
    reserved_ = claimed;
  }
  // A slot for one call: a reserved one, else one of the gate's, waiting for it while `wait` is
  // not done (false: none, the execution is not started). Each slot taken is given back by
  // CallEnded.
  bool Take(const Context& wait) {
    if (!gate_) return true;
    size_t taken = taken_.load();
    while (taken < reserved_) {
      if (taken_.compare_exchange_weak(taken, taken + 1)) return true;
    }
    return gate_->AcquireStart(wait);
  }
  void CallEnded() {
    if (gate_) gate_->ReleaseStart();
  }

 private:
  ProviderGate* gate_;
  size_t reserved_;
  std::atomic<size_t> taken_{0};
};

store::DispatchOutcome NotAttempted(const std::string& id) {
  store::DispatchOutcome out;
  out.id = id;
  out.kind = store::DispatchOutcome::Kind::kNotAttempted;
  return out;
}

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
                               const providers::ProviderError& err, bool probe) const {
  out.kind = store::DispatchOutcome::Kind::kParked;
  // Kept in its place (next_at before any time: the row's own next attempt stands), but for a
  // failed probe.
  out.next_at = probe ? out.at + options_.gate->limits().breaker_open_interval : TimePoint{};
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

store::DispatchOutcome ExecutionDispatcher::Start(store::ExecutionRecord& e, const Context& round,
                                                  bool probe) {
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
  std::optional<SteadyClock::time_point> began;  // the engine call's, when timed for the gate
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
      if (options_.gate) began = options_.gate->Now();
      // The record's trigger event moves into the input: the round needs it no more.
      auto result = StartAtEngine(ctx, e, entry->spec.workflow_id);
      if (options_.gate) {
        options_.gate->NoteCallTime(*began);
        options_.gate->Succeeded();
      }
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
      if (began) options_.gate->NoteCallTime(*began);
      // An outage counts toward the breaker; any other answer (the definition's own failure) is
      // the engine working.
      if (!err.Retryable()) {
        options_.gate->Succeeded();
      } else if (options_.gate->Failed() != CircuitState::kClosed) {
        Park(out, e, err, probe);
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

void ExecutionDispatcher::Offer(LeasedOffer offer) {
  if (offer.executions.empty()) return;
  std::lock_guard lock(offered_mu_);
  if (offered_rows_ < 4 * options_.batch_size) {
    offered_rows_ += offer.executions.size();
    offered_.push_back(std::move(offer));
    return;
  }
  // Behind by a few batches: the fair rounds take over (they claim the oldest due rows first,
  // fairly), so this offer's rows are released rather than queued without bound.
  for (const auto& e : offer.executions) {
    to_release_.push_back(e.id);
    to_release_leases_.push_back(offer.lease);
  }
}

bool ExecutionDispatcher::WantsOffers() const {
  // Only while the provider answers as usual: during an outage, its probe and the drain after it,
  // new executions wait with the parked ones and start in the fair rounds' order.
  if (options_.gate != nullptr && !options_.gate->Steady()) return false;
  std::lock_guard lock(offered_mu_);
  return offered_rows_ < 4 * options_.batch_size;
}

bool ExecutionDispatcher::MoreDue() const {
  if (more_due_) return true;
  std::lock_guard lock(offered_mu_);
  return !offered_.empty() || !to_release_.empty();
}

void ExecutionDispatcher::ReleaseOffers() noexcept {
  std::vector<std::string> ids, leases;
  {
    std::lock_guard lock(offered_mu_);
    ids.swap(to_release_);
    leases.swap(to_release_leases_);
    for (const auto& offer : offered_) {
      for (const auto& e : offer.executions) {
        ids.push_back(e.id);
        leases.push_back(offer.lease);
      }
    }
    offered_.clear();
    offered_rows_ = 0;
  }
  try {
    rounds_.executions().Release(ids, leases);
  } catch (const std::exception& e) {
    // Their leases expire instead: another round takes them then.
    spdlog::warn("could not release the leases of {} offered executions: {}", ids.size(), e.what());
  }
}

std::chrono::milliseconds ExecutionDispatcher::CallTimeout() const {
  return options_.gate != nullptr ? options_.gate->limits().call_timeout : options_.call_timeout;
}

size_t ExecutionDispatcher::RunOffered() {
  std::vector<LeasedOffer> offers;
  std::vector<std::string> release_ids, release_leases;
  {
    std::lock_guard lock(offered_mu_);
    release_ids.swap(to_release_);
    release_leases.swap(to_release_leases_);
    size_t rows = 0;
    // Whole offers, up to about a batch: an offer is one committed event batch.
    while (!offered_.empty() &&
           (rows == 0 || rows + offered_.front().executions.size() <= options_.batch_size)) {
      rows += offered_.front().executions.size();
      offered_rows_ -= offered_.front().executions.size();
      offers.push_back(std::move(offered_.front()));
      offered_.pop_front();
    }
  }
  if (!release_ids.empty()) rounds_.executions().Release(release_ids, release_leases);
  if (offers.empty()) return 0;
  metrics_.dispatch_rounds.WithLabels({"offered"}).Inc();
  const TimePoint now = clock_.Now();
  store::DispatchRound round;
  TimePoint expires = offers.front().expires_at;
  for (auto& offer : offers) {
    expires = std::min(expires, offer.expires_at);
    for (auto& e : offer.executions) {
      round.executions.push_back(std::move(e));
      round.leases.push_back(offer.lease);
    }
  }
  // What the provider admits now (free start slots, the breaker, the drain rate after an outage,
  // and for a steady provider as many more as its slots start within a moment: they wait for a
  // slot): the offered rows beyond it are released, due again for the fair rounds, which take them
  // in fair order as slots free up.
  bool probe = false;
  const size_t admitted = options_.gate != nullptr
                              ? options_.gate->AdmitStarts(round.executions.size(), &probe)
                              : round.executions.size();
  const size_t kept =
      options_.gate != nullptr
          ? admitted + options_.gate->Prefetch(admitted, round.executions.size() - admitted)
          : admitted;
  RoundSlots slots(options_.gate, admitted);
  // Calls begin only while they can end within the earliest of the leases (an offer that waited
  // in the queue for most of its lease is released instead: kNotAttempted).
  const auto budget =
      std::chrono::duration_cast<std::chrono::milliseconds>(expires - now) - CallTimeout();
  const Context round_ctx = rounds_.BeginRound(options_.lease, CallTimeout())
                                .WithTimeout(std::max(budget, std::chrono::milliseconds(0)));
  const Context slot_wait = round_ctx.WithTimeout(ProviderGate::kPrefetchWait);
  round.outcomes.resize(round.executions.size());
  for (size_t i = kept; i < round.executions.size(); ++i) {
    round.outcomes[i] = NotAttempted(round.executions[i].id);
  }
  try {
    rounds_.pool().ParallelFor(kept, [&](size_t i) {
      if (!slots.Take(slot_wait)) {
        round.outcomes[i] = NotAttempted(round.executions[i].id);
        return;
      }
      round.outcomes[i] = Start(round.executions[i], round_ctx, probe && i == 0);
      slots.CallEnded();
    });
  } catch (...) {
    try {
      rounds_.executions().Release(IdsOf(round.executions), round.leases);
    } catch (const store::StoreError&) {
      // The database is unavailable: the leases expire instead.
    }
    throw;
  }
  rounds_.executions().RecordDispatch(round);
  Account(round);
  return static_cast<size_t>(std::count_if(
      round.outcomes.begin(), round.outcomes.end(),
      [](const auto& o) { return o.kind != store::DispatchOutcome::Kind::kNotAttempted; }));
}

size_t ExecutionDispatcher::RunOnce() {
  const size_t taken = RunOffered();
  const TimePoint now = clock_.Now();
  // The fair round finds what no offer holds (retries that came due, rows of other replicas or
  // from before a restart, rows inserted unleased while this dispatcher was behind, parked rows
  // once the provider answers again): after offers at least every fair_interval, and at once when
  // the last fair round left rows behind.
  const bool fair = taken == 0 || more_due_ || now - last_fair_round_ >= options_.fair_interval;
  if (!fair) return taken;
  const Context round_ctx = rounds_.BeginRound(options_.lease, CallTimeout());
  // What the provider admits now: with no slot free the loop waits for one (a bounded, real-time
  // wait) and runs again; with the breaker open it sleeps like an idle loop.
  bool probe = false;
  const size_t admitted = options_.gate != nullptr
                              ? options_.gate->AdmitStarts(options_.batch_size, &probe)
                              : options_.batch_size;
  RoundSlots slots(options_.gate, admitted);
  if (admitted == 0) {
    // Every slot busy: run again as soon as one is free (waiting at most fair_interval). The
    // breaker open, or the drain rate after an outage holding starts back: sleep like an idle
    // loop.
    more_due_ = options_.gate->state() == CircuitState::kClosed && !options_.gate->SlotFree() &&
                options_.gate->WaitForSlot(options_.fair_interval);
    return taken;
  }
  last_fair_round_ = now;
  // A steady provider's claim takes more than its free slots when they start them within a
  // moment (ProviderGate::Prefetch): those wait in the round for a slot.
  const size_t claim =
      options_.gate != nullptr
          ? admitted + options_.gate->Prefetch(admitted, options_.batch_size - admitted)
          : admitted;
  metrics_.dispatch_rounds.WithLabels({"fair"}).Inc();
  const Context slot_wait = round_ctx.WithTimeout(ProviderGate::kPrefetchWait);
  store::DispatchRound round = rounds_.executions().RunDispatchRound(
      now, options_.lease, claim, options_.per_scope_limit,
      [&](std::vector<store::ExecutionRecord>& executions) {
        slots.Claimed(executions.size());
        std::vector<store::DispatchOutcome> outcomes(executions.size());
        rounds_.pool().ParallelFor(executions.size(), [&](size_t i) {
          if (!slots.Take(slot_wait)) {
            outcomes[i] = NotAttempted(executions[i].id);
            return;
          }
          outcomes[i] = Start(executions[i], round_ctx, probe && i == 0);
          slots.CallEnded();
        });
        return outcomes;
      },
      options_.provider, options_.other_than);
  more_due_ = round.more || (claim < options_.batch_size && round.executions.size() >= claim);
  if (probe && round.executions.empty()) options_.gate->ProbeNotMade();  // nothing to probe with
  Account(round);
  return taken + round.executions.size();
}

void ExecutionDispatcher::StopIfCancelled(const store::ExecutionRecord& e,
                                          const store::DispatchOutcome& o) {
  try {
    const auto now = rounds_.executions().Get(e.tenant_id, e.environment_id, e.id);
    if (!now || now->status != "cancelled") return;  // another round's: that round follows it
    manager_.StopExecution(Context::Background().WithTimeout(options_.call_timeout), e.provider,
                           o.provider_execution_id,
                           "the execution was cancelled while its start was in flight");
    spdlog::info(
        "execution stopped at the engine: it was cancelled while its start was in flight (the "
        "start outlived its lease): tenant={} environment={} execution_id={} provider={} "
        "provider_execution_id={}",
        e.tenant_id, e.environment_id, e.id, e.provider, o.provider_execution_id);
  } catch (const std::exception& err) {
    spdlog::warn(
        "execution cancelled while its start was in flight could not be stopped at the engine "
        "(it may run to its end there): tenant={} environment={} execution_id={} provider={} "
        "provider_execution_id={} error={}",
        e.tenant_id, e.environment_id, e.id, e.provider, o.provider_execution_id, err.what());
  }
}

void ExecutionDispatcher::Account(const store::DispatchRound& round) {
  const auto& leased = round.executions;
  const auto& outcomes = round.outcomes;
  std::set<std::string> not_as_decided(round.unstorable.begin(), round.unstorable.end());
  not_as_decided.insert(round.stale.begin(), round.stale.end());
  const std::set<std::string> stale(round.stale.begin(), round.stale.end());
  for (size_t i = 0; i < leased.size(); ++i) {
    const auto& e = leased[i];
    const auto& o = outcomes[i];
    // A start that outlived its lease into a cancel: the engine's execution has nobody to
    // follow it, so it is stopped.
    if (o.kind == store::DispatchOutcome::Kind::kStarted && stale.contains(e.id)) {
      StopIfCancelled(e, o);
    }
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
}

}  // namespace workflowd::lifecycle
