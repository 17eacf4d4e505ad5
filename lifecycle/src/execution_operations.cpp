#include "workflowd/lifecycle/execution_operations.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "workflowd/common/ids.hpp"
#include "workflowd/common/utf8.hpp"
#include "workflowd/store/definition_repository.hpp"
#include "workflowd/store/lifecycle_repository.hpp"

namespace workflowd::lifecycle {
namespace {

// How long a cancel waits for a round that holds the execution's lease (a round's calls end
// within its lease, 30 s by default; after that the lease expires), and how often it looks.
constexpr std::chrono::seconds kRoundWait{60};
constexpr std::chrono::milliseconds kRoundWaitStep{10};

}  // namespace

ExecutionOperations::ExecutionOperations(store::Database& db, const providers::Manager& manager,
                                         const Clock& clock)
    : db_(db), manager_(manager), clock_(clock) {}

CancelResult ExecutionOperations::Cancel(const std::string& tenant, const std::string& environment,
                                         const std::string& execution_id,
                                         const std::string& reason) {
  store::LifecycleRepository repo(db_);
  auto e = repo.Get(tenant, environment, execution_id);
  if (!e)
    throw OperationError(OperationError::Kind::kNotFound,
                         "execution " + execution_id + " not found");
  // A round holding the execution's lease is starting or polling it: the cancel waits for that
  // round's outcome (or the lease's expiry) and then acts on the state the round wrote, so that
  // the cancel is never overwritten by the round nor the round's answer dropped for the cancel.
  const auto give_up = std::chrono::steady_clock::now() + kRoundWait;
  const auto wait_for_round = [&] {
    if (std::chrono::steady_clock::now() >= give_up) {
      throw OperationError(OperationError::Kind::kUnavailable,
                           "execution " + execution_id +
                               " is still being started or polled by another round; try again");
    }
    std::this_thread::sleep_for(kRoundWaitStep);
  };
  while (e->status == "pending") {
    if (repo.CancelPending(tenant, environment, execution_id, reason, clock_.Now())) {
      return {"cancelled", true};
    }
    if (repo.Leased(tenant, environment, execution_id, clock_.Now())) wait_for_round();
    e = repo.Get(tenant, environment, execution_id);  // it may have started meanwhile
  }
  if (e->status != "running") return {e->status, false};
  try {
    manager_.StopExecution(Context::Background().WithTimeout(std::chrono::seconds(10)), e->provider,
                           e->provider_execution_id, reason);
  } catch (const providers::ProviderError& err) {
    if (err.code() != providers::ErrorCode::kExecutionNotFound) {
      throw OperationError(OperationError::Kind::kUnavailable,
                           std::string("the provider could not stop the execution: ") + err.what());
    }
  } catch (const std::exception& err) {
    // Not the provider's answer (one our side could not handle, or a bug): the execution stays
    // running and the caller is told, as when the provider is unavailable.
    spdlog::error(
        "execution cancel failed with an internal error: tenant={} environment={} "
        "execution_id={} error={}",
        tenant, environment, execution_id, err.what());
    throw OperationError(
        OperationError::Kind::kUnavailable,
        "the execution could not be stopped (internal error): " + SanitizeUtf8(err.what()));
  }
  bool changed = false;
  auto after = e;
  while (!(changed = repo.MarkCancelled(tenant, environment, execution_id, reason, clock_.Now()))) {
    if (repo.Leased(tenant, environment, execution_id, clock_.Now())) {
      wait_for_round();  // a poll round holds it: the state it records decides
      continue;
    }
    // The round that held it has recorded and let it go: still running (its poll answered before
    // the stop), the cancel is marked now; ended meanwhile, that end stands.
    after = repo.Get(tenant, environment, execution_id);
    if (!after || after->status != "running") break;
  }
  after = repo.Get(tenant, environment, execution_id);
  spdlog::info("execution cancel: tenant={} environment={} execution_id={} reason={} status={}",
               tenant, environment, execution_id, reason, after->status);
  return {after->status, changed};
}

std::string ExecutionOperations::Retry(const std::string& tenant, const std::string& environment,
                                       const std::string& execution_id) {
  store::LifecycleRepository repo(db_);
  auto e = repo.Get(tenant, environment, execution_id);
  if (!e)
    throw OperationError(OperationError::Kind::kNotFound,
                         "execution " + execution_id + " not found");
  auto id = repo.Retry(tenant, environment, execution_id, NewId("ex_", clock_.Now()), clock_.Now());
  if (!id) {
    throw OperationError(OperationError::Kind::kConflict,
                         "execution " + execution_id + " is " + e->status +
                             "; only failed, timed_out or cancelled executions can be retried");
  }
  spdlog::info("execution retried: tenant={} environment={} execution_id={} new_execution_id={}",
               tenant, environment, execution_id, *id);
  return *id;
}

DeleteResult ExecutionOperations::DeleteDefinition(const std::string& tenant,
                                                   const std::string& environment,
                                                   const std::string& definition_id, bool force,
                                                   const std::string& actor) {
  store::DefinitionRepository definitions(db_);
  if (!definitions.Get(tenant, environment, definition_id)) {
    throw OperationError(OperationError::Kind::kNotFound,
                         "definition " + definition_id + " not found");
  }
  store::LifecycleRepository repo(db_);
  DeleteResult result;
  auto active = repo.ActiveOfDefinition(tenant, environment, definition_id);
  if (!active.empty() && !force) {
    throw OperationError(OperationError::Kind::kConflict,
                         "definition " + definition_id + " has " + std::to_string(active.size()) +
                             " pending or running execution(s); cancel them or delete with force");
  }
  for (const auto& e : active) {
    auto r =
        Cancel(tenant, environment, e.id, "definition " + definition_id + " deleted by " + actor);
    if (r.changed) ++result.cancelled_executions;
  }
  definitions.MarkDeleted(tenant, environment, definition_id, actor);
  return result;
}

}  // namespace workflowd::lifecycle
