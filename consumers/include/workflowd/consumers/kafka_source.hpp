// The Kafka side of the event pipeline: a consumer-group member that hands out batches of records
// and commits offsets only for batches the caller has marked processed (at-least-once after the
// database commit: enable.auto.offset.store=false + offsets_store, periodic auto commit of stored
// offsets, a synchronous commit on partition revoke and on close). librdkafka stays behind this
// header.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "workflowd/decoding/dead_letter.hpp"
#include "workflowd/decoding/decoder.hpp"

namespace workflowd::consumers {

using decoding::DeadLetter;
using decoding::RawHeader;
using decoding::RawRecord;

// A Kafka failure; Retryable() when it may clear by itself (broker down, timeout).
class KafkaError : public std::runtime_error {
 public:
  KafkaError(const std::string& message, bool retryable)
      : std::runtime_error(message), retryable_(retryable) {}
  bool Retryable() const noexcept { return retryable_; }

 private:
  bool retryable_;
};

struct KafkaSourceConfig {
  std::string brokers;
  std::string group_id;
  std::vector<std::string> topics;
  std::map<std::string, std::string> properties;  // user's librdkafka settings, applied first
  std::chrono::milliseconds commit_interval{1000};
  std::string client_id = "workflowd";
};

}  // namespace workflowd::consumers

struct rd_kafka_message_s;  // librdkafka's rd_kafka_message_t

namespace workflowd::consumers {

// One consumed record; owns the underlying librdkafka message (held directly: no allocation of
// its own per record).
class ConsumedRecord {
 public:
  // Takes ownership of `message`, a successfully consumed one.
  explicit ConsumedRecord(rd_kafka_message_s* message);

  // Views into the message; valid while this object lives (moves keep them valid).
  const RawRecord& raw() const { return raw_; }

  // Hands the message over with the views into it (no copy of its bytes): the new owner keeps
  // the message while it reads the views, then destroys it with DestroyMessage.
  struct Released {
    RawRecord raw;
    void* message = nullptr;
  };
  Released Release() && noexcept;
  static void DestroyMessage(void* message) noexcept;

 private:
  struct Destroy {
    void operator()(rd_kafka_message_s* message) const noexcept;
  };
  std::unique_ptr<rd_kafka_message_s, Destroy> message_;
  RawRecord raw_;
};

struct PartitionLag {
  std::string topic;
  int32_t partition = 0;
  int64_t lag = 0;  // high watermark - next offset to process; -1 when unknown
};

class KafkaEventSource {
 public:
  // Creates the consumer and subscribes. Throws KafkaError on invalid settings (not retryable,
  // naming the property).
  explicit KafkaEventSource(const KafkaSourceConfig& config);
  ~KafkaEventSource();
  KafkaEventSource(const KafkaEventSource&) = delete;
  KafkaEventSource& operator=(const KafkaEventSource&) = delete;

  // Waits up to `timeout` for a first record, then takes whatever else is already fetched, up to
  // `max` records. Serves rebalances. Consumer errors are logged, not thrown, except fatal ones.
  std::vector<ConsumedRecord> PollBatch(size_t max, std::chrono::milliseconds timeout);

  // The outcome of the batch's records is durable: store offset + 1 of each partition's last
  // record for commit. Records of partitions no longer assigned are ignored.
  void MarkProcessed(std::span<const RawRecord* const> batch);

  // Synchronous commit of the stored offsets.
  void CommitNow();

  // Stop / restart fetching on every assigned partition (backpressure while a dependency is down).
  // Partitions assigned while paused are paused too.
  void Pause();
  void Resume();
  bool paused() const;

  // Incremented on every revocation: a batch polled before a revocation must not be marked
  // processed after it (its partitions may already belong to another replica).
  uint64_t generation() const;

  // Lag per assigned partition, from librdkafka's cached high watermarks. Thread-safe.
  std::vector<PartitionLag> Lag() const;

  // False after a fatal error, or while all brokers are down. Thread-safe.
  bool Healthy() const;
  std::string HealthDetail() const;

  // Commits stored offsets and leaves the group. Idempotent; the destructor calls it.
  void Close() noexcept;

  struct State;

 private:
  void WakeFetcherIfStalled(size_t batch_size);

  std::unique_ptr<State> state_;
};

// The size a dead letter may have (key, value and headers) for a consumer whose records may be up
// to `max_record_bytes`: that plus room for workflowd's headers, at least librdkafka's default.
size_t DeadLetterMaxBytes(size_t max_record_bytes);

// Cuts the letter's value so that key, value and headers fit `max_bytes`, adding the header
// workflowd_dlq_truncated ("value truncated from N to M bytes"); when even the headers do not
// fit, the original key and headers are dropped too (workflowd_dlq_headers_dropped: true), never
// workflowd's own. Nothing changes for a letter that fits.
void FitDeadLetter(DeadLetter& letter, size_t max_bytes);

// Produces dead letters and waits until the broker acknowledged each of them (idempotent producer,
// acks=all), so an offset is only committed once its dead letter is durable. A letter above
// DeadLetterMaxBytes is cut to fit (FitDeadLetter); one the broker refuses as too large is sent
// again with its value cut to 64 KiB, then without a value, then without its original key and
// headers (workflowd's own headers always stay).
class DeadLetterProducer {
 public:
  // `delivery_timeout`: how long librdkafka tries to deliver a letter (message.timeout.ms).
  DeadLetterProducer(const std::string& brokers, std::string topic,
                     const std::map<std::string, std::string>& properties,
                     size_t max_record_bytes = 1 << 20,
                     std::chrono::milliseconds delivery_timeout = std::chrono::seconds(10));
  ~DeadLetterProducer();
  DeadLetterProducer(const DeadLetterProducer&) = delete;
  DeadLetterProducer& operator=(const DeadLetterProducer&) = delete;

  // Throws KafkaError (retryable) when not every letter was acknowledged within `timeout` (at
  // most the delivery timeout and 2 s more: librdkafka has reported every letter by then).
  void ProduceAll(const std::vector<DeadLetter>& letters, std::chrono::milliseconds timeout);

  const std::string& topic() const { return topic_; }
  size_t max_letter_bytes() const { return max_letter_bytes_; }

  struct State;

 private:
  std::string topic_;
  size_t max_letter_bytes_;
  std::chrono::milliseconds delivery_timeout_;
  std::unique_ptr<State> state_;
};

}  // namespace workflowd::consumers
