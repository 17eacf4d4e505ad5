// The event pipeline's loop: poll a batch, plan it, make the plan durable (dead letters
// acknowledged by the broker, execution rows committed in one transaction), then store the
// batch's offsets for commit. Writing a batch overlaps with polling and planning the next one.
// While PostgreSQL or the dead-letter topic is unavailable it pauses the partitions, retries with
// backoff and resumes by itself; nothing is committed meanwhile.
#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <string>

#include "pipeline_metrics.hpp"
#include "workflowd/common/clock.hpp"
#include "workflowd/consumers/batch_planner.hpp"
#include "workflowd/consumers/kafka_source.hpp"
#include "workflowd/matching/definition_index.hpp"
#include "workflowd/store/execution_repository.hpp"

namespace workflowd::daemon {

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
  EventPipeline(EventPipelineOptions options, consumers::KafkaEventSource& source,
                consumers::DeadLetterProducer& dead_letters, store::ExecutionRepository& executions,
                const matching::DefinitionIndexHolder& index, PipelineMetrics& metrics,
                const Clock& clock);

  // Runs until `stop` becomes true. A batch in flight is finished (or, while its dependencies are
  // down, abandoned uncommitted once `stop` is set: it will be redelivered).
  void Run(const std::atomic<bool>& stop);

  // True while the last batch was made durable (or nothing needed writing).
  bool DatabaseHealthy() const { return db_ok_.load(); }
  bool DeadLetterHealthy() const { return dlq_ok_.load(); }
  // Steady-clock time of the loop's last iteration: liveness (a stuck loop stops updating it).
  std::chrono::steady_clock::time_point LastProgress() const { return last_progress_.load(); }

 private:
  // A batch whose plan is being written on the writer thread.
  struct InFlight {
    std::vector<consumers::ConsumedRecord> batch;
    consumers::BatchPlan plan;
    size_t dlq_sent = 0;  // dead letters already acknowledged: never produced twice by a retry
    std::chrono::steady_clock::time_point started;
    std::string copy_text;  // the rows in COPY format (ExecutionRepository::CopyText)
    std::future<size_t> result;
  };

  // One attempt: the dead letters not yet acknowledged, then the rows, then the dead letters of
  // records whose rows PostgreSQL refused (data errors: found, left out of the transaction and
  // taken out of the plan). Returns the rows inserted by this plan's attempts so far.
  // `copy_text`: the plan's rows rendered ahead, or null. `batch`: the records of the plan.
  size_t WriteOnce(consumers::BatchPlan& plan, const std::vector<consumers::ConsumedRecord>& batch,
                   size_t& dlq_sent, const std::string* copy_text);
  void SendDeadLetters(const consumers::BatchPlan& plan, size_t& dlq_sent);
  // Replaces the executions of the records whose rows PostgreSQL refused with their dead letters.
  void DeadLetterRejected(consumers::BatchPlan& plan,
                          const std::vector<consumers::ConsumedRecord>& batch,
                          const std::vector<store::RejectedExecution>& rejected);
  // Logs and counts a failed write; returns true when it is worth retrying, rethrows otherwise.
  bool Retryable(const std::exception_ptr& error);
  // Retries until the plan is durable (pausing consumption meanwhile); returns false when `stop`
  // was set before it could be. `failed_once`: the first attempt already failed, start waiting.
  bool MakeDurable(consumers::BatchPlan& plan, std::vector<consumers::ConsumedRecord>& batch,
                   const std::atomic<bool>& stop, size_t& dlq_sent, bool failed_once);
  // Waits for the in-flight write and stores its offsets; on failure the next batch (if any)
  // joins it and both are retried until durable. False when stopped before that.
  bool Complete(InFlight& write, std::vector<consumers::ConsumedRecord>* next_batch,
                consumers::BatchPlan* next_plan, const std::atomic<bool>& stop);
  void Done(const std::vector<consumers::ConsumedRecord>& batch,
            std::chrono::steady_clock::time_point started);
  consumers::BatchPlan Plan(const std::vector<consumers::ConsumedRecord>& records, size_t from);
  void Account(const consumers::BatchPlan& plan, size_t inserted);

  // Records how old the batch's oldest record was when polled
  // (workflowd_event_age_at_poll_seconds).
  void ObserveAge(const std::vector<consumers::ConsumedRecord>& batch);
  EventPipelineOptions options_;
  consumers::KafkaEventSource& source_;
  consumers::DeadLetterProducer& dead_letters_;
  store::ExecutionRepository& executions_;
  const matching::DefinitionIndexHolder& index_;
  PipelineMetrics& metrics_;
  const Clock& clock_;
  std::atomic<bool> db_ok_{true};
  std::atomic<bool> dlq_ok_{true};
  std::atomic<std::chrono::steady_clock::time_point> last_progress_{
      std::chrono::steady_clock::now()};
};

}  // namespace workflowd::daemon
