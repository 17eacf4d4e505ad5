// Seed 001's testing requirements for the mock provider: every method's happy path, idempotency,
// not found, invalid input, deadline and cancellation, concurrent access.
#include "workflowd/providers/mock/mock_provider.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <set>
#include <thread>

namespace workflowd::providers::mock {
namespace {

using namespace std::chrono_literals;

WorkflowSpec Spec(const std::string& id, Json provider_config = nullptr) {
  WorkflowSpec s;
  s.workflow_id = id;
  s.provider_type = "mock";
  s.name = "Workflow " + id;
  s.definition =
      Json{{"steps", Json::array({Json{{"id", "assign_plan"}}, Json{{"id", "create_wallet"}},
                                  Json{{"id", "send_email"}}})}};
  s.provider_config = std::move(provider_config);
  return s;
}

ExecutionInput Input(const std::string& name) {
  return ExecutionInput{name, Json{{"customer_id", "cust_123"}}, {}};
}

ErrorCode CodeOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ProviderError& e) {
    return e.code();
  }
  ADD_FAILURE() << "expected a ProviderError";
  return ErrorCode::kInternal;
}

std::vector<std::string> EventTypes(const ExecutionStatus& s) {
  std::vector<std::string> out;
  for (const auto& e : s.history) {
    out.push_back(e.type +
                  (e.details.contains("state") ? ":" + e.details["state"].get<std::string>() : ""));
  }
  return out;
}

class MockProviderTest : public ::testing::Test {
 protected:
  MockProviderTest() : provider_(clock_) { provider_.CreateWorkflow(ctx_, Spec("onboarding")); }

  ManualClock clock_;
  MockProvider provider_;
  Context ctx_ = Context::Background();
};

TEST_F(MockProviderTest, NameFollowsContract) { EXPECT_EQ(provider_.Name(), "mock"); }

TEST_F(MockProviderTest, CreateWorkflowIsIdempotent) {
  auto first = provider_.CreateWorkflow(ctx_, Spec("billing"));
  EXPECT_EQ(first.workflow_id, "billing");
  EXPECT_EQ(first.provider_type, "mock");
  EXPECT_EQ(first.message, "workflow created");
  clock_.Advance(1min);
  auto second = provider_.CreateWorkflow(ctx_, Spec("billing"));
  EXPECT_EQ(second.message, "workflow already exists");
  EXPECT_EQ(second.created_at, first.created_at);
  EXPECT_TRUE(provider_.HasWorkflow("billing"));
}

TEST_F(MockProviderTest, SucceedsAtOnceByDefaultWithStepHistory) {
  auto started = provider_.StartExecution(ctx_, "onboarding", Input("exec-1"));
  EXPECT_EQ(started.state, ExecutionState::kRunning);  // StartExecution returns running or pending
  EXPECT_EQ(started.workflow_id, "onboarding");
  auto status = provider_.GetExecutionStatus(ctx_, started.execution_id);
  EXPECT_EQ(status.state, ExecutionState::kSucceeded);
  EXPECT_EQ(status.output, (Json{{"result", "ok"}}));
  EXPECT_EQ(status.input.get(), Input("exec-1").input);
  ASSERT_TRUE(status.stop_time.has_value());
  EXPECT_EQ(EventTypes(status),
            (std::vector<std::string>{"ExecutionStarted", "StateEntered:assign_plan",
                                      "StateExited:assign_plan", "StateEntered:create_wallet",
                                      "StateExited:create_wallet", "StateEntered:send_email",
                                      "StateExited:send_email", "ExecutionSucceeded"}));
}

TEST_F(MockProviderTest, SucceedsAfterDelayOnTheInjectedClock) {
  provider_.SetWorkflowOutcome("onboarding", Outcome::SucceedAfter(30s, Json{{"wallet", "w1"}}));
  auto started = provider_.StartExecution(ctx_, "onboarding", Input("slow"));
  clock_.Advance(29s);
  auto status = provider_.GetExecutionStatus(ctx_, started.execution_id);
  EXPECT_EQ(status.state, ExecutionState::kRunning);
  EXPECT_FALSE(status.stop_time.has_value());
  EXPECT_EQ(EventTypes(status),
            (std::vector<std::string>{"ExecutionStarted", "StateEntered:assign_plan"}));
  clock_.Advance(1s);
  status = provider_.GetExecutionStatus(ctx_, started.execution_id);
  EXPECT_EQ(status.state, ExecutionState::kSucceeded);
  EXPECT_EQ(*status.stop_time - status.start_time, 30s);
  EXPECT_EQ(status.output, (Json{{"wallet", "w1"}}));
}

