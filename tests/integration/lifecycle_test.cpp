// The execution lifecycle against the real PostgreSQL with the mock provider: dispatch, polling,
// timeouts, retries with backoff, rounds between replicas, fairness, cancel, retry, EC-2. Time is a
// ManualClock: backoff, due times and timeouts move with it; only the tests of a round's own time
// limits (the hold, the call budget) wait on real time.
#include <gtest/gtest.h>

#include <pqxx/pqxx>
#include <thread>

#include "test_database.hpp"
#include "workflowd/common/timefmt.hpp"
#include "workflowd/lifecycle/execution_dispatcher.hpp"
#include "workflowd/lifecycle/execution_gauges.hpp"
#include "workflowd/lifecycle/execution_operations.hpp"
#include "workflowd/lifecycle/policy.hpp"
#include "workflowd/lifecycle/status_poller.hpp"
#include "workflowd/providers/mock/mock_provider.hpp"
#include "workflowd/store/execution_repository.hpp"
#include "workflowd/store/migrations.hpp"

namespace workflowd::lifecycle {
namespace {

using namespace std::chrono_literals;
using providers::ErrorCode;
using providers::ExecutionState;
using providers::mock::MockProvider;
using providers::mock::Operation;
using providers::mock::Outcome;

constexpr const char* kDefinitions = R"(
definitions:
  - id: onboarding
    tenant_id: tenant_a
    environment_id: prod
    name: Onboarding
    trigger: {type: event, event_name: customer.created}
    steps:
      - {id: assign_plan, order: 1, type: assign_plan, config: {plan_id: starter}}
      - {id: create_wallet, order: 2, type: create_wallet, config: {}, depends_on: [assign_plan]}
      - {id: send_email, order: 3, type: send_email, config: {}, depends_on: [create_wallet]}
    retry_policy: {max_attempts: 3, initial_interval_seconds: 1, backoff_coefficient: 2.0, max_interval_seconds: 60}
    timeout_seconds: 60
  - id: billing
    tenant_id: tenant_b
    environment_id: prod
    name: Billing
    trigger: {type: event, event_name: invoice.paid}
    steps:
      - {id: grant, order: 1, type: grant_credits, config: {}}
  - id: other-provider
    tenant_id: tenant_a
    environment_id: prod
    name: Needs Temporal
    provider: temporal
    trigger: {type: event, event_name: customer.created}
    steps:
      - {id: grant, order: 1, type: grant_credits, config: {}}
)";

class LifecycleTest : public ::testing::Test {
 protected:
  LifecycleTest()
      : db_(test_db_.dsn()),
        registry_(std::make_shared<providers::Registry>()),
        mock_(std::make_shared<MockProvider>(clock_)),
        manager_(registry_),
        catalog_(manager_),
        metrics_(metrics_registry_) {
    store::Migrate(test_db_.dsn(), store::BundledMigrations());
    registry_->Register(mock_);
    store::DefinitionRepository repo(db_);
    repo.Apply(definitions::DefinitionsFromYamlOrJson(kDefinitions, "test", {"mock"}), "test");
  }

  // A dispatcher on `db` (default: the fixture's connection; another Database is another replica).
  ExecutionDispatcher Dispatcher(size_t batch = 50, size_t per_scope = 50,
                                 store::Database* db = nullptr) {
    DispatcherOptions o;
    o.batch_size = batch;
    o.per_scope_limit = per_scope;
    o.max_in_flight = 4;
    return ExecutionDispatcher(o, db ? *db : db_, manager_, catalog_, metrics_, clock_,
                               [] { return 0.5; });
  }

  StatusPoller Poller(size_t batch = 200) {
    PollerOptions o;
    o.batch_size = batch;
    o.max_in_flight = 4;
    return StatusPoller(o, db_, manager_, catalog_, metrics_, clock_);
  }

  // Inserts pending executions of `definition` for the given event ids.
  void AddPending(const std::string& definition, const std::string& tenant,
                  const std::vector<std::string>& events) {
    std::vector<store::NewExecution> rows;
    for (const auto& ev : events) {
      store::NewExecution e;
      e.id = "ex_" + definition + "_" + ev;
      e.tenant_id = tenant;
      e.environment_id = "prod";
      e.workflow_id = definition;
      e.workflow_name = definition;
      e.definition_version = 1;
      e.provider = definition == "other-provider" ? "temporal" : "mock";
      e.trigger_event_id = ev;
      e.trigger_event = {{"id", ev}};
      rows.push_back(e);
    }
    store::ExecutionRepository(db_).InsertPending(rows);
    // Rows are due "now" on the database clock; make them due on the manual clock as well.
    pqxx::connection c(test_db_.dsn());
    pqxx::work w(c);
    w.exec(
        "UPDATE workflow_executions SET next_attempt_at = '2020-01-01T00:00:00Z', created_at = "
        "'2026-01-30T10:00:00Z' WHERE status = 'pending'");
    w.commit();
  }

  // Runs `sql` in its own transaction with $1 = the manual clock's now (RFC 3339).
  void ExecAtNow(const std::string& sql) {
    pqxx::connection c(test_db_.dsn());
    pqxx::work w(c);
    w.exec_params(sql, FormatRfc3339(clock_.Now()));
    w.commit();
  }

