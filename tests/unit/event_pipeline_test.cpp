// EventPipeline against fakes of its record source, dead-letter sink and execution writer: offsets
// are stored only once a batch's outcome is durable; a database or dead-letter outage is retried
// with backoff while consumption is paused, and nothing is stored meanwhile; a record PostgreSQL
// refuses, or one that does not decode, becomes a dead letter and the rest of the batch is written.
// Time is a ManualSteadyClock that the fake source moves by each poll's timeout: backoff delays
// are exact, and no test sleeps through them.
#include "workflowd/pipeline/event_pipeline.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "workflowd/common/backoff.hpp"
#include "workflowd/common/clock.hpp"
#include "workflowd/metrics/registry.hpp"

namespace workflowd::pipeline {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr std::string_view kTopic = "business-events";

// What the fakes did, in order, as one log: "insert 2 ok", "dead letters 1", "pause", ...
class Journal {
 public:
  void Add(std::string event) {
    {
      std::lock_guard lock(mu_);
      events_.push_back(std::move(event));
    }
    cv_.notify_all();
  }
  std::vector<std::string> Events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  // Waits (up to 30 s) until `count` events starting with `prefix` were logged.
  bool WaitFor(const std::string& prefix, size_t count = 1) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 30s, [&] {
      size_t seen = 0;
      for (const auto& e : events_) {
        if (e.rfind(prefix, 0) == 0) ++seen;
      }
      return seen >= count;
    });
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
};

// A record the fake source hands out; the SourceRecord owns it (deleted on release).
struct StoredRecord {
  std::string topic{kTopic};
  int32_t partition = 0;
  int64_t offset = 0;
  std::optional<std::string> value;
  int64_t timestamp_ms = 0;
};

class FakeSource final : public RecordSource {
 public:
  FakeSource(Journal& journal, ManualSteadyClock& clock) : journal_(journal), clock_(clock) {}

  void Add(std::vector<StoredRecord> batch) {
    std::lock_guard lock(mu_);
    batches_.push_back(std::move(batch));
  }
  bool paused() const {
    std::lock_guard lock(mu_);
    return paused_;
  }

  // A queued batch at once (none while paused: fetching has stopped); otherwise the poll's
  // timeout passes on the fake clock.
  std::vector<SourceRecord> PollBatch(size_t max, std::chrono::milliseconds timeout) override {
    std::vector<StoredRecord> taken;
    {
      std::lock_guard lock(mu_);
      if (!paused_ && !batches_.empty()) {
        taken = std::move(batches_.front());
        batches_.pop_front();
      }
    }
    EXPECT_LE(taken.size(), max);
    if (taken.empty()) {
      clock_.Advance(timeout);
      // The pipeline's thread polls in a loop: give the test's thread the core meanwhile.
      std::this_thread::sleep_for(100us);
      return {};
    }
    std::vector<SourceRecord> out;
    for (auto& stored : taken) {
      auto* owned = new StoredRecord(std::move(stored));
      decoding::RawRecord raw;
      raw.topic = owned->topic;
      raw.partition = owned->partition;
      raw.offset = owned->offset;
      if (owned->value) raw.value = *owned->value;
      raw.timestamp_ms = owned->timestamp_ms;
      out.emplace_back(std::move(raw), owned,
                       [](void* p) noexcept { delete static_cast<StoredRecord*>(p); });
    }
    return out;
  }

  void MarkProcessed(const std::vector<SourceRecord>& batch) override {
    std::string event = "mark";
    for (const auto& r : batch) {
      event += " " + std::to_string(r.raw().partition) + ":" + std::to_string(r.raw().offset);
    }
    journal_.Add(event);
  }
  void Pause() override {
    {
      std::lock_guard lock(mu_);
      paused_ = true;
    }
    journal_.Add("pause");
  }
  void Resume() override {
    {
      std::lock_guard lock(mu_);
      paused_ = false;
    }
    journal_.Add("resume");
  }

 private:
  Journal& journal_;
  ManualSteadyClock& clock_;
  mutable std::mutex mu_;
  std::deque<std::vector<StoredRecord>> batches_;  // mu_
  bool paused_ = false;                            // mu_
};

class FakeSink final : public DeadLetterSink {
 public:
  explicit FakeSink(Journal& journal) : journal_(journal) {}

  int fail_next = 0;                               // retryable failures before letters go through
  bool fatal = false;                              // fail with an error that is not retryable
  std::vector<decoding::DeadLetter> acknowledged;  // on the pipeline's threads, one at a time

