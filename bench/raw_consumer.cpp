// The consume ceiling: a plain librdkafka consumer reading the same topic the daemon reads, with
// the same API the daemon uses (consumer group, rd_kafka_consume_batch_queue on the consumer
// queue), doing nothing with the records but counting them and touching their bytes.
//
//   raw_consumer --brokers B --topic T --group G --count N [--timeout-s S] [--batch N]
//
// Prints one JSON line: records, bytes, seconds (first record -> Nth record), rate (records/s over
// the whole run) and rate_10_90 (between the 10 % and 90 % marks, the same window bench.py uses
// for the daemon, so warm-up and tail do not count).
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

void Set(rd_kafka_conf_t* conf, const char* k, const std::string& v) {
  char err[512];
  if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
    std::fprintf(stderr, "raw_consumer: %s=%s: %s\n", k, v.c_str(), err);
    std::exit(2);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string brokers = "127.0.0.1:9092", topic, group = "bench-raw";
  long long count = 0;
  double timeout_s = 120;
  size_t batch = 500;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "raw_consumer: missing value for %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--brokers")
      brokers = next();
    else if (a == "--topic")
      topic = next();
    else if (a == "--group")
      group = next();
    else if (a == "--count")
      count = std::stoll(next());
    else if (a == "--timeout-s")
      timeout_s = std::stod(next());
    else if (a == "--batch")
      batch = std::stoul(next());
    else {
      std::fprintf(stderr, "raw_consumer: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (topic.empty() || count <= 0) {
    std::fprintf(stderr, "usage: raw_consumer --brokers B --topic T --group G --count N\n");
    return 2;
  }
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  Set(conf, "bootstrap.servers", brokers);
  Set(conf, "group.id", group);
  Set(conf, "auto.offset.reset", "earliest");
  Set(conf, "enable.auto.commit", "false");
  Set(conf, "enable.partition.eof", "false");
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk == nullptr) {
    std::fprintf(stderr, "raw_consumer: %s\n", err);
    return 1;
  }
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_queue_t* queue = rd_kafka_queue_get_consumer(rk);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (rd_kafka_subscribe(rk, topics) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    std::fprintf(stderr, "raw_consumer: subscribe failed\n");
    return 1;
  }
  rd_kafka_topic_partition_list_destroy(topics);

  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(timeout_s));
  long long got = 0;
  unsigned long long bytes = 0, checksum = 0;
  Clock::time_point first{}, last{}, t10{}, t90{};
  long long c10 = 0, c90 = 0;
  std::vector<rd_kafka_message_t*> msgs(batch);
  while (got < count && Clock::now() < deadline) {
    ssize_t n = rd_kafka_consume_batch_queue(queue, 100, msgs.data(), msgs.size());
    for (ssize_t i = 0; i < n; ++i) {
      rd_kafka_message_t* m = msgs[static_cast<size_t>(i)];
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (got == 0) first = Clock::now();
        ++got;
        bytes += m->len;
        if (m->len > 0) checksum += static_cast<const unsigned char*>(m->payload)[m->len - 1];
      }
      rd_kafka_message_destroy(m);
    }
    if (n > 0) {
      last = Clock::now();
      if (c10 == 0 && got >= count / 10) {
        c10 = got;
        t10 = last;
      }
      if (c90 == 0 && got >= count * 9 / 10) {
        c90 = got;
        t90 = last;
      }
    }
  }
  double secs = std::chrono::duration<double>(last - first).count();
  double rate = secs > 0 ? static_cast<double>(got) / secs : 0;
  double w = std::chrono::duration<double>(t90 - t10).count();
  double rate1090 = (c90 > c10 && w > 0) ? static_cast<double>(c90 - c10) / w : rate;
  std::printf(
      "{\"records\":%lld,\"bytes\":%llu,\"seconds\":%.3f,\"rate\":%.0f,\"rate_10_90\":%.0f,"
      "\"checksum\":%llu}\n",
      got, bytes, secs, rate, rate1090, checksum);
  rd_kafka_consumer_close(rk);
  rd_kafka_queue_destroy(queue);
  rd_kafka_destroy(rk);
  return got == count ? 0 : 1;
}