  std::optional<store::ExecutionRecord> Get(const std::string& id,
                                            const std::string& tenant = "tenant_a") {
    return store::LifecycleRepository(db_).Get(tenant, "prod", id);
  }

  std::string StepStates(const std::string& id) {
    std::string out;
    for (const auto& s : store::LifecycleRepository(db_).Steps(id)) {
      out += s.step_id + "=" + s.status + " ";
    }
    return out;
  }

  std::string WorkflowIdOf(const std::string& definition) {
    return ProviderWorkflowId(definition, 1);
  }

  testing::TestDatabase test_db_;
  ManualClock clock_;
  store::Database db_;
  std::shared_ptr<providers::Registry> registry_;
  std::shared_ptr<MockProvider> mock_;
  providers::Manager manager_;
  WorkflowCatalog catalog_;
  metrics::Registry metrics_registry_;
  LifecycleMetrics metrics_;
};

TEST_F(LifecycleTest, PendingToSucceededWithStepsAndHistory) {
  AddPending("onboarding", "tenant_a", {"e1", "e2", "e3"});
  auto dispatcher = Dispatcher();
  EXPECT_EQ(dispatcher.RunOnce(), 3u);
  EXPECT_EQ(dispatcher.RunOnce(), 0u);  // nothing left pending
  auto e = Get("ex_onboarding_e1");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->status, "running");
  EXPECT_FALSE(e->provider_execution_id.empty());
  EXPECT_EQ(*e->deadline_at - *e->started_at, 60s);
  EXPECT_EQ(mock_->StartCalls("ex_onboarding_e1"), 1);  // execution name = our execution id

  auto poller = Poller();
  EXPECT_EQ(poller.RunOnce(), 0u);  // first poll not due yet
  clock_.Advance(200ms);
  EXPECT_EQ(poller.RunOnce(), 3u);
  e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "succeeded");
  EXPECT_EQ(e->output, (nlohmann::json{{"result", "ok"}}));
  EXPECT_TRUE(e->completed_at.has_value());
  EXPECT_EQ(StepStates(e->id),
            "assign_plan=completed create_wallet=completed send_email=completed ");
  auto history = store::LifecycleRepository(db_).History(e->id);
  ASSERT_EQ(history.size(), 8u);
  EXPECT_EQ(history.front().event_type, "ExecutionStarted");
  EXPECT_EQ(history.back().event_type, "ExecutionSucceeded");
  clock_.Advance(1h);
  EXPECT_EQ(poller.RunOnce(), 0u);  // terminal executions are not polled
  EXPECT_EQ(metrics_.transitions.WithLabels({"mock", "succeeded"}).Value(), 3);
}

TEST_F(LifecycleTest, HistoryIsStoredOncePerEventAcrossPolls) {
  mock_->SetDefaultOutcome(Outcome::SucceedAfter(30s));
  AddPending("onboarding", "tenant_a", {"e1"});
  Dispatcher().RunOnce();
  auto poller = Poller();
  clock_.Advance(1s);
  EXPECT_EQ(poller.RunOnce(), 1u);
  auto e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "running");
  store::LifecycleRepository repo(db_);
  auto first = repo.History(e->id);
  ASSERT_EQ(first.size(), 2u);  // ExecutionStarted, StateEntered of the first step
  EXPECT_EQ(e->history_count, 2);
  clock_.Advance(5s);
  EXPECT_EQ(poller.RunOnce(), 1u);  // nothing new: no chunk written
  clock_.Advance(1min);
  EXPECT_EQ(poller.RunOnce(), 1u);
  e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "succeeded");
  EXPECT_EQ(e->history_count, 8);
  auto history = repo.History(e->id);
  ASSERT_EQ(history.size(), 8u);
  for (size_t i = 0; i < history.size(); ++i) EXPECT_EQ(history[i].seq, static_cast<int>(i));
  EXPECT_EQ(history[0].event_type, "ExecutionStarted");
  EXPECT_EQ(history[0].details, (nlohmann::json{{"name", "ex_onboarding_e1"}}));
  EXPECT_EQ(history[0].occurred_at, first[0].occurred_at);
  EXPECT_EQ(history[7].event_type, "ExecutionSucceeded");
  // Two polls found new events: two chunks, the second starting where the first ended.
  pqxx::connection c(test_db_.dsn());
  pqxx::read_transaction r(c);
  auto chunks = r.exec(
      "SELECT first_seq, jsonb_array_length(events) FROM execution_history_chunks WHERE "
      "execution_id = 'ex_onboarding_e1' ORDER BY first_seq");
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0][0].as<int>(), 0);
  EXPECT_EQ(chunks[0][1].as<int>(), 2);
  EXPECT_EQ(chunks[1][0].as<int>(), 2);
  EXPECT_EQ(chunks[1][1].as<int>(), 6);
}

