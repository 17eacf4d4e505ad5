// Starts pending executions on their providers. A dispatch round claims a fair batch of due pending
// executions under a lease (at most per_scope_limit per tenant x environment) and commits, or takes
// the executions offered by this replica's event pipeline right after it created them, leased by
// their insert (see Offer); makes sure each one's provider workflow exists and starts it with
// the execution id as the execution name (so a repeated start, after a crash or a lease lost to a
// slow call, is a no-op at the engine), with no transaction open; then records the outcomes where
// the round's lease still holds: running, a retry later with exponential backoff and jitter
// (retryable errors, up to the definition's max_attempts), or failed (permanent errors).
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "workflowd/common/clock.hpp"
#include "workflowd/common/context.hpp"
#include "workflowd/lifecycle/execution_rounds.hpp"
#include "workflowd/lifecycle/lifecycle_metrics.hpp"
#include "workflowd/lifecycle/provider_gate.hpp"
#include "workflowd/lifecycle/workflow_catalog.hpp"
#include "workflowd/store/database.hpp"
#include "workflowd/store/execution_repository.hpp"
#include "workflowd/store/lifecycle_repository.hpp"

namespace workflowd::lifecycle {

// Executions the event pipeline of this replica just committed, leased already by the insert
// (store::PendingLease): the dispatcher starts them from these records, with no claim transaction
// and without reading them back.
struct LeasedOffer {
  std::string lease;  // the token the rows carry
  TimePoint expires_at;
  std::vector<store::ExecutionRecord> executions;  // as inserted: pending, start_attempts 1
};

// The offer of the rows an insert leased (store::ExecutionRepository::InsertPending with `lease`):
// those of `executions` whose flag in `inserted` is set, as a claim would read them.
LeasedOffer OfferOf(const store::PendingLease& lease,
                    const std::vector<store::NewExecution>& executions,
                    const std::vector<bool>& inserted);

struct DispatcherOptions {
  // How long a round's lease on its executions lasts: provider calls begin only while they can end
  // within it (lease - call_timeout), and once it expires (a replica that crashed or hung) another
  // round may claim them; the late outcome of the round that lost them is dropped.
  std::chrono::milliseconds lease{30000};
  std::string lease_owner;  // this replica's name in its leases (empty: <hostname>-<pid>)
  size_t batch_size = 500;
  size_t per_scope_limit = 50;  // per tenant x environment and batch: fair share
  size_t max_in_flight = 16;    // concurrent provider starts in this replica
  std::chrono::milliseconds call_timeout{10000};
  std::chrono::milliseconds first_poll{200};  // first status poll after a start
  // While executions keep being offered, the fair round still runs at least this often: it finds
  // what no offer names (retries that came due, rows of other replicas or from before a restart).
  std::chrono::milliseconds fair_interval{100};
  // The provider whose executions this dispatcher starts (empty: every provider's), and its gate
  // (null: none): then a round claims only as many executions as the gate admits (free start
  // slots, the breaker, the drain rate after an outage), each call takes the gate's call_timeout
  // and quick retries instead of call_timeout above, and a start that fails while the breaker is
  // not closed is parked. The gate outlives the dispatcher.
  std::string provider;
  ProviderGate* gate = nullptr;
  // Without a provider: the providers whose executions this dispatcher leaves to theirs (the
  // daemon's dispatcher of last resort takes only executions of providers that are not enabled,
  // and fails them with provider_not_found).
  std::vector<std::string> other_than;
};

class ExecutionDispatcher {
 public:
  // `jitter` returns values in [0, 1); injectable for tests.
  ExecutionDispatcher(DispatcherOptions options, store::Database& db,
                      const providers::Manager& manager, WorkflowCatalog& catalog,
                      LifecycleMetrics& metrics, const Clock& clock,
                      std::function<double()> jitter);

