// The event pipeline as the daemon runs it: the Kafka consumer and dead-letter producer, the
// pipeline's own PostgreSQL connection, and the pipeline on its thread.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "pipeline_adapters.hpp"
#include "workflowd/consumers/kafka_source.hpp"
#include "workflowd/daemon/config.hpp"
#include "workflowd/matching/definition_index.hpp"
#include "workflowd/pipeline/event_pipeline.hpp"
#include "workflowd/pipeline/pipeline_metrics.hpp"
#include "workflowd/store/database.hpp"
#include "workflowd/store/execution_repository.hpp"

namespace workflowd::daemon {

// The decoder settings of the `kafka` configuration section.
decoding::DecoderConfig DecoderFrom(const KafkaConfig& k);

class EventIntake {
 public:
  // Creates the consumer (it subscribes to the topics) and the dead-letter producer; throws
  // consumers::KafkaError on invalid settings.
  EventIntake(const Config& config, const matching::DefinitionIndexHolder& index,
              pipeline::PipelineMetrics& metrics);
  ~EventIntake();

  // Where new executions go once they are committed (on the writing thread): they are inserted
  // leased to it while it wants them (RepositoryExecutionWriter). Set before Start.
  void OfferTo(NewExecutionsTarget& target) { writer_.SetTarget(&target); }

  // Runs the pipeline on its own thread until `stop` is set. Should it fail, the failure is
  // logged, Failed() becomes true and `stop` is set.
  void Start(std::atomic<bool>& stop);
  // Waits for the pipeline's thread (`stop` set): its batch in flight is finished, or abandoned
  // uncommitted and redelivered later. The destructor sets `stop` and waits.
  void Stop() noexcept;
  // Commits the stored offsets and leaves the consumer group. After Stop.
  void Close() noexcept { source_.Close(); }

  bool Failed() const { return failed_.load(); }
  const consumers::KafkaEventSource& kafka() const { return source_; }
  const pipeline::EventPipeline& pipeline() const { return pipeline_; }

 private:
  consumers::KafkaEventSource source_;
  consumers::DeadLetterProducer dead_letters_;
  store::Database db_;
  store::ExecutionRepository executions_;
  KafkaRecordSource record_source_;
  KafkaDeadLetterSink dead_letter_sink_;
  RepositoryExecutionWriter writer_;
  pipeline::EventPipeline pipeline_;
  std::atomic<bool> failed_{false};
  std::atomic<bool>* stop_ = nullptr;  // Start's
  std::thread thread_;                 // last
};

}  // namespace workflowd::daemon