TEST_F(LifecycleTest, FailureMarksCompletedFailedAndSkippedSteps) {
  mock_->SetDefaultOutcome(
      Outcome::Fail({"States.TaskFailed", "wallet down", "", "create_wallet"}));
  AddPending("onboarding", "tenant_a", {"e1"});
  Dispatcher().RunOnce();
  clock_.Advance(1s);
  Poller().RunOnce();
  auto e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "failed");
  EXPECT_EQ(e->error["code"], "States.TaskFailed");
  EXPECT_EQ(StepStates(e->id), "assign_plan=completed create_wallet=failed send_email=skipped ");
}

TEST_F(LifecycleTest, HangingExecutionTimesOutAndIsStoppedAtTheProvider) {
  mock_->SetDefaultOutcome(Outcome::RunUntilStopped());
  AddPending("onboarding", "tenant_a", {"e1"});
  Dispatcher().RunOnce();
  auto poller = Poller();
  clock_.Advance(30s);
  poller.RunOnce();
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "running");
  EXPECT_EQ(StepStates("ex_onboarding_e1"),
            "assign_plan=running create_wallet=pending send_email=pending ");
  clock_.Advance(31s);  // past the definition's 60 s timeout
  poller.RunOnce();
  auto e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "timed_out");
  EXPECT_EQ(e->error["code"], "Timeout");
  EXPECT_EQ(StepStates(e->id), "assign_plan=failed create_wallet=skipped send_email=skipped ");
  auto ctx = Context::Background();
  EXPECT_EQ(mock_->GetExecutionStatus(ctx, e->provider_execution_id).state,
            ExecutionState::kCancelled);  // stopped at the engine too
  EXPECT_EQ(metrics_.timeouts.Value(), 1);
}

TEST_F(LifecycleTest, AdaptivePollingSlowsDownForLongRunningExecutions) {
  mock_->SetDefaultOutcome(Outcome::RunUntilStopped());
  AddPending("onboarding", "tenant_a", {"e1"});
  Dispatcher().RunOnce();
  auto poller = Poller();
  auto started = *Get("ex_onboarding_e1")->started_at;
  clock_.Advance(200ms);
  poller.RunOnce();
  auto young = *Get("ex_onboarding_e1")->next_poll_at - clock_.Now();
  clock_.Set(started + 50s);
  poller.RunOnce();
  auto older = *Get("ex_onboarding_e1")->next_poll_at - clock_.Now();
  EXPECT_EQ(young, 200ms);  // the minimum interval
  EXPECT_EQ(older, 5s);     // a tenth of its age
}

TEST_F(LifecycleTest, FlappingProviderIsRetriedWithBackoffThenStarts) {
  mock_->InjectErrors(Operation::kStartExecution, 2, ErrorCode::kUnavailable);
  AddPending("onboarding", "tenant_a", {"e1"});
  auto dispatcher = Dispatcher();
  EXPECT_EQ(dispatcher.RunOnce(), 1u);
  auto e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "pending");
  EXPECT_EQ(e->error["code"], "unavailable");
  EXPECT_EQ(*e->next_attempt_at - clock_.Now(), 750ms);  // 1 s with jitter 0.5: 0.5 + 0.25
  EXPECT_EQ(dispatcher.RunOnce(), 0u);                   // not due yet
  clock_.Advance(750ms);
  EXPECT_EQ(dispatcher.RunOnce(), 1u);
  e = Get("ex_onboarding_e1");
  EXPECT_EQ(*e->next_attempt_at - clock_.Now(), 1500ms);  // 2 s (x2 backoff) with jitter
  clock_.Advance(1500ms);
  EXPECT_EQ(dispatcher.RunOnce(), 1u);
  e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "running");
  EXPECT_EQ(e->start_attempts, 3);
  EXPECT_EQ(mock_->StartCalls("ex_onboarding_e1"), 1);  // the failed calls never reached it
  EXPECT_EQ(metrics_.dispatch_attempts.WithLabels({"retry"}).Value(), 2);
}

TEST_F(LifecycleTest, RetryableErrorsStopAtMaxAttempts) {
  mock_->InjectErrors(Operation::kStartExecution, 100, ErrorCode::kThrottled);
  AddPending("onboarding", "tenant_a", {"e1"});
  auto dispatcher = Dispatcher();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(dispatcher.RunOnce(), 1u) << i;
    clock_.Advance(1min);
  }
  auto e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "failed");
  EXPECT_EQ(e->error["code"], "throttled");
  EXPECT_EQ(e->error["attempts"], 3);
  EXPECT_EQ(dispatcher.RunOnce(), 0u);
}

TEST_F(LifecycleTest, PermanentErrorsFailAtOnce) {
  AddPending("other-provider", "tenant_a", {"e1"});  // provider "temporal" is not registered
  mock_->InjectErrors(Operation::kStartExecution, 1, ErrorCode::kInvalidSpec);
  AddPending("onboarding", "tenant_a", {"e2"});
  Dispatcher().RunOnce();
  auto e1 = Get("ex_other-provider_e1");
  EXPECT_EQ(e1->status, "failed");
  EXPECT_EQ(e1->error["code"], "provider_not_found");
  auto e2 = Get("ex_onboarding_e2");
  EXPECT_EQ(e2->status, "failed");
  EXPECT_EQ(e2->error["code"], "invalid_spec");
}

