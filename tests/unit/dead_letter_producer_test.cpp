// The dead-letter producer's own bookkeeping, without a broker: a call that gives up leaves
// nothing behind that a later delivery report could touch.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "workflowd/consumers/kafka_source.hpp"

namespace workflowd::consumers {
namespace {

TEST(DeadLetterProducer, GivesUpAtItsTimeoutWhenTheBrokerIsAwayAndForgetsTheCallCleanly) {
  // Nothing listens on port 1: the letters stay queued. ProduceAll returns (throws a retryable
  // error) at its timeout; the delivery reports that come later (the destructor purges the
  // queue) must not touch the finished call's state (ASan checks this under the sanitizer run).
  auto started = std::chrono::steady_clock::now();
  {
    DeadLetterProducer producer("127.0.0.1:1", "dead-letters", {}, 1 << 20,
                                std::chrono::milliseconds(300));
    std::vector<DeadLetter> letters(3, DeadLetter{"k", std::string(10, 'v'), {{"h", "x"}}});
    try {
      producer.ProduceAll(letters, std::chrono::milliseconds(300));
      FAIL() << "expected a KafkaError";
    } catch (const KafkaError& e) {
      EXPECT_TRUE(e.Retryable()) << e.what();
    }
    // Another call after the failed one works the same (nothing of the first is left behind).
    EXPECT_THROW(producer.ProduceAll(letters, std::chrono::milliseconds(100)), KafkaError);
  }
  // Bounded by the delivery timeout (+2 s each call) and the destructor's flush, not by
  // librdkafka's default message.timeout.ms (300 s).
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(15));
}

// librdkafka's own log lines (here: the broker cannot be reached) go through the daemon's logger,
// so they follow log.format and log.level, instead of librdkafka's text on stderr.
TEST(KafkaClientLogs, GoThroughTheDaemonsLogger) {
  auto text = std::make_shared<std::ostringstream>();
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(*text);
  auto before = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  bool seen = false;
  {
    DeadLetterProducer producer("127.0.0.1:1", "dead-letters", {}, 1 << 20,
                                std::chrono::milliseconds(300));
    std::vector<DeadLetter> letters(1, DeadLetter{"k", "v", {}});
    EXPECT_THROW(producer.ProduceAll(letters, std::chrono::milliseconds(300)), KafkaError);
    for (int i = 0; i < 100 && !seen; ++i) {
      sink->flush();
      seen = text->str().find("kafka client ") != std::string::npos;
      if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  spdlog::set_default_logger(before);
  EXPECT_TRUE(seen) << text->str();
  EXPECT_NE(text->str().find("127.0.0.1:1"), std::string::npos) << text->str();
}

}  // namespace
}  // namespace workflowd::consumers
