#include "index_refresher.hpp"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <map>

#include "workflowd/store/definition_changes.hpp"
#include "workflowd/store/definition_repository.hpp"

namespace workflowd::daemon {

std::shared_ptr<const matching::DefinitionIndex> BuildIndex(
    const std::vector<definitions::WorkflowDefinition>& defs) {
  matching::IndexEntries entries;
  entries.reserve(defs.size());
  for (const auto& d : defs) {
    if (!d.enabled || d.trigger.type != definitions::TriggerType::kEvent || !d.id) continue;
    matching::IndexEntry e;
    e.definition_id = *d.id;
    e.version = d.version;
    e.name = d.name;
    e.provider = d.provider;
    e.tenant_id = d.tenant_id;
    e.environment_id = d.environment_id;
    e.event_name = d.trigger.event_name;
    e.condition = d.trigger.compiled_conditions;
    entries.push_back(std::move(e));
  }
  return std::make_shared<const matching::DefinitionIndex>(
      matching::DefinitionIndex::FromEntries(std::move(entries)));
}

IndexRefresher::IndexRefresher(std::string dsn, std::chrono::milliseconds connect_timeout,
                               std::chrono::milliseconds resync_interval,
                               matching::DefinitionIndexHolder& holder,
                               pipeline::PipelineMetrics& metrics)
    : dsn_(std::move(dsn)),
      resync_interval_(resync_interval),
      db_(dsn_, connect_timeout),
      holder_(holder),
      metrics_(metrics) {}

IndexRefresher::~IndexRefresher() { Stop(); }

std::shared_ptr<const matching::DefinitionIndex> LoadIndex(
    store::DefinitionRepository& repo, std::vector<store::SkippedDefinition>* skipped) {
  return matching::BuildIndex([&](const auto& add) { repo.ForEachMatchable(add); }, skipped);
}

void IndexRefresher::LoadNow(const char* cause) {
  try {
    if (!thread_.joinable() && !listener_) {
      // Before the first load, so that a change committed while it runs is notified to the
      // loop, which then does not need to reload right after startup to be sure not to have
      // missed one. Without a connection now the loop connects later and reloads then.
      auto listener = std::make_unique<store::DefinitionChangeListener>(dsn_);
      try {
        listener->Wait(std::chrono::milliseconds(0));  // connects and issues the LISTEN
        listener_ = std::move(listener);
      } catch (const store::StoreError& e) {
        spdlog::warn("definition change listener: {}", e.what());
      }
    }
    store::DefinitionRepository repo(db_);
    auto started = std::chrono::steady_clock::now();
    std::vector<store::SkippedDefinition> skipped;
    auto index = LoadIndex(repo, &skipped);
    ReportSkipped(skipped);
    size_t before = holder_.Get()->size();
    holder_.Set(index);
    // The load's transient allocations (row batches, parsed conditions, the previous index once
    // its last reader lets go) are free again: give the pages back instead of keeping them as
    // the process's high-water mark.
    malloc_trim(0);
    metrics_.definitions_loaded.Set(static_cast<double>(index->size()));
    metrics_.definition_refreshes.WithLabels({cause}).Inc();
    healthy_ = true;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - started)
                  .count();
    if (index->size() != before || std::string(cause) != "resync") {
      spdlog::info("matching index loaded: {} definitions ({}, {} ms)", index->size(), cause, ms);
    }
  } catch (const store::StoreError& e) {
    healthy_ = false;
    metrics_.database_errors.WithLabels({"load_definitions"}).Inc();
    throw;
  }
}

void IndexRefresher::ReportSkipped(const std::vector<store::SkippedDefinition>& skipped) {
  std::map<std::string, double> by_reason;
  for (const char* reason : {"condition", "document"}) by_reason[reason] = 0;
  std::set<std::tuple<std::string, int64_t, std::string>> logged;
  for (const auto& d : skipped) {
    ++by_reason[d.reason];
    auto key = std::make_tuple(d.id, d.version, d.message);
    // Once per definition version and reason, not at every reload (a resync every few minutes).
    if (!skipped_logged_.contains(key)) {
      spdlog::error(
          "definition left out of the matching index, its events match nothing until it is "
          "fixed: tenant={} environment={} definition_id={} version={} reason={} error={}",
          d.tenant_id, d.environment_id, d.id, d.version, d.reason, d.message);
    }
    logged.insert(std::move(key));
  }
  skipped_logged_ = std::move(logged);
  for (const auto& [reason, count] : by_reason) {
    metrics_.definitions_skipped.WithLabels({reason}).Set(count);
  }
}

void IndexRefresher::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void IndexRefresher::Stop() noexcept {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void IndexRefresher::WaitUnlessStopped(const Backoff& retry) const {
  // In steps of at most 100 ms, so that Stop() is not kept waiting.
  while (!stop_ && !retry.Due()) {
    std::this_thread::sleep_for(std::min(retry.Remaining(), std::chrono::milliseconds(100)));
  }
}

void IndexRefresher::Loop() {
  // The listener LoadNow opened before the startup load has been listening since; without one
  // the first connection counts as a reconnect.
  const bool listening_since_load = listener_ != nullptr;
  std::unique_ptr<store::DefinitionChangeListener> owned = std::move(listener_);
  if (!owned) owned = std::make_unique<store::DefinitionChangeListener>(dsn_);
  store::DefinitionChangeListener& listener = *owned;
  auto next_resync = std::chrono::steady_clock::now() + resync_interval_;
  bool listening = listening_since_load;
  bool dirty = false;
  // After a lost connection or a failed reload: a fixed second before the next try.
  Backoff retry(SteadyClock::System(), std::chrono::seconds(1), std::chrono::seconds(1));
  while (!stop_) {
    try {
      int n = listener.Wait(std::chrono::milliseconds(250));
      if (!listening) {
        // (Re)connected: changes may have been missed while we were not listening.
        listening = true;
        dirty = true;
      }
      if (n > 0) {
        dirty = true;
        continue;  // debounce: reload once the burst of notifications is over
      }
    } catch (const store::StoreError& e) {
      if (listening) spdlog::warn("definition change listener lost: {}", e.what());
      listening = false;
      metrics_.database_errors.WithLabels({"listen"}).Inc();
      retry.Failed();
      WaitUnlessStopped(retry);
      continue;
    }
    const char* cause = nullptr;
    if (dirty) {
      cause = "notify";
    } else if (std::chrono::steady_clock::now() >= next_resync) {
      cause = "resync";
    }
    if (cause == nullptr) continue;
    try {
      LoadNow(cause);
      dirty = false;
      next_resync = std::chrono::steady_clock::now() + resync_interval_;
    } catch (const std::exception& e) {
      spdlog::warn("matching index reload failed (keeping the previous index): {}", e.what());
      retry.Failed();
      WaitUnlessStopped(retry);
    }
  }
}

}  // namespace workflowd::daemon