TEST_F(LifecycleTest, SlowProviderCallsHitTheirDeadlineAndAreRetried) {
  mock_->SetLatency(5s);
  AddPending("onboarding", "tenant_a", {"e1"});
  DispatcherOptions o;
  o.call_timeout = 20ms;
  ExecutionDispatcher dispatcher(o, db_, manager_, catalog_, metrics_, clock_, [] { return 0.0; });
  dispatcher.RunOnce();
  auto e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "pending");
  EXPECT_EQ(e->error["code"], "deadline_exceeded");
  mock_->SetLatency(0ms);
  clock_.Advance(1s);
  dispatcher.RunOnce();
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "running");
}

// A round that took every due execution says so, and the dispatch loop then waits for new work
// instead of running an empty lease at once; a full batch asks for the next round at once.
TEST_F(LifecycleTest, ARoundSaysWhetherDueExecutionsWereLeftBehind) {
  AddPending("onboarding", "tenant_a", {"a1", "a2"});
  AddPending("billing", "tenant_b", {"b1"});
  auto dispatcher = Dispatcher(/*batch=*/10, /*per_scope=*/5);
  EXPECT_EQ(dispatcher.RunOnce(), 3u);
  EXPECT_FALSE(dispatcher.MoreDue());  // all taken: no scope reached its share of 5
  AddPending("onboarding", "tenant_a", {"a3", "a4", "a5", "a6"});
  auto small = Dispatcher(/*batch=*/3, /*per_scope=*/5);
  EXPECT_EQ(small.RunOnce(), 3u);
  EXPECT_TRUE(small.MoreDue());  // the batch was full
  EXPECT_EQ(small.RunOnce(), 1u);
  EXPECT_FALSE(small.MoreDue());
  EXPECT_EQ(small.RunOnce(), 0u);
  EXPECT_FALSE(small.MoreDue());
  // The poller: a full batch of due polls asks for the next round at once.
  clock_.Advance(1s);
  auto poller = Poller(/*batch=*/3);
  EXPECT_EQ(poller.RunOnce(), 3u);
  EXPECT_TRUE(poller.MoreDue());
  EXPECT_EQ(poller.RunOnce(), 3u);
  EXPECT_TRUE(poller.MoreDue());
  EXPECT_EQ(poller.RunOnce(), 1u);
  EXPECT_FALSE(poller.MoreDue());
}

// Executions offered by the pipeline are taken by id, without the fair walk: rows not offered wait
// for the next fair round (due at once when nothing is offered, else every fair_interval).
TEST_F(LifecycleTest, OfferedExecutionsAreTakenByIdWithoutAWalk) {
  AddPending("onboarding", "tenant_a", {"a1"});
  auto dispatcher = Dispatcher();
  EXPECT_EQ(dispatcher.RunOnce(), 1u);  // nothing offered: a fair round
  AddPending("onboarding", "tenant_a", {"a2", "a3"});
  AddPending("billing", "tenant_b", {"b1"});
  dispatcher.Offer({"ex_onboarding_a2", "ex_unknown", "ex_onboarding_a1"});
  EXPECT_EQ(dispatcher.RunOnce(), 1u);  // a2 only: a1 runs already, the unknown id is skipped
  EXPECT_FALSE(dispatcher.MoreDue());
  EXPECT_EQ(Get("ex_onboarding_a2")->status, "running");
  EXPECT_EQ(Get("ex_onboarding_a3")->status, "pending");  // not offered, no walk
  EXPECT_EQ(Get("ex_billing_b1", "tenant_b")->status, "pending");
  EXPECT_EQ(mock_->StartCalls("ex_onboarding_a2"), 1);
  EXPECT_EQ(mock_->StartCalls("ex_onboarding_a1"), 1);  // not started again
  EXPECT_EQ(metrics_.dispatch_rounds.WithLabels({"fair"}).Value(), 1);
  EXPECT_EQ(metrics_.dispatch_rounds.WithLabels({"offered"}).Value(), 1);
  // Offers keep coming, but the last fair round is fair_interval (100 ms) old: a fair round, which
  // takes the offered row too.
  AddPending("onboarding", "tenant_a", {"a4"});
  clock_.Advance(100ms);
  dispatcher.Offer({"ex_onboarding_a4"});
  EXPECT_EQ(dispatcher.RunOnce(), 3u);
  EXPECT_EQ(metrics_.dispatch_rounds.WithLabels({"fair"}).Value(), 2);
  for (const char* id : {"ex_onboarding_a3", "ex_onboarding_a4"}) {
    EXPECT_EQ(Get(id)->status, "running") << id;
  }
  EXPECT_EQ(Get("ex_billing_b1", "tenant_b")->status, "running");
}

