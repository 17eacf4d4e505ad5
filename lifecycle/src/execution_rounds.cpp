#include "workflowd/lifecycle/execution_rounds.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <string_view>

#include "workflowd/store/errors.hpp"

namespace workflowd::lifecycle {

ExecutionRounds::ExecutionRounds(store::Database& db, WorkflowCatalog& catalog,
                                 LifecycleMetrics& metrics, size_t max_in_flight,
                                 const std::string& lease_owner)
    : executions_(db, lease_owner),
      definitions_db_(db.dsn(), db.connect_timeout()),
      definitions_(definitions_db_),
      catalog_(catalog),
      metrics_(metrics),
      pool_(std::max<size_t>(1, max_in_flight)) {}

std::shared_ptr<const CatalogEntry> ExecutionRounds::Definition(const Context& ctx,
                                                                const std::string& definition_id,
                                                                int64_t version) {
  std::lock_guard lock(definitions_mu_);
  return catalog_.Ensure(ctx, definitions_, definition_id, version);
}

Context ExecutionRounds::BeginRound(std::chrono::milliseconds lease,
                                    std::chrono::milliseconds call_timeout) {
  {
    std::lock_guard lock(unavailable_mu_);
    unavailable_.clear();
  }
  return Context::Background().WithTimeout(RoundCallBudget(lease, call_timeout));
}

bool ExecutionRounds::NoteUnavailable(const InternalError& failure) {
  if (std::string_view(failure.kind) != "database" || !failure.retryable) return false;
  // The database is unavailable: the row is left due (not recorded) and the round ends with a
  // StoreError once the others are recorded, so that the worker's loop backs off.
  std::lock_guard lock(unavailable_mu_);
  if (unavailable_.empty()) unavailable_ = failure.message;
  return true;
}

void ExecutionRounds::EndRound(const std::vector<std::string>& unstorable,
                               const std::vector<std::string>& stale, const char* worker,
                               const char* refused) {
  for (const auto& id : unstorable) {
    metrics_.internal_errors.WithLabels({worker, "unstorable"}).Inc();
    spdlog::error("{}: execution_id={}", refused, id);
  }
  for (const auto& id : stale) {
    metrics_.stale_outcomes.WithLabels({worker}).Inc();
    spdlog::warn(
        "{} outcome dropped: the round's lease on the execution was lost (it expired during the "
        "call and another round took the execution, or the execution changed meanwhile); what "
        "that round recorded stands: execution_id={}",
        worker, id);
  }
  std::string unavailable;
  {
    std::lock_guard lock(unavailable_mu_);
    unavailable.swap(unavailable_);
  }
  if (!unavailable.empty()) throw store::StoreError(unavailable, true);
}

}  // namespace workflowd::lifecycle
