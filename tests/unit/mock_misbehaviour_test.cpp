// The mock engine's misbehaviour on purpose: latency distributions (drawn with a fixed seed and
// checked with wide bounds), hangs that end with the call's context, outage windows and throttling
// on a manual clock, and the validation that names the bad field.
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "workflowd/providers/mock/misbehaviour.hpp"
#include "workflowd/providers/mock/mock_provider.hpp"

namespace workflowd::providers::mock {
namespace {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

constexpr int kDraws = 10000;

WorkflowSpec Spec(const std::string& id) {
  WorkflowSpec s;
  s.workflow_id = id;
  s.provider_type = "mock";
  s.name = id;
  s.definition = Json{{"steps", Json::array({Json{{"id", "only"}}})}};
  return s;
}

ExecutionInput Input(const std::string& name) { return ExecutionInput{name, Json::object(), {}}; }

// The code and message of the ProviderError `fn` throws.
std::pair<ErrorCode, std::string> ErrorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ProviderError& e) {
    return {e.code(), e.what()};
  }
  ADD_FAILURE() << "expected a ProviderError";
  return {ErrorCode::kInternal, ""};
}

bool Mentions(const std::vector<std::string>& problems, const std::string& text) {
  return std::any_of(problems.begin(), problems.end(),
                     [&](const std::string& p) { return p.find(text) != std::string::npos; });
}

Misbehaviour Seeded(uint64_t seed) {
  Misbehaviour m;
  m.seed = seed;
  return m;
}

TEST(MockLatency, LongTailTakesTheTailForAboutItsRatioOfCalls) {
  MisbehaviourPlanner planner(Seeded(42), TimePoint{});
  const Latency l = Latency::LongTail(200ms, 0.05, 5s);
  int tail = 0;
  for (int i = 0; i < kDraws; ++i) {
    const nanoseconds d = planner.Draw(l);
    ASSERT_TRUE(d == 200ms || d == 5s) << d.count();
    tail += d == 5s ? 1 : 0;
  }
  // Expected 500, standard deviation about 22.
  EXPECT_GE(tail, 350);
  EXPECT_LE(tail, 650);
}

TEST(MockLatency, UniformStaysWithinItsBoundsAndCentresOnTheMiddle) {
  MisbehaviourPlanner planner(Seeded(7), TimePoint{});
  const Latency l = Latency::Uniform(100ms, 300ms);
  nanoseconds lowest = 1h;
  nanoseconds highest = 0ns;
  double sum_ms = 0;
  for (int i = 0; i < kDraws; ++i) {
    const nanoseconds d = planner.Draw(l);
    lowest = std::min(lowest, d);
    highest = std::max(highest, d);
    sum_ms += std::chrono::duration<double, std::milli>(d).count();
  }
  EXPECT_GE(lowest, 100ms);
  EXPECT_LE(highest, 300ms);
  // The draws spread over the range rather than sitting in one spot.
  EXPECT_LT(lowest, 110ms);
  EXPECT_GT(highest, 290ms);
  // Expected 200 ms, standard deviation of the mean about 0.6 ms.
  EXPECT_NEAR(sum_ms / kDraws, 200.0, 5.0);
}

TEST(MockLatency, FixedAndNoneAreConstant) {
  MisbehaviourPlanner planner(Seeded(1), TimePoint{});
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(planner.Draw(Latency::Fixed(250ms)), 250ms);
    EXPECT_EQ(planner.Draw(Latency{}), 0ns);
  }
}