// An offered row that never started is due whatever the clocks say; one whose start is waiting for
// its retry backoff is not. More than a batch offered: the rest is left to a fair round next.
TEST_F(LifecycleTest, OfferedExecutionsRespectRetryBackoffAndTheBatchSize) {
  AddPending("onboarding", "tenant_a", {"warm"});
  auto dispatcher = Dispatcher(/*batch=*/2);
  EXPECT_EQ(dispatcher.RunOnce(), 1u);  // the fair round of a fresh dispatcher
  AddPending("onboarding", "tenant_a", {"fresh", "backoff", "x1", "x2", "x3"});
  // The database's clock ahead of the daemon's for a fresh row; a retry an hour away.
  ExecAtNow(
      "UPDATE workflow_executions SET next_attempt_at = $1::timestamptz + interval '1 second' "
      "WHERE id = 'ex_onboarding_fresh'");
  ExecAtNow(
      "UPDATE workflow_executions SET start_attempts = 1, next_attempt_at = $1::timestamptz + "
      "interval '1 hour' WHERE id = 'ex_onboarding_backoff'");
  dispatcher.Offer({"ex_onboarding_fresh", "ex_onboarding_backoff"});
  EXPECT_EQ(dispatcher.RunOnce(), 1u);
  EXPECT_EQ(Get("ex_onboarding_fresh")->status, "running");
  EXPECT_EQ(Get("ex_onboarding_backoff")->status, "pending");
  EXPECT_EQ(mock_->StartCalls("ex_onboarding_backoff"), 0);

  dispatcher.Offer({"ex_onboarding_x1", "ex_onboarding_x2"});
  dispatcher.Offer({"ex_onboarding_x3"});
  EXPECT_EQ(dispatcher.RunOnce(), 2u);  // one batch of the three offered
  EXPECT_TRUE(dispatcher.MoreDue());
  EXPECT_EQ(dispatcher.RunOnce(), 1u);  // a fair round takes the third
  EXPECT_EQ(metrics_.dispatch_rounds.WithLabels({"offered"}).Value(), 2);
  EXPECT_EQ(metrics_.dispatch_rounds.WithLabels({"fair"}).Value(), 2);
  for (const char* id : {"ex_onboarding_x1", "ex_onboarding_x2", "ex_onboarding_x3"}) {
    EXPECT_EQ(Get(id)->status, "running") << id;
    EXPECT_EQ(mock_->StartCalls(id), 1) << id;
  }
  EXPECT_EQ(Get("ex_onboarding_backoff")->status, "pending");  // still waiting for its backoff
}

// An offered row that another round holds is skipped, not waited for.
TEST_F(LifecycleTest, OfferedExecutionsHeldByAnotherRoundAreSkipped) {
  AddPending("onboarding", "tenant_a", {"e1", "e2"});
  store::Database replica1(test_db_.dsn());
  auto replica2 = Dispatcher();
  EXPECT_EQ(replica2.RunOnce(), 2u);  // a fair round: both
  AddPending("onboarding", "tenant_a", {"e3", "e4"});
  clock_.Advance(1ms);
  store::LifecycleRepository(replica1).RunDispatchRoundFor(
      {"ex_onboarding_e3"}, clock_.Now(), 30s,
      [&](std::vector<store::ExecutionRecord>& executions) {
        EXPECT_EQ(executions.size(), 1u);
        replica2.Offer({"ex_onboarding_e3", "ex_onboarding_e4"});
        EXPECT_EQ(replica2.RunOnce(), 1u);  // e4; e3 is held by replica 1's round
        std::vector<store::DispatchOutcome> outcomes(1);
        outcomes[0].id = executions[0].id;
        outcomes[0].kind = store::DispatchOutcome::Kind::kNotAttempted;
        return outcomes;
      });
  EXPECT_EQ(Get("ex_onboarding_e3")->status, "pending");  // replica 1 left it as it was
  EXPECT_EQ(Get("ex_onboarding_e4")->status, "running");
}

// A round holds its rows with row locks while its provider calls run: another replica skips them,
// and a replica that dies mid-round (its transaction rolls back) leaves them due at once.
TEST_F(LifecycleTest, RoundsKeepReplicasApartAndACrashFreesTheRows) {
  AddPending("onboarding", "tenant_a", {"e1", "e2"});
  store::Database replica1(test_db_.dsn());
  auto replica2 = Dispatcher();
  EXPECT_THROW(store::LifecycleRepository(replica1).RunDispatchRound(
                   clock_.Now(), 30s, 10, 10,
                   [&](std::vector<store::ExecutionRecord>& executions)
                       -> std::vector<store::DispatchOutcome> {
                     EXPECT_EQ(executions.size(), 2u);
                     EXPECT_EQ(executions[0].start_attempts, 1);  // this attempt counts
                     EXPECT_EQ(replica2.RunOnce(), 0u);           // held by replica 1's round
                     throw std::runtime_error("replica 1 dies before any provider call");
                   }),
               std::runtime_error);
  EXPECT_EQ(replica2.RunOnce(), 2u);  // free again at once, no lease to wait for
  for (const char* id : {"ex_onboarding_e1", "ex_onboarding_e2"}) {
    auto e = Get(id);
    EXPECT_EQ(e->status, "running") << id;
    EXPECT_EQ(e->start_attempts, 1) << id;  // the lost round left nothing behind
    EXPECT_EQ(mock_->StartCalls(id), 1) << id;
  }
}

