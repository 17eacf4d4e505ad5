// Where the event pipeline's records come from (Kafka in the daemon, a fake in the unit tests):
// batches of records, offsets stored once their outcome is durable, pause / resume for
// backpressure. Only what the pipeline uses; the daemon reads the Kafka client's lag and health
// itself.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "workflowd/decoding/decoder.hpp"

namespace workflowd::pipeline {

// One polled record: the views of `raw()` and what keeps the bytes they point into alive (for
// Kafka, the client's message), released when the record is destroyed. No allocation of its own.
class SourceRecord {
 public:
  using Release = void (*)(void* owner) noexcept;

  // `owner` (may be null: the views point into storage that outlives the record) is released
  // with `release` when the record is destroyed.
  SourceRecord(decoding::RawRecord raw, void* owner, Release release) noexcept
      : owner_(owner, release), raw_(std::move(raw)) {}

  // Valid while this object lives (moves keep them valid).
  const decoding::RawRecord& raw() const { return raw_; }

 private:
  std::unique_ptr<void, Release> owner_;
  decoding::RawRecord raw_;  // destroyed before its owner
};

class RecordSource {
 public:
  virtual ~RecordSource() = default;

  // Waits up to `timeout` for a first record, then takes whatever else is at hand, up to `max`.
  // Also while paused: records fetched before the pause are still handed out, and polling keeps
  // the consumer's group membership alive. Throws on a fatal failure of the source.
  virtual std::vector<SourceRecord> PollBatch(size_t max, std::chrono::milliseconds timeout) = 0;

  // The outcome of the batch's records is durable: their offsets may be committed.
  virtual void MarkProcessed(const std::vector<SourceRecord>& batch) = 0;

  // Stops / restarts fetching new records (backpressure while a dependency is down).
  virtual void Pause() = 0;
  virtual void Resume() = 0;
};

}  // namespace workflowd::pipeline
