#include "workflowd/lifecycle/execution_dispatcher.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
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

}  // namespace

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
    return out;
  }
  const char* operation = "create_workflow";
  std::shared_ptr<const CatalogEntry> entry;
  try {
    InFlightStart in_flight(metrics_.in_flight.WithLabels({e.tenant_id, e.environment_id}));
    auto ctx = Context::Background().WithTimeout(options_.call_timeout);
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
      auto result = manager_.StartExecution(ctx, e.provider, entry->spec.workflow_id,
                                            InputFor(e, std::move(e.trigger_event)));
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
    Decide(out, e, entry ? entry->definition.retry_policy : definitions::RetryPolicy{},
           err.Retryable());
  } catch (...) {
    // Not the provider's answer: the database, a stored definition that no longer loads, memory
    // or a bug. An internal error of this attempt, recorded on the execution like a provider
    // error; a task on the pool must not throw.
    const InternalError failure = CurrentInternalError();
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
  // Calls begin only while they can end within the earliest of the leases (an offer that waited
  // in the queue for most of its lease is released instead: kNotAttempted).
  const auto budget =
      std::chrono::duration_cast<std::chrono::milliseconds>(expires - now) - options_.call_timeout;
  const Context round_ctx = rounds_.BeginRound(options_.lease, options_.call_timeout)
                                .WithTimeout(std::max(budget, std::chrono::milliseconds(0)));
  round.outcomes.resize(round.executions.size());
  try {
    rounds_.pool().ParallelFor(round.executions.size(), [&](size_t i) {
      round.outcomes[i] = Start(round.executions[i], round_ctx);
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
  size_t taken = RunOffered();
  const TimePoint now = clock_.Now();
  // The fair round finds what no offer names (retries that came due, rows of other replicas or
  // from before a restart, rows inserted unleased while this dispatcher was behind): after offers
  // at least every fair_interval, and at once when the last fair round left rows behind.
  const bool fair = taken == 0 || more_due_ || now - last_fair_round_ >= options_.fair_interval;
  if (!fair) return taken;
  const Context round_ctx = rounds_.BeginRound(options_.lease, options_.call_timeout);
  last_fair_round_ = now;
  metrics_.dispatch_rounds.WithLabels({"fair"}).Inc();
  store::DispatchRound round = rounds_.executions().RunDispatchRound(
      now, options_.lease, options_.batch_size, options_.per_scope_limit,
      [&](std::vector<store::ExecutionRecord>& executions) {
        std::vector<store::DispatchOutcome> outcomes(executions.size());
        rounds_.pool().ParallelFor(
            executions.size(), [&](size_t i) { outcomes[i] = Start(executions[i], round_ctx); });
        return outcomes;
      });
  more_due_ = round.more;
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
