#include "workflowd/consumers/kafka_source.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <utility>

#include "rdkafka_handles.hpp"

namespace workflowd::consumers {

namespace {

// librdkafka's own log lines (a broker down, a failed connection, a rebalance) go to the daemon's
// logger, so that they follow log.level and log.format like every other line instead of going to
// stderr as librdkafka's text. Called on librdkafka's threads; spdlog's logger is thread-safe.
// Its levels are syslog's: 0-3 error, 4 warning, 5-6 notice and info, 7 debug.
void LogKafka(const rd_kafka_t* rk, int level, const char* facility, const char* message) {
  const spdlog::level::level_enum to = level <= 3   ? spdlog::level::err
                                       : level == 4 ? spdlog::level::warn
                                       : level <= 6 ? spdlog::level::info
                                                    : spdlog::level::debug;
  spdlog::log(to, "kafka client {}: {}: {}", rk != nullptr ? rd_kafka_name(rk) : "-", facility,
              message);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ConsumedRecord

ConsumedRecord::ConsumedRecord(rd_kafka_message_t* message) : message_(message) {
  const rd_kafka_message_t* m = message_.get();
  raw_.topic = rd_kafka_topic_name(m->rkt);
  raw_.partition = m->partition;
  raw_.offset = m->offset;
  if (m->key != nullptr) raw_.key = std::string_view(static_cast<const char*>(m->key), m->key_len);
  if (m->payload != nullptr) {
    raw_.value = std::string_view(static_cast<const char*>(m->payload), m->len);
  }
  rd_kafka_timestamp_type_t ts_type;
  raw_.timestamp_ms = rd_kafka_message_timestamp(m, &ts_type);
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR && headers != nullptr) {
    const char* name;
    const void* value;
    size_t size;
    for (size_t i = 0;
         rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      RawHeader h;
      h.key = name;
      if (value != nullptr) h.value = std::string_view(static_cast<const char*>(value), size);
      raw_.headers.push_back(h);
    }
  }
}

void ConsumedRecord::Destroy::operator()(rd_kafka_message_t* message) const noexcept {
  rd_kafka_message_destroy(message);
}

ConsumedRecord::Released ConsumedRecord::Release() && noexcept {
  return {std::move(raw_), message_.release()};
}

void ConsumedRecord::DestroyMessage(void* message) noexcept {
  if (message != nullptr) rd_kafka_message_destroy(static_cast<rd_kafka_message_t*>(message));
}

// ---------------------------------------------------------------------------------------------
// KafkaEventSource

struct KafkaEventSource::State {
  KafkaHandle rk;
  QueueHandle queue;
  std::atomic<uint64_t> generation{0};
  std::atomic<bool> closed{false};
  std::atomic<bool> brokers_down{false};
  std::atomic<bool> fatal{false};
  // True once a broker answered (a metadata request, or the group assigned us partitions).
  std::atomic<bool> joined{false};
  std::chrono::steady_clock::time_point next_probe{};
  std::chrono::steady_clock::time_point next_wake{};  // WakeFetcherIfStalled
  int wake_cursor = 0;
  mutable std::mutex mu;  // guards the fields below
  bool paused = false;
  std::string last_error;
  std::map<std::pair<std::string, int32_t>, int64_t> next_offset;  // processed position

