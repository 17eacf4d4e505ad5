// Brings running executions' progress into PostgreSQL. One RunOnce() is one poll round: it claims
// the running executions whose next poll is due under a lease (committed at once), asks each
// provider for its status with no transaction open, and merges it (where the lease still holds)
// by these rules: the spec never changes, terminal states never change, only real
// changes are written (steps when different, history entries once). An execution past its
// definition's timeout is stopped at the provider and becomes timed_out. Each execution is polled
// again after an adaptive interval: fast while young, slower for long-running ones.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <string>

#include "workflowd/common/clock.hpp"
#include "workflowd/common/context.hpp"
#include "workflowd/lifecycle/execution_rounds.hpp"
#include "workflowd/lifecycle/lifecycle_metrics.hpp"
#include "workflowd/lifecycle/policy.hpp"
#include "workflowd/lifecycle/provider_gate.hpp"
#include "workflowd/lifecycle/workflow_catalog.hpp"
#include "workflowd/store/database.hpp"
#include "workflowd/store/lifecycle_repository.hpp"

namespace workflowd::lifecycle {

struct PollerOptions {
  // How long a round's lease on its executions lasts (as DispatcherOptions::lease).
  std::chrono::milliseconds lease{30000};
  std::string lease_owner;  // this replica's name in its leases (empty: <hostname>-<pid>)
  size_t batch_size = 500;
  size_t max_in_flight = 16;
  std::chrono::milliseconds call_timeout{10000};
  std::chrono::milliseconds min_interval{200};
  std::chrono::milliseconds max_interval{30000};
  // Poll an open execution whose history did not change ever more rarely (UnchangedPollInterval):
  // for engines where each poll is a call to a shared cluster (Temporal).
  bool back_off_while_unchanged = false;
  // Polls yield to starts: while every start slot of the provider's gate was in use within the
  // last second (a burst of new executions saturates the engine's share of this replica), a round
  // polls only executions whose poll has been due for at least this long. For engines whose
  // status reads take the capacity starts need (Temporal's cluster): new work goes first, and no
  // poll waits longer than this past its time. 0 (or no gate): polls never wait.
  std::chrono::milliseconds yield_to_starts{0};
  // Spread: each next poll is the adaptive interval times a factor in [1 - jitter, 1 + jitter]
  // drawn from `random` (values in [0, 1)), so that executions started together do not poll
  // together forever, nor all at once after a restart. 0 (or no `random`): no spread.
  double jitter = 0;
  std::function<double()> random;
  // The provider whose executions this poller polls (empty: every provider's), and its gate (null:
  // none): then a round claims only as many executions as the gate admits (none while the
  // breaker is open: the rows keep their next_poll_at; at most polls_per_second), each call takes
  // the gate's call_timeout, and failed polls count toward the breaker. The gate outlives the
  // poller.
  std::string provider;
  ProviderGate* gate = nullptr;
};

class StatusPoller {
 public:
  StatusPoller(PollerOptions options, store::Database& db, const providers::Manager& manager,
               WorkflowCatalog& catalog, LifecycleMetrics& metrics, const Clock& clock);

  // One claim-poll-record round. Returns how many executions were polled. A failed poll leaves its
  // execution running, polled again after the usual interval (its deadline still applies); one
  // that is not the provider's (an answer that cannot be handled, memory, a bug) is also recorded
  // as the execution's error and counted in workflowd_lifecycle_internal_errors_total. Throws
  // StoreError when the database is unavailable (also after recording the others, when reading a
  // definition version failed for that reason: those rows stay due).
  size_t RunOnce();
  // Whether the last round's batch was full (more polls may be due): then the next round should
  // run at once.
  bool MoreDue() const { return more_due_; }

 private:
  // nullopt when the round's time is up before the call, or the database is unavailable. Never
  // throws but for a failure while handling a failure (memory).
  std::optional<store::PollOutcome> Poll(const store::ExecutionRecord& e, const Context& round);
  // `out` turned into "still running, poll again at out.next_poll_at", with `error` stored.
  static store::PollOutcome KeepRunning(const store::ExecutionRecord& e, store::PollOutcome out,
                                        nlohmann::json error);

  PollerOptions options_;
  const providers::Manager& manager_;
  LifecycleMetrics& metrics_;
  const Clock& clock_;
  // The adaptive interval spread by options_.jitter.
  std::chrono::milliseconds Spread(std::chrono::milliseconds interval);

  bool more_due_ = false;
  std::mutex random_mu_;    // options_.random is called from the pool's threads
  ExecutionRounds rounds_;  // last: its pool stops before the members the polls use go
};

}  // namespace workflowd::lifecycle
