#include "index_refresher.hpp"

#include <spdlog/spdlog.h>

#include "workflowd/store/definition_changes.hpp"
#include "workflowd/store/definition_repository.hpp"

namespace workflowd::daemon {

std::shared_ptr<const matching::DefinitionIndex> BuildIndex(
    const std::vector<definitions::WorkflowDefinition>& defs) {
  std::vector<matching::IndexEntry> entries;
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
  return std::make_shared<const matching::DefinitionIndex>(std::move(entries));
}

IndexRefresher::IndexRefresher(std::string dsn, std::chrono::milliseconds connect_timeout,
                               std::chrono::milliseconds resync_interval,
                               matching::DefinitionIndexHolder& holder, PipelineMetrics& metrics)
    : dsn_(std::move(dsn)),
      resync_interval_(resync_interval),
      db_(dsn_, connect_timeout),
      holder_(holder),
      metrics_(metrics) {}

IndexRefresher::~IndexRefresher() { Stop(); }

void IndexRefresher::LoadNow(const char* cause) {
  try {
    store::DefinitionRepository repo(db_);
    auto started = std::chrono::steady_clock::now();
    auto index = BuildIndex(repo.LoadMatchable());
    size_t before = holder_.Get()->size();
    holder_.Set(index);
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

void IndexRefresher::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void IndexRefresher::Stop() noexcept {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void IndexRefresher::Loop() {
  store::DefinitionChangeListener listener(dsn_);
  auto next_resync = std::chrono::steady_clock::now() + resync_interval_;
  bool listening = false;
  bool dirty = false;
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
      for (int i = 0; i < 10 && !stop_; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
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
      for (int i = 0; i < 10 && !stop_; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

}  // namespace workflowd::daemon