  static void Rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t* partitions, void* opaque) {
    auto* self = static_cast<State*>(opaque);
    bool cooperative = std::string(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      if (cooperative) {
        ErrorHandle e(rd_kafka_incremental_assign(rk, partitions));
        if (e) spdlog::error("kafka incremental assign failed: {}", rd_kafka_error_string(e.get()));
      } else {
        rd_kafka_assign(rk, partitions);
      }
      self->joined = true;
      self->brokers_down = false;
      std::lock_guard lock(self->mu);
      if (self->paused) rd_kafka_pause_partitions(rk, partitions);
      spdlog::info("kafka partitions assigned: {}", Describe(partitions));
    } else {
      // Commit what was processed before giving the partitions away, so the next owner starts
      // right after it (nothing lost, nothing redone that was already durable).
      rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, nullptr, 0);
      if (cerr != RD_KAFKA_RESP_ERR_NO_ERROR && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        spdlog::warn("kafka commit on revoke failed: {}", rd_kafka_err2str(cerr));
      }
      self->generation.fetch_add(1);
      if (cooperative) {
        ErrorHandle e(rd_kafka_incremental_unassign(rk, partitions));
      } else {
        rd_kafka_assign(rk, nullptr);
      }
      std::lock_guard lock(self->mu);
      for (int i = 0; i < partitions->cnt; ++i) {
        self->next_offset.erase({partitions->elems[i].topic, partitions->elems[i].partition});
      }
      spdlog::info("kafka partitions revoked: {}", Describe(partitions));
    }
  }

  static void Error(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
    auto* self = static_cast<State*>(opaque);
    auto code = static_cast<rd_kafka_resp_err_t>(err);
    if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) self->brokers_down = true;
    if (code == RD_KAFKA_RESP_ERR__FATAL) {
      char buf[512];
      rd_kafka_fatal_error(rk, buf, sizeof buf);
      self->fatal = true;
      spdlog::critical("kafka fatal error: {}", buf);
    }
    std::lock_guard lock(self->mu);
    self->last_error = reason;
    spdlog::warn("kafka: {} ({})", reason, rd_kafka_err2name(code));
  }

  static std::string Describe(const rd_kafka_topic_partition_list_t* list) {
    std::string out;
    for (int i = 0; i < list->cnt; ++i) {
      if (!out.empty()) out += ", ";
      out +=
          std::string(list->elems[i].topic) + "[" + std::to_string(list->elems[i].partition) + "]";
    }
    return out.empty() ? "none" : out;
  }
};

KafkaEventSource::KafkaEventSource(const KafkaSourceConfig& config)
    : state_(std::make_unique<State>()) {
  ConfHandle conf(rd_kafka_conf_new());
  SetProperties(conf.get(), config.properties);
  SetProperties(conf.get(),
                {{"bootstrap.servers", config.brokers},
                 {"group.id", config.group_id},
                 {"client.id", config.client_id},
                 {"enable.auto.offset.store", "false"},
                 {"enable.auto.commit", "true"},
                 {"auto.commit.interval.ms", std::to_string(config.commit_interval.count())},
                 {"enable.partition.eof", "false"}});
  if (!config.properties.contains("auto.offset.reset")) {
    SetProperties(conf.get(), {{"auto.offset.reset", "earliest"}});
  }
  // Prefetch at most 16 MB of records (librdkafka's default is 64 MB, which becomes resident
  // memory as soon as a backlog is consumed); 16 MB still holds tens of thousands of events,
  // far more than a batch, so consumption does not wait on fetches.
  if (!config.properties.contains("queued.max.messages.kbytes")) {
    SetProperties(conf.get(), {{"queued.max.messages.kbytes", "16384"}});
  }
  rd_kafka_conf_set_opaque(conf.get(), state_.get());
  rd_kafka_conf_set_rebalance_cb(conf.get(), &State::Rebalance);
  rd_kafka_conf_set_error_cb(conf.get(), &State::Error);
  rd_kafka_conf_set_log_cb(conf.get(), &LogKafka);

  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err);
  if (rk == nullptr) throw KafkaError(std::string("kafka consumer: ") + err, false);
  static_cast<void>(conf.release());  // owned by rk now
  state_->rk.reset(rk);
  rd_kafka_poll_set_consumer(rk);
  state_->queue.reset(rd_kafka_queue_get_consumer(rk));

  PartitionListHandle topics(
      rd_kafka_topic_partition_list_new(static_cast<int>(config.topics.size())));
  for (const auto& t : config.topics) {
    rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
  }
  rd_kafka_resp_err_t serr = rd_kafka_subscribe(rk, topics.get());
  if (serr != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw KafkaError(std::string("kafka subscribe: ") + rd_kafka_err2str(serr), false);
  }
}

