// The event pipeline's loop: poll a batch, plan it, make the plan durable (dead letters
// acknowledged by the broker, execution rows committed in one transaction), then store the
// batch's offsets for commit. Writing a batch overlaps with polling and planning the next one.
// While PostgreSQL or the dead-letter topic is unavailable it pauses the partitions, retries with
// backoff and resumes by itself; nothing is committed meanwhile.
// The pipeline's dependencies are interfaces (RecordSource, DeadLetterSink, ExecutionWriter): the
// daemon gives it the Kafka client and the execution repository, the unit tests fakes.
#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "workflowd/common/backoff.hpp"
#include "workflowd/common/clock.hpp"
#include "workflowd/matching/definition_index.hpp"
#include "workflowd/pipeline/batch_planner.hpp"
#include "workflowd/pipeline/dead_letter_sink.hpp"
#include "workflowd/pipeline/execution_writer.hpp"
#include "workflowd/pipeline/pipeline_metrics.hpp"
#include "workflowd/pipeline/record_source.hpp"

namespace workflowd::pipeline {

struct EventPipelineOptions {
  decoding::DecoderConfig decoder;
  std::string consumer_group;
  size_t batch_size = 2000;
  std::chrono::milliseconds batch_timeout{100};
  std::chrono::milliseconds dead_letter_timeout{10000};
  std::chrono::milliseconds max_backoff{5000};
  // Called (on the writing thread) each time new executions were committed, with their ids: the
  // daemon offers them to one of its dispatch loops and wakes it, so a start does not wait for
  // the loops' idle interval nor for a walk over every tenant x environment.
  std::function<void(std::vector<std::string> execution_ids)> on_committed;
};

class EventPipeline {
 public:
  // `clock`: wall time (record ages, dead-letter and execution timestamps); `steady`: waits and
  // durations (backoff, liveness, batch durations).
  EventPipeline(EventPipelineOptions options, RecordSource& source, DeadLetterSink& dead_letters,
                ExecutionWriter& executions, const matching::DefinitionIndexHolder& index,
                PipelineMetrics& metrics, const Clock& clock,
                const SteadyClock& steady = SteadyClock::System());

  // Runs until `stop` becomes true. A batch in flight is finished (or, while its dependencies are
  // down, abandoned uncommitted once `stop` is set: it will be redelivered).
  void Run(const std::atomic<bool>& stop);

  // True while the last batch was made durable (or nothing needed writing).
  bool DatabaseHealthy() const { return db_ok_.load(); }
  bool DeadLetterHealthy() const { return dlq_ok_.load(); }
  // Steady-clock time of the loop's last iteration: liveness (a stuck loop stops updating it).
  SteadyClock::time_point LastProgress() const { return last_progress_.load(); }

 private:
  // A batch whose plan is being written on the writer thread.
  struct InFlight {
    std::vector<SourceRecord> batch;
    BatchPlan plan;
    size_t dlq_sent = 0;  // dead letters already acknowledged: never produced twice by a retry
    SteadyClock::time_point started;
    RenderedRows copy_text;  // the rows rendered for the writer (ExecutionWriter::Render)
    std::future<size_t> result;
  };

  // One attempt: the dead letters not yet acknowledged, then the rows, then the dead letters of
  // records whose rows PostgreSQL refused (data errors: found, left out of the transaction and
  // taken out of the plan). Returns the rows inserted by this plan's attempts so far.
  // `copy_text`: the plan's rows rendered ahead, or null. `batch`: the records of the plan.
  size_t WriteOnce(BatchPlan& plan, const std::vector<SourceRecord>& batch, size_t& dlq_sent,
                   const RenderedRows* copy_text);
  void SendDeadLetters(const BatchPlan& plan, size_t& dlq_sent);
  // Replaces the executions of the records whose rows PostgreSQL refused with their dead letters.
  void DeadLetterRejected(BatchPlan& plan, const std::vector<SourceRecord>& batch,
                          const std::vector<store::RejectedExecution>& rejected);
  // Logs and counts a failed write; returns true when it is worth retrying, rethrows otherwise.
  bool Retryable(const std::exception_ptr& error);
  // Retries until the plan is durable (pausing consumption meanwhile); returns false when `stop`
  // was set before it could be. `failed_once`: the first attempt already failed, start waiting.
  bool MakeDurable(BatchPlan& plan, std::vector<SourceRecord>& batch, const std::atomic<bool>& stop,
                   size_t& dlq_sent, bool failed_once);
  // Waits for the in-flight write and stores its offsets; on failure the next batch (if any)
  // joins it and both are retried until durable. False when stopped before that.
  bool Complete(InFlight& write, std::vector<SourceRecord>* next_batch, BatchPlan* next_plan,
                const std::atomic<bool>& stop);
  void Done(const std::vector<SourceRecord>& batch, SteadyClock::time_point started);
  BatchPlan Plan(const std::vector<SourceRecord>& records, size_t from);
  void Account(const BatchPlan& plan, size_t inserted);

  // Records how old the batch's oldest record was when polled
  // (workflowd_event_age_at_poll_seconds).
  void ObserveAge(const std::vector<SourceRecord>& batch);
  EventPipelineOptions options_;
  RecordSource& source_;
  DeadLetterSink& dead_letters_;
  ExecutionWriter& executions_;
  const matching::DefinitionIndexHolder& index_;
  PipelineMetrics& metrics_;
  const Clock& clock_;
  const SteadyClock& steady_;
  std::atomic<bool> db_ok_{true};
  std::atomic<bool> dlq_ok_{true};
  std::atomic<SteadyClock::time_point> last_progress_;
};

}  // namespace workflowd::pipeline
