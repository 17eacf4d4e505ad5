#include "pipeline_adapters.hpp"

#include <utility>

namespace workflowd::daemon {

std::vector<pipeline::SourceRecord> KafkaRecordSource::PollBatch(
    size_t max, std::chrono::milliseconds timeout) {
  std::vector<consumers::ConsumedRecord> polled = kafka_.PollBatch(max, timeout);
  std::vector<pipeline::SourceRecord> batch;
  batch.reserve(polled.size());
  // Each message moves over with the views into it: nothing is copied or allocated per record.
  for (auto& record : polled) {
    auto released = std::move(record).Release();
    batch.emplace_back(std::move(released.raw), released.message,
                       &consumers::ConsumedRecord::DestroyMessage);
  }
  return batch;
}

void KafkaRecordSource::MarkProcessed(const std::vector<pipeline::SourceRecord>& batch) {
  std::vector<const decoding::RawRecord*> records;
  records.reserve(batch.size());
  for (const auto& record : batch) records.push_back(&record.raw());
  kafka_.MarkProcessed(records);
}

void KafkaDeadLetterSink::SendAll(const std::vector<decoding::DeadLetter>& letters,
                                  std::chrono::milliseconds timeout) {
  try {
    producer_.ProduceAll(letters, timeout);
  } catch (const consumers::KafkaError& e) {
    throw pipeline::DeadLetterError(e.what(), e.Retryable());
  }
}

}  // namespace workflowd::daemon