KafkaEventSource::~KafkaEventSource() { Close(); }

std::vector<ConsumedRecord> KafkaEventSource::PollBatch(size_t max,
                                                        std::chrono::milliseconds timeout) {
  std::vector<ConsumedRecord> batch;
  if (state_->closed || max == 0) return batch;
  if (state_->fatal) throw KafkaError("kafka consumer hit a fatal error", false);
  auto take = [&](rd_kafka_message_t* m) {
    MessageHandle msg(m);
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        spdlog::warn("kafka consume error: {}", rd_kafka_message_errstr(msg.get()));
      }
      return;
    }
    state_->brokers_down = false;
    ConsumedRecord record(msg.release());
    batch.push_back(std::move(record));
  };
  rd_kafka_message_t* first =
      rd_kafka_consume_queue(state_->queue.get(), static_cast<int>(timeout.count()));
  if (first == nullptr) {
    // An idle (or not yet created) topic brings no message to prove a broker answers: ask for
    // metadata now and then until one did, and while they are reported down.
    auto now = std::chrono::steady_clock::now();
    if ((state_->brokers_down || !state_->joined) && now >= state_->next_probe) {
      state_->next_probe = now + std::chrono::seconds(2);
      const rd_kafka_metadata_t* md = nullptr;
      if (rd_kafka_metadata(state_->rk.get(), 0, nullptr, &md, 1000) ==
          RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(md);
        state_->brokers_down = false;
        state_->joined = true;
      }
    }
    return batch;
  }
  take(first);
  std::vector<rd_kafka_message_t*> more(max > 1 ? max - 1 : 0);
  if (!more.empty()) {
    ssize_t n = rd_kafka_consume_batch_queue(state_->queue.get(), 0, more.data(), more.size());
    if (n > 0) batch.reserve(batch.size() + static_cast<size_t>(n));
    for (ssize_t i = 0; i < n; ++i) take(more[static_cast<size_t>(i)]);
  }
  if (batch.size() < max) WakeFetcherIfStalled(max);
  return batch;
}