TEST_F(MockProviderTest, FailsAtTheConfiguredStep) {
  provider_.SetWorkflowOutcome(
      "onboarding",
      Outcome::Fail({"States.TaskFailed", "wallet service down", "", "create_wallet"}));
  auto started = provider_.StartExecution(ctx_, "onboarding", Input("doomed"));
  auto status = provider_.GetExecutionStatus(ctx_, started.execution_id);
  EXPECT_EQ(status.state, ExecutionState::kFailed);
  ASSERT_TRUE(status.error.has_value());
  EXPECT_EQ(status.error->code, "States.TaskFailed");
  EXPECT_EQ(status.error->failed_at, "create_wallet");
  EXPECT_TRUE(status.output.is_null());
  EXPECT_EQ(EventTypes(status),
            (std::vector<std::string>{"ExecutionStarted", "StateEntered:assign_plan",
                                      "StateExited:assign_plan", "StateEntered:create_wallet",
                                      "ExecutionFailed"}));
}

TEST_F(MockProviderTest, OutcomeFromProviderConfig) {
  provider_.CreateWorkflow(
      ctx_, Spec("configured", Json{{"mock",
                                     {{"outcome", "fail"},
                                      {"delay", "2s"},
                                      {"error", {{"code", "Boom"}, {"message", "m"}}}}}}));
  auto started = provider_.StartExecution(ctx_, "configured", Input("c-1"));
  EXPECT_EQ(provider_.GetExecutionStatus(ctx_, started.execution_id).state,
            ExecutionState::kRunning);
  clock_.Advance(2s);
  auto status = provider_.GetExecutionStatus(ctx_, started.execution_id);
  EXPECT_EQ(status.state, ExecutionState::kFailed);
  EXPECT_EQ(status.error->code, "Boom");
  EXPECT_EQ(status.error->failed_at, "assign_plan");  // no failed_at given: the first step
}

TEST_F(MockProviderTest, OutcomePrecedenceExecutionThenWorkflowThenDefault) {
  provider_.SetDefaultOutcome(Outcome::RunUntilStopped());
  provider_.CreateWorkflow(ctx_, Spec("other"));
  provider_.SetWorkflowOutcome("onboarding", Outcome::Fail({"E", "m", "", ""}));
  provider_.SetExecutionOutcome("special", Outcome::Succeed());
  auto a = provider_.StartExecution(ctx_, "onboarding", Input("special"));
  auto b = provider_.StartExecution(ctx_, "onboarding", Input("plain"));
  auto c = provider_.StartExecution(ctx_, "other", Input("default"));
  EXPECT_EQ(provider_.GetExecutionStatus(ctx_, a.execution_id).state, ExecutionState::kSucceeded);
  EXPECT_EQ(provider_.GetExecutionStatus(ctx_, b.execution_id).state, ExecutionState::kFailed);
  EXPECT_EQ(provider_.GetExecutionStatus(ctx_, c.execution_id).state, ExecutionState::kRunning);
}

TEST_F(MockProviderTest, OutcomeIsFixedAtStart) {
  provider_.SetWorkflowOutcome("onboarding", Outcome::SucceedAfter(10s));
  auto started = provider_.StartExecution(ctx_, "onboarding", Input("fixed"));
  provider_.SetWorkflowOutcome("onboarding", Outcome::Fail({"E", "m", "", ""}));
  clock_.Advance(10s);
  EXPECT_EQ(provider_.GetExecutionStatus(ctx_, started.execution_id).state,
            ExecutionState::kSucceeded);
}

