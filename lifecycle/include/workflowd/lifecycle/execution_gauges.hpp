// The database-wide execution gauges: executions queued for dispatch per tenant x environment
// (workflowd_executions_queued) and executions by state (workflowd_executions). Sampled by a loop
// of their own, on a connection of their own: counting terminal states scans the whole executions
// table, which must not hold up a dispatch or poll round.
#pragma once

#include <chrono>
#include <set>
#include <string>
#include <utility>

#include "workflowd/common/clock.hpp"
#include "workflowd/lifecycle/lifecycle_metrics.hpp"
#include "workflowd/store/database.hpp"
#include "workflowd/store/lifecycle_repository.hpp"

namespace workflowd::lifecycle {

class ExecutionGauges {
 public:
  ExecutionGauges(store::Database& db, LifecycleMetrics& metrics, const Clock& clock)
      : executions_(db), metrics_(metrics), clock_(clock) {}

  // Sets both gauges: queued per tenant x environment (a scope with nothing queued any more reads
  // 0), pending and running every call, the terminal states at most once a minute. Throws
  // StoreError when the database is unavailable.
  void Sample();

 private:
  store::LifecycleRepository executions_;
  LifecycleMetrics& metrics_;
  const Clock& clock_;
  std::set<std::pair<std::string, std::string>> previous_scopes_;
  std::chrono::steady_clock::time_point next_terminal_count_{};
};

}  // namespace workflowd::lifecycle