TEST(MockLatency, TheSameSeedDrawsTheSameSequence) {
  MisbehaviourPlanner a(Seeded(99), TimePoint{});
  MisbehaviourPlanner b(Seeded(99), TimePoint{});
  MisbehaviourPlanner c(Seeded(100), TimePoint{});
  const Latency l = Latency::Uniform(0ms, 1s);
  std::vector<nanoseconds> da, db, dc;
  for (int i = 0; i < 50; ++i) {
    da.push_back(a.Draw(l));
    db.push_back(b.Draw(l));
    dc.push_back(c.Draw(l));
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(MockLatency, EachOperationCanHaveItsOwn) {
  Misbehaviour m = Seeded(1);
  m.latency = Latency::Fixed(10ms);
  m.operation_latency[static_cast<size_t>(Operation::kGetExecutionStatus)] = Latency::Fixed(2s);
  MisbehaviourPlanner planner(m, TimePoint{});
  EXPECT_EQ(planner.Next(Operation::kStartExecution, TimePoint{}).latency, 10ms);
  EXPECT_EQ(planner.Next(Operation::kStopExecution, TimePoint{}).latency, 10ms);
  EXPECT_EQ(planner.Next(Operation::kGetExecutionStatus, TimePoint{}).latency, 2s);
  // Applying definitions is not an engine call that misbehaves.
  EXPECT_EQ(planner.Next(Operation::kCreateWorkflow, TimePoint{}).latency, 0ns);
}

TEST(MockHangs, AboutTheirRatioOfCallsHang) {
  Misbehaviour m = Seeded(5);
  m.hang_ratio = 0.1;
  MisbehaviourPlanner planner(m, TimePoint{});
  int hangs = 0;
  for (int i = 0; i < kDraws; ++i) {
    hangs += planner.Next(Operation::kStartExecution, TimePoint{}).hang ? 1 : 0;
  }
  // Expected 1000, standard deviation 30.
  EXPECT_GE(hangs, 850);
  EXPECT_LE(hangs, 1150);
}

class MockMisbehaviourTest : public ::testing::Test {
 protected:
  MockMisbehaviourTest() : provider_(clock_) { provider_.CreateWorkflow(ctx_, Spec("wf")); }

  ExecutionResult Start(const std::string& name, const Context& ctx) {
    return provider_.StartExecution(ctx, "wf", Input(name));
  }
  ExecutionResult Start(const std::string& name) { return Start(name, ctx_); }

  ManualClock clock_;
  MockProvider provider_;
  Context ctx_ = Context::Background();
};

TEST_F(MockMisbehaviourTest, NothingIsConfiguredByDefault) {
  EXPECT_FALSE(provider_.GetMisbehaviour().Any());
  for (int i = 0; i < 100; ++i) EXPECT_NO_THROW(Start("e" + std::to_string(i)));
}

TEST_F(MockMisbehaviourTest, HangsEndWithTheDeadline) {
  provider_.SetHangRatio(1.0);
  const auto [code, message] =
      ErrorOf([&] { Start("hung", Context::Background().WithTimeout(20ms)); });
  EXPECT_EQ(code, ErrorCode::kDeadlineExceeded);
  EXPECT_NE(message.find("mock engine hung"), std::string::npos) << message;
  EXPECT_EQ(provider_.StartCalls("hung"), 0);  // it never reached the engine's work
}

TEST_F(MockMisbehaviourTest, HangsEndWithCancellation) {
  provider_.SetHangRatio(1.0);
  CancelSource cancel;
  std::thread canceller([&] { cancel.Cancel(); });
  // Cancelled before or during the hang: either way the call ends as cancelled.
  EXPECT_EQ(ErrorOf([&] { Start("cancelled", cancel.context()); }).first, ErrorCode::kCancelled);
  canceller.join();
}

TEST_F(MockMisbehaviourTest, LatencyLongerThanTheDeadlineExceedsIt) {
  provider_.SetCallLatency(Latency::Fixed(1h));
  EXPECT_EQ(ErrorOf([&] { Start("slow", Context::Background().WithTimeout(20ms)); }).first,
            ErrorCode::kDeadlineExceeded);
}

TEST_F(MockMisbehaviourTest, AnOutageWindowFailsEveryCallWhileItLasts) {
  provider_.SetOutages({{60s, 30s, OutageMode::kUnavailable}});
  const auto before = Start("before");
  clock_.Advance(60s);
  const auto [code, message] = ErrorOf([&] { Start("during"); });
  EXPECT_EQ(code, ErrorCode::kUnavailable);
  EXPECT_NE(message.find("outage unavailable at +1m for 30s"), std::string::npos) << message;
  EXPECT_EQ(ErrorOf([&] { provider_.GetExecutionStatus(ctx_, before.execution_id); }).first,
            ErrorCode::kUnavailable);
  EXPECT_EQ(ErrorOf([&] { provider_.StopExecution(ctx_, before.execution_id, "r"); }).first,
            ErrorCode::kUnavailable);
  EXPECT_EQ(provider_.StartCalls("during"), 0);
  // Definitions can still be applied: only execution calls misbehave.
  EXPECT_NO_THROW(provider_.CreateWorkflow(ctx_, Spec("other")));
  clock_.Advance(30s - 1ns);
  EXPECT_EQ(ErrorOf([&] { Start("during"); }).first, ErrorCode::kUnavailable);
  clock_.Advance(1ns);  // the window is over
  EXPECT_NO_THROW(Start("during"));
  EXPECT_EQ(provider_.StartCalls("during"), 1);
}

TEST_F(MockMisbehaviourTest, OutageModesThrottleAndHang) {
  provider_.SetOutages({{10s, 10s, OutageMode::kThrottle}, {20s, 10s, OutageMode::kHang}});
  clock_.Advance(10s);
  EXPECT_EQ(ErrorOf([&] { Start("a"); }).first, ErrorCode::kThrottled);
  clock_.Advance(10s);
  EXPECT_EQ(ErrorOf([&] { Start("a", Context::Background().WithTimeout(20ms)); }).first,
            ErrorCode::kDeadlineExceeded);
  clock_.Advance(10s);
  EXPECT_NO_THROW(Start("a"));
}

TEST_F(MockMisbehaviourTest, AnOutageNeverChangesATerminalExecution) {
  const auto started = Start("done");
  const auto done = provider_.GetExecutionStatus(ctx_, started.execution_id);
  ASSERT_EQ(done.state, ExecutionState::kSucceeded);
  provider_.SetOutages({{1min, 1min, OutageMode::kUnavailable}});
  clock_.Advance(90s);
  EXPECT_EQ(ErrorOf([&] { provider_.GetExecutionStatus(ctx_, started.execution_id); }).first,
            ErrorCode::kUnavailable);
  clock_.Advance(1min);
  const auto after = provider_.GetExecutionStatus(ctx_, started.execution_id);
  EXPECT_EQ(after.state, ExecutionState::kSucceeded);
  EXPECT_EQ(after.stop_time, done.stop_time);
  EXPECT_EQ(after.output, done.output);
}

TEST_F(MockMisbehaviourTest, ThrottlingLetsThroughAtMostTheRate) {
  provider_.SetMaxCallsPerSecond(5);
  for (int i = 0; i < 5; ++i) EXPECT_NO_THROW(Start("t" + std::to_string(i)));
  const auto [code, message] = ErrorOf([&] { Start("t5"); });
  EXPECT_EQ(code, ErrorCode::kThrottled);
  EXPECT_NE(message.find("throttled the call: more than 5 calls per second"), std::string::npos)
      << message;
  EXPECT_EQ(provider_.StartCalls("t5"), 0);
  clock_.Advance(200ms);  // one more token
  EXPECT_NO_THROW(Start("t5"));
  EXPECT_EQ(ErrorOf([&] { Start("t6"); }).first, ErrorCode::kThrottled);
  // An idle minute refills the bucket to one second's worth, not more.
  clock_.Advance(1min);
  for (int i = 0; i < 5; ++i) EXPECT_NO_THROW(Start("u" + std::to_string(i)));
  EXPECT_EQ(ErrorOf([&] { Start("u5"); }).first, ErrorCode::kThrottled);
}

TEST_F(MockMisbehaviourTest, ClearingTheMisbehaviourRestoresTheEngine) {
  provider_.SetOutages({{0s, 1h, OutageMode::kUnavailable}});
  EXPECT_EQ(ErrorOf([&] { Start("x"); }).first, ErrorCode::kUnavailable);
  provider_.SetMisbehaviour({});
  EXPECT_FALSE(provider_.GetMisbehaviour().Any());
  EXPECT_NO_THROW(Start("x"));
}

TEST_F(MockMisbehaviourTest, SettersKeepTheRestAndRefuseNonsense) {
  provider_.SetSeed(3);
  provider_.SetHangRatio(0.25);
  provider_.SetCallLatency(Latency::Fixed(5ms));
  const Misbehaviour m = provider_.GetMisbehaviour();
  EXPECT_EQ(m.seed, 3u);
  EXPECT_EQ(m.hang_ratio, 0.25);
  EXPECT_EQ(m.latency.base, 5ms);
  const auto [code, message] =
      ErrorOf([&] { provider_.SetCallLatency(Latency::Uniform(300ms, 100ms)); });
  EXPECT_EQ(code, ErrorCode::kInvalidSpec);
  EXPECT_NE(message.find("latency.min: 300ms is more than latency.max (100ms)"), std::string::npos)
      << message;
  EXPECT_EQ(provider_.GetMisbehaviour().latency.base, 5ms);  // unchanged by the refused call
}

TEST(MockMisbehaviourProblems, NameTheField) {
  Misbehaviour m;
  m.latency = Latency::LongTail(200ms, 1.5, 100ms);
  m.latency.min = 10ms;
  m.hang_ratio = -0.1;
  m.max_calls_per_second = -1;
  m.outages = {{60s, 30s, OutageMode::kUnavailable},
               {-1s, 0s, OutageMode::kHang},
               {70s, 10s, OutageMode::kThrottle}};
  const auto problems = MisbehaviourProblems(m);
  EXPECT_TRUE(Mentions(problems, "latency.tail_ratio: 1.5 is not between 0 and 1"));
  EXPECT_TRUE(Mentions(problems, "latency.tail: 100ms is shorter than latency.base (200ms)"));
  EXPECT_TRUE(Mentions(problems, "latency.min: not used by distribution long_tail"));
  EXPECT_TRUE(Mentions(problems, "hang_ratio: -0.1 is not between 0 and 1"));
  EXPECT_TRUE(Mentions(problems, "max_calls_per_second: -1 is not a rate"));
  EXPECT_TRUE(Mentions(problems, "outages[1].after: negative"));
  EXPECT_TRUE(Mentions(problems, "outages[1].duration: must be more than 0s"));
  EXPECT_TRUE(Mentions(problems, "outages[2]: overlaps outages[0]"));
  EXPECT_EQ(problems.size(), 8u) << ::testing::PrintToString(problems);
  EXPECT_TRUE(MisbehaviourProblems({}).empty());
}

TEST(MockMisbehaviourProblems, ValuesWithoutADistributionAreAMistake) {
  Latency l;
  l.base = 200ms;
  Misbehaviour m;
  m.latency = l;
  EXPECT_TRUE(
      Mentions(MisbehaviourProblems(m), "latency.base: set, but latency.distribution is none"));
}

TEST(MockMisbehaviourDescribe, OneLineForTheLog) {
  Misbehaviour m;
  m.latency = Latency::LongTail(200ms, 0.05, 5s);
  m.hang_ratio = 0.01;
  m.max_calls_per_second = 500;
  m.outages = {{60s, 30s, OutageMode::kUnavailable}};
  m.seed = 42;
  EXPECT_EQ(Describe(m),
            "latency long_tail 200ms (5% at 5s); 1% of calls hang; throttled above 500 calls/s; "
            "outage unavailable at +1m for 30s; seed 42");
  EXPECT_EQ(Describe({}), "");
}

}  // namespace
}  // namespace workflowd::providers::mock
