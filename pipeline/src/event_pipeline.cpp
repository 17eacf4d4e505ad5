#include "workflowd/pipeline/event_pipeline.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <limits>
#include <stdexcept>
#include <thread>
#include <utility>

namespace workflowd::pipeline {

EventPipeline::EventPipeline(EventPipelineOptions options, RecordSource& source,
                             DeadLetterSink& dead_letters, ExecutionWriter& executions,
                             const matching::DefinitionIndexHolder& index, PipelineMetrics& metrics,
                             const Clock& clock, const SteadyClock& steady)
    : options_(std::move(options)),
      source_(source),
      dead_letters_(dead_letters),
      executions_(executions),
      index_(index),
      metrics_(metrics),
      clock_(clock),
      steady_(steady),
      last_progress_(steady.Now()) {}

BatchPlan EventPipeline::Plan(const std::vector<SourceRecord>& records, size_t from) {
  std::vector<const decoding::RawRecord*> raw;
  raw.reserve(records.size() - from);
  // Counted per run of records of the same topic: one labelled-counter lookup per run, not per
  // record.
  std::string_view run_topic;
  size_t run = 0;
  auto count_run = [&] {
    if (run > 0)
      metrics_.consumed.WithLabels({std::string(run_topic)}).Inc(static_cast<double>(run));
  };
  for (size_t i = from; i < records.size(); ++i) {
    const auto& r = records[i].raw();
    raw.push_back(&r);
    if (r.topic != run_topic) {
      count_run();
      run_topic = r.topic;
      run = 0;
    }
    ++run;
  }
  count_run();
  auto index = index_.Get();
  auto now = clock_.Now();
  // Decoding and matching are per record and pure (no shared mutable state: the index is an
  // immutable snapshot, decoders keep per-thread buffers), so a large batch is planned in two
  // halves, the second on a helper thread, and the halves joined in record order: the plan is the
  // same as planning it whole, in about half the time when the second core is free.
  constexpr size_t kSplitAbove = 256;
  if (raw.size() <= kSplitAbove) {
    return PlanBatch(raw, options_.decoder, *index, options_.consumer_group, now);
  }
  std::span<const decoding::RawRecord* const> all(raw);
  auto first = all.first(raw.size() / 2);
  auto second = all.subspan(raw.size() / 2);
  auto later = std::async(std::launch::async, [&] {
    return PlanBatch(second, options_.decoder, *index, options_.consumer_group, now);
  });
  auto plan = PlanBatch(first, options_.decoder, *index, options_.consumer_group, now);
  plan.Append(later.get());
  return plan;
}

void EventPipeline::Account(const BatchPlan& plan, size_t inserted) {
  metrics_.matched.Inc(static_cast<double>(plan.matched_events));
  metrics_.unmatched.Inc(static_cast<double>(plan.unmatched_events));
  for (auto reason : decoding::AllDeadLetterReasons()) {
    size_t n = plan.dead_by_reason[static_cast<size_t>(reason)];
    if (n > 0) {
      metrics_.dead_lettered.WithLabels({std::string(decoding::ToString(reason))})
          .Inc(static_cast<double>(n));
    }
  }
  metrics_.executions_created.Inc(static_cast<double>(inserted));
  metrics_.executions_duplicate.Inc(
      static_cast<double>(plan.executions.size() - std::min(inserted, plan.executions.size())));
  for (const auto& m : plan.matches) {
    spdlog::debug(
        "event matched: tenant={} environment={} event_id={} event_type={} "
        "definition_id={} execution_id={}",
        m.tenant, m.environment, m.event_id, m.event_type, m.definition_id, m.execution_id);
  }
  if (!plan.dead_letters.empty()) {
    spdlog::info("{} record(s) sent to the dead-letter topic {}", plan.dead_letters.size(),
                 dead_letters_.destination());
  }
}

void EventPipeline::SendDeadLetters(const BatchPlan& plan, size_t& dlq_sent) {
  if (dlq_sent >= plan.dead_letters.size()) return;
  std::vector<decoding::DeadLetter> pending(plan.dead_letters.begin() + static_cast<long>(dlq_sent),
                                            plan.dead_letters.end());
  dead_letters_.SendAll(pending, options_.dead_letter_timeout);
  dlq_sent = plan.dead_letters.size();
  dlq_ok_ = true;
}

void EventPipeline::DeadLetterRejected(BatchPlan& plan, const std::vector<SourceRecord>& batch,
                                       const std::vector<store::RejectedExecution>& rejected) {
  // One dead letter per record, whatever number of its rows were refused (found before the plan
  // changes: taking a record's executions out moves the others).
  struct Refusal {
    RecordRef source;
    std::string detail;
  };
  std::vector<Refusal> refusals;
  for (const auto& r : rejected) {
    const RecordRef& source = plan.sources.at(r.index);
    if (std::any_of(refusals.begin(), refusals.end(),
                    [&](const Refusal& f) { return f.source == source; })) {
      continue;
    }
    const auto& e = plan.executions[r.index];
    refusals.push_back({source, "PostgreSQL refused the execution row of definition " +
                                    e.workflow_id + " (SQLSTATE " + r.sqlstate +
                                    "): " + r.message});
  }
  for (auto& refusal : refusals) {
    auto record = std::find_if(batch.begin(), batch.end(),
                               [&](const SourceRecord& c) { return refusal.source.Is(c.raw()); });
    if (record == batch.end()) {
      throw std::logic_error("a refused execution's record is not in its batch");
    }
    spdlog::warn("record {}[{}]@{} dead-lettered: {}", refusal.source.topic,
                 refusal.source.partition, refusal.source.offset, refusal.detail);
    plan.DeadLetterRecord(record->raw(), decoding::DeadLetterReason::kDatabaseRejected,
                          std::move(refusal.detail), options_.consumer_group, clock_.Now());
  }
}

size_t EventPipeline::WriteOnce(BatchPlan& plan, const std::vector<SourceRecord>& batch,
                                size_t& dlq_sent, const RenderedRows* copy_text) {
  SendDeadLetters(plan, dlq_sent);
  // The executions of one record are written or refused together: a record is either wholly
  // recorded or wholly a dead letter.
  std::vector<size_t> groups(plan.executions.size());
  for (size_t i = 1; i < groups.size(); ++i) {
    const RecordRef& a = plan.sources[i - 1];
    const RecordRef& b = plan.sources[i];
    groups[i] = a == b ? groups[i - 1] : groups[i - 1] + 1;
  }
  std::vector<store::RejectedExecution> rejected;
  size_t inserted = executions_.InsertPending(plan.executions, copy_text, rejected, groups);
  db_ok_ = true;
  if (!rejected.empty()) DeadLetterRejected(plan, batch, rejected);
  plan.inserted += inserted;
  if (inserted > 0 && options_.on_committed) {
    std::vector<std::string> ids;
    ids.reserve(plan.executions.size());
    for (const auto& e : plan.executions) ids.push_back(e.id);
    options_.on_committed(std::move(ids));
  }
  // The refused rows' records: their dead letters once the other rows are committed. Should this
  // fail, a retry finds those rows recorded already and sends what is left.
  SendDeadLetters(plan, dlq_sent);
  return plan.inserted;
}

bool EventPipeline::Retryable(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const store::StoreError& e) {
    if (!e.Retryable()) throw;
    if (db_ok_.exchange(false)) spdlog::error("PostgreSQL unavailable, pausing: {}", e.what());
    metrics_.database_errors.WithLabels({"record_batch"}).Inc();
  } catch (const DeadLetterError& e) {
    if (!e.Retryable()) throw;
    if (dlq_ok_.exchange(false))
      spdlog::error("dead-letter topic unavailable, pausing: {}", e.what());
    metrics_.dead_letter_errors.Inc();
  }
  return true;
}