  void SendAll(const std::vector<decoding::DeadLetter>& letters,
               std::chrono::milliseconds /*timeout*/) override {
    if (fatal) {
      journal_.Add("dead letters refused");
      throw DeadLetterError("dead-letter topic does not exist", false);
    }
    if (fail_next > 0) {
      --fail_next;
      journal_.Add("dead letters failed");
      throw DeadLetterError("broker unavailable", true);
    }
    acknowledged.insert(acknowledged.end(), letters.begin(), letters.end());
    journal_.Add("dead letters " + std::to_string(letters.size()));
  }
  const std::string& destination() const override { return topic_; }

 private:
  Journal& journal_;
  std::string topic_ = "dead-letters";
};

class FakeWriter final : public ExecutionWriter {
 public:
  FakeWriter(Journal& journal, const ManualSteadyClock& clock) : journal_(journal), clock_(clock) {}

  int fail_next = 0;                // retryable failures (PostgreSQL away) before a write works
  bool fatal = false;               // fail with an error that is not retryable
  std::set<std::string> refused;    // trigger event ids whose rows PostgreSQL refuses
  std::function<void()> on_insert;  // called at the start of each attempt
  std::vector<SteadyClock::time_point> attempts;  // steady time of each attempt
  std::vector<std::string> committed;             // trigger event ids of the committed rows

  // Holds the next writes until Open().
  void Close() {
    std::lock_guard lock(mu_);
    gate_open_ = false;
  }
  void Open() {
    {
      std::lock_guard lock(mu_);
      gate_open_ = true;
    }
    cv_.notify_all();
  }

  pipeline::RenderedRows Render(const std::vector<store::NewExecution>& executions) const override {
    return {"rows:" + std::to_string(executions.size()), std::nullopt};
  }

  size_t InsertPending(const std::vector<store::NewExecution>& executions,
                       const pipeline::RenderedRows* rendered,
                       std::vector<store::RejectedExecution>& rejected,
                       std::span<const size_t> groups) override {
    attempts.push_back(clock_.Now());
    if (on_insert) on_insert();
    journal_.Add("insert started");
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return gate_open_; });
    }
    if (rendered != nullptr) {
      EXPECT_EQ(rendered->text, Render(executions).text);
    }
    EXPECT_EQ(groups.size(), executions.size());
    if (fatal) {
      journal_.Add("insert refused");
      throw store::StoreError("relation \"executions\" does not exist", false);
    }
    if (fail_next > 0) {
      --fail_next;
      journal_.Add("insert failed");
      throw store::StoreError("connection refused", true);
    }
    size_t inserted = 0;
    for (size_t i = 0; i < executions.size(); ++i) {
      if (refused.contains(executions[i].trigger_event_id)) {
        rejected.push_back({i, "22P05", "unsupported Unicode escape sequence"});
        continue;
      }
      committed.push_back(executions[i].trigger_event_id);
      ++inserted;
    }
    journal_.Add("insert " + std::to_string(inserted) + " ok");
    return inserted;
  }

 private:
  Journal& journal_;
  const ManualSteadyClock& clock_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool gate_open_ = true;  // mu_
};

std::string CloudEvent(const std::string& id, const std::string& type = "customer.created") {
  return Json{{"specversion", "1.0"},
              {"id", id},
              {"source", "crm"},
              {"type", type},
              {"tenantid", "acme"},
              {"environmentid", "prod"},
              {"data", {{"customer", {{"id", id}}}}}}
      .dump();
}

StoredRecord Record(int32_t partition, int64_t offset, std::optional<std::string> value) {
  StoredRecord r;
  r.partition = partition;
  r.offset = offset;
  r.value = std::move(value);
  return r;
}

class EventPipelineTest : public ::testing::Test {
 protected:
  EventPipelineTest() {
    matching::IndexEntry e;
    e.definition_id = "wf-onboarding";
    e.version = 1;
    e.name = "Onboarding";
    e.provider = "mock";
    e.tenant_id = "acme";
    e.environment_id = "prod";
    e.event_name = "customer.created";
    index_.Set(std::make_shared<const matching::DefinitionIndex>(
        std::vector<matching::IndexEntry>{std::move(e)}));
    options_.consumer_group = "workflowd-test";
    options_.on_committed = [this](std::vector<std::string> ids) {
      std::lock_guard lock(mu_);
      for (auto& id : ids) committed_ids_.push_back(std::move(id));
    };
  }
  ~EventPipelineTest() override { StopRunning(); }

