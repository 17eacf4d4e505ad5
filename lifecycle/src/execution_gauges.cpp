#include "workflowd/lifecycle/execution_gauges.hpp"

namespace workflowd::lifecycle {

void ExecutionGauges::Sample() {
  auto scopes = executions_.PendingByScope(clock_.Now());
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& [tenant, env, count] : scopes) {
    metrics_.queued.WithLabels({tenant, env}).Set(static_cast<double>(count));
    seen.insert({tenant, env});
  }
  // Scopes with nothing queued any more read 0 rather than a stale value.
  for (const auto& scope : previous_scopes_) {
    if (!seen.contains(scope)) metrics_.queued.WithLabels({scope.first, scope.second}).Set(0);
  }
  previous_scopes_ = std::move(seen);
  // Terminal states are counted with a scan of the whole table: once a minute, not every sample.
  auto now = std::chrono::steady_clock::now();
  bool terminal = now >= next_terminal_count_;
  if (terminal) next_terminal_count_ = now + std::chrono::seconds(60);
  for (const auto& [state, count] : executions_.CountByStatus(terminal)) {
    metrics_.by_state.WithLabels({state}).Set(static_cast<double>(count));
  }
}

}  // namespace workflowd::lifecycle