// librdkafka before 2.1 stops fetching a partition while its prefetch queue is above
// queued.max.messages.kbytes and only looks again when its broker thread wakes up, at the latest
// after one second (fixed upstream by fetch.queue.backoff.ms in 2.1; Debian 12 ships 2.0.2). A
// consumer faster than one prefetch queue per second therefore drains the queue and then waits
// up to a second with the broker holding more records: a backlog is consumed at about one queue
// per second whatever the daemon's speed. When the local queue ran dry while the broker has more
// records for an assigned partition (cached high watermark well beyond our position: more than
// two batches, so a steady stream's records in flight do not count), a watermark query for that
// partition (a ListOffsets request to its leader) wakes the leader's broker thread, which then
// decides to fetch again at once. At most one query every 10 ms; an idle topic or a steady
// stream causes none.
void KafkaEventSource::WakeFetcherIfStalled(size_t batch_size) {
  auto now = std::chrono::steady_clock::now();
  if (now < state_->next_wake) return;
  // Looked at most every 10 ms, whether or not a query is sent: the check itself (assignment,
  // positions) is not free, and a steady stream polls small batches often.
  state_->next_wake = now + std::chrono::milliseconds(10);
  {
    std::lock_guard lock(state_->mu);
    if (state_->paused) return;
  }
  rd_kafka_topic_partition_list_t* assigned = nullptr;
  if (rd_kafka_assignment(state_->rk.get(), &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  PartitionListHandle list(assigned);
  if (list->cnt == 0) return;
  rd_kafka_position(state_->rk.get(), list.get());
  for (int k = 0; k < list->cnt; ++k) {
    // Round-robin over the partitions, so that with several leaders each gets woken in turn.
    const auto& e = list->elems[(state_->wake_cursor + k) % list->cnt];
    int64_t low = -1, high = -1;
    if (e.offset < 0 ||
        rd_kafka_get_watermark_offsets(state_->rk.get(), e.topic, e.partition, &low, &high) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        high - e.offset <= static_cast<int64_t>(std::max<size_t>(batch_size, 1000) * 2)) {
      continue;  // nothing, or no more than a steady stream has in flight: not a stalled backlog
    }
    state_->wake_cursor = (state_->wake_cursor + k + 1) % list->cnt;
    rd_kafka_query_watermark_offsets(state_->rk.get(), e.topic, e.partition, &low, &high, 50);
    return;
  }
}

void KafkaEventSource::MarkProcessed(std::span<const RawRecord* const> batch) {
  if (batch.empty()) return;
  std::map<std::pair<std::string, int32_t>, int64_t> next;
  // Records of one partition come in runs: one map lookup per run, not per record.
  const RawRecord* run = nullptr;
  int64_t* n = nullptr;
  for (const RawRecord* r : batch) {
    const RawRecord& raw = *r;
    if (run == nullptr || raw.partition != run->partition || raw.topic != run->topic) {
      n = &next[{std::string(raw.topic), raw.partition}];
      run = &raw;
    }
    *n = std::max(*n, raw.offset + 1);
  }
  PartitionListHandle list(rd_kafka_topic_partition_list_new(static_cast<int>(next.size())));
  for (const auto& [tp, offset] : next) {
    rd_kafka_topic_partition_list_add(list.get(), tp.first.c_str(), tp.second)->offset = offset;
  }
  // Fails with _STATE for partitions no longer assigned: those are skipped on purpose.
  rd_kafka_offsets_store(state_->rk.get(), list.get());
  std::lock_guard lock(state_->mu);
  for (int i = 0; i < list->cnt; ++i) {
    if (list->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      state_->next_offset[{list->elems[i].topic, list->elems[i].partition}] = list->elems[i].offset;
    }
  }
}

void KafkaEventSource::CommitNow() {
  rd_kafka_resp_err_t err = rd_kafka_commit(state_->rk.get(), nullptr, 0);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
    throw KafkaError(std::string("kafka commit: ") + rd_kafka_err2str(err), true);
  }
}

void KafkaEventSource::Pause() {
  std::lock_guard lock(state_->mu);
  if (state_->paused) return;
  rd_kafka_topic_partition_list_t* assigned = nullptr;
  if (rd_kafka_assignment(state_->rk.get(), &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    PartitionListHandle list(assigned);
    rd_kafka_pause_partitions(state_->rk.get(), list.get());
  }
  state_->paused = true;
}

void KafkaEventSource::Resume() {
  std::lock_guard lock(state_->mu);
  if (!state_->paused) return;
  rd_kafka_topic_partition_list_t* assigned = nullptr;
  if (rd_kafka_assignment(state_->rk.get(), &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    PartitionListHandle list(assigned);
    rd_kafka_resume_partitions(state_->rk.get(), list.get());
  }
  state_->paused = false;
}

bool KafkaEventSource::paused() const {
  std::lock_guard lock(state_->mu);
  return state_->paused;
}

uint64_t KafkaEventSource::generation() const { return state_->generation.load(); }

std::vector<PartitionLag> KafkaEventSource::Lag() const {
  std::vector<PartitionLag> out;
  if (state_->closed) return out;
  rd_kafka_topic_partition_list_t* assigned = nullptr;
  if (rd_kafka_assignment(state_->rk.get(), &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR) return out;
  PartitionListHandle list(assigned);
  rd_kafka_position(state_->rk.get(), list.get());
  std::lock_guard lock(state_->mu);
  for (int i = 0; i < list->cnt; ++i) {
    const auto& e = list->elems[i];
    int64_t low = -1, high = -1;
    PartitionLag lag{e.topic, e.partition, -1};
    if (rd_kafka_get_watermark_offsets(state_->rk.get(), e.topic, e.partition, &low, &high) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        high >= 0) {
      auto it = state_->next_offset.find({e.topic, e.partition});
      int64_t next = it != state_->next_offset.end() ? it->second : e.offset;
      if (next >= 0) lag.lag = std::max<int64_t>(0, high - next);
    }
    out.push_back(std::move(lag));
  }
  return out;
}

bool KafkaEventSource::Healthy() const {
  return !state_->closed && !state_->fatal && !state_->brokers_down && state_->joined;
}

std::string KafkaEventSource::HealthDetail() const {
  if (state_->closed) return "closed";
  if (state_->fatal) return "fatal error";
  std::lock_guard lock(state_->mu);
  if (state_->brokers_down) return "all brokers down: " + state_->last_error;
  if (!state_->joined) return "no broker has answered yet";
  return "consuming";
}

void KafkaEventSource::Close() noexcept {
  if (!state_ || state_->closed.exchange(true)) return;
  rd_kafka_resp_err_t err = rd_kafka_commit(state_->rk.get(), nullptr, 0);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
    spdlog::warn("kafka commit on close failed: {}", rd_kafka_err2str(err));
  }
  rd_kafka_consumer_close(state_->rk.get());
  state_->queue.reset();
  state_->rk.reset();
}

// ---------------------------------------------------------------------------------------------
// DeadLetterProducer

struct DeadLetterProducer::State {
  KafkaHandle rk;
};

namespace {

// What became of each letter of one ProduceAll call. Shared with the delivery reports through a
// reference per message (DeliveryRef), so a report that arrives after ProduceAll gave up (a
// timeout, an exception) updates this heap object, never a finished call's stack.
struct DeliveryState {
  explicit DeliveryState(size_t n) : results(n, RD_KAFKA_RESP_ERR__IN_PROGRESS) {}
  std::mutex mu;
  std::vector<rd_kafka_resp_err_t> results;  // _IN_PROGRESS until reported
  size_t reported = 0;
};

struct DeliveryRef {
  std::shared_ptr<DeliveryState> state;
  size_t index = 0;
};

void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
  std::unique_ptr<DeliveryRef> ref(static_cast<DeliveryRef*>(m->_private));
  if (!ref) return;
  std::lock_guard lock(ref->state->mu);
  ref->state->results[ref->index] = m->err;
  ++ref->state->reported;
}

bool IsSizeError(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
         err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

size_t LetterBytes(const DeadLetter& l) {
  size_t n = (l.key ? l.key->size() : 0) + (l.value ? l.value->size() : 0);
  for (const auto& [name, value] : l.headers) n += name.size() + (value ? value->size() : 0);
  return n;
}

}  // namespace

void DropDeadLetterValue(DeadLetter& letter) {
  const size_t value_size = letter.value ? letter.value->size() : 0;
  if (value_size == 0) return;
  letter.value->clear();
  letter.headers.emplace_back("workflowd_dlq_truncated",
                              "value truncated from " + std::to_string(value_size) + " to 0 bytes");
}

void FitDeadLetter(DeadLetter& letter, size_t max_bytes) {
  size_t total = LetterBytes(letter);
  if (total <= max_bytes) return;
  const size_t value_size = letter.value ? letter.value->size() : 0;
  // The workflowd_dlq_truncated header below, at most ~80 bytes.
  constexpr size_t kNoteBytes = 128;
  size_t others = total - value_size + kNoteBytes;
  if (others > max_bytes) {
    // Even without the value the letter is too large (huge original headers or key): the
    // original headers and key go; workflowd's own headers (reason, source offset) stay.
    const size_t dropped = std::erase_if(
        letter.headers, [](const auto& h) { return h.first.rfind("workflowd_", 0) != 0; });
    if (dropped > 0 || letter.key) {
      letter.key.reset();
      letter.headers.emplace_back("workflowd_dlq_headers_dropped", "true");
    }
    others = LetterBytes(letter) - value_size + kNoteBytes;
  }
  size_t keep = others < max_bytes ? max_bytes - others : 0;
  keep = std::min(keep, value_size);
  if (letter.value) letter.value->resize(keep);
  letter.headers.emplace_back("workflowd_dlq_truncated", "value truncated from " +
                                                             std::to_string(value_size) + " to " +
                                                             std::to_string(keep) + " bytes");
}

size_t DeadLetterMaxBytes(size_t max_record_bytes) {
  // A dead letter carries the whole original record (value and headers up to max_record_bytes,
  // a too_large one beyond) plus workflowd's headers: the producer takes the consumer's limit
  // with room for those, and never less than librdkafka's default.
  constexpr size_t kLibrdkafkaDefault = 1'000'000;
  constexpr size_t kHeadroom = size_t{64} * 1024;
  return std::max(kLibrdkafkaDefault, max_record_bytes + kHeadroom);
}

DeadLetterProducer::DeadLetterProducer(const std::string& brokers, std::string topic,
                                       const std::map<std::string, std::string>& properties,
                                       size_t max_record_bytes,
                                       std::chrono::milliseconds delivery_timeout)
    : topic_(std::move(topic)),
      max_letter_bytes_(DeadLetterMaxBytes(max_record_bytes)),
      delivery_timeout_(delivery_timeout),
      state_(std::make_unique<State>()) {
  ConfHandle conf(rd_kafka_conf_new());
  std::map<std::string, std::string> props;
  // Consumer-only properties would be rejected or warned about by a producer: keep the shared
  // connection settings (security, client tuning) only.
  for (const auto& [k, v] : properties) {
    if (k.rfind("security.", 0) == 0 || k.rfind("sasl.", 0) == 0 || k.rfind("ssl.", 0) == 0 ||
        k == "client.id" || k == "socket.timeout.ms") {
      props[k] = v;
    }
  }
  SetProperties(conf.get(), props);
  SetProperties(conf.get(), {{"bootstrap.servers", brokers},
                             {"enable.idempotence", "true"},
                             {"acks", "all"},
                             {"linger.ms", "5"},
                             // A letter not acknowledged by then is reported failed and the batch
                             // retried: none stays queued behind a call that gave up.
                             {"message.timeout.ms", std::to_string(delivery_timeout.count())},
                             // A request carries at least one whole letter and its framing.
                             {"message.max.bytes", std::to_string(max_letter_bytes_ + 4096)}});
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &OnDelivery);
  rd_kafka_conf_set_log_cb(conf.get(), &LogKafka);
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err);
  if (rk == nullptr) throw KafkaError(std::string("kafka producer: ") + err, false);
  static_cast<void>(conf.release());  // owned by rk now
  state_->rk.reset(rk);
}

DeadLetterProducer::~DeadLetterProducer() {
  if (!state_ || !state_->rk) return;
  rd_kafka_flush(state_->rk.get(), 5000);
  // Letters still queued (the broker is away) are dropped with a delivery report each, which
  // frees their DeliveryRef.
  rd_kafka_purge(state_->rk.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_flush(state_->rk.get(), 1000);
}

void DeadLetterProducer::ProduceAll(const std::vector<DeadLetter>& letters,
                                    std::chrono::milliseconds timeout) {
  if (letters.empty()) return;
  // Letters the topic refuses as too large are sent again smaller: first with the value cut to
  // fit 64 KiB, then without a value, last without the original key and headers too. The
  // broker's (or the topic's) message.max.bytes may be below ours; a dead letter must never stop
  // the stream.
  constexpr size_t kWithoutValue = std::numeric_limits<size_t>::max();
  const std::array<size_t, 4> limits = {max_letter_bytes_, size_t{64} * 1024, kWithoutValue, 0};
  std::vector<size_t> todo(letters.size());
  for (size_t i = 0; i < todo.size(); ++i) todo[i] = i;
  // Every letter is reported by message.timeout.ms (the delivery timeout): waiting a little
  // longer than the shorter of the two means no copy is left in the queue when a call gives up.
  auto deadline = std::chrono::steady_clock::now() + std::min(timeout, delivery_timeout_) +
                  std::chrono::seconds(2);
  for (size_t round = 0; round < limits.size() && !todo.empty(); ++round) {
    auto state = std::make_shared<DeliveryState>(todo.size());
    std::vector<size_t> too_large;
    size_t produced = 0;
    for (size_t k = 0; k < todo.size(); ++k) {
      // Copied only when it has to be cut (a letter may be up to the record limit).
      std::optional<DeadLetter> cut;
      if (limits[round] == kWithoutValue) {
        cut = letters[todo[k]];
        DropDeadLetterValue(*cut);
      } else if (LetterBytes(letters[todo[k]]) > limits[round]) {
        cut = letters[todo[k]];
        FitDeadLetter(*cut, limits[round]);
      }
      const DeadLetter& letter = cut ? *cut : letters[todo[k]];
      rd_kafka_headers_t* headers = rd_kafka_headers_new(letter.headers.size());
      for (const auto& [name, value] : letter.headers) {
        rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()),
                            value ? value->data() : nullptr,
                            value ? static_cast<ssize_t>(value->size()) : 0);
      }
      // The RD_KAFKA_V_* macros cast their arguments: pass plain variables.
      const void* key = letter.key ? letter.key->data() : nullptr;
      size_t key_len = letter.key ? letter.key->size() : 0;
      void* value = letter.value ? const_cast<char*>(letter.value->data()) : nullptr;
      size_t value_len = letter.value ? letter.value->size() : 0;
      auto ref = std::make_unique<DeliveryRef>(DeliveryRef{state, k});
      rd_kafka_resp_err_t err = rd_kafka_producev(
          state_->rk.get(), RD_KAFKA_V_TOPIC(topic_.c_str()), RD_KAFKA_V_KEY(key, key_len),
          RD_KAFKA_V_VALUE(value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(ref.get()), RD_KAFKA_V_END);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(headers);  // not taken over on failure
        if (IsSizeError(err)) {
          too_large.push_back(todo[k]);
          std::lock_guard lock(state->mu);
          state->results[k] = err;
          ++state->reported;
          continue;
        }
        // The letters produced so far report to `state` (on the heap) whenever they complete.
        throw KafkaError(std::string("dead letter produce: ") + rd_kafka_err2str(err),
                         err != RD_KAFKA_RESP_ERR__FATAL);
      }
      static_cast<void>(ref.release());  // owned by the delivery report now
      ++produced;
    }
    auto all_reported = [&] {
      std::lock_guard lock(state->mu);
      return state->reported == todo.size();
    };
    while (!all_reported() && std::chrono::steady_clock::now() < deadline) {
      rd_kafka_poll(state_->rk.get(), 50);
    }
    if (!all_reported()) {
      throw KafkaError("dead letters not acknowledged by the broker within " +
                           std::to_string(timeout.count()) + " ms",
                       true);
    }
    std::string first_error;
    {
      std::lock_guard lock(state->mu);
      for (size_t k = 0; k < todo.size(); ++k) {
        rd_kafka_resp_err_t err = state->results[k];
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) continue;
        if (IsSizeError(err)) {
          if (std::find(too_large.begin(), too_large.end(), todo[k]) == too_large.end()) {
            too_large.push_back(todo[k]);
          }
        } else if (first_error.empty()) {
          first_error = rd_kafka_err2str(err);
        }
      }
    }
    if (!first_error.empty()) {
      throw KafkaError("dead letters not acknowledged by the broker: " + first_error, true);
    }
    if (!too_large.empty() && round + 1 < limits.size()) {
      const size_t next = limits[round + 1];
      spdlog::warn("{} dead letter(s) refused as too large by {}; sending them again {}",
                   too_large.size(), topic_,
                   next == kWithoutValue ? std::string("without their value")
                   : next == 0 ? std::string("without their value, key and original headers")
                               : "with the value cut to " + std::to_string(next) + " bytes");
    }
    std::sort(too_large.begin(), too_large.end());
    todo = std::move(too_large);
  }
  if (!todo.empty()) {
    throw KafkaError("dead letters refused as too large even without their value by " + topic_,
                     true);
  }
}

}  // namespace workflowd::consumers