  EventPipeline& Start() {
    pipeline_.emplace(options_, source_, sink_, writer_, index_, pm_, wall_, steady_);
    thread_ = std::thread([this] {
      try {
        pipeline_->Run(stop_);
      } catch (...) {
        failure_ = std::current_exception();
      }
      journal_.Add("returned");
    });
    return *pipeline_;
  }
  // Sets the stop flag and waits for Run to return.
  void StopRunning() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // The sample lines of `name` in the exposition, e.g. `name{reason="x"} 1`.
  std::string Metric(const std::string& series) const {
    std::string text = registry_.Serialize();
    for (size_t at = 0; (at = text.find(series + " ", at)) != std::string::npos; ++at) {
      if (at == 0 || text[at - 1] == '\n') {
        return text.substr(at + series.size() + 1, text.find('\n', at) - at - series.size() - 1);
      }
    }
    return "absent";
  }
  static std::map<std::string, std::optional<std::string>> Headers(
      const decoding::DeadLetter& letter) {
    return {letter.headers.begin(), letter.headers.end()};
  }

  Journal journal_;
  ManualSteadyClock steady_;
  ManualClock wall_;
  FakeSource source_{journal_, steady_};
  FakeSink sink_{journal_};
  FakeWriter writer_{journal_, steady_};
  matching::DefinitionIndexHolder index_;
  metrics::Registry registry_;
  PipelineMetrics pm_{registry_};
  EventPipelineOptions options_;
  std::mutex mu_;
  std::vector<std::string> committed_ids_;  // mu_
  std::optional<EventPipeline> pipeline_;
  std::atomic<bool> stop_{false};
  std::exception_ptr failure_;
  std::thread thread_;
};

TEST_F(EventPipelineTest, OffsetsAreStoredOnlyOnceTheRowsAreCommitted) {
  writer_.Close();  // the write waits until the test has looked
  source_.Add({Record(0, 10, CloudEvent("evt-1")), Record(0, 11, CloudEvent("evt-2")),
               Record(1, 5, CloudEvent("evt-3"))});
  Start();
  ASSERT_TRUE(journal_.WaitFor("insert started"));
  EXPECT_THAT(journal_.Events(), ElementsAre("insert started"));  // nothing stored yet
  writer_.Open();
  ASSERT_TRUE(journal_.WaitFor("mark"));
  StopRunning();
  EXPECT_THAT(journal_.Events(),
              ElementsAre("insert started", "insert 3 ok", "mark 0:10 0:11 1:5", "returned"));
  EXPECT_THAT(writer_.committed, ElementsAre("evt-1", "evt-2", "evt-3"));
  std::lock_guard lock(mu_);
  EXPECT_EQ(committed_ids_.size(), 3u);  // the dispatch loops are told about the new rows
  EXPECT_EQ(Metric("workflowd_executions_created_total"), "3");
  EXPECT_EQ(Metric("workflowd_events_matched_total"), "3");
}

TEST_F(EventPipelineTest, ADatabaseOutageIsRetriedWithBackoffWhilePausedAndNothingIsStored) {
  writer_.fail_next = 3;
  std::vector<bool> paused_at_attempt;
  writer_.on_insert = [&] { paused_at_attempt.push_back(source_.paused()); };
  source_.Add({Record(0, 7, CloudEvent("evt-1")), Record(2, 3, CloudEvent("evt-2"))});
  auto& pipeline = Start();
  ASSERT_TRUE(journal_.WaitFor("mark"));
  StopRunning();
  EXPECT_THAT(journal_.Events(),
              ElementsAre("insert started", "insert failed", "pause", "insert started",
                          "insert failed", "insert started", "insert failed", "insert started",
                          "insert 2 ok", "resume", "mark 0:7 2:3", "returned"));
  // Consumption is paused from the first failure until the write went through.
  EXPECT_THAT(paused_at_attempt, ElementsAre(false, true, true, true));
  // 100 ms after the first failure, then 200 ms, then 400 ms.
  ASSERT_EQ(writer_.attempts.size(), 4u);
  EXPECT_EQ(writer_.attempts[1] - writer_.attempts[0], 100ms);
  EXPECT_EQ(writer_.attempts[2] - writer_.attempts[1], 200ms);
  EXPECT_EQ(writer_.attempts[3] - writer_.attempts[2], 400ms);
  EXPECT_THAT(writer_.committed, ElementsAre("evt-1", "evt-2"));
  EXPECT_TRUE(pipeline.DatabaseHealthy());
  EXPECT_EQ(Metric("workflowd_database_errors_total{operation=\"record_batch\"}"), "3");
  EXPECT_EQ(Metric("workflowd_consumer_paused"), "0");
  EXPECT_EQ(Metric("workflowd_executions_created_total"), "2");
}

