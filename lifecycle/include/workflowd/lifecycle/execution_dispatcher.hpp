// Starts pending executions on their providers. One RunOnce() is one dispatch round: it claims a
// fair batch of due pending executions under a lease (at most per_scope_limit per tenant x
// environment), or the executions offered by this replica's event pipeline right after it created
// them (see Offer), and commits; makes sure each one's provider workflow exists and starts it with
// the execution id as the execution name (so a repeated start, after a crash or a lease lost to a
// slow call, is a no-op at the engine), with no transaction open; then records the outcomes where
// the round's lease still holds: running, a retry later with exponential backoff and jitter
// (retryable errors, up to the definition's max_attempts), or failed (permanent errors).
#pragma once

#include <chrono>
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
#include "workflowd/store/lifecycle_repository.hpp"

namespace workflowd::lifecycle {

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

  // One claim-start-record round. Returns how many executions it took (0: nothing due).
  // Throws StoreError when the database is unavailable (also after recording the round's other
  // outcomes, when reading a definition version failed for that reason: those rows stay due, no
  // attempt spent). Any other failure of a start is recorded on its execution as an internal
  // error (retried under the definition's retry policy when retryable, else failed at once) and
  // counted in workflowd_lifecycle_internal_errors_total.
  // The round takes the offered executions by id (no walk over the tenants x environments, whose
  // cost grows with their number) unless the last round may have left due executions behind,
  // nothing was offered, or the last fair round is fair_interval old: then it is the fair round,
  // and the offers are dropped (they are pending rows that it finds).
  size_t RunOnce();

  // Thread-safe. Ids of executions just committed as pending by this replica, for the next round.
  // Hints only: an id that is unknown, already taken or no longer due is skipped, and one that is
  // dropped is found by a fair round; nothing depends on an offer for correctness.
  void Offer(std::vector<std::string> ids);
  // Whether the last round may have left due executions behind (its batch was full, or a tenant x
  // environment gave its whole share): then the next round should run at once.
  bool MoreDue() const { return more_due_; }

 private:
  // Gives up e.trigger_event (moved into the provider input). Never throws but for a failure
  // while handling a failure (memory).
  store::DispatchOutcome Start(store::ExecutionRecord& e, const Context& round);
  // The engine call of a start, repeated at once on a retryable error while the gate's
  // retry_attempts and the call's deadline allow.
  providers::ExecutionResult StartAtEngine(const Context& ctx, store::ExecutionRecord& e,
                                           const std::string& workflow_id);
  // A start that failed for the engine's outage while its breaker is not closed: parked.
  void Park(store::DispatchOutcome& out, const store::ExecutionRecord& e,
            const providers::ProviderError& err) const;
  // A failed attempt (out.at and out.error set): a retry after a backoff while `retryable` and the
  // policy allows another attempt, else failed.
  void Decide(store::DispatchOutcome& out, const store::ExecutionRecord& e,
              const definitions::RetryPolicy& policy, bool retryable);

  DispatcherOptions options_;
  const providers::Manager& manager_;
  LifecycleMetrics& metrics_;
  const Clock& clock_;
  std::function<double()> jitter_;
  std::mutex jitter_mu_;
  bool more_due_ = false;
  std::mutex offered_mu_;
  std::vector<std::string> offered_;
  TimePoint last_fair_round_{};
  ExecutionRounds rounds_;  // last: its pool stops before the members the starts use go
};

}  // namespace workflowd::lifecycle