// During a rolling upgrade, a row leased by a daemon of an earlier version (lease columns) is left
// alone until its lease expires.
TEST_F(LifecycleTest, AnEarlierVersionsLeaseIsRespectedUntilItExpires) {
  AddPending("onboarding", "tenant_a", {"e1"});
  ExecAtNow(
      "UPDATE workflow_executions SET lease_owner = 'old-replica', lease_expires_at = "
      "$1::timestamptz + interval '30 seconds'");
  auto dispatcher = Dispatcher();
  EXPECT_EQ(dispatcher.RunOnce(), 0u);
  clock_.Advance(29s);
  EXPECT_EQ(dispatcher.RunOnce(), 0u);
  clock_.Advance(1s);
  EXPECT_EQ(dispatcher.RunOnce(), 1u);
  pqxx::connection c(test_db_.dsn());
  pqxx::work w(c);
  auto r = w.exec("SELECT status, lease_owner IS NULL FROM workflow_executions");
  EXPECT_EQ(r[0][0].as<std::string>(), "running");
  EXPECT_TRUE(r[0][1].as<bool>());  // the old lease is cleared: its owner's late write is fenced
}

// A replica that hangs inside a round (its connection stays open) loses the rows after the hold:
// PostgreSQL ends a session idle in its transaction for longer, and the round cannot record.
TEST_F(LifecycleTest, AHungRoundLosesItsRowsAfterTheHold) {
  AddPending("onboarding", "tenant_a", {"e1"});
  store::Database replica1(test_db_.dsn());
  auto replica2 = Dispatcher();
  size_t taken_over = 0;
  EXPECT_THROW(store::LifecycleRepository(replica1).RunDispatchRound(
                   clock_.Now(), 200ms, 10, 10,
                   [&](std::vector<store::ExecutionRecord>& executions) {
                     std::this_thread::sleep_for(1s);  // far past the 200 ms hold
                     taken_over = replica2.RunOnce();
                     std::vector<store::DispatchOutcome> outcomes(executions.size());
                     for (size_t i = 0; i < executions.size(); ++i) {
                       outcomes[i].id = executions[i].id;
                       outcomes[i].kind = store::DispatchOutcome::Kind::kFailed;
                       outcomes[i].at = clock_.Now();
                     }
                     return outcomes;
                   }),
               store::StoreError);
  EXPECT_EQ(taken_over, 1u);
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "running");  // replica 1's late "failed" is lost
  EXPECT_EQ(mock_->StartCalls("ex_onboarding_e1"), 1);
}

TEST_F(LifecycleTest, StartRepeatedAfterACrashIsANoOpAtTheEngine) {
  AddPending("onboarding", "tenant_a", {"e1"});
  store::Database replica1(test_db_.dsn());
  providers::ExecutionResult first;
  // Replica 1 starts it at the engine, then crashes before recording that.
  EXPECT_THROW(store::LifecycleRepository(replica1).RunDispatchRound(
                   clock_.Now(), 30s, 10, 10,
                   [&](std::vector<store::ExecutionRecord>& executions)
                       -> std::vector<store::DispatchOutcome> {
                     auto entry = catalog_.Ensure(
                         Context::Background(), *std::make_unique<store::DefinitionRepository>(db_),
                         "onboarding", 1);
                     first = manager_.StartExecution(
                         Context::Background(), "mock", entry->spec.workflow_id,
                         InputFor(executions.at(0), executions.at(0).trigger_event));
                     throw std::runtime_error("replica 1 crashed");
                   }),
               std::runtime_error);
  Dispatcher().RunOnce();
  auto e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "running");
  EXPECT_EQ(e->provider_execution_id, first.execution_id);  // the same engine execution
  EXPECT_EQ(mock_->StartCalls("ex_onboarding_e1"), 2);
  EXPECT_EQ(mock_->ExecutionCount(), 1u);
}

// A round starts provider calls only while they can end within its hold; the rest stay due,
// untouched, and the dispatcher asks for the next round at once.
TEST_F(LifecycleTest, ARoundOutOfTimeLeavesTheRestDue) {
  std::vector<std::string> events;
  for (int i = 0; i < 30; ++i) events.push_back("e" + std::to_string(i));
  AddPending("onboarding", "tenant_a", events);
  mock_->SetLatency(50ms);
  DispatcherOptions o;
  o.lease = 1000ms;        // calls begin during the first 500 ms (lease - call_timeout)
  o.call_timeout = 500ms;  // each call takes 50 ms: about 10 of the 30 fit
  o.max_in_flight = 1;
  ExecutionDispatcher dispatcher(o, db_, manager_, catalog_, metrics_, clock_, [] { return 0.0; });
  EXPECT_EQ(dispatcher.RunOnce(), 30u);
  EXPECT_TRUE(dispatcher.MoreDue());
  size_t running = 0;
  for (const auto& id : events) {
    auto e = Get("ex_onboarding_" + id);
    if (e->status == "running") {
      ++running;
      EXPECT_EQ(e->start_attempts, 1);
    } else {
      EXPECT_EQ(e->status, "pending");
      EXPECT_EQ(e->start_attempts, 0);  // not attempted: nothing counted, no error
      EXPECT_TRUE(e->error.is_null());
      EXPECT_EQ(mock_->StartCalls("ex_onboarding_" + id), 0);
    }
  }
  EXPECT_GE(running, 1u);
  EXPECT_LT(running, 30u);
  mock_->SetLatency(0ms);
  while (dispatcher.MoreDue()) dispatcher.RunOnce();
  for (const auto& id : events) EXPECT_EQ(Get("ex_onboarding_" + id)->status, "running") << id;
}