TEST_F(EventPipelineTest, TheBackoffIsCappedAtItsMaximum) {
  options_.max_backoff = 300ms;
  writer_.fail_next = 4;
  source_.Add({Record(0, 1, CloudEvent("evt-1"))});
  Start();
  ASSERT_TRUE(journal_.WaitFor("mark"));
  StopRunning();
  ASSERT_EQ(writer_.attempts.size(), 5u);
  EXPECT_EQ(writer_.attempts[1] - writer_.attempts[0], 100ms);
  EXPECT_EQ(writer_.attempts[2] - writer_.attempts[1], 200ms);
  EXPECT_EQ(writer_.attempts[3] - writer_.attempts[2], 300ms);
  EXPECT_EQ(writer_.attempts[4] - writer_.attempts[3], 300ms);
}

TEST_F(EventPipelineTest, StoppedDuringAnOutageTheBatchIsLeftUncommittedForRedelivery) {
  writer_.fail_next = 1'000'000;  // PostgreSQL does not come back
  source_.Add({Record(0, 1, CloudEvent("evt-1"))});
  auto& pipeline = Start();
  // The second attempt: consumption was paused before it.
  ASSERT_TRUE(journal_.WaitFor("insert started", 2));
  EXPECT_TRUE(source_.paused());
  EXPECT_FALSE(pipeline.DatabaseHealthy());
  EXPECT_EQ(Metric("workflowd_consumer_paused"), "1");
  StopRunning();
  EXPECT_EQ(failure_, nullptr);  // a clean return, not a failure
  for (const auto& e : journal_.Events()) EXPECT_THAT(e, ::testing::Not(HasSubstr("mark")));
  EXPECT_TRUE(writer_.committed.empty());
}

TEST_F(EventPipelineTest, ARefusedRecordIsDeadLetteredAsDatabaseRejectedAndTheRestWritten) {
  writer_.refused = {"evt-2"};
  source_.Add({Record(0, 20, CloudEvent("evt-1")), Record(0, 21, CloudEvent("evt-2")),
               Record(0, 22, CloudEvent("evt-3"))});
  Start();
  ASSERT_TRUE(journal_.WaitFor("mark"));
  StopRunning();
  EXPECT_THAT(journal_.Events(), ElementsAre("insert started", "insert 2 ok", "dead letters 1",
                                             "mark 0:20 0:21 0:22", "returned"));
  EXPECT_THAT(writer_.committed, ElementsAre("evt-1", "evt-3"));
  ASSERT_EQ(sink_.acknowledged.size(), 1u);
  const auto& letter = sink_.acknowledged[0];
  EXPECT_EQ(letter.value, CloudEvent("evt-2"));  // the original record
  auto headers = Headers(letter);
  EXPECT_EQ(headers["workflowd_dlq_reason"], "database_rejected");
  EXPECT_EQ(headers["workflowd_source_offset"], "21");
  EXPECT_THAT(headers["workflowd_dlq_detail"].value_or(""),
              HasSubstr("PostgreSQL refused the execution row of definition wf-onboarding "
                        "(SQLSTATE 22P05)"));
  EXPECT_EQ(Metric("workflowd_events_dead_lettered_total{reason=\"database_rejected\"}"), "1");
  EXPECT_EQ(Metric("workflowd_executions_created_total"), "2");
  EXPECT_EQ(Metric("workflowd_events_matched_total"), "2");
  std::lock_guard lock(mu_);
  EXPECT_EQ(committed_ids_.size(), 2u);  // only the committed rows are offered for dispatch
}

