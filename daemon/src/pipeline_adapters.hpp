// The event pipeline's interfaces implemented by the daemon's real dependencies: the Kafka client
// (records, offsets, pause / resume; the dead-letter producer) and the execution repository
// (PostgreSQL). Thin: each call is passed on, Kafka's errors translated to the pipeline's.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "workflowd/consumers/kafka_source.hpp"
#include "workflowd/pipeline/dead_letter_sink.hpp"
#include "workflowd/pipeline/execution_writer.hpp"
#include "workflowd/pipeline/record_source.hpp"
#include "workflowd/store/execution_repository.hpp"

namespace workflowd::daemon {

class KafkaRecordSource final : public pipeline::RecordSource {
 public:
  explicit KafkaRecordSource(consumers::KafkaEventSource& kafka) : kafka_(kafka) {}

  std::vector<pipeline::SourceRecord> PollBatch(size_t max,
                                                std::chrono::milliseconds timeout) override;
  void MarkProcessed(const std::vector<pipeline::SourceRecord>& batch) override;
  void Pause() override { kafka_.Pause(); }
  void Resume() override { kafka_.Resume(); }

 private:
  consumers::KafkaEventSource& kafka_;
};

class KafkaDeadLetterSink final : public pipeline::DeadLetterSink {
 public:
  explicit KafkaDeadLetterSink(consumers::DeadLetterProducer& producer) : producer_(producer) {}

  void SendAll(const std::vector<decoding::DeadLetter>& letters,
               std::chrono::milliseconds timeout) override;
  const std::string& destination() const override { return producer_.topic(); }

 private:
  consumers::DeadLetterProducer& producer_;
};

class RepositoryExecutionWriter final : public pipeline::ExecutionWriter {
 public:
  explicit RepositoryExecutionWriter(store::ExecutionRepository& repository)
      : repository_(repository) {}

  std::string Render(const std::vector<store::NewExecution>& executions) const override {
    return store::ExecutionRepository::CopyText(executions);
  }
  size_t InsertPending(const std::vector<store::NewExecution>& executions,
                       const std::string* rendered, std::vector<store::RejectedExecution>& rejected,
                       std::span<const size_t> groups) override {
    return repository_.InsertPending(executions, rendered, &rejected, groups);
  }

 private:
  store::ExecutionRepository& repository_;
};

}  // namespace workflowd::daemon
