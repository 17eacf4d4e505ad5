// Keeps the matching index current: loads it at start, reloads it when PostgreSQL announces a
// definition change (LISTEN/NOTIFY, debounced) and on a periodic full resync.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "pipeline_metrics.hpp"
#include "workflowd/definitions/definition.hpp"
#include "workflowd/matching/definition_index.hpp"
#include "workflowd/store/database.hpp"

namespace workflowd::daemon {

// Converts stored definitions into index entries (only enabled event triggers).
std::shared_ptr<const matching::DefinitionIndex> BuildIndex(
    const std::vector<definitions::WorkflowDefinition>& defs);

class IndexRefresher {
 public:
  IndexRefresher(std::string dsn, std::chrono::milliseconds connect_timeout,
                 std::chrono::milliseconds resync_interval, matching::DefinitionIndexHolder& holder,
                 PipelineMetrics& metrics);
  ~IndexRefresher();

  // Loads the index once; throws StoreError when the database is unreachable.
  void LoadNow(const char* cause);
  void Start();
  void Stop() noexcept;
  // False while the last reload failed.
  bool Healthy() const { return healthy_.load(); }

 private:
  void Loop();

  std::string dsn_;
  std::chrono::milliseconds resync_interval_;
  store::Database db_;
  matching::DefinitionIndexHolder& holder_;
  PipelineMetrics& metrics_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> healthy_{true};
  std::thread thread_;  // last: destroyed (joined in Stop) before the members it uses
};

}  // namespace workflowd::daemon