TEST_F(MockProviderTest, StartIsIdempotentByExecutionName) {
  provider_.SetWorkflowOutcome("onboarding", Outcome::RunUntilStopped());
  auto first = provider_.StartExecution(ctx_, "onboarding", Input("tenant-123-provision"));
  clock_.Advance(5s);
  auto second = provider_.StartExecution(ctx_, "onboarding", Input("tenant-123-provision"));
  EXPECT_EQ(second.execution_id, first.execution_id);
  EXPECT_EQ(second.started_at, first.started_at);
  EXPECT_EQ(second.message, "execution already started");
  EXPECT_EQ(provider_.ExecutionCount(), 1u);
  EXPECT_EQ(provider_.StartCalls("tenant-123-provision"), 2);
  EXPECT_EQ(provider_.StartCalls("never-started"), 0);
}

TEST_F(MockProviderTest, NameTakenByAnotherWorkflow) {
  provider_.CreateWorkflow(ctx_, Spec("other"));
  provider_.StartExecution(ctx_, "onboarding", Input("shared-name"));
  EXPECT_EQ(CodeOf([&] { provider_.StartExecution(ctx_, "other", Input("shared-name")); }),
            ErrorCode::kAlreadyExists);
}

TEST_F(MockProviderTest, GeneratesUniqueNamesWhenEmpty) {
  std::set<std::string> ids;
  for (int i = 0; i < 10; ++i)
    ids.insert(provider_.StartExecution(ctx_, "onboarding", Input("")).execution_id);
  EXPECT_EQ(ids.size(), 10u);
}

TEST_F(MockProviderTest, NotFoundErrors) {
  EXPECT_EQ(CodeOf([&] { provider_.StartExecution(ctx_, "missing", Input("x")); }),
            ErrorCode::kWorkflowNotFound);
  EXPECT_EQ(CodeOf([&] { provider_.GetExecutionStatus(ctx_, "mock:onboarding:nope"); }),
            ErrorCode::kExecutionNotFound);
  EXPECT_EQ(CodeOf([&] { provider_.StopExecution(ctx_, "mock:onboarding:nope", "r"); }),
            ErrorCode::kExecutionNotFound);
}

TEST_F(MockProviderTest, InvalidInput) {
  EXPECT_EQ(CodeOf([&] {
              provider_.StartExecution(ctx_, "onboarding", {"bad name", Json::object()});
            }),
            ErrorCode::kInvalidSpec);
  EXPECT_EQ(CodeOf([&] {
              provider_.StartExecution(ctx_, "onboarding", {"ok", Json("text")});
            }),
            ErrorCode::kInvalidSpec);
  EXPECT_EQ(provider_.ExecutionCount(), 0u);
}

