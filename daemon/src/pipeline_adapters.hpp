// The event pipeline's interfaces implemented by the daemon's real dependencies: the Kafka client
// (records, offsets, pause / resume; the dead-letter producer) and the execution repository
// (PostgreSQL). Thin: each call is passed on, Kafka's errors translated to the pipeline's.
#pragma once

#include <chrono>
#include <span>
#include <string>
#include <vector>

#include "workflowd/consumers/kafka_source.hpp"
#include "workflowd/lifecycle/execution_dispatcher.hpp"
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

// Where the executions the event pipeline commits go next: this replica's dispatch loops.
class NewExecutionsTarget {
 public:
  virtual ~NewExecutionsTarget() = default;
  // Whether rows inserted now should be leased to this replica's dispatch loops (else they are
  // inserted unleased, for any replica's fair rounds). Thread-safe.
  virtual bool WantsOffers() const = 0;
  // The rows of one committed batch, leased to this replica by their insert. Thread-safe.
  virtual void Offer(lifecycle::LeasedOffer offer) = 0;
};

// Writes through the execution repository. With a target that wants them, the rows are inserted
// leased to this replica (the claim is the insert: no claim transaction, no read-back) and handed
// to the target right after their commit.
class RepositoryExecutionWriter final : public pipeline::ExecutionWriter {
 public:
  // `owner`: this replica's name in lease tokens; `lease`: how long a lease written by an insert
  // lasts (dispatch.lease).
  RepositoryExecutionWriter(store::ExecutionRepository& repository, std::string owner,
                            std::chrono::milliseconds lease)
      : repository_(repository), owner_(std::move(owner)), lease_(lease) {}

  // Set before the pipeline runs; null: rows are inserted unleased.
  void SetTarget(NewExecutionsTarget* target) { target_ = target; }

  pipeline::RenderedRows Render(const std::vector<store::NewExecution>& executions) const override;
  size_t InsertPending(const std::vector<store::NewExecution>& executions,
                       const pipeline::RenderedRows* rendered,
                       std::vector<store::RejectedExecution>& rejected,
                       std::span<const size_t> groups) override;

 private:
  store::ExecutionRepository& repository_;
  std::string owner_;
  std::chrono::milliseconds lease_;
  NewExecutionsTarget* target_ = nullptr;
};

}  // namespace workflowd::daemon