  // One dispatch step: the queued offers' executions (up to a batch) started and recorded, then,
  // when due, a fair claim-start-record round. Returns how many executions it took (0: nothing
  // due).
  // Throws StoreError when the database is unavailable (also after recording the round's other
  // outcomes, when reading a definition version failed for that reason: those rows stay due, no
  // attempt spent). Any other failure of a start is recorded on its execution as an internal
  // error (retried under the definition's retry policy when retryable, else failed at once) and
  // counted in workflowd_lifecycle_internal_errors_total.
  // Offers cost no claim and no walk over the tenants x environments (whose cost grows with their
  // number); the fair round runs when nothing was offered, when the last fair round may have left
  // due executions behind, or when it is fair_interval old.
  size_t RunOnce();

  // Thread-safe. Executions just committed by this replica's event pipeline, leased to this
  // dispatcher by their insert: the next round starts them (they are not claimable by any other
  // round until their lease expires). Past a few batches queued (the dispatcher is behind), an
  // offer is not kept: its rows are released by the next round (due again, for the fair rounds).
  // Rows whose lease would end before a call could (queued too long) are released, not started.
  void Offer(LeasedOffer offer);
  // Thread-safe. Whether an offer would be kept now (the pipeline then leases the rows it inserts
  // to this dispatcher; else it inserts them unleased, for the fair rounds).
  bool WantsOffers() const;
  // Releases the rows of every offer still queued (at shutdown, so that other replicas or the
  // next start take them at once instead of after their lease). Never throws.
  void ReleaseOffers() noexcept;
  // Whether the last round may have left due executions behind (its batch was full, or a tenant x
  // environment gave its whole share, or offers are queued): then the next round should run at
  // once.
  bool MoreDue() const;

 private:
  // Gives up e.trigger_event (moved into the provider input). Never throws but for a failure
  // while handling a failure (memory).
  // `probe`: this start is the half-open breaker's probe call.
  store::DispatchOutcome Start(store::ExecutionRecord& e, const Context& round, bool probe = false);
  // The engine call of a start, repeated at once on a retryable error while the gate's
  // retry_attempts and the call's deadline allow.
  providers::ExecutionResult StartAtEngine(const Context& ctx, store::ExecutionRecord& e,
                                           const std::string& workflow_id);
  // A start that failed for the engine's outage while its breaker is not closed: parked.
  // A failed probe's execution goes to the back of the queue (next attempt after the breaker's
  // interval): the next probe is another execution, so that one whose own calls keep failing
  // (its input, a definition the engine refuses for a while) cannot hold the breaker open.
  void Park(store::DispatchOutcome& out, const store::ExecutionRecord& e,
            const providers::ProviderError& err, bool probe) const;
  // A failed attempt (out.at and out.error set): a retry after a backoff while `retryable` and the
  // policy allows another attempt, else failed.
  void Decide(store::DispatchOutcome& out, const store::ExecutionRecord& e,
              const definitions::RetryPolicy& policy, bool retryable);
  // The deadline of one call: the provider gate's, else call_timeout.
  std::chrono::milliseconds CallTimeout() const;
  // Starts the executions of queued offers (at most a batch, as many as the provider's gate
  // admits; the rest are released) and records their outcomes.
  size_t RunOffered();
  // A start whose outcome was dropped as stale: when the execution was cancelled meanwhile (the
  // start outlived its lease, and a cancel took the row), the engine's execution is stopped
  // (best effort, logged). When another round took the row over, it is left to that round.
  void StopIfCancelled(const store::ExecutionRecord& e, const store::DispatchOutcome& o);
  // Counts and logs a recorded round's outcomes, ends it (ExecutionRounds::EndRound).
  void Account(const store::DispatchRound& round);

  DispatcherOptions options_;
  const providers::Manager& manager_;
  LifecycleMetrics& metrics_;
  const Clock& clock_;
  std::function<double()> jitter_;
  std::mutex jitter_mu_;
  std::atomic<bool> more_due_ = false;
  mutable std::mutex offered_mu_;
  std::deque<LeasedOffer> offered_;  // offered_mu_
  size_t offered_rows_ = 0;          // offered_mu_: the executions in offered_
  // offered_mu_: rows of offers not kept, with their tokens, released by the next round.
  std::vector<std::string> to_release_, to_release_leases_;
  TimePoint last_fair_round_{};
  ExecutionRounds rounds_;  // last: its pool stops before the members the starts use go
};

}  // namespace workflowd::lifecycle
