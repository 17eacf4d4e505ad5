#include "pipeline_adapters.hpp"

#include <utility>

#include "workflowd/store/lifecycle_repository.hpp"

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

pipeline::RenderedRows RepositoryExecutionWriter::Render(
    const std::vector<store::NewExecution>& executions) const {
  pipeline::RenderedRows rows;
  if (target_ != nullptr && target_->WantsOffers()) {
    const TimePoint now = SystemClock::Instance().Now();
    rows.lease = store::PendingLease{store::NewLeaseToken(owner_), now, now + lease_};
  }
  rows.text = store::ExecutionRepository::CopyText(executions, rows.lease ? &*rows.lease : nullptr);
  return rows;
}

size_t RepositoryExecutionWriter::InsertPending(const std::vector<store::NewExecution>& executions,
                                                const pipeline::RenderedRows* rendered,
                                                std::vector<store::RejectedExecution>& rejected,
                                                std::span<const size_t> groups) {
  pipeline::RenderedRows own;
  if (rendered == nullptr) {
    own = Render(executions);
    rendered = &own;
  }
  const store::PendingLease* lease = rendered->lease ? &*rendered->lease : nullptr;
  std::vector<bool> inserted;
  const size_t count = repository_.InsertPending(executions, &rendered->text, &rejected, groups,
                                                 lease, lease != nullptr ? &inserted : nullptr);
  if (lease == nullptr || count == 0) return count;
  // Committed: the rows this insert created are this replica's to start. (Rows that existed
  // already, an event redelivered, are not: they are left to whoever holds them.)
  target_->Offer(lifecycle::OfferOf(*lease, executions, inserted));
  return count;
}

}  // namespace workflowd::daemon