TEST_F(LifecycleTest, OneTenantsFloodDoesNotStarveOthers) {
  std::vector<std::string> flood;
  for (int i = 0; i < 100; ++i) flood.push_back("a" + std::to_string(i));
  AddPending("onboarding", "tenant_a", flood);
  AddPending("billing", "tenant_b", {"b1", "b2", "b3"});
  auto dispatcher = Dispatcher(/*batch=*/10, /*per_scope=*/5);
  EXPECT_EQ(dispatcher.RunOnce(), 8u);  // 5 of tenant_a, all 3 of tenant_b
  EXPECT_TRUE(dispatcher.MoreDue());    // tenant_a gave its whole share: run again at once
  for (const char* id : {"ex_billing_b1", "ex_billing_b2", "ex_billing_b3"}) {
    EXPECT_EQ(Get(id, "tenant_b")->status, "running") << id;
  }
  ExecutionGauges(db_, metrics_, clock_).Sample();
  EXPECT_EQ(metrics_.queued.WithLabels({"tenant_a", "prod"}).Value(), 95);
  EXPECT_EQ(metrics_.queued.WithLabels({"tenant_b", "prod"}).Value(), 0);
}

// Fair share holds even when the flood is older than everything else: the lease takes each
// tenant x environment's oldest rows, not the oldest rows overall.
TEST_F(LifecycleTest, AnOlderFloodDoesNotHideANewerTenant) {
  std::vector<std::string> flood;
  for (int i = 0; i < 300; ++i) flood.push_back("a" + std::to_string(i));
  AddPending("onboarding", "tenant_a", flood);
  AddPending("billing", "tenant_b", {"b1", "b2"});
  {
    pqxx::connection c(test_db_.dsn());
    pqxx::work w(c);
    w.exec(
        "UPDATE workflow_executions SET created_at = created_at + interval '1 hour' WHERE "
        "tenant_id = 'tenant_b'");
    // tenant_a's rows in event order: a0 oldest.
    w.exec(
        "UPDATE workflow_executions SET created_at = created_at + substr(trigger_event_id, 2)::int "
        "* interval '1 second' WHERE tenant_id = 'tenant_a'");
    w.commit();
  }
  auto dispatcher = Dispatcher(/*batch=*/10, /*per_scope=*/8);
  EXPECT_EQ(dispatcher.RunOnce(), 7u);  // an equal share (5) of tenant_a, both of tenant_b
  for (const char* id : {"ex_billing_b1", "ex_billing_b2"}) {
    EXPECT_EQ(Get(id, "tenant_b")->status, "running") << id;
  }
  // The oldest of tenant_a went first.
  for (int i = 0; i < 300; ++i) {
    std::string id = "ex_onboarding_a" + std::to_string(i);
    if (Get(id)->status == "running") {
      EXPECT_LT(i, 5) << id;
    }
  }
  // per_scope_limit still caps a scope when it is the only one left.
  EXPECT_EQ(dispatcher.RunOnce(), 8u);
  EXPECT_TRUE(dispatcher.MoreDue());
  EXPECT_EQ(dispatcher.RunOnce(), 8u);
  ExecutionGauges(db_, metrics_, clock_).Sample();
  EXPECT_EQ(metrics_.queued.WithLabels({"tenant_a", "prod"}).Value(), 300 - 21);
}

TEST_F(LifecycleTest, CancelStopsAtTheProviderAndIsIdempotent) {
  mock_->SetDefaultOutcome(Outcome::RunUntilStopped());
  AddPending("onboarding", "tenant_a", {"e1", "e2"});
  auto dispatcher = Dispatcher();
  store::LifecycleRepository repo(db_);
  ExecutionOperations ops(db_, manager_, clock_);
  // e2 is cancelled while still pending: no provider call at all.
  EXPECT_EQ(ops.Cancel("tenant_a", "prod", "ex_onboarding_e2", "not needed").status, "cancelled");
  dispatcher.RunOnce();
  EXPECT_EQ(mock_->StartCalls("ex_onboarding_e2"), 0);
  auto r = ops.Cancel("tenant_a", "prod", "ex_onboarding_e1", "customer deleted");
  EXPECT_EQ(r.status, "cancelled");
  EXPECT_TRUE(r.changed);
  auto e = Get("ex_onboarding_e1");
  auto status = mock_->GetExecutionStatus(Context::Background(), e->provider_execution_id);
  EXPECT_EQ(status.state, ExecutionState::kCancelled);
  EXPECT_EQ(status.history.back().details["reason"], "customer deleted");
  auto again = ops.Cancel("tenant_a", "prod", "ex_onboarding_e1", "again");
  EXPECT_EQ(again.status, "cancelled");
  EXPECT_FALSE(again.changed);
  // Another tenant cannot cancel it, nor learn it exists.
  EXPECT_THROW(ops.Cancel("tenant_b", "prod", "ex_onboarding_e1", "x"), OperationError);
  clock_.Advance(1h);
  EXPECT_EQ(Poller().RunOnce(), 0u);
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "cancelled");
}

