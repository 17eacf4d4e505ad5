#include "event_pipeline.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

namespace workflowd::daemon {

EventPipeline::EventPipeline(EventPipelineOptions options, consumers::KafkaEventSource& source,
                             consumers::DeadLetterProducer& dead_letters,
                             store::ExecutionRepository& executions,
                             const matching::DefinitionIndexHolder& index, PipelineMetrics& metrics,
                             const Clock& clock)
    : options_(std::move(options)),
      source_(source),
      dead_letters_(dead_letters),
      executions_(executions),
      index_(index),
      metrics_(metrics),
      clock_(clock) {}

consumers::BatchPlan EventPipeline::Plan(const std::vector<consumers::ConsumedRecord>& records,
                                         size_t from) {
  std::vector<const consumers::RawRecord*> raw;
  raw.reserve(records.size() - from);
  for (size_t i = from; i < records.size(); ++i) {
    raw.push_back(&records[i].raw());
    metrics_.consumed.WithLabels({std::string(records[i].raw().topic)}).Inc();
  }
  auto index = index_.Get();
  return consumers::PlanBatch(raw, options_.decoder, *index, options_.consumer_group, clock_.Now());
}

void EventPipeline::Account(const consumers::BatchPlan& plan, size_t inserted) {
  metrics_.matched.Inc(static_cast<double>(plan.matched_events));
  metrics_.unmatched.Inc(static_cast<double>(plan.unmatched_events));
  for (auto reason : consumers::AllDeadLetterReasons()) {
    size_t n = plan.dead_by_reason[static_cast<size_t>(reason)];
    if (n > 0) {
      metrics_.dead_lettered.WithLabels({std::string(consumers::ToString(reason))})
          .Inc(static_cast<double>(n));
    }
  }
  metrics_.executions_created.Inc(static_cast<double>(inserted));
  metrics_.executions_duplicate.Inc(static_cast<double>(plan.executions.size() - inserted));
  for (const auto& m : plan.matches) {
    spdlog::debug(
        "event matched: tenant={} environment={} event_id={} event_type={} "
        "definition_id={} execution_id={}",
        m.tenant, m.environment, m.event_id, m.event_type, m.definition_id, m.execution_id);
  }
  if (!plan.dead_letters.empty()) {
    spdlog::info("{} record(s) sent to the dead-letter topic {}", plan.dead_letters.size(),
                 dead_letters_.topic());
  }
}

bool EventPipeline::MakeDurable(consumers::BatchPlan& plan,
                                std::vector<consumers::ConsumedRecord>& batch,
                                const std::atomic<bool>& stop) {
  std::chrono::milliseconds backoff{100};
  size_t dlq_sent = 0;  // dead letters already acknowledged: never produced twice by a retry
  bool paused_here = false;
  while (true) {
    try {
      if (dlq_sent < plan.dead_letters.size()) {
        std::vector<consumers::DeadLetter> pending(
            plan.dead_letters.begin() + static_cast<long>(dlq_sent), plan.dead_letters.end());
        dead_letters_.ProduceAll(pending, options_.dead_letter_timeout);
        dlq_sent = plan.dead_letters.size();
        dlq_ok_ = true;
      }
      size_t inserted = executions_.InsertPending(plan.executions);
      db_ok_ = true;
      if (paused_here) {
        source_.Resume();
        metrics_.paused.Set(0);
        spdlog::info("dependencies are back; consumption resumed");
      }
      Account(plan, inserted);
      return true;
    } catch (const store::StoreError& e) {
      if (!e.Retryable()) throw;
      if (db_ok_.exchange(false)) spdlog::error("PostgreSQL unavailable, pausing: {}", e.what());
      metrics_.database_errors.WithLabels({"record_batch"}).Inc();
    } catch (const consumers::KafkaError& e) {
      if (!e.Retryable()) throw;
      if (dlq_ok_.exchange(false)) {
        spdlog::error("dead-letter topic unavailable, pausing: {}", e.what());
      }
      metrics_.dead_letter_errors.Inc();
    }
    if (!paused_here) {
      source_.Pause();
      metrics_.paused.Set(1);
      paused_here = true;
    }
    // Wait, keeping the group membership alive; records fetched before the pause are added to
    // the batch (later offsets of the same partitions), never dropped.
    auto until = std::chrono::steady_clock::now() + backoff;
    while (std::chrono::steady_clock::now() < until) {
      if (stop) return false;
      last_progress_ = std::chrono::steady_clock::now();
      size_t before = batch.size();
      auto more = source_.PollBatch(options_.batch_size, std::chrono::milliseconds(50));
      for (auto& r : more) batch.push_back(std::move(r));
      if (batch.size() > before) plan.Append(Plan(batch, before));
    }
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

void EventPipeline::Run(const std::atomic<bool>& stop) {
  while (!stop) {
    last_progress_ = std::chrono::steady_clock::now();
    auto batch = source_.PollBatch(options_.batch_size, options_.batch_timeout);
    if (batch.empty()) continue;
    auto started = std::chrono::steady_clock::now();
    auto plan = Plan(batch, 0);
    if (!MakeDurable(plan, batch, stop)) {
      spdlog::warn("shutting down with an undelivered batch of {} records; it will be redelivered",
                   batch.size());
      return;
    }
    source_.MarkProcessed(batch);
    metrics_.batch_records.Observe(static_cast<double>(batch.size()));
    metrics_.batch_duration.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
}

}  // namespace workflowd::daemon
