// A minimal librdkafka producer and consumer for tests: produce events with headers, read a topic
// from the beginning (for example the dead-letter topic).
#pragma once

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace workflowd::testing {

struct TestRecord {
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::string>> headers;
  int32_t partition = -1;
  int64_t offset = -1;

  std::optional<std::string> Header(const std::string& name) const {
    std::optional<std::string> found;
    for (const auto& [k, v] : headers) {
      if (k == name) found = v;
    }
    return found;
  }
};

class TestProducer {
 public:
  // `properties`: more librdkafka settings, e.g. {"message.max.bytes", "4000000"} for records
  // above librdkafka's default limit of 1,000,000 bytes.
  explicit TestProducer(const std::string& brokers,
                        const std::map<std::string, std::string>& properties = {}) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char err[512];
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err);
    rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err);
    rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof err);
    for (const auto& [k, v] : properties) {
      if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
        ADD_FAILURE() << "producer property " << k << ": " << err;
      }
    }
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (rk_ == nullptr) ADD_FAILURE() << "producer: " << err;
  }
  ~TestProducer() {
    if (rk_ != nullptr) {
      rd_kafka_flush(rk_, 10000);
      rd_kafka_destroy(rk_);
    }
  }
  TestProducer(const TestProducer&) = delete;
  TestProducer& operator=(const TestProducer&) = delete;

  void Produce(const std::string& topic, const TestRecord& r) {
    rd_kafka_headers_t* headers = rd_kafka_headers_new(r.headers.size());
    for (const auto& [k, v] : r.headers)
      rd_kafka_header_add(headers, k.c_str(), -1, v.data(), static_cast<ssize_t>(v.size()));
    const void* key = r.key ? r.key->data() : nullptr;
    size_t key_len = r.key ? r.key->size() : 0;
    void* value = r.value ? const_cast<char*>(r.value->data()) : nullptr;
    size_t value_len = r.value ? r.value->size() : 0;
    rd_kafka_resp_err_t err;
    while ((err = rd_kafka_producev(
                rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key, key_len),
                RD_KAFKA_V_VALUE(value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk_, 10);
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_headers_destroy(headers);
      ADD_FAILURE() << "produce: " << rd_kafka_err2str(err);
    }
    rd_kafka_poll(rk_, 0);
  }

  void Flush() {
    ASSERT_EQ(rd_kafka_flush(rk_, 30000), RD_KAFKA_RESP_ERR_NO_ERROR) << "flush timed out";
  }

 private:
  rd_kafka_t* rk_ = nullptr;
};

// Creates `topic` with `partitions` partitions and topic-level settings `configs` (e.g.
// {"max.message.bytes", "4194304"}); fails the test when the broker refuses.
inline void CreateTopic(const std::string& brokers, const std::string& topic, int partitions,
                        const std::map<std::string, std::string>& configs = {}) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_NE(rk, nullptr) << err;
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err, sizeof err);
  ASSERT_NE(nt, nullptr) << err;
  for (const auto& [k, v] : configs) rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, nullptr, queue);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 30000);
  std::string problem = "no answer from the broker";
  if (event != nullptr) {
    problem.clear();
    if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      problem = rd_kafka_event_error_string(event);
    } else if (const rd_kafka_CreateTopics_result_t* result =
                   rd_kafka_event_CreateTopics_result(event)) {
      size_t n = 0;
      const rd_kafka_topic_result_t** topics = rd_kafka_CreateTopics_result_topics(result, &n);
      for (size_t i = 0; i < n; ++i) {
        if (rd_kafka_topic_result_error(topics[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
          problem = rd_kafka_topic_result_error_string(topics[i]);
        }
      }
    }
    rd_kafka_event_destroy(event);
  }
  rd_kafka_queue_destroy(queue);
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_destroy(rk);
  EXPECT_EQ(problem, "") << "creating topic " << topic;
}

// Reads every record of `topic` from the beginning until `expected` records arrived or `timeout`.
inline std::vector<TestRecord> ReadTopic(const std::string& brokers, const std::string& topic,
                                         size_t expected, std::chrono::milliseconds timeout) {
  std::vector<TestRecord> out;
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  std::string group = "wfd-test-reader-" + topic;
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof err);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk == nullptr) {
    ADD_FAILURE() << "consumer: " << err;
    return out;
  }
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out.size() < expected && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 200);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      TestRecord r;
      if (m->key) r.key = std::string(static_cast<const char*>(m->key), m->key_len);
      if (m->payload) r.value = std::string(static_cast<const char*>(m->payload), m->len);
      r.partition = m->partition;
      r.offset = m->offset;
      rd_kafka_headers_t* h = nullptr;
      if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name;
        const void* val;
        size_t size;
        for (size_t i = 0;
             rd_kafka_header_get_all(h, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
          r.headers.emplace_back(name, val ? std::string(static_cast<const char*>(val), size) : "");
        }
      }
      out.push_back(std::move(r));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return out;
}

}  // namespace workflowd::testing