TEST_F(MockProviderTest, ValidateRejectsBadDefinitionsAndConfig) {
  auto spec = Spec("v");
  spec.definition = Json::array();
  EXPECT_EQ(CodeOf([&] { provider_.Validate(ctx_, spec); }), ErrorCode::kInvalidSpec);
  spec = Spec("v");
  spec.definition["steps"].push_back(Json{{"id", "assign_plan"}});
  EXPECT_EQ(CodeOf([&] { provider_.Validate(ctx_, spec); }), ErrorCode::kInvalidSpec);
  spec = Spec("v", Json{{"mock", {{"outcome", "explode"}}}});
  EXPECT_EQ(CodeOf([&] { provider_.Validate(ctx_, spec); }), ErrorCode::kInvalidSpec);
  spec = Spec("v", Json{{"mock", {{"delya", "1s"}}}});
  try {
    provider_.Validate(ctx_, spec);
    FAIL();
  } catch (const ProviderError& e) {
    EXPECT_NE(std::string(e.what()).find("delya"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(provider_.Validate(ctx_, Spec("v", Json{{"mock", {{"outcome", "succeed"}}}})));
  EXPECT_FALSE(provider_.HasWorkflow("v"));  // validation creates nothing
}

TEST_F(MockProviderTest, StopCancelsAndIsIdempotent) {
  provider_.SetWorkflowOutcome("onboarding", Outcome::RunUntilStopped());
  auto started = provider_.StartExecution(ctx_, "onboarding", Input("stop-me"));
  clock_.Advance(3s);
  provider_.StopExecution(ctx_, started.execution_id, "user requested cancellation");
  auto status = provider_.GetExecutionStatus(ctx_, started.execution_id);
  EXPECT_EQ(status.state, ExecutionState::kCancelled);
  EXPECT_EQ(*status.stop_time - status.start_time, 3s);
  EXPECT_EQ(status.history.back().type, "ExecutionAborted");
  EXPECT_EQ(status.history.back().details["reason"], "user requested cancellation");
  clock_.Advance(1s);
  provider_.StopExecution(ctx_, started.execution_id, "again");
  auto again = provider_.GetExecutionStatus(ctx_, started.execution_id);
  EXPECT_EQ(again, status);  // nothing changed
}

TEST_F(MockProviderTest, TerminalStatesNeverChange) {
  // Stopped before its delayed success: stays cancelled when the delay passes.
  provider_.SetWorkflowOutcome("onboarding", Outcome::SucceedAfter(10s));
  auto a = provider_.StartExecution(ctx_, "onboarding", Input("a"));
  provider_.StopExecution(ctx_, a.execution_id, "stop");
  clock_.Advance(1h);
  EXPECT_EQ(provider_.GetExecutionStatus(ctx_, a.execution_id).state, ExecutionState::kCancelled);
  // Succeeded: a stop afterwards changes nothing.
  provider_.SetWorkflowOutcome("onboarding", Outcome::Succeed());
  auto b = provider_.StartExecution(ctx_, "onboarding", Input("b"));
  auto done = provider_.GetExecutionStatus(ctx_, b.execution_id);
  provider_.StopExecution(ctx_, b.execution_id, "too late");
  EXPECT_EQ(provider_.GetExecutionStatus(ctx_, b.execution_id), done);
}

TEST_F(MockProviderTest, DeleteWorkflowIsIdempotentAndRefusedWhileRunning) {
  provider_.DeleteWorkflow(ctx_, "never-existed");
  provider_.SetWorkflowOutcome("onboarding", Outcome::RunUntilStopped());
  auto running = provider_.StartExecution(ctx_, "onboarding", Input("r"));
  EXPECT_EQ(CodeOf([&] { provider_.DeleteWorkflow(ctx_, "onboarding"); }),
            ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(provider_.HasWorkflow("onboarding"));
  provider_.StopExecution(ctx_, running.execution_id, "cleanup");
  provider_.DeleteWorkflow(ctx_, "onboarding");
  provider_.DeleteWorkflow(ctx_, "onboarding");
  EXPECT_FALSE(provider_.HasWorkflow("onboarding"));
  // The execution's record outlives its workflow.
  EXPECT_EQ(provider_.GetExecutionStatus(ctx_, running.execution_id).state,
            ExecutionState::kCancelled);
  EXPECT_EQ(CodeOf([&] { provider_.StartExecution(ctx_, "onboarding", Input("late")); }),
            ErrorCode::kWorkflowNotFound);
}

TEST_F(MockProviderTest, CancelledContextFailsEveryMethod) {
  CancelSource source;
  source.Cancel();
  auto c = source.context();
  EXPECT_EQ(CodeOf([&] { provider_.CreateWorkflow(c, Spec("x")); }), ErrorCode::kCancelled);
  EXPECT_EQ(CodeOf([&] { provider_.StartExecution(c, "onboarding", Input("x")); }),
            ErrorCode::kCancelled);
  EXPECT_EQ(CodeOf([&] { provider_.GetExecutionStatus(c, "x"); }), ErrorCode::kCancelled);
  EXPECT_EQ(CodeOf([&] { provider_.StopExecution(c, "x", "r"); }), ErrorCode::kCancelled);
  EXPECT_EQ(CodeOf([&] { provider_.DeleteWorkflow(c, "onboarding"); }), ErrorCode::kCancelled);
  EXPECT_EQ(CodeOf([&] { provider_.Validate(c, Spec("x")); }), ErrorCode::kCancelled);
  EXPECT_FALSE(provider_.HasWorkflow("x"));
  EXPECT_EQ(provider_.ExecutionCount(), 0u);
}

TEST_F(MockProviderTest, SlowCallHitsDeadline) {
  provider_.SetLatency(10s);
  auto short_deadline = ctx_.WithTimeout(20ms);
  auto started_at = std::chrono::steady_clock::now();
  EXPECT_EQ(CodeOf([&] { provider_.StartExecution(short_deadline, "onboarding", Input("late")); }),
            ErrorCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - started_at, 5s);  // did not wait the full latency
  EXPECT_EQ(provider_.ExecutionCount(), 0u);
}

TEST_F(MockProviderTest, SlowCallIsCancelledFromAnotherThread) {
  provider_.SetLatency(10s);
  CancelSource source;
  std::thread canceller([&] {
    std::this_thread::sleep_for(20ms);
    source.Cancel();
  });
  EXPECT_EQ(CodeOf([&] { provider_.GetExecutionStatus(source.context(), "x"); }),
            ErrorCode::kCancelled);
  canceller.join();
}

TEST_F(MockProviderTest, InjectedErrorsFlapThenRecover) {
  provider_.InjectErrors(Operation::kStartExecution, 2, ErrorCode::kUnavailable);
  for (int i = 0; i < 2; ++i) {
    try {
      provider_.StartExecution(ctx_, "onboarding", Input("flappy"));
      FAIL();
    } catch (const ProviderError& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
      EXPECT_TRUE(e.Retryable());
    }
  }
  auto started = provider_.StartExecution(ctx_, "onboarding", Input("flappy"));
  EXPECT_EQ(provider_.GetExecutionStatus(ctx_, started.execution_id).state,
            ExecutionState::kSucceeded);
  EXPECT_EQ(provider_.ExecutionCount(), 1u);
}

// Many threads start overlapping execution names, stop and query them at once. Each name exists
// exactly once, every call is counted, and states stay consistent (run under ThreadSanitizer).
TEST(MockProviderConcurrency, OverlappingStartsStopsAndQueries) {
  ManualClock clock;
  MockProvider provider(clock);
  auto ctx = Context::Background();
  provider.CreateWorkflow(ctx, Spec("onboarding"));
  provider.SetWorkflowOutcome("onboarding", Outcome::SucceedAfter(1s));
  constexpr int kThreads = 8;
  constexpr int kNames = 200;
  std::vector<std::thread> threads;
  std::mutex ids_mu;
  std::map<std::string, std::set<std::string>> ids_by_name;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kNames; ++i) {
        std::string name = "exec-" + std::to_string(i);
        auto r = provider.StartExecution(ctx, "onboarding", Input(name));
        {
          std::lock_guard lock(ids_mu);
          ids_by_name[name].insert(r.execution_id);
        }
        if (i % 3 == t % 3)
          provider.StopExecution(ctx, r.execution_id, "thread " + std::to_string(t));
        auto s = provider.GetExecutionStatus(ctx, r.execution_id);
        EXPECT_TRUE(s.state == ExecutionState::kRunning || s.state == ExecutionState::kCancelled ||
                    s.state == ExecutionState::kSucceeded);
        if (t == 0 && i % 50 == 0) clock.Advance(100ms);
        provider.CreateWorkflow(ctx, Spec("onboarding"));  // idempotent, concurrent
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(provider.ExecutionCount(), static_cast<size_t>(kNames));
  clock.Advance(1h);
  for (const auto& [name, ids] : ids_by_name) {
    ASSERT_EQ(ids.size(), 1u) << name;
    EXPECT_EQ(provider.StartCalls(name), kThreads) << name;
    auto s = provider.GetExecutionStatus(ctx, *ids.begin());
    EXPECT_TRUE(IsTerminal(s.state)) << name;
  }
}

}  // namespace
}  // namespace workflowd::providers::mock

namespace workflowd::providers::mock {
namespace {

// Another replica's mock (or this one after a restart) answers for an execution it did not start,
// given the same workflow: the outcome is recomputed from the id.
TEST(MockProviderReconstruction, AnotherInstanceAnswersForAnExecution) {
  ManualClock clock;
  auto ctx = Context::Background();
  auto spec = Spec("onboarding", Json{{"mock", {{"outcome", "succeed"}, {"delay", "10s"}}}});
  MockProvider first(clock);
  first.CreateWorkflow(ctx, spec);
  auto started = first.StartExecution(ctx, "onboarding", Input("exec-7"));

  MockProvider second(clock);
  second.CreateWorkflow(ctx, spec);
  EXPECT_EQ(CodeOf([&] { second.GetExecutionStatus(ctx, started.execution_id); }),
            ErrorCode::kExecutionNotFound);  // off by default
  second.EnableReconstruction(true);
  EXPECT_EQ(second.GetExecutionStatus(ctx, started.execution_id).state, ExecutionState::kRunning);
  clock.Advance(10s);
  auto status = second.GetExecutionStatus(ctx, started.execution_id);
  EXPECT_EQ(status.state, ExecutionState::kSucceeded);
  EXPECT_EQ(status.history.back().type, "ExecutionSucceeded");
  EXPECT_EQ(first.GetExecutionStatus(ctx, started.execution_id).state, ExecutionState::kSucceeded);
  // Unknown workflow or malformed ids stay not found.
  EXPECT_EQ(CodeOf([&] { second.GetExecutionStatus(ctx, "mock:other:x:1"); }),
            ErrorCode::kExecutionNotFound);
  EXPECT_EQ(CodeOf([&] { second.GetExecutionStatus(ctx, "mock:onboarding:x"); }),
            ErrorCode::kExecutionNotFound);
  // A stop through the second instance cancels its view.
  auto other = first.StartExecution(ctx, "onboarding", Input("exec-8"));
  second.StopExecution(ctx, other.execution_id, "stop elsewhere");
  EXPECT_EQ(second.GetExecutionStatus(ctx, other.execution_id).state, ExecutionState::kCancelled);
}

// Past the retention, finished executions are forgotten and rebuilt from their id on demand: same
// state, steps and history, an empty input; their names stay known (a repeated start is still the
// same execution); cancelled and unfinished executions are never forgotten.
TEST(MockProviderRetention, ForgetsOldFinishedExecutionsAndRebuildsThem) {
  ManualClock clock;
  auto ctx = Context::Background();
  MockProvider provider(clock);
  provider.CreateWorkflow(ctx, Spec("onboarding"));
  provider.CreateWorkflow(ctx, Spec("hanging", Json{{"mock", {{"outcome", "run_until_stopped"}}}}));
  provider.SetRetention(3);
  auto hanging = provider.StartExecution(ctx, "hanging", Input("hang-1"));
  auto cancelled = provider.StartExecution(ctx, "hanging", Input("hang-2"));
  provider.StopExecution(ctx, cancelled.execution_id, "operator");
  auto first = provider.StartExecution(ctx, "onboarding", Input("done-1"));
  const auto before = provider.GetExecutionStatus(ctx, first.execution_id);
  for (int i = 2; i <= 20; ++i) {
    provider.StartExecution(ctx, "onboarding", Input("done-" + std::to_string(i)));
  }
  EXPECT_EQ(provider.ExecutionCount(), 22u);
  EXPECT_LE(provider.RetainedCount(), 5u);  // the bound, give or take what one start looks at

  // The two hanging executions were kept as they were.
  EXPECT_EQ(provider.GetExecutionStatus(ctx, hanging.execution_id).state, ExecutionState::kRunning);
  EXPECT_EQ(provider.GetExecutionStatus(ctx, cancelled.execution_id).state,
            ExecutionState::kCancelled);
  // The first finished one comes back from its id.
  const auto after = provider.GetExecutionStatus(ctx, first.execution_id);
  EXPECT_EQ(after.state, ExecutionState::kSucceeded);
  EXPECT_EQ(EventTypes(after), EventTypes(before));
  EXPECT_EQ(after.output, before.output);
  EXPECT_EQ(before.input.get(), Input("done-1").input);
  EXPECT_EQ(after.input.get(), Json::object());
  // A repeated start of a forgotten name is the same execution, not a second one.
  provider.SetRetention(1);
  for (int i = 21; i <= 30; ++i) {
    provider.StartExecution(ctx, "onboarding", Input("done-" + std::to_string(i)));
  }
  auto again = provider.StartExecution(ctx, "onboarding", Input("done-2"));
  EXPECT_EQ(again.message, "execution already started");
  EXPECT_EQ(again.state, ExecutionState::kSucceeded);
  EXPECT_EQ(provider.StartCalls("done-2"), 2);
  EXPECT_EQ(provider.ExecutionCount(), 32u);
  // Unknown ids stay unknown (reconstruction of other instances' executions is off here).
  EXPECT_EQ(CodeOf([&] { provider.GetExecutionStatus(ctx, "mock:onboarding:done-99:1"); }),
            ErrorCode::kExecutionNotFound);
}

// Every per-name map is bounded: the names of a million starts are not all kept. Starts whose
// record is forgotten lose their name past the name retention (their starts, their fault counts);
// recent names still make a repeated start the same execution, and the names of kept records
// (unfinished, cancelled) are never forgotten.
TEST(MockProviderRetention, RemembersABoundedNumberOfNames) {
  ManualClock clock;
  auto ctx = Context::Background();
  MockProvider provider(clock);
  provider.CreateWorkflow(ctx, Spec("onboarding"));
  provider.CreateWorkflow(ctx, Spec("hanging", Json{{"mock", {{"outcome", "run_until_stopped"}}}}));
  // Fails each name's first start; counted per name (no "start_attempt" in the input).
  provider.CreateWorkflow(ctx, Spec("flaky", Json{{"mock", {{"start_failures", 1}}}}));
  provider.SetRetention(10);
  provider.SetNameRetention(50);
  auto hanging = provider.StartExecution(ctx, "hanging", Input("hang-1"));
  for (int i = 0; i < 2000; ++i) {
    provider.StartExecution(ctx, "onboarding", Input("done-" + std::to_string(i)));
    // A start that fails and is never tried again leaves a name behind too.
    EXPECT_EQ(CodeOf([&] {
                provider.StartExecution(ctx, "flaky", Input("gave-up-" + std::to_string(i)));
              }),
              ErrorCode::kUnavailable);
  }
  // 4,001 names were used; at most the bound plus the kept records' names (give or take what one
  // call looks at) are remembered.
  EXPECT_LE(provider.KnownNameCount(), 50u + 12u);
  EXPECT_LE(provider.ExecutionCount(), 50u + 12u);
  EXPECT_LE(provider.RetainedCount(), 12u);
  EXPECT_EQ(provider.StartCalls("done-0"), 0);  // forgotten
  // The hanging execution's name is still known: a repeated start is the same execution.
  auto again = provider.StartExecution(ctx, "hanging", Input("hang-1"));
  EXPECT_EQ(again.execution_id, hanging.execution_id);
  EXPECT_EQ(again.message, "execution already started");
  // A recent name too.
  auto recent = provider.StartExecution(ctx, "onboarding", Input("done-1999"));
  EXPECT_EQ(recent.message, "execution already started");
  EXPECT_EQ(provider.StartCalls("done-1999"), 2);
}

TEST(MockProviderStartLog, AppendsOneLinePerStartCall) {
  ManualClock clock;
  auto ctx = Context::Background();
  std::string path = ::testing::TempDir() + "/mock-start-log-" + std::to_string(getpid());
  std::remove(path.c_str());
  MockProvider provider(clock);
  provider.SetStartLog(path);
  provider.CreateWorkflow(ctx, Spec("onboarding"));
  provider.StartExecution(ctx, "onboarding", Input("a"));
  provider.StartExecution(ctx, "onboarding", Input("a"));
  provider.StartExecution(ctx, "onboarding", Input("b"));
  std::ifstream in(path);
  std::string line, all;
  while (std::getline(in, line)) all += line + ";";
  EXPECT_EQ(all, "a;a;b;");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace workflowd::providers::mock

namespace workflowd::providers::mock {
namespace {

TEST(MockProviderFaults, ConfiguredFlappingAndTimeoutsPerExecutionName) {
  ManualClock clock;
  auto ctx = Context::Background();
  MockProvider provider(clock);
  provider.CreateWorkflow(
      ctx, Spec("flaky", Json{{"mock", {{"start_failures", 2}, {"start_timeouts", 1}}}}));
  EXPECT_EQ(CodeOf([&] { provider.StartExecution(ctx, "flaky", Input("a")); }),
            ErrorCode::kUnavailable);
  EXPECT_EQ(CodeOf([&] { provider.StartExecution(ctx, "flaky", Input("a")); }),
            ErrorCode::kUnavailable);
  EXPECT_EQ(CodeOf([&] {
              provider.StartExecution(ctx.WithTimeout(std::chrono::milliseconds(10)), "flaky",
                                      Input("a"));
            }),
            ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(provider.ExecutionCount(), 0u);
  auto started = provider.StartExecution(ctx, "flaky", Input("a"));
  EXPECT_EQ(provider.ExecutionCount(), 1u);
  // Another name flaps on its own count.
  EXPECT_EQ(CodeOf([&] { provider.StartExecution(ctx, "flaky", Input("b")); }),
            ErrorCode::kUnavailable);
  EXPECT_EQ(provider.GetExecutionStatus(ctx, started.execution_id).state,
            ExecutionState::kSucceeded);
}

// The caller's attempt number (start_attempt) drives the faults, the same in every process; a
// call repeated at the attempt that just failed (a quick retry, or a start parked by the caller's
// circuit breaker) goes through, as on an engine that answers again.
TEST(MockProviderFaults, FaultsFollowTheCallersAttemptAndARepeatedAttemptGoesThrough) {
  ManualClock clock;
  auto ctx = Context::Background();
  MockProvider provider(clock);
  provider.CreateWorkflow(ctx, Spec("flaky", Json{{"mock", {{"start_failures", 2}}}}));
  auto at = [](const std::string& name, int attempt) {
    ExecutionInput in = Input(name);
    in.input = Json{{"start_attempt", attempt}};
    return in;
  };
  EXPECT_EQ(CodeOf([&] { provider.StartExecution(ctx, "flaky", at("a", 1)); }),
            ErrorCode::kUnavailable);
  EXPECT_EQ(CodeOf([&] { provider.StartExecution(ctx, "flaky", at("a", 2)); }),
            ErrorCode::kUnavailable);
  provider.StartExecution(ctx, "flaky", at("a", 3));
  EXPECT_EQ(provider.ExecutionCount(), 1u);
  // Another process's first call at attempt 2 fails as the first one's did.
  MockProvider other(clock);
  other.CreateWorkflow(ctx, Spec("flaky", Json{{"mock", {{"start_failures", 2}}}}));
  EXPECT_EQ(CodeOf([&] { other.StartExecution(ctx, "flaky", at("b", 2)); }),
            ErrorCode::kUnavailable);
  // The same attempt again: through.
  EXPECT_EQ(other.ExecutionCount(), 0u);
  other.StartExecution(ctx, "flaky", at("b", 2));
  EXPECT_EQ(other.ExecutionCount(), 1u);
}

TEST(MockProviderFaults, LatencyRespectsTheDeadlineAndBadValuesAreRejected) {
  ManualClock clock;
  auto ctx = Context::Background();
  MockProvider provider(clock);
  provider.CreateWorkflow(ctx, Spec("slow", Json{{"mock", {{"latency", "5s"}}}}));
  EXPECT_EQ(CodeOf([&] {
              provider.StartExecution(ctx.WithTimeout(std::chrono::milliseconds(10)), "slow",
                                      Input("a"));
            }),
            ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(CodeOf([&] {
              provider.Validate(ctx, Spec("x", Json{{"mock", {{"latency", 5}}}}));
            }),
            ErrorCode::kInvalidSpec);
  EXPECT_EQ(CodeOf([&] {
              provider.Validate(ctx, Spec("x", Json{{"mock", {{"start_failures", -1}}}}));
            }),
            ErrorCode::kInvalidSpec);
}

}  // namespace
}  // namespace workflowd::providers::mock