bool EventPipeline::MakeDurable(BatchPlan& plan, std::vector<SourceRecord>& batch,
                                const std::atomic<bool>& stop, size_t& dlq_sent, bool failed_once) {
  Backoff backoff(steady_, std::chrono::milliseconds(100), options_.max_backoff);
  bool paused_here = false;
  while (true) {
    if (!failed_once) {
      try {
        size_t inserted = WriteOnce(plan, batch, dlq_sent, nullptr);
        if (paused_here) {
          source_.Resume();
          metrics_.paused.Set(0);
          spdlog::info("dependencies are back; consumption resumed");
        }
        Account(plan, inserted);
        return true;
      } catch (...) {
        Retryable(std::current_exception());  // rethrows what is not retryable
      }
    }
    failed_once = false;
    if (!paused_here) {
      source_.Pause();
      metrics_.paused.Set(1);
      paused_here = true;
    }
    // Wait, keeping the group membership alive; records fetched before the pause are added to
    // the batch (later offsets of the same partitions), never dropped.
    backoff.Failed();
    while (!backoff.Due()) {
      if (stop) return false;
      last_progress_ = steady_.Now();
      size_t before = batch.size();
      auto more = source_.PollBatch(options_.batch_size, std::chrono::milliseconds(50));
      for (auto& r : more) batch.push_back(std::move(r));
      if (batch.size() > before) plan.Append(Plan(batch, before));
    }
  }
}

