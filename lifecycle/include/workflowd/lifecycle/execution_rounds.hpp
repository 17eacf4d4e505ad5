// What the execution dispatcher's and the status poller's rounds share: the lifecycle repository
// a round claims its executions in (leases named after this replica), the definition versions read
// on a connection of their own, the worker pool the provider calls run on, and the end of a round
// (executions whose outcome the database refused, or whose outcome was dropped because the round's
// lease on them was lost, counted and logged; "the database is unavailable", noted by a call during
// the round and raised once the round's other outcomes are recorded).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "workflowd/common/context.hpp"
#include "workflowd/common/worker_pool.hpp"
#include "workflowd/lifecycle/lifecycle_metrics.hpp"
#include "workflowd/lifecycle/policy.hpp"
#include "workflowd/lifecycle/workflow_catalog.hpp"
#include "workflowd/store/database.hpp"
#include "workflowd/store/definition_repository.hpp"
#include "workflowd/store/lifecycle_repository.hpp"

namespace workflowd::lifecycle {

class ExecutionRounds {
 public:
  // `max_in_flight`: the pool's threads, how many provider calls run at once (at least one).
  // `lease_owner`: this replica's name in its leases (empty: <hostname>-<pid>).
  ExecutionRounds(store::Database& db, WorkflowCatalog& catalog, LifecycleMetrics& metrics,
                  size_t max_in_flight, const std::string& lease_owner = "");

  store::LifecycleRepository& executions() { return executions_; }
  WorkerPool& pool() { return pool_; }

  // The definition version as a provider workflow (WorkflowCatalog::Ensure), read on the
  // definitions' connection, which one thread uses at a time. Thread-safe.
  std::shared_ptr<const CatalogEntry> Definition(const Context& ctx,
                                                 const std::string& definition_id, int64_t version);

  // Begins a round: forgets what the last one noted. Returns the context whose deadline the
  // round's provider calls must begin before (RoundCallBudget).
  Context BeginRound(std::chrono::milliseconds lease, std::chrono::milliseconds call_timeout);

  // True (and remembered for the end of the round) when `failure` means the database is
  // unavailable: the row is then left due, not recorded. Thread-safe.
  bool NoteUnavailable(const InternalError& failure);

  // Ends a round: counts each execution whose outcome the database refused in
  // workflowd_lifecycle_internal_errors_total (`worker`, "unstorable") and logs it as
  // "<refused>: execution_id=<id>"; counts each whose outcome was dropped as stale (the round's
  // lease on it was lost) in workflowd_lifecycle_stale_outcomes_total (`worker`) and logs it; then
  // throws a retryable StoreError when a call of the round noted the database unavailable, so
  // that the worker's loop backs off.
  void EndRound(const std::vector<std::string>& unstorable, const std::vector<std::string>& stale,
                const char* worker, const char* refused);

 private:
  store::LifecycleRepository executions_;
  // Definition versions are read on a connection of their own: the provider calls run on the
  // pool's threads, while the round's thread may use the other one.
  store::Database definitions_db_;
  store::DefinitionRepository definitions_;
  std::mutex definitions_mu_;  // the repository's connection is used by one thread at a time
  WorkflowCatalog& catalog_;
  LifecycleMetrics& metrics_;
  std::mutex unavailable_mu_;
  std::string unavailable_;  // unavailable_mu_: why this round's database reads failed, if they did
  WorkerPool pool_;          // last: its threads stop before the members its tasks use go
};

}  // namespace workflowd::lifecycle