TEST_F(EventPipelineTest, ARecordThatDoesNotDecodeIsDeadLetteredBeforeTheRowsAreWritten) {
  source_.Add({Record(0, 30, std::string("{not json")), Record(1, 31, CloudEvent("evt-1"))});
  Start();
  ASSERT_TRUE(journal_.WaitFor("mark"));
  StopRunning();
  EXPECT_THAT(journal_.Events(), ElementsAre("dead letters 1", "insert started", "insert 1 ok",
                                             "mark 0:30 1:31", "returned"));
  ASSERT_EQ(sink_.acknowledged.size(), 1u);
  EXPECT_EQ(sink_.acknowledged[0].value, "{not json");
  auto headers = Headers(sink_.acknowledged[0]);
  EXPECT_EQ(headers["workflowd_dlq_reason"], "not_json");
  EXPECT_EQ(headers["workflowd_source_partition"], "0");
  EXPECT_THAT(writer_.committed, ElementsAre("evt-1"));
  EXPECT_EQ(Metric("workflowd_events_dead_lettered_total{reason=\"not_json\"}"), "1");
}

TEST_F(EventPipelineTest, ADeadLetterTopicOutageIsRetriedWhilePausedAndNothingIsStored) {
  sink_.fail_next = 2;
  source_.Add({Record(0, 40, std::string("{not json")), Record(0, 41, CloudEvent("evt-1"))});
  auto& pipeline = Start();
  ASSERT_TRUE(journal_.WaitFor("mark"));
  StopRunning();
  // The dead letters go first: no row is written before they are acknowledged.
  EXPECT_THAT(journal_.Events(),
              ElementsAre("dead letters failed", "pause", "dead letters failed", "dead letters 1",
                          "insert started", "insert 1 ok", "resume", "mark 0:40 0:41", "returned"));
  EXPECT_EQ(sink_.acknowledged.size(), 1u);
  EXPECT_TRUE(pipeline.DeadLetterHealthy());
  EXPECT_EQ(Metric("workflowd_dead_letter_errors_total"), "2");
  EXPECT_EQ(Metric("workflowd_consumer_paused"), "0");
}

TEST_F(EventPipelineTest, DeadLettersAcknowledgedOnceAreNotSentAgainByARetry) {
  writer_.fail_next = 1;
  source_.Add({Record(0, 50, std::string("{not json")), Record(0, 51, CloudEvent("evt-1"))});
  Start();
  ASSERT_TRUE(journal_.WaitFor("mark"));
  StopRunning();
  EXPECT_THAT(journal_.Events(),
              ElementsAre("dead letters 1", "insert started", "insert failed", "pause",
                          "insert started", "insert 1 ok", "resume", "mark 0:50 0:51", "returned"));
  EXPECT_EQ(sink_.acknowledged.size(), 1u);
}

TEST_F(EventPipelineTest, ADeadLetterErrorThatIsNotRetryableFailsThePipelineWithNothingStored) {
  sink_.fatal = true;
  source_.Add({Record(0, 60, std::string("{not json"))});
  auto& pipeline = Start();
  ASSERT_TRUE(journal_.WaitFor("returned"));
  StopRunning();
  ASSERT_NE(failure_, nullptr);
  try {
    std::rethrow_exception(failure_);
  } catch (const DeadLetterError& e) {
    EXPECT_STREQ(e.what(), "dead-letter topic does not exist");
  }
  EXPECT_THAT(journal_.Events(), ElementsAre("dead letters refused", "returned"));
  EXPECT_TRUE(pipeline.DeadLetterHealthy());  // not an outage: the pipeline stopped
}

TEST_F(EventPipelineTest, ADatabaseErrorThatIsNotRetryableFailsThePipelineWithNothingStored) {
  writer_.fatal = true;
  source_.Add({Record(0, 70, CloudEvent("evt-1"))});
  Start();
  ASSERT_TRUE(journal_.WaitFor("returned"));
  StopRunning();
  ASSERT_NE(failure_, nullptr);
  EXPECT_THROW(std::rethrow_exception(failure_), store::StoreError);
  EXPECT_THAT(journal_.Events(), ElementsAre("insert started", "insert refused", "returned"));
}

TEST_F(EventPipelineTest, UnmatchedEventsAreStoredWithoutRows) {
  source_.Add({Record(0, 80, CloudEvent("evt-1", "order.placed"))});
  Start();
  ASSERT_TRUE(journal_.WaitFor("mark"));
  StopRunning();
  EXPECT_THAT(journal_.Events(),
              ElementsAre("insert started", "insert 0 ok", "mark 0:80", "returned"));
  EXPECT_EQ(Metric("workflowd_events_unmatched_total"), "1");
  std::lock_guard lock(mu_);
  EXPECT_TRUE(committed_ids_.empty());
}

}  // namespace
}  // namespace workflowd::pipeline
