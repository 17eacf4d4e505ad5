// Keeps the matching index current: loads it at start, reloads it when PostgreSQL announces a
// definition change (LISTEN/NOTIFY, debounced) and on a periodic full resync.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "workflowd/common/backoff.hpp"
#include "workflowd/definitions/definition.hpp"
#include "workflowd/matching/definition_index.hpp"
#include "workflowd/pipeline/pipeline_metrics.hpp"
#include "workflowd/store/database.hpp"
#include "workflowd/store/definition_changes.hpp"
#include "workflowd/store/definition_repository.hpp"

namespace workflowd::daemon {

// Converts stored definitions into index entries (only enabled event triggers).
std::shared_ptr<const matching::DefinitionIndex> BuildIndex(
    const std::vector<definitions::WorkflowDefinition>& defs);

// Builds the index from the repository's matchable definitions, streamed (what LoadNow uses).
// Definitions that cannot be loaded (their conditions no longer compile) are left out and, when
// `skipped` is given, listed there.
std::shared_ptr<const matching::DefinitionIndex> LoadIndex(
    store::DefinitionRepository& repo, std::vector<store::SkippedDefinition>* skipped = nullptr);

class IndexRefresher {
 public:
  IndexRefresher(std::string dsn, std::chrono::milliseconds connect_timeout,
                 std::chrono::milliseconds resync_interval, matching::DefinitionIndexHolder& holder,
                 pipeline::PipelineMetrics& metrics);
  ~IndexRefresher();

  // Loads the index once; throws StoreError when the database is unreachable. The first call
  // (before Start) also starts listening for definition changes, so the loop needs no reload of
  // its own right after startup. A stored definition that cannot be loaded is left out of the
  // index (the others load), logged once per id, version and reason, and counted in
  // workflowd_definitions_skipped.
  void LoadNow(const char* cause);
  void Start();
  void Stop() noexcept;
  // False while the last reload failed.
  bool Healthy() const { return healthy_.load(); }

 private:
  void Loop();
  // Logs the definitions a load left out (each once) and sets workflowd_definitions_skipped.
  void ReportSkipped(const std::vector<store::SkippedDefinition>& skipped);
  // Waits until `retry` is due, or less when stopped.
  void WaitUnlessStopped(const Backoff& retry) const;

  std::string dsn_;
  std::chrono::milliseconds resync_interval_;
  store::Database db_;
  matching::DefinitionIndexHolder& holder_;
  pipeline::PipelineMetrics& metrics_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> healthy_{true};
  // The skipped definitions already logged, as of the last load: (id, version, message).
  std::set<std::tuple<std::string, int64_t, std::string>> skipped_logged_;
  // Listening since before the startup load; the loop takes it over.
  std::unique_ptr<store::DefinitionChangeListener> listener_;
  std::thread thread_;  // last: destroyed (joined in Stop) before the members it uses
};

}  // namespace workflowd::daemon
