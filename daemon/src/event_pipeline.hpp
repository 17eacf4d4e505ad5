// The event pipeline's loop: poll a batch, plan it, make the plan durable (dead letters
// acknowledged by the broker, execution rows committed in one transaction), then store the
// batch's offsets for commit. While PostgreSQL or the dead-letter topic is unavailable it pauses
// the partitions, retries with backoff and resumes by itself; nothing is committed meanwhile.
#pragma once

#include <atomic>
#include <chrono>
#include <string>

#include "pipeline_metrics.hpp"
#include "workflowd/common/clock.hpp"
#include "workflowd/consumers/batch_planner.hpp"
#include "workflowd/consumers/kafka_source.hpp"
#include "workflowd/matching/definition_index.hpp"
#include "workflowd/store/execution_repository.hpp"

namespace workflowd::daemon {

struct EventPipelineOptions {
  consumers::DecoderConfig decoder;
  std::string consumer_group;
  size_t batch_size = 500;
  std::chrono::milliseconds batch_timeout{100};
  std::chrono::milliseconds dead_letter_timeout{10000};
  std::chrono::milliseconds max_backoff{5000};
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
  // Returns true when the plan is durable; false when `stop` was set before it could be.
  bool MakeDurable(consumers::BatchPlan& plan, std::vector<consumers::ConsumedRecord>& batch,
                   const std::atomic<bool>& stop);
  consumers::BatchPlan Plan(const std::vector<consumers::ConsumedRecord>& records, size_t from);
  void Account(const consumers::BatchPlan& plan, size_t inserted);

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