void EventPipeline::Done(const std::vector<SourceRecord>& batch, SteadyClock::time_point started) {
  source_.MarkProcessed(batch);
  metrics_.batch_records.Observe(static_cast<double>(batch.size()));
  metrics_.batch_duration.Observe(std::chrono::duration<double>(steady_.Now() - started).count());
}

bool EventPipeline::Complete(InFlight& write, std::vector<SourceRecord>* next_batch,
                             BatchPlan* next_plan, const std::atomic<bool>& stop) {
  try {
    size_t inserted = write.result.get();
    Account(write.plan, inserted);
    Done(write.batch, write.started);
    return true;
  } catch (...) {
    Retryable(std::current_exception());  // rethrows what is not retryable
  }
  // The write failed (a dependency is down). The batch polled meanwhile holds later offsets:
  // it joins this one, so that offsets are stored in order and only once both are durable.
  if (next_batch != nullptr) {
    for (auto& r : *next_batch) write.batch.push_back(std::move(r));
    next_batch->clear();
    write.plan.Append(std::move(*next_plan));
  }
  if (!MakeDurable(write.plan, write.batch, stop, write.dlq_sent, /*failed_once=*/true)) {
    spdlog::warn("shutting down with an undelivered batch of {} records; it will be redelivered",
                 write.batch.size());
    return false;
  }
  Done(write.batch, write.started);
  return true;
}

void EventPipeline::ObserveAge(const std::vector<SourceRecord>& batch) {
  int64_t oldest = std::numeric_limits<int64_t>::max();
  for (const auto& r : batch) {
    if (r.raw().timestamp_ms > 0) oldest = std::min(oldest, r.raw().timestamp_ms);
  }
  if (oldest == std::numeric_limits<int64_t>::max()) return;  // no timestamps (very old clients)
  int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now().time_since_epoch())
          .count();
  metrics_.event_age.Observe(static_cast<double>(std::max<int64_t>(0, now_ms - oldest)) / 1000.0);
}

void EventPipeline::Run(const std::atomic<bool>& stop) {
  // Two stages overlap: while one batch is written to PostgreSQL (on a writer thread, with the
  // pipeline's own connection), the next one is polled and planned. Offsets are stored strictly in
  // order, each batch's only after its rows are committed; at most one write is in flight.
  std::unique_ptr<InFlight> in_flight;
  while (!stop) {
    last_progress_ = steady_.Now();
    auto batch = source_.PollBatch(
        options_.batch_size, in_flight ? std::chrono::milliseconds(0) : options_.batch_timeout);
    if (batch.empty()) {
      if (in_flight) {
        if (!Complete(*in_flight, nullptr, nullptr, stop)) return;
        in_flight.reset();
      }
      continue;
    }
    auto started = steady_.Now();
    ObserveAge(batch);
    // Planned and rendered (the rows in COPY format) while the previous batch may still be
    // written, so that PostgreSQL waits as little as possible between two writes.
    auto next = std::make_unique<InFlight>();
    next->plan = Plan(batch, 0);
    next->copy_text = executions_.Render(next->plan.executions);
    next->started = started;
    std::unique_ptr<InFlight> done;  // destroyed once the next write is under way
    if (in_flight) {
      if (!Complete(*in_flight, &batch, &next->plan, stop)) return;
      done = std::exchange(in_flight, nullptr);  // in_flight is empty from here on
      if (batch.empty()) continue;               // joined the previous batch, durable with it
    }
    in_flight = std::move(next);
    in_flight->batch = std::move(batch);
    InFlight* write = in_flight.get();
    in_flight->result = std::async(std::launch::async, [this, write] {
      return WriteOnce(write->plan, write->batch, write->dlq_sent, &write->copy_text);
    });
  }
  if (in_flight && !Complete(*in_flight, nullptr, nullptr, stop)) return;
}

}  // namespace workflowd::pipeline