// A cancel that arrives while a poll round holds the execution waits for the round; the terminal
// state the round recorded stands, and the cancel reports it unchanged.
TEST_F(LifecycleTest, TerminalStatesNeverChange) {
  mock_->SetDefaultOutcome(Outcome::RunUntilStopped());
  AddPending("onboarding", "tenant_a", {"e1"});
  Dispatcher().RunOnce();
  clock_.Advance(1s);
  store::Database replica1(test_db_.dsn());
  std::optional<CancelResult> cancelled;
  std::thread user;
  auto round = store::LifecycleRepository(replica1).RunPollRound(
      clock_.Now(), 30s, 10, [&](const std::vector<store::ExecutionRecord>& executions) {
        EXPECT_EQ(executions.size(), 1u);
        // Cancelled by a user while the poll is in flight...
        user = std::thread([&] {
          cancelled = ExecutionOperations(db_, manager_, clock_)
                          .Cancel("tenant_a", "prod", "ex_onboarding_e1", "user");
        });
        // ...which waits for the round's row lock (bounded wait for it to get there).
        pqxx::connection c(test_db_.dsn());
        for (int i = 0; i < 500; ++i) {
          pqxx::work w(c);
          if (w.exec("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")[0][0]
                  .as<int>() > 0)
            break;
          std::this_thread::sleep_for(10ms);
        }
        // The engine had finished the execution before the stop reached it.
        store::PollOutcome late;
        late.id = executions.at(0).id;
        late.status = "succeeded";
        late.completed_at = clock_.Now();
        late.next_poll_at = clock_.Now();
        return std::vector<store::PollOutcome>{late};
      });
  user.join();
  ASSERT_EQ(round.transitions.size(), 1u);
  EXPECT_EQ(round.transitions[0].second, "succeeded");
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->status, "succeeded");
  EXPECT_FALSE(cancelled->changed);
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "succeeded");
  // And the other way round: once cancelled, no poll round takes it again.
  AddPending("onboarding", "tenant_a", {"e2"});
  Dispatcher().RunOnce();
  ExecutionOperations(db_, manager_, clock_).Cancel("tenant_a", "prod", "ex_onboarding_e2", "user");
  clock_.Advance(1s);
  auto after = store::LifecycleRepository(replica1).RunPollRound(
      clock_.Now(), 30s, 10, [&](const std::vector<store::ExecutionRecord>& executions) {
        ADD_FAILURE() << executions.size() << " terminal executions polled";
        return std::vector<store::PollOutcome>{};
      });
  EXPECT_TRUE(after.executions.empty());
  EXPECT_EQ(Get("ex_onboarding_e2")->status, "cancelled");
}

TEST_F(LifecycleTest, RetryCreatesALinkedAttempt) {
  mock_->SetDefaultOutcome(Outcome::Fail({"E", "boom", "", ""}));
  AddPending("onboarding", "tenant_a", {"e1"});
  Dispatcher().RunOnce();
  clock_.Advance(1s);
  Poller().RunOnce();
  ASSERT_EQ(Get("ex_onboarding_e1")->status, "failed");
  ExecutionOperations ops(db_, manager_, clock_);
  mock_->SetDefaultOutcome(Outcome::Succeed());
  std::string retry_id = ops.Retry("tenant_a", "prod", "ex_onboarding_e1");
  auto r = Get(retry_id);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, "pending");
  EXPECT_EQ(r->attempt, 2);
  EXPECT_EQ(r->retry_of, "ex_onboarding_e1");
  EXPECT_EQ(r->trigger_event_id, "e1");
  clock_.Advance(1s);
  Dispatcher().RunOnce();
  clock_.Advance(1s);
  Poller().RunOnce();
  EXPECT_EQ(Get(retry_id)->status, "succeeded");
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "failed");  // the original is kept as it was
  try {
    ops.Retry("tenant_a", "prod", retry_id);
    FAIL() << "a succeeded execution cannot be retried";
  } catch (const OperationError& e) {
    EXPECT_EQ(e.kind(), OperationError::Kind::kConflict);
  }
}

TEST_F(LifecycleTest, DeletingADefinitionWithRunningExecutionsNeedsForce) {
  mock_->SetDefaultOutcome(Outcome::RunUntilStopped());
  AddPending("onboarding", "tenant_a", {"e1", "e2"});
  Dispatcher().RunOnce();
  ExecutionOperations ops(db_, manager_, clock_);
  try {
    ops.DeleteDefinition("tenant_a", "prod", "onboarding", false, "admin");
    FAIL();
  } catch (const OperationError& e) {
    EXPECT_EQ(e.kind(), OperationError::Kind::kConflict);
    EXPECT_NE(std::string(e.what()).find("2 pending or running"), std::string::npos) << e.what();
  }
  auto r = ops.DeleteDefinition("tenant_a", "prod", "onboarding", true, "admin");
  EXPECT_EQ(r.cancelled_executions, 2u);
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "cancelled");
  store::DefinitionRepository defs(db_);
  EXPECT_FALSE(defs.Get("tenant_a", "prod", "onboarding").has_value());
  for (const auto& d : defs.LoadMatchable()) EXPECT_NE(d.id, "onboarding");
}

}  // namespace
}  // namespace workflowd::lifecycle
