// Produces to and consumes from the real Kafka broker (scripts/services.sh) with librdkafka.
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "test_env.hpp"

namespace workflowd {
namespace {

using workflowd::testing::RandomSuffix;
using workflowd::testing::RequireEnv;

struct KafkaDeleter {
  void operator()(rd_kafka_t* k) const { rd_kafka_destroy(k); }
};
struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using KafkaHandle = std::unique_ptr<rd_kafka_t, KafkaDeleter>;
using ConfHandle = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using MessageHandle = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;

ConfHandle MakeConf(const std::map<std::string, std::string>& props) {
  ConfHandle conf(rd_kafka_conf_new());
  char err[512];
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      ADD_FAILURE() << k << ": " << err;
    }
  }
  return conf;
}

KafkaHandle MakeClient(rd_kafka_type_t type, ConfHandle conf) {
  char err[512];
  rd_kafka_t* k = rd_kafka_new(type, conf.get(), err, sizeof err);
  if (k == nullptr) {
    ADD_FAILURE() << "rd_kafka_new: " << err;
    return nullptr;
  }
  static_cast<void>(conf.release());  // owned by the client now
  return KafkaHandle(k);
}

TEST(KafkaRoundTrip, ProducesAndConsumesThroughTheRealBroker) {
  const std::string brokers = RequireEnv("WORKFLOWD_TEST_KAFKA_BROKERS");
  const std::string topic = "wfd-roundtrip-" + RandomSuffix();
  constexpr int kMessages = 200;
  constexpr int kKeys = 8;

  auto producer = MakeClient(RD_KAFKA_PRODUCER, MakeConf({{"bootstrap.servers", brokers},
                                                          {"enable.idempotence", "true"},
                                                          {"allow.auto.create.topics", "true"}}));
  ASSERT_TRUE(producer);
  for (int i = 0; i < kMessages; ++i) {
    std::string key = "customer-" + std::to_string(i % kKeys);
    std::string value = std::to_string(i);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        producer.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
        RD_KAFKA_V_VALUE(value.data(), value.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADER("ce_type", "customer.created", -1), RD_KAFKA_V_END);
    ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
    rd_kafka_poll(producer.get(), 0);
  }
  ASSERT_EQ(rd_kafka_flush(producer.get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR)
      << "messages not delivered to " << brokers;

  auto consumer =
      MakeClient(RD_KAFKA_CONSUMER, MakeConf({{"bootstrap.servers", brokers},
                                              {"group.id", "wfd-test-" + RandomSuffix()},
                                              {"auto.offset.reset", "earliest"},
                                              {"enable.auto.commit", "false"}}));
  ASSERT_TRUE(consumer);
  rd_kafka_poll_set_consumer(consumer.get());
  std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter> topics(
      rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  ASSERT_EQ(rd_kafka_subscribe(consumer.get(), topics.get()), RD_KAFKA_RESP_ERR_NO_ERROR);

  std::map<std::string, int> last_by_key;  // per-key order must be kept (same partition)
  int received = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (received < kMessages && std::chrono::steady_clock::now() < deadline) {
    MessageHandle msg(rd_kafka_consumer_poll(consumer.get(), 500));
    if (!msg) continue;
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
    ASSERT_EQ(msg->err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_message_errstr(msg.get());
    std::string key(static_cast<const char*>(msg->key), msg->key_len);
    int value = std::stoi(std::string(static_cast<const char*>(msg->payload), msg->len));
    EXPECT_EQ(value % kKeys, std::stoi(key.substr(9)));
    auto it = last_by_key.find(key);
    if (it != last_by_key.end()) EXPECT_GT(value, it->second) << "order broken for " << key;
    last_by_key[key] = value;
    rd_kafka_headers_t* headers = nullptr;
    ASSERT_EQ(rd_kafka_message_headers(msg.get(), &headers), RD_KAFKA_RESP_ERR_NO_ERROR);
    const void* hv = nullptr;
    size_t hlen = 0;
    ASSERT_EQ(rd_kafka_header_get_last(headers, "ce_type", &hv, &hlen), RD_KAFKA_RESP_ERR_NO_ERROR);
    EXPECT_EQ(std::string(static_cast<const char*>(hv), hlen), "customer.created");
    ++received;
  }
  EXPECT_EQ(received, kMessages);
  EXPECT_EQ(last_by_key.size(), static_cast<size_t>(kKeys));
  rd_kafka_consumer_close(consumer.get());
}

}  // namespace
}  // namespace workflowd
