// The execution lifecycle against the real PostgreSQL with the mock provider: dispatch, polling,
// timeouts, retries with backoff, rounds between replicas, fairness, cancel, retry, deleting a
// definition with running executions. Time is a ManualClock: backoff, due times and timeouts move
// with it; only the test of a round's call budget waits on real time.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <new>
#include <pqxx/pqxx>
#include <stdexcept>
#include <thread>

#include "test_database.hpp"
#include "workflowd/common/backoff.hpp"
#include "workflowd/common/timefmt.hpp"
#include "workflowd/lifecycle/execution_dispatcher.hpp"
#include "workflowd/lifecycle/execution_gauges.hpp"
#include "workflowd/lifecycle/execution_operations.hpp"
#include "workflowd/lifecycle/policy.hpp"
#include "workflowd/lifecycle/provider_gate.hpp"
#include "workflowd/lifecycle/status_poller.hpp"
#include "workflowd/providers/mock/mock_provider.hpp"
#include "workflowd/store/errors.hpp"
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

  // New executions of `definition` for the given event ids.
  static std::vector<store::NewExecution> Rows(const std::string& definition,
                                               const std::string& tenant,
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
    return rows;
  }

  // Inserts pending executions of `definition` for the given event ids.
  void AddPending(const std::string& definition, const std::string& tenant,
                  const std::vector<std::string>& events) {
    store::ExecutionRepository(db_).InsertPending(Rows(definition, tenant, events));
    // Rows are due "now" on the database clock; make them due on the manual clock as well.
    pqxx::connection c(test_db_.dsn());
    pqxx::work w(c);
    w.exec(
        "UPDATE workflow_executions SET next_attempt_at = '2020-01-01T00:00:00Z', created_at = "
        "'2026-01-30T10:00:00Z' WHERE status = 'pending'");
    w.commit();
  }

  // Inserts pending executions of `definition` leased by the insert to a new token for `lease`
  // from the manual clock's now, as the event pipeline does; returns the offer of the rows it
  // created.
  LeasedOffer AddLeasedPending(const std::string& definition, const std::string& tenant,
                               const std::vector<std::string>& events,
                               std::chrono::milliseconds lease = 30s) {
    const std::vector<store::NewExecution> rows = Rows(definition, tenant, events);
    const store::PendingLease pending{store::NewLeaseToken("test"), clock_.Now(),
                                      clock_.Now() + lease};
    std::vector<bool> inserted;
    std::vector<store::RejectedExecution> rejected;
    store::ExecutionRepository(db_).InsertPending(rows, nullptr, &rejected, {}, &pending,
                                                  &inserted);
    LeasedOffer offer = OfferOf(pending, rows, inserted);
    // Due on the manual clock too, once released (the lease stays as the insert wrote it).
    pqxx::connection c(test_db_.dsn());
    pqxx::work w(c);
    for (const auto& e : offer.executions) {
      w.exec_params(
          "UPDATE workflow_executions SET next_attempt_at = '2020-01-01T00:00:00Z' WHERE id = $1",
          e.id);
    }
    w.commit();
    return offer;
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

  // Whether some other session's last statement contains `fragment`, waiting up to 5 s for it.
  bool WaitForQuery(const std::string& fragment) {
    pqxx::connection c(test_db_.dsn());
    for (int i = 0; i < 500; ++i) {
      pqxx::work w(c);
      if (w.exec_params("SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
                        "strpos(query, $1) > 0",
                        fragment)[0][0]
              .as<int>() > 0) {
        return true;
      }
      w.commit();
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  // A fragment of the statement a cancel runs when a round's lease refused it
  // (LifecycleRepository::Leased).
  static constexpr const char* kLeasedQuery = "lease_expires_at > $4::timestamptz";

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

// A poll the engine throttles (or that finds it unavailable) is made again later than usual: a
// throttling engine is not polled all the faster for it. The execution stays running.
TEST_F(LifecycleTest, AThrottledPollIsRepeatedLaterThanUsual) {
  mock_->SetDefaultOutcome(Outcome::RunUntilStopped());
  AddPending("onboarding", "tenant_a", {"e1"});
  Dispatcher().RunOnce();
  auto poller = Poller();
  clock_.Advance(200ms);
  mock_->InjectErrors(Operation::kGetExecutionStatus, 1, ErrorCode::kThrottled);
  poller.RunOnce();
  const auto e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "running");
  EXPECT_EQ(*e->next_poll_at - clock_.Now(), 2s);  // not the 200 ms of a young execution
  clock_.Advance(2s);
  poller.RunOnce();  // answered: the usual interval again
  EXPECT_EQ(*Get("ex_onboarding_e1")->next_poll_at - clock_.Now(), 220ms);  // a tenth of 2.2 s
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

// Executions offered by the pipeline were leased by their insert: they are started from the offer
// (no claim transaction, no walk), and no other round takes them meanwhile; rows not offered wait
// for the next fair round (due at once when nothing is offered, else every fair_interval).
TEST_F(LifecycleTest, OfferedExecutionsAreStartedFromTheOfferWithoutAClaim) {
  AddPending("onboarding", "tenant_a", {"a1"});
  auto dispatcher = Dispatcher();
  EXPECT_EQ(dispatcher.RunOnce(), 1u);  // nothing offered: a fair round
  LeasedOffer offer = AddLeasedPending("onboarding", "tenant_a", {"a2", "a3"});
  AddPending("billing", "tenant_b", {"b1"});
  ASSERT_EQ(offer.executions.size(), 2u);
  EXPECT_EQ(offer.executions[0].start_attempts, 1);
  // Leased by the insert: another replica's fair round takes only the unleased row.
  store::Database replica2_db(test_db_.dsn());
  auto replica2 = Dispatcher(50, 50, &replica2_db);
  EXPECT_EQ(replica2.RunOnce(), 1u);
  EXPECT_EQ(Get("ex_billing_b1", "tenant_b")->status, "running");
  EXPECT_EQ(Get("ex_onboarding_a2")->status, "pending");

  dispatcher.Offer(std::move(offer));
  EXPECT_TRUE(dispatcher.MoreDue());  // an offer is queued
  EXPECT_EQ(dispatcher.RunOnce(), 2u);
  EXPECT_FALSE(dispatcher.MoreDue());
  for (const char* id : {"ex_onboarding_a2", "ex_onboarding_a3"}) {
    const auto e = Get(id);
    EXPECT_EQ(e->status, "running") << id;
    EXPECT_EQ(e->start_attempts, 1) << id;
    EXPECT_EQ(mock_->StartCalls(id), 1) << id;
  }
  // The fair rounds: the first dispatcher's first one and the other replica's (same metrics); none
  // for the offer.
  EXPECT_EQ(metrics_.dispatch_rounds.WithLabels({"fair"}).Value(), 2);
  EXPECT_EQ(metrics_.dispatch_rounds.WithLabels({"offered"}).Value(), 1);
  EXPECT_EQ(metrics_.stale_outcomes.WithLabels({"dispatch"}).Value(), 0);
  // The lease went with the record.
  pqxx::connection c(test_db_.dsn());
  pqxx::work w(c);
  EXPECT_EQ(w.exec("SELECT count(*) FROM workflow_executions WHERE lease_owner IS NOT NULL")[0][0]
                .as<int>(),
            0);
  w.commit();

  // Offers keep coming, but the last fair round is fair_interval (100 ms) old: the offered round,
  // then a fair round, which finds the unleased row.
  AddPending("onboarding", "tenant_a", {"a5"});
  clock_.Advance(100ms);
  dispatcher.Offer(AddLeasedPending("onboarding", "tenant_a", {"a4"}));
  EXPECT_EQ(dispatcher.RunOnce(), 2u);
  EXPECT_EQ(metrics_.dispatch_rounds.WithLabels({"fair"}).Value(), 3);
  EXPECT_EQ(metrics_.dispatch_rounds.WithLabels({"offered"}).Value(), 2);
  for (const char* id : {"ex_onboarding_a4", "ex_onboarding_a5"}) {
    EXPECT_EQ(Get(id)->status, "running") << id;
  }
}

// An insert leases only the rows it creates: a redelivered event's existing row is not offered.
TEST_F(LifecycleTest, AnInsertLeasesAndOffersOnlyTheRowsItCreated) {
  AddPending("onboarding", "tenant_a", {"old"});
  auto dispatcher = Dispatcher();
  EXPECT_EQ(dispatcher.RunOnce(), 1u);
  LeasedOffer offer = AddLeasedPending("onboarding", "tenant_a", {"old", "new"});
  ASSERT_EQ(offer.executions.size(), 1u);
  EXPECT_EQ(offer.executions[0].id, "ex_onboarding_new");
  dispatcher.Offer(std::move(offer));
  EXPECT_EQ(dispatcher.RunOnce(), 1u);
  EXPECT_EQ(mock_->StartCalls("ex_onboarding_old"), 1);
  EXPECT_EQ(Get("ex_onboarding_new")->status, "running");
}

// Offers past a batch wait for the next round; past a few batches queued the dispatcher keeps no
// more (WantsOffers turns false) and releases the rows of what it is given anyway: a fair round
// takes them. Every row starts exactly once.
TEST_F(LifecycleTest, OfferedExecutionsBeyondTheQueueAreReleasedForTheFairRounds) {
  auto dispatcher = Dispatcher(/*batch=*/2);
  EXPECT_EQ(dispatcher.RunOnce(), 0u);  // the fair round of a fresh dispatcher
  EXPECT_TRUE(dispatcher.WantsOffers());
  std::vector<std::string> ids;
  for (int k = 0; k < 5; ++k) {  // 4 offers of 2 fill the queue (4 x batch); the fifth is extra
    const std::string a = "q" + std::to_string(2 * k), b = "q" + std::to_string(2 * k + 1);
    dispatcher.Offer(AddLeasedPending("onboarding", "tenant_a", {a, b}));
    ids.push_back("ex_onboarding_" + a);
    ids.push_back("ex_onboarding_" + b);
  }
  EXPECT_FALSE(dispatcher.WantsOffers());
  EXPECT_EQ(dispatcher.RunOnce(), 2u);  // one batch of the offers; the extra rows released
  EXPECT_TRUE(dispatcher.MoreDue());
  EXPECT_TRUE(dispatcher.WantsOffers());
  size_t started = 2;
  for (int round = 0; round < 10 && dispatcher.MoreDue(); ++round) {
    clock_.Advance(100ms);
    started += dispatcher.RunOnce();
  }
  EXPECT_EQ(started, 10u);
  for (const auto& id : ids) {
    EXPECT_EQ(Get(id)->status, "running") << id;
    EXPECT_EQ(mock_->StartCalls(id), 1) << id;
  }
  EXPECT_EQ(metrics_.stale_outcomes.WithLabels({"dispatch"}).Value(), 0);
}

// An offer whose lease would end before a call could (it waited in the queue) is not started from
// the offer: its rows are released and a fair round starts them. Once its lease expired and another
// replica took the rows, the offer changes nothing: they start exactly once.
TEST_F(LifecycleTest, AnOfferWhoseLeaseRanOutIsNotStartedFromTheOffer) {
  auto dispatcher = Dispatcher();
  EXPECT_EQ(dispatcher.RunOnce(), 0u);
  // Default call_timeout 10 s: a lease of 5 s leaves no time for a call.
  dispatcher.Offer(AddLeasedPending("onboarding", "tenant_a", {"short"}, 5s));
  EXPECT_EQ(dispatcher.RunOnce(), 1u);  // released by the offered round, started by the fair one
  EXPECT_EQ(Get("ex_onboarding_short")->status, "running");
  EXPECT_EQ(mock_->StartCalls("ex_onboarding_short"), 1);

  LeasedOffer late = AddLeasedPending("onboarding", "tenant_a", {"late"}, 30s);
  clock_.Advance(31s);
  store::Database replica2_db(test_db_.dsn());
  auto replica2 = Dispatcher(50, 50, &replica2_db);
  EXPECT_EQ(replica2.RunOnce(), 1u);  // the lease expired: another replica's fair round
  dispatcher.Offer(std::move(late));
  dispatcher.RunOnce();
  EXPECT_EQ(Get("ex_onboarding_late")->status, "running");
  EXPECT_EQ(mock_->StartCalls("ex_onboarding_late"), 1);
  EXPECT_EQ(metrics_.stale_outcomes.WithLabels({"dispatch"}).Value(), 0);
}

// At shutdown the offers not started yet are released: another replica starts them at once.
TEST_F(LifecycleTest, ReleasedOffersAreDueAtOnceForOtherReplicas) {
  auto dispatcher = Dispatcher();
  dispatcher.Offer(AddLeasedPending("onboarding", "tenant_a", {"s1", "s2"}));
  store::Database replica2_db(test_db_.dsn());
  auto replica2 = Dispatcher(50, 50, &replica2_db);
  EXPECT_EQ(replica2.RunOnce(), 0u);  // leased to the first
  dispatcher.ReleaseOffers();
  EXPECT_FALSE(dispatcher.MoreDue());
  EXPECT_EQ(replica2.RunOnce(), 2u);
  EXPECT_EQ(Get("ex_onboarding_s1")->status, "running");
}

// A round's lease keeps another replica off its rows while its provider calls run, and a round
// whose calls fail before any outcome releases its rows: due again at once, with no attempt
// counted.
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
                     EXPECT_EQ(replica2.RunOnce(), 0u);           // leased by replica 1's round
                     throw std::runtime_error("replica 1 fails before any provider call");
                   }),
               std::runtime_error);
  EXPECT_EQ(replica2.RunOnce(), 2u);  // released: free again at once, no expiry to wait for
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

// A replica that hangs inside a round loses the rows when its lease expires: another replica
// claims and starts them, and the hung round's late answer is dropped, not written over the other
// replica's outcome.
TEST_F(LifecycleTest, AHungRoundLosesItsRowsWhenItsLeaseExpires) {
  AddPending("onboarding", "tenant_a", {"e1"});
  store::Database replica1(test_db_.dsn());
  auto replica2 = Dispatcher();
  size_t taken_over = 0;
  auto round = store::LifecycleRepository(replica1).RunDispatchRound(
      clock_.Now(), 200ms, 10, 10, [&](std::vector<store::ExecutionRecord>& executions) {
        EXPECT_EQ(replica2.RunOnce(), 0u);  // the lease is live
        clock_.Advance(200ms);              // hung until the lease (200 ms) expired
        taken_over = replica2.RunOnce();
        std::vector<store::DispatchOutcome> outcomes(executions.size());
        for (size_t i = 0; i < executions.size(); ++i) {
          outcomes[i].id = executions[i].id;
          outcomes[i].kind = store::DispatchOutcome::Kind::kFailed;
          outcomes[i].at = clock_.Now();
        }
        return outcomes;
      });
  EXPECT_EQ(taken_over, 1u);
  EXPECT_EQ(round.stale, std::vector<std::string>{"ex_onboarding_e1"});
  auto e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "running");  // replica 1's late "failed" is dropped
  EXPECT_TRUE(e->error.is_null());
  EXPECT_EQ(e->start_attempts, 1);
  EXPECT_EQ(mock_->StartCalls("ex_onboarding_e1"), 1);
}

// Replica 1 claims a row and starts it at the engine, then crashes before recording: once its
// lease expires, replica 2 starts it again, which the engine takes as the same execution (starts
// are idempotent by execution name).
TEST_F(LifecycleTest, StartRepeatedAfterACrashIsANoOpAtTheEngine) {
  AddPending("onboarding", "tenant_a", {"e1"});
  store::Database replica1_db(test_db_.dsn());
  store::LifecycleRepository replica1(replica1_db);
  auto claim = replica1.ClaimDispatch(clock_.Now(), 30s, 10, 10);
  ASSERT_EQ(claim.executions.size(), 1u);
  auto entry = catalog_.Ensure(
      Context::Background(), *std::make_unique<store::DefinitionRepository>(db_), "onboarding", 1);
  const auto first = manager_.StartExecution(
      Context::Background(), "mock", entry->spec.workflow_id,
      InputFor(claim.executions.at(0), claim.executions.at(0).trigger_event));
  // Replica 1 crashed here: nothing recorded, its lease stays until it expires.
  auto dispatcher = Dispatcher();
  EXPECT_EQ(dispatcher.RunOnce(), 0u);
  clock_.Advance(30s);
  EXPECT_EQ(dispatcher.RunOnce(), 1u);
  auto e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "running");
  EXPECT_EQ(e->provider_execution_id, first.execution_id);  // the same engine execution
  EXPECT_EQ(e->start_attempts, 1);
  EXPECT_EQ(mock_->StartCalls("ex_onboarding_e1"), 2);
  EXPECT_EQ(mock_->ExecutionCount(), 1u);
}

// A round starts provider calls only while they can end within its lease; the rest stay due,
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

// A cancel that arrives while a poll round holds the execution's lease waits for the round; the
// terminal state the round recorded stands, and the cancel reports it unchanged.
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
        // ...which, refused while the round holds the lease, waits for the round (bounded wait
        // for it to get there).
        EXPECT_TRUE(WaitForQuery(kLeasedQuery)) << "the cancel never waited for the round's lease";
        // The cancel wrote nothing (read on a connection of its own: the cancel uses db_).
        store::Database look(test_db_.dsn());
        EXPECT_EQ(
            store::LifecycleRepository(look).Get("tenant_a", "prod", "ex_onboarding_e1")->status,
            "running");
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

// --- Failures that are not the provider's answer (issue 19) -------------------------------------

// A provider named "tamper" in front of the mock: starts and status polls go to the mock, and the
// hooks change what comes back (or throw what the mock never would) for chosen executions.
class TamperingProvider : public providers::Provider {
 public:
  explicit TamperingProvider(std::shared_ptr<MockProvider> mock) : mock_(std::move(mock)) {}
  std::string Name() const override { return "tamper"; }
  providers::CreateWorkflowResult CreateWorkflow(const Context& ctx,
                                                 const providers::WorkflowSpec& spec) override {
    return mock_->CreateWorkflow(ctx, spec);
  }
  providers::ExecutionResult StartExecution(const Context& ctx, const std::string& workflow_id,
                                            providers::ExecutionInput input) override {
    const std::string name = input.execution_name;
    auto result = mock_->StartExecution(ctx, workflow_id, std::move(input));
    if (on_start) on_start(name, result);
    return result;
  }
  providers::ExecutionStatus GetExecutionStatus(const Context& ctx,
                                                const std::string& execution_id) override {
    auto status = mock_->GetExecutionStatus(ctx, execution_id);
    if (on_status) on_status(status);
    return status;
  }
  void StopExecution(const Context& ctx, const std::string& execution_id,
                     const std::string& reason) override {
    if (on_stop) on_stop(execution_id);
    mock_->StopExecution(ctx, execution_id, reason);
  }
  void DeleteWorkflow(const Context& ctx, const std::string& workflow_id) override {
    mock_->DeleteWorkflow(ctx, workflow_id);
  }
  void Validate(const Context& ctx, const providers::WorkflowSpec& spec) override {
    mock_->Validate(ctx, spec);
  }

  // Set before the round that uses them (read by the round's worker threads).
  std::function<void(const std::string& execution_name, providers::ExecutionResult&)> on_start;
  std::function<void(providers::ExecutionStatus&)> on_status;
  std::function<void(const std::string& execution_id)> on_stop;

 private:
  std::shared_ptr<MockProvider> mock_;
};

class LifecycleFailureTest : public LifecycleTest {
 protected:
  LifecycleFailureTest() : tamper_(std::make_shared<TamperingProvider>(mock_)) {
    registry_->Register(tamper_);
  }

  // Routes these executions' calls through the tampering provider.
  void UseTamper(const std::vector<std::string>& ids) {
    for (const auto& id : ids) {
      pqxx::connection c(test_db_.dsn());
      pqxx::work w(c);
      w.exec_params("UPDATE workflow_executions SET provider = 'tamper' WHERE id = $1", id);
      w.commit();
    }
  }

  // Rewrites a stored definition version's trigger conditions with SQL, as a document written
  // before a change of the condition language would read now: it no longer compiles.
  void BreakStoredDefinition(const std::string& definition) {
    pqxx::connection c(test_db_.dsn());
    pqxx::work w(c);
    w.exec_params(
        "UPDATE workflow_definition_versions SET document = jsonb_set(document, "
        "'{trigger,conditions}', '[{\"field\": \"data.plan\", \"op\": \"frobnicate\", "
        "\"value\": 1}]') WHERE definition_id = $1",
        definition);
    w.commit();
  }

  double InternalErrors(const std::string& operation, const std::string& kind) {
    return metrics_.internal_errors.WithLabels({operation, kind}).Value();
  }

  std::shared_ptr<TamperingProvider> tamper_;
};

// A start that outlived its round's lease while the execution was cancelled: the round's outcome
// is dropped (the cancel stands) and the engine's execution is stopped, not left running with
// nobody to follow it.
TEST_F(LifecycleFailureTest, AStartThatOutlivedItsLeaseIntoACancelIsStoppedAtTheEngine) {
  AddPending("onboarding", "tenant_a", {"c1"});
  UseTamper({"ex_onboarding_c1"});
  mock_->SetExecutionOutcome("ex_onboarding_c1", Outcome::RunUntilStopped());
  store::Database canceller_db(test_db_.dsn());
  std::string started, stopped;
  bool cancelled = false;
  tamper_->on_start = [&](const std::string&, providers::ExecutionResult& r) {
    started = r.execution_id;
    clock_.Advance(31s);  // the call outlived the round's lease (30 s): a cancel takes the row
    cancelled =
        store::LifecycleRepository(canceller_db)
            .CancelPending("tenant_a", "prod", "ex_onboarding_c1", "by a user", clock_.Now());
  };
  tamper_->on_stop = [&](const std::string& id) { stopped = id; };
  auto dispatcher = Dispatcher();
  EXPECT_EQ(dispatcher.RunOnce(), 1u);
  EXPECT_TRUE(cancelled);
  EXPECT_EQ(Get("ex_onboarding_c1")->status, "cancelled");
  ASSERT_FALSE(started.empty());
  EXPECT_EQ(stopped, started);
  EXPECT_EQ(mock_->GetExecutionStatus(Context::Background(), started).state,
            ExecutionState::kCancelled);
  EXPECT_EQ(metrics_.stale_outcomes.WithLabels({"dispatch"}).Value(), 1);
}

// A start that fails with something other than a ProviderError (a bug, memory running out) used
// to escape the worker thread (std::terminate: the daemon died) or leave the round with the
// in-flight gauge never decremented. Now each is recorded on its own execution and the rest of the
// round starts.
TEST_F(LifecycleFailureTest, AStartThatThrowsSomethingElseIsRecordedAndTheOthersStart) {
  AddPending("onboarding", "tenant_a", {"e1", "e2", "e3", "e4"});
  UseTamper({"ex_onboarding_e2", "ex_onboarding_e3"});
  tamper_->on_start = [](const std::string& name, providers::ExecutionResult&) {
    if (name == "ex_onboarding_e2") throw std::out_of_range("map::at");
    if (name == "ex_onboarding_e3") throw std::bad_alloc();
  };
  auto dispatcher = Dispatcher();  // 4 starts at once: on the pool's threads
  EXPECT_EQ(dispatcher.RunOnce(), 4u);
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "running");
  EXPECT_EQ(Get("ex_onboarding_e4")->status, "running");
  // A bug: an internal error, failed at once (retrying would fail the same way).
  auto bug = Get("ex_onboarding_e2");
  EXPECT_EQ(bug->status, "failed");
  EXPECT_EQ(bug->error["code"], "internal_error");
  EXPECT_EQ(bug->error["kind"], "other");
  EXPECT_EQ(bug->error["message"], "map::at");
  EXPECT_EQ(bug->error["operation"], "start_execution");
  EXPECT_TRUE(bug->completed_at.has_value());
  // Memory may come back: a retryable failure of this attempt, under the retry policy.
  auto memory = Get("ex_onboarding_e3");
  EXPECT_EQ(memory->status, "pending");
  EXPECT_EQ(memory->error["kind"], "memory");
  EXPECT_EQ(memory->error["attempts"], 1);
  EXPECT_EQ(*memory->next_attempt_at - clock_.Now(), 750ms);
  EXPECT_EQ(InternalErrors("dispatch", "other"), 1);
  EXPECT_EQ(InternalErrors("dispatch", "memory"), 1);
  EXPECT_EQ(metrics_.dispatch_attempts.WithLabels({"failed"}).Value(), 1);
  EXPECT_EQ(metrics_.dispatch_attempts.WithLabels({"retry"}).Value(), 1);
  EXPECT_EQ(metrics_.in_flight.WithLabels({"tenant_a", "prod"}).Value(), 0);
  // The retry starts once memory is back, and attempts stay bounded by the policy.
  tamper_->on_start = nullptr;
  clock_.Advance(750ms);
  EXPECT_EQ(dispatcher.RunOnce(), 1u);
  EXPECT_EQ(Get("ex_onboarding_e3")->status, "running");
}

// The same on the caller's thread (one execution: no pool thread): the exception used to leave
// RunOnce, rolling back the round, with the in-flight gauge left at 1.
TEST_F(LifecycleFailureTest, AnInternalErrorOnTheCallersThreadLeavesNoGaugeBehind) {
  AddPending("onboarding", "tenant_a", {"e1"});
  UseTamper({"ex_onboarding_e1"});
  tamper_->on_start = [](const std::string&, providers::ExecutionResult&) {
    throw std::runtime_error("unexpected answer");
  };
  EXPECT_EQ(Dispatcher().RunOnce(), 1u);
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "failed");
  EXPECT_EQ(Get("ex_onboarding_e1")->error["message"], "unexpected answer");
  EXPECT_EQ(metrics_.in_flight.WithLabels({"tenant_a", "prod"}).Value(), 0);
}

// A stored definition version that no longer loads (its conditions do not compile: a
// ValidationError from the catalog, not a ProviderError) fails its own executions, once, with the
// reason; the others start.
TEST_F(LifecycleFailureTest, ADefinitionThatNoLongerLoadsFailsOnlyItsExecutions) {
  AddPending("onboarding", "tenant_a", {"e1", "e2"});
  AddPending("billing", "tenant_b", {"b1", "b2"});
  BreakStoredDefinition("billing");
  auto dispatcher = Dispatcher();
  EXPECT_EQ(dispatcher.RunOnce(), 4u);
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "running");
  EXPECT_EQ(Get("ex_onboarding_e2")->status, "running");
  for (const char* id : {"ex_billing_b1", "ex_billing_b2"}) {
    auto e = Get(id, "tenant_b");
    EXPECT_EQ(e->status, "failed") << id;
    EXPECT_EQ(e->error["code"], "internal_error") << id;
    EXPECT_EQ(e->error["kind"], "definition") << id;
    EXPECT_EQ(e->error["operation"], "create_workflow") << id;
    EXPECT_NE(e->error["message"].get<std::string>().find("frobnicate"), std::string::npos)
        << e->error.dump();
  }
  EXPECT_EQ(InternalErrors("dispatch", "definition"), 2);
  EXPECT_EQ(dispatcher.RunOnce(), 0u);  // nothing loops
}

// A running execution whose definition version no longer loads is still polled to its end: the
// status does not need the definition (only the step order does).
TEST_F(LifecycleFailureTest, ARunningExecutionIsPolledEvenWhenItsDefinitionNoLongerLoads) {
  AddPending("onboarding", "tenant_a", {"e1"});
  Dispatcher().RunOnce();
  BreakStoredDefinition("onboarding");
  WorkflowCatalog fresh(manager_);  // a restarted daemon: nothing cached
  PollerOptions o;
  o.max_in_flight = 4;
  StatusPoller poller(o, db_, manager_, fresh, metrics_, clock_);
  clock_.Advance(1s);
  EXPECT_EQ(poller.RunOnce(), 1u);
  auto e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "succeeded");
  EXPECT_EQ(e->output, (nlohmann::json{{"result", "ok"}}));
  EXPECT_EQ(InternalErrors("poll", "definition"), 1);
}

// When reading a definition version fails because the database went away (its connection was
// cut), the execution spends no attempt: it stays due, the round's other starts are recorded, and
// the round ends with a StoreError so that the dispatch loop backs off; the next round starts it.
TEST_F(LifecycleFailureTest, ADatabaseOutageWhileLoadingADefinitionSpendsNoAttempt) {
  AddPending("onboarding", "tenant_a", {"e1"});
  auto dispatcher = Dispatcher();
  EXPECT_EQ(dispatcher.RunOnce(), 1u);  // opens the dispatcher's definitions connection
  AddPending("onboarding", "tenant_a", {"e2"});
  AddPending("billing", "tenant_b", {"b1"});  // a version not loaded yet
  {
    // The newest other session of the test database is the definitions connection, opened in
    // the round above (the fixture's own connection is older).
    pqxx::connection c(test_db_.dsn());
    pqxx::work w(c);
    auto r = w.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
        "current_database() AND pid <> pg_backend_pid() ORDER BY backend_start DESC LIMIT 1");
    ASSERT_EQ(r.size(), 1u);
    w.commit();
  }
  EXPECT_THROW(dispatcher.RunOnce(), store::StoreError);
  EXPECT_EQ(Get("ex_onboarding_e2")->status, "running");  // recorded all the same
  auto b1 = Get("ex_billing_b1", "tenant_b");
  EXPECT_EQ(b1->status, "pending");
  EXPECT_EQ(b1->start_attempts, 0);
  EXPECT_TRUE(b1->error.is_null());
  EXPECT_EQ(InternalErrors("dispatch", "database"), 1);
  EXPECT_EQ(dispatcher.RunOnce(), 1u);  // reconnected
  EXPECT_EQ(Get("ex_billing_b1", "tenant_b")->status, "running");
}

// A poll that fails with something other than a ProviderError keeps the execution running, with
// the failure recorded on it, and it is polled again later; the other polls of the round are
// recorded.
TEST_F(LifecycleFailureTest, APollThatThrowsSomethingElseIsRecordedAndTheOthersAreKept) {
  AddPending("onboarding", "tenant_a", {"e1", "e2", "e3"});
  Dispatcher().RunOnce();
  UseTamper({"ex_onboarding_e2"});
  const std::string bad = Get("ex_onboarding_e2")->provider_execution_id;
  bool broken = true;
  tamper_->on_status = [&](providers::ExecutionStatus& status) {
    if (broken && status.execution_id == bad) throw std::length_error("vector::reserve");
  };
  auto poller = Poller();
  clock_.Advance(1s);
  EXPECT_EQ(poller.RunOnce(), 3u);
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "succeeded");
  EXPECT_EQ(Get("ex_onboarding_e3")->status, "succeeded");
  auto e = Get("ex_onboarding_e2");
  EXPECT_EQ(e->status, "running");
  EXPECT_EQ(e->error["code"], "internal_error");
  EXPECT_EQ(e->error["operation"], "get_execution_status");
  EXPECT_EQ(*e->next_poll_at - clock_.Now(), 200ms);
  EXPECT_EQ(InternalErrors("poll", "other"), 1);
  broken = false;
  clock_.Advance(200ms);
  EXPECT_EQ(poller.RunOnce(), 1u);
  e = Get("ex_onboarding_e2");
  EXPECT_EQ(e->status, "succeeded");
  EXPECT_TRUE(e->error.is_null());
}

// One engine's answer with text that is not valid UTF-8, or with a NUL character (jsonb refuses
// \u0000), used to fail the whole poll round (a strict dump(), or PostgreSQL refusing the round's
// UPDATE), and the next round took the same oldest rows: polling stalled for everyone. Now the
// text is stored with U+FFFD in place of what cannot be stored, and every poll is recorded.
TEST_F(LifecycleFailureTest, AnEnginesInvalidTextIsReplacedAndEveryPollIsRecorded) {
  AddPending("onboarding", "tenant_a", {"e1", "e2", "e3", "e4"});
  Dispatcher().RunOnce();
  UseTamper({"ex_onboarding_e2", "ex_onboarding_e3"});
  const std::string invalid = Get("ex_onboarding_e2")->provider_execution_id;
  const std::string nul = Get("ex_onboarding_e3")->provider_execution_id;
  tamper_->on_status = [&](providers::ExecutionStatus& status) {
    if (status.execution_id == invalid) {
      status.output = {{"text", std::string("caf\xc3\xa9 \xff\xfe")}};
      for (auto& event : status.history) event.details["note"] = std::string("\xc0\xaf");
      status.history.push_back({clock_.Now(), "Custom\xff", {{std::string("k\xfe"), 1}}});
    } else if (status.execution_id == nul) {
      status.output = {{"text", std::string("a\0b", 3)}};
    }
  };
  auto poller = Poller();
  clock_.Advance(1s);
  EXPECT_EQ(poller.RunOnce(), 4u);
  for (const char* id :
       {"ex_onboarding_e1", "ex_onboarding_e2", "ex_onboarding_e3", "ex_onboarding_e4"}) {
    EXPECT_EQ(Get(id)->status, "succeeded") << id;
  }
  EXPECT_EQ(Get("ex_onboarding_e2")->output["text"], "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(Get("ex_onboarding_e3")->output["text"],
            "a\xef\xbf\xbd"
            "b");
  auto history = store::LifecycleRepository(db_).History("ex_onboarding_e2");
  ASSERT_EQ(history.size(), 9u);
  EXPECT_EQ(history.back().event_type, "Custom\xef\xbf\xbd");
  EXPECT_EQ(history.front().details["note"], "\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(StepStates("ex_onboarding_e2"),
            "assign_plan=completed create_wallet=completed send_email=completed ");
  EXPECT_TRUE(store::LifecycleRepository(db_).Steps("ex_onboarding_e4").size() == 3);
}

// When PostgreSQL refuses one execution's outcome for another reason (here a CHECK constraint
// the test adds, standing for any data error), that execution is recorded without the engine's
// output, steps and history, with an error saying why, and the round's other polls are kept.
TEST_F(LifecycleFailureTest, AnOutcomeTheDatabaseRefusesIsRecordedWithoutItAndTheOthersKept) {
  AddPending("onboarding", "tenant_a", {"e1", "e2", "e3"});
  Dispatcher().RunOnce();
  {
    pqxx::connection c(test_db_.dsn());
    pqxx::work w(c);
    w.exec(
        "ALTER TABLE workflow_executions ADD CONSTRAINT test_refuses CHECK (output IS NULL OR "
        "output->>'refuse' IS NULL)");
    w.commit();
  }
  UseTamper({"ex_onboarding_e2"});
  const std::string refused = Get("ex_onboarding_e2")->provider_execution_id;
  tamper_->on_status = [&](providers::ExecutionStatus& status) {
    if (status.execution_id == refused) status.output = {{"refuse", "me"}};
  };
  auto poller = Poller();
  clock_.Advance(1s);
  EXPECT_EQ(poller.RunOnce(), 3u);
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "succeeded");
  EXPECT_EQ(Get("ex_onboarding_e3")->status, "succeeded");
  EXPECT_EQ(store::LifecycleRepository(db_).History("ex_onboarding_e3").size(), 8u);
  auto e = Get("ex_onboarding_e2");
  EXPECT_EQ(e->status, "succeeded");  // the state the engine reported
  EXPECT_TRUE(e->output.is_null());
  EXPECT_EQ(e->error["kind"], "unstorable");
  EXPECT_NE(e->error["message"].get<std::string>().find("23514"), std::string::npos)
      << e->error.dump();
  EXPECT_EQ(InternalErrors("poll", "unstorable"), 1);
  EXPECT_EQ(poller.RunOnce(), 0u);  // terminal: not polled again
}

// A start whose engine execution id PostgreSQL cannot store (not valid UTF-8) used to fail the
// round's UPDATE: every start of the round was made again and again. Now that execution fails
// with the reason and the others are recorded as started.
TEST_F(LifecycleFailureTest, AStartOutcomeTheDatabaseRefusesFailsOnlyThatExecution) {
  AddPending("onboarding", "tenant_a", {"e1", "e2", "e3"});
  UseTamper({"ex_onboarding_e2"});
  tamper_->on_start = [](const std::string&, providers::ExecutionResult& result) {
    result.execution_id += "\xff";
  };
  auto dispatcher = Dispatcher();
  EXPECT_EQ(dispatcher.RunOnce(), 3u);
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "running");
  EXPECT_EQ(Get("ex_onboarding_e3")->status, "running");
  auto e = Get("ex_onboarding_e2");
  EXPECT_EQ(e->status, "failed");
  EXPECT_EQ(e->error["kind"], "unstorable");
  EXPECT_EQ(InternalErrors("dispatch", "unstorable"), 1);
  EXPECT_EQ(metrics_.transitions.WithLabels({"mock", "running"}).Value(), 2);
  EXPECT_EQ(dispatcher.RunOnce(), 0u);
}

// A cancel whose provider call fails with something other than a ProviderError answers
// "unavailable" (the API's 503) instead of an unclassified exception; the execution stays running.
TEST_F(LifecycleFailureTest, ACancelThatThrowsSomethingElseIsReportedUnavailable) {
  mock_->SetDefaultOutcome(Outcome::RunUntilStopped());
  AddPending("onboarding", "tenant_a", {"e1"});
  Dispatcher().RunOnce();
  UseTamper({"ex_onboarding_e1"});
  tamper_->on_stop = [](const std::string&) { throw std::runtime_error("bad answer"); };
  ExecutionOperations ops(db_, manager_, clock_);
  try {
    ops.Cancel("tenant_a", "prod", "ex_onboarding_e1", "test");
    FAIL() << "no error";
  } catch (const OperationError& e) {
    EXPECT_EQ(e.kind(), OperationError::Kind::kUnavailable);
  }
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "running");
}

// --- Claim, call, record (issue 21) -------------------------------------------------------------

class LifecycleLeaseTest : public LifecycleFailureTest {
 protected:
  // The sessions of the test database, other than the checks' own, that have a transaction open
  // (idle in it, or running a statement in it), each as "pid state: query".
  std::vector<std::string> OpenTransactions() {
    pqxx::connection c(test_db_.dsn());
    pqxx::nontransaction w(c);
    w.exec("SET application_name = 'lifecycle_test_check'");
    std::vector<std::string> out;
    for (const auto& row :
         w.exec("SELECT pid || ' ' || coalesce(state, '') || ': ' || left(query, 120) FROM "
                "pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name <> 'lifecycle_test_check' AND (xact_start IS NOT NULL OR "
                "state LIKE 'idle in transaction%')")) {
      out.push_back(row[0].as<std::string>());
    }
    return out;
  }

  std::string LeaseOwner(const std::string& id) {
    pqxx::connection c(test_db_.dsn());
    pqxx::work w(c);
    auto r = w.exec_params(
        "SELECT coalesce(lease_owner, '') FROM workflow_executions WHERE id = $1", id);
    return r.at(0)[0].as<std::string>();
  }

  double Stale(const std::string& operation) {
    return metrics_.stale_outcomes.WithLabels({operation}).Value();
  }
};

// Provider calls run with no transaction open: from inside the starts and the status polls, no
// session of the database (the daemon's: the rounds', the definitions') is inside a transaction.
TEST_F(LifecycleLeaseTest, NoTransactionIsOpenWhileAProviderCallRuns) {
  mock_->SetDefaultOutcome(Outcome::RunUntilStopped());
  AddPending("onboarding", "tenant_a", {"e1", "e2"});
  UseTamper({"ex_onboarding_e1", "ex_onboarding_e2"});
  std::mutex mu;
  int starts = 0;
  int polls = 0;
  std::vector<std::string> open;
  tamper_->on_start = [&](const std::string&, providers::ExecutionResult&) {
    std::lock_guard lock(mu);
    ++starts;
    for (auto& o : OpenTransactions()) open.push_back("during a start: " + o);
  };
  tamper_->on_status = [&](providers::ExecutionStatus&) {
    std::lock_guard lock(mu);
    ++polls;
    for (auto& o : OpenTransactions()) open.push_back("during a poll: " + o);
  };
  EXPECT_EQ(Dispatcher().RunOnce(), 2u);
  clock_.Advance(1s);
  EXPECT_EQ(Poller().RunOnce(), 2u);
  EXPECT_EQ(starts, 2);
  EXPECT_EQ(polls, 2);
  for (const auto& o : open) ADD_FAILURE() << "transaction open " << o;
  for (const char* id : {"ex_onboarding_e1", "ex_onboarding_e2"}) {
    auto e = Get(id);
    EXPECT_EQ(e->status, "running") << id;
    EXPECT_EQ(e->poll_count, 1) << id;
    EXPECT_EQ(LeaseOwner(id), "") << id;  // recorded: the lease is released
  }
}

// Replica 1's start is slow: its lease expires, replica 2 claims the execution, starts it (the
// same engine execution: starts are idempotent by execution name) and records it running. Replica
// 1's late answer (a permanent error) is dropped, counted and logged; replica 2's outcome stands.
TEST_F(LifecycleLeaseTest, ALeaseLostDuringASlowStartLeavesTheOtherReplicasOutcome) {
  AddPending("onboarding", "tenant_a", {"e1"});
  UseTamper({"ex_onboarding_e1"});
  store::Database replica1_db(test_db_.dsn());
  auto replica1 = Dispatcher(50, 50, &replica1_db);
  auto replica2 = Dispatcher();
  std::atomic<bool> first{true};
  size_t taken_over = 0;
  tamper_->on_start = [&](const std::string&, providers::ExecutionResult&) {
    if (!first.exchange(false)) return;  // replica 2's start
    clock_.Advance(31s);                 // replica 1's call outlives its lease (30 s)
    taken_over = replica2.RunOnce();
    throw providers::ProviderError(ErrorCode::kInvalidSpec, "replica 1's late answer");
  };
  EXPECT_EQ(replica1.RunOnce(), 1u);
  EXPECT_EQ(taken_over, 1u);
  auto e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "running");
  EXPECT_TRUE(e->error.is_null());
  EXPECT_EQ(e->start_attempts, 1);
  EXPECT_FALSE(e->provider_execution_id.empty());
  EXPECT_EQ(mock_->StartCalls("ex_onboarding_e1"), 2);
  EXPECT_EQ(mock_->ExecutionCount(), 1u);
  EXPECT_EQ(Stale("dispatch"), 1);
  EXPECT_EQ(metrics_.dispatch_attempts.WithLabels({"failed"}).Value(), 0);
  EXPECT_EQ(metrics_.dispatch_attempts.WithLabels({"started"}).Value(), 1);
  EXPECT_EQ(LeaseOwner("ex_onboarding_e1"), "");
}

// The same for a status poll: replica 1's poll outlives its lease, replica 2 polls and records;
// replica 1's late "failed" is dropped.
TEST_F(LifecycleLeaseTest, ALeaseLostDuringASlowPollLeavesTheOtherReplicasOutcome) {
  mock_->SetDefaultOutcome(Outcome::RunUntilStopped());
  AddPending("onboarding", "tenant_a", {"e1"});
  Dispatcher().RunOnce();
  clock_.Advance(1s);
  store::Database replica1(test_db_.dsn());
  size_t taken_over = 0;
  auto round = store::LifecycleRepository(replica1).RunPollRound(
      clock_.Now(), 30s, 10, [&](const std::vector<store::ExecutionRecord>& executions) {
        EXPECT_EQ(Poller().RunOnce(), 0u);  // the lease is live
        clock_.Advance(30s);
        taken_over = Poller().RunOnce();
        store::PollOutcome late;
        late.id = executions.at(0).id;
        late.status = "failed";
        late.error = {{"code", "Late"}, {"message", "replica 1's late answer"}};
        late.completed_at = clock_.Now();
        late.next_poll_at = clock_.Now();
        return std::vector<store::PollOutcome>{late};
      });
  EXPECT_EQ(taken_over, 1u);
  EXPECT_EQ(round.stale, std::vector<std::string>{"ex_onboarding_e1"});
  EXPECT_TRUE(round.transitions.empty());
  auto e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "running");
  EXPECT_TRUE(e->error.is_null());
  EXPECT_EQ(e->poll_count, 1);  // replica 2's poll only
}

// A round that crashed after its claim (lease written, nothing recorded) holds its rows until the
// lease expires, then another replica claims them; a record the dead round sends late is dropped.
TEST_F(LifecycleLeaseTest, ACrashedRoundsRowsAreClaimedAgainAfterTheLeaseExpires) {
  mock_->SetDefaultOutcome(Outcome::RunUntilStopped());
  AddPending("onboarding", "tenant_a", {"e1", "e2"});
  store::Database replica1_db(test_db_.dsn());
  store::LifecycleRepository replica1(replica1_db, "replica-1");
  auto claim = replica1.ClaimDispatch(clock_.Now(), 30s, 10, 10);
  ASSERT_EQ(claim.executions.size(), 2u);
  EXPECT_EQ(LeaseOwner("ex_onboarding_e1").rfind("replica-1/", 0), 0u);
  auto dispatcher = Dispatcher();
  EXPECT_EQ(dispatcher.RunOnce(), 0u);
  clock_.Advance(29s);
  EXPECT_EQ(dispatcher.RunOnce(), 0u);
  clock_.Advance(1s);
  EXPECT_EQ(dispatcher.RunOnce(), 2u);
  for (const char* id : {"ex_onboarding_e1", "ex_onboarding_e2"}) {
    auto e = Get(id);
    EXPECT_EQ(e->status, "running") << id;
    EXPECT_EQ(e->start_attempts, 1) << id;
    EXPECT_EQ(mock_->StartCalls(id), 1) << id;
  }
  // The dead round's record, arriving late, is dropped.
  claim.outcomes.resize(2);
  for (size_t i = 0; i < 2; ++i) {
    claim.outcomes[i].id = claim.executions[i].id;
    claim.outcomes[i].kind = store::DispatchOutcome::Kind::kFailed;
    claim.outcomes[i].at = clock_.Now();
  }
  replica1.RecordDispatch(claim);
  EXPECT_EQ(claim.stale.size(), 2u);
  EXPECT_EQ(Get("ex_onboarding_e1")->status, "running");

  // The same for a poll round.
  clock_.Advance(1s);
  auto polls = replica1.ClaimPoll(clock_.Now(), 30s, 10);
  ASSERT_EQ(polls.executions.size(), 2u);
  auto poller = Poller();
  EXPECT_EQ(poller.RunOnce(), 0u);
  clock_.Advance(30s);
  EXPECT_EQ(poller.RunOnce(), 2u);
  for (const char* id : {"ex_onboarding_e1", "ex_onboarding_e2"}) {
    EXPECT_EQ(Get(id)->poll_count, 1) << id;
    EXPECT_EQ(LeaseOwner(id), "") << id;
  }
}

// A cancel that arrives while a dispatch round is starting the execution waits for the round's
// outcome, then stops at the engine what the round started: no engine execution is left running
// behind a cancelled row, and the cancel is not overwritten by the round.
TEST_F(LifecycleLeaseTest, ACancelDuringAStartStopsWhatTheRoundStarted) {
  mock_->SetDefaultOutcome(Outcome::RunUntilStopped());
  AddPending("onboarding", "tenant_a", {"e1"});
  UseTamper({"ex_onboarding_e1"});
  store::Database replica1(test_db_.dsn());
  std::optional<CancelResult> cancelled;
  std::thread user;
  bool waited = false;
  tamper_->on_start = [&](const std::string&, providers::ExecutionResult&) {
    user = std::thread([&] {
      cancelled = ExecutionOperations(db_, manager_, clock_)
                      .Cancel("tenant_a", "prod", "ex_onboarding_e1", "user");
    });
    waited = WaitForQuery(kLeasedQuery);  // refused while the round holds the lease
  };
  EXPECT_EQ(Dispatcher(50, 50, &replica1).RunOnce(), 1u);
  user.join();
  EXPECT_TRUE(waited) << "the cancel never waited for the round's lease";
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->status, "cancelled");
  EXPECT_TRUE(cancelled->changed);
  auto e = Get("ex_onboarding_e1");
  EXPECT_EQ(e->status, "cancelled");
  EXPECT_FALSE(e->provider_execution_id.empty());
  EXPECT_EQ(mock_->GetExecutionStatus(Context::Background(), e->provider_execution_id).state,
            ExecutionState::kCancelled);
  EXPECT_EQ(Stale("dispatch"), 0);
}

// An engine whose starts block until released (or until their call's deadline): a hung engine.
class HangingProvider : public providers::Provider {
 public:
  explicit HangingProvider(std::shared_ptr<MockProvider> mock) : mock_(std::move(mock)) {}
  std::string Name() const override { return "hanging"; }
  providers::CreateWorkflowResult CreateWorkflow(const Context& ctx,
                                                 const providers::WorkflowSpec& spec) override {
    return mock_->CreateWorkflow(ctx, spec);
  }
  providers::ExecutionResult StartExecution(const Context& ctx, const std::string& workflow_id,
                                            providers::ExecutionInput input) override {
    {
      std::unique_lock lock(mu_);
      ++blocked_;
      changed_.notify_all();
      changed_.wait(lock, [&] { return released_ || ctx.Done(); });
      --blocked_;
    }
    return mock_->StartExecution(ctx, workflow_id, std::move(input));
  }
  providers::ExecutionStatus GetExecutionStatus(const Context& ctx,
                                                const std::string& execution_id) override {
    return mock_->GetExecutionStatus(ctx, execution_id);
  }
  void StopExecution(const Context& ctx, const std::string& execution_id,
                     const std::string& reason) override {
    mock_->StopExecution(ctx, execution_id, reason);
  }
  void DeleteWorkflow(const Context& ctx, const std::string& workflow_id) override {
    mock_->DeleteWorkflow(ctx, workflow_id);
  }
  void Validate(const Context& ctx, const providers::WorkflowSpec& spec) override {
    mock_->Validate(ctx, spec);
  }

  // Waits until `n` starts are blocked in the engine (a positive signal, at most 10 s).
  bool WaitBlocked(int n) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, 10s, [&] { return blocked_ >= n; });
  }
  int Blocked() {
    std::lock_guard lock(mu_);
    return blocked_;
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    changed_.notify_all();
  }

 private:
  std::shared_ptr<MockProvider> mock_;
  std::mutex mu_;
  std::condition_variable changed_;
  int blocked_ = 0;
  bool released_ = false;
};

// Per-provider gates: start slots, circuit breaker, poll rate. The breakers' time is a manual
// steady clock, moved with the fixture's wall clock.
class LifecycleGateTest : public LifecycleFailureTest {
 protected:
  LifecycleGateTest()
      : gate_metrics_(metrics_registry_), hanging_(std::make_shared<HangingProvider>(mock_)) {
    registry_->Register(hanging_);
  }

  ProviderGate Gate(const std::string& provider, ProviderLimits limits) {
    return ProviderGate(provider, limits, steady_, &gate_metrics_);
  }

  ExecutionDispatcher GatedDispatcher(ProviderGate& gate, store::Database& db, size_t batch = 50,
                                      size_t per_scope = 50) {
    DispatcherOptions o;
    o.batch_size = batch;
    o.per_scope_limit = per_scope;
    o.max_in_flight = gate.limits().max_in_flight;
    o.provider = gate.provider();
    o.gate = &gate;
    return ExecutionDispatcher(o, db, manager_, catalog_, metrics_, clock_, [] { return 0.5; });
  }

  void MoveToProvider(const std::vector<std::string>& ids, const std::string& provider) {
    for (const auto& id : ids) {
      ExecAtNow("UPDATE workflow_executions SET provider = '" + provider + "' WHERE id = '" + id +
                "' AND $1::text IS NOT NULL");
    }
  }

  size_t Count(const std::string& where) {
    pqxx::connection c(test_db_.dsn());
    pqxx::work w(c);
    return w.exec("SELECT count(*) FROM workflow_executions WHERE " + where)[0][0].as<size_t>();
  }

  void Advance(std::chrono::milliseconds d) {
    clock_.Advance(d);
    steady_.Advance(d);
  }

  // The most start slots of the tampering provider in use at any of its starts.
  struct MostInFlight {
    std::mutex mu;
    double value = 0;
  };
  void TrackInFlight(MostInFlight& most) {
    tamper_->on_start = [this, &most](const std::string&, providers::ExecutionResult&) {
      std::lock_guard lock(most.mu);
      most.value = std::max(most.value, gate_metrics_.in_flight.WithLabels({"tamper"}).Value());
    };
  }

  // `n` pending executions of tenant_a's "onboarding", events <prefix>1..<prefix>n, on the
  // tampering provider; returns their ids.
  std::vector<std::string> PendingOnTamper(const std::string& prefix, int n) {
    std::vector<std::string> events, ids;
    for (int i = 1; i <= n; ++i) {
      events.push_back(prefix + std::to_string(i));
      ids.push_back("ex_onboarding_" + events.back());
    }
    AddPending("onboarding", "tenant_a", events);
    UseTamper(ids);
    return ids;
  }

  ManualSteadyClock steady_;
  ProviderGateMetrics gate_metrics_;
  std::shared_ptr<HangingProvider> hanging_;
};

// The engine keeps failing: after breaker_failure_threshold consecutive failures its breaker
// opens, the start that failed then is parked (pending, no attempt spent, its error says so) and
// no further execution is claimed for it; after the interval one probe goes, and once the engine
// answers the parked and waiting executions all start exactly once, each round taking them in fair
// order (one tenant's flood does not go first).
TEST_F(LifecycleGateTest, AnOutageParksExecutionsWithoutSpendingAttemptsThenTheyDrainFairly) {
  std::vector<std::string> flood;
  for (int i = 1; i <= 6; ++i) flood.push_back("a" + std::to_string(i));
  AddPending("onboarding", "tenant_a", flood);
  AddPending("billing", "tenant_b", {"b1", "b2"});
  mock_->InjectErrors(Operation::kStartExecution, 1000, ErrorCode::kUnavailable);
  ProviderLimits limits;
  limits.max_in_flight = 2;
  limits.breaker_failure_threshold = 2;
  limits.breaker_failure_window = 0ms;
  limits.breaker_open_interval = 10s;
  limits.breaker_drain_rate = 1000;
  auto gate = Gate("mock", limits);
  auto dispatcher = GatedDispatcher(gate, db_);

  // One execution of each tenant (the fair share of two slots): both fail; the second failure
  // opens the breaker and parks its execution.
  EXPECT_EQ(dispatcher.RunOnce(), 2u);
  EXPECT_EQ(gate.state(), CircuitState::kOpen);
  EXPECT_EQ(Count("error->>'code' = 'unavailable' AND start_attempts = 1 AND status = 'pending'"),
            1u);
  EXPECT_EQ(Count("error->>'code' = 'engine_unavailable' AND (error->>'parked')::boolean AND "
                  "error->'last_error'->>'code' = 'unavailable' AND start_attempts = 0 AND "
                  "status = 'pending'"),
            1u);
  EXPECT_EQ(gate_metrics_.parked.WithLabels({"mock"}).Value(), 1);
  EXPECT_EQ(gate_metrics_.circuit_state.WithLabels({"mock", "open"}).Value(), 1);

  // Open: nothing is claimed, however long the backlog waits (well within the open interval).
  Advance(5s);
  EXPECT_EQ(dispatcher.RunOnce(), 0u);
  EXPECT_EQ(Count("error IS NULL AND start_attempts = 0 AND status = 'pending'"), 6u);

  // The engine answers again; after the interval one probe, then the backlog drains.
  mock_->InjectErrors(Operation::kStartExecution, 0, ErrorCode::kUnavailable);
  Advance(5s);
  EXPECT_EQ(dispatcher.RunOnce(), 1u);  // the probe
  EXPECT_EQ(gate.state(), CircuitState::kClosed);
  EXPECT_EQ(gate_metrics_.probes.WithLabels({"mock", "success"}).Value(), 1);
  for (int round = 0; round < 10 && Count("status = 'pending'") > 0; ++round) {
    EXPECT_GT(dispatcher.RunOnce(), 0u) << round;
    const size_t a = Count("status = 'running' AND tenant_id = 'tenant_a'");
    const size_t b = Count("status = 'running' AND tenant_id = 'tenant_b'");
    // Fair order: while tenant_b has executions waiting, the flood of tenant_a is never two
    // starts ahead of it.
    if (Count("status = 'pending' AND tenant_id = 'tenant_b'") > 0) {
      EXPECT_LE(a, b + 1) << round;
    }
  }
  EXPECT_EQ(Count("status = 'running'"), 8u);
  for (const auto& ev : flood) EXPECT_EQ(mock_->StartCalls("ex_onboarding_" + ev), 1) << ev;
  for (const char* ev : {"b1", "b2"}) {
    EXPECT_EQ(mock_->StartCalls(std::string("ex_billing_") + ev), 1) << ev;
  }
  // Only the failure before the breaker opened spent an attempt.
  EXPECT_EQ(Count("start_attempts = 2"), 1u);
  EXPECT_EQ(Count("start_attempts = 1"), 7u);
}

// A provider's quick retries: a start that meets retryable errors is repeated at once (with a
// doubling backoff, within the call's deadline) up to retry.attempts times; when it then starts,
// neither the definition's retry policy nor the breaker sees the failures.
TEST_F(LifecycleGateTest, QuickRetriesRepeatAStartWithinItsDeadline) {
  AddPending("onboarding", "tenant_a", {"e1", "e2"});
  ProviderLimits limits;
  limits.retry_attempts = 3;
  limits.retry_initial_backoff = 1ms;
  limits.retry_max_backoff = 2ms;
  limits.breaker_failure_threshold = 2;
  auto gate = Gate("mock", limits);
  auto dispatcher = GatedDispatcher(gate, db_, 1);  // one execution per round
  mock_->InjectErrors(Operation::kStartExecution, 2, ErrorCode::kThrottled);
  EXPECT_EQ(dispatcher.RunOnce(), 1u);
  EXPECT_EQ(Count("status = 'running' AND start_attempts = 1 AND error IS NULL"), 1u);
  EXPECT_EQ(gate_metrics_.quick_retries.WithLabels({"mock"}).Value(), 2);
  EXPECT_EQ(gate.state(), CircuitState::kClosed);
  // Three failures in a row: the start fails once for the breaker and the retry policy.
  mock_->InjectErrors(Operation::kStartExecution, 3, ErrorCode::kThrottled);
  EXPECT_EQ(dispatcher.RunOnce(), 1u);
  EXPECT_EQ(Count("status = 'pending' AND start_attempts = 1 AND error->>'code' = 'throttled'"),
            1u);
  EXPECT_EQ(gate_metrics_.quick_retries.WithLabels({"mock"}).Value(), 4);
  EXPECT_EQ(gate.state(), CircuitState::kClosed);  // one failure of two
}

// Failures that are the definition's own (permanent errors) are answers: they never open the
// breaker, however many in a row.
TEST_F(LifecycleGateTest, PermanentErrorsNeverOpenTheBreaker) {
  AddPending("onboarding", "tenant_a", {"e1", "e2", "e3", "e4"});
  mock_->InjectErrors(Operation::kStartExecution, 1000, ErrorCode::kInvalidSpec);
  ProviderLimits limits;
  limits.breaker_failure_threshold = 2;
  auto gate = Gate("mock", limits);
  EXPECT_EQ(GatedDispatcher(gate, db_).RunOnce(), 4u);
  EXPECT_EQ(gate.state(), CircuitState::kClosed);
  EXPECT_EQ(Count("status = 'failed' AND error->>'code' = 'invalid_spec'"), 4u);
  EXPECT_EQ(gate_metrics_.parked.WithLabels({"mock"}).Value(), 0);
}

// Engine A hangs: its starts hold all of A's slots until their deadline. Engine B's executions
// still all start, while A's calls are still blocked: each provider has its own rounds and slots.
TEST_F(LifecycleGateTest, AHungEngineNeverDelaysAnotherEnginesStarts) {
  AddPending("onboarding", "tenant_a", {"a1", "a2", "a3", "a4", "a5"});
  AddPending("billing", "tenant_b", {"b1", "b2", "b3"});
  MoveToProvider({"ex_onboarding_a1", "ex_onboarding_a2", "ex_onboarding_a3", "ex_onboarding_a4",
                  "ex_onboarding_a5"},
                 "hanging");
  ProviderLimits hung_limits;
  hung_limits.max_in_flight = 4;
  hung_limits.call_timeout = 60s;
  auto hung_gate = Gate("hanging", hung_limits);
  auto mock_gate = Gate("mock", ProviderLimits{});
  store::Database hung_db(test_db_.dsn());
  auto hung = GatedDispatcher(hung_gate, hung_db);
  auto other = GatedDispatcher(mock_gate, db_);

  std::thread hung_round([&] { EXPECT_EQ(hung.RunOnce(), 4u); });
  ASSERT_TRUE(hanging_->WaitBlocked(4));
  EXPECT_EQ(hung_gate.AdmitStarts(1), 0u);  // every slot of A taken by its hung calls

  EXPECT_EQ(other.RunOnce(), 3u);
  EXPECT_EQ(hanging_->Blocked(), 4);  // B's starts completed while A's calls still hang
  for (const char* ev : {"b1", "b2", "b3"}) {
    EXPECT_EQ(Get(std::string("ex_billing_") + ev, "tenant_b")->status, "running") << ev;
  }
  EXPECT_EQ(Count("provider = 'hanging' AND status = 'running'"), 0u);

  hanging_->Release();
  hung_round.join();
  EXPECT_EQ(Count("provider = 'hanging' AND status = 'running'"), 4u);
  EXPECT_EQ(hung.RunOnce(), 1u);  // the slots are free again
  EXPECT_EQ(Count("provider = 'hanging' AND status = 'running'"), 5u);
}

// A round holds the slots of the executions it claimed, no more: what the gate admitted beyond
// them (a tenant's fair share left them unclaimed) is free for the provider's other loops while
// the round's calls run, and every slot is free again once the round ended.
TEST_F(LifecycleGateTest, ARoundHoldsOnlyTheSlotsOfTheExecutionsItClaimed) {
  AddPending("onboarding", "tenant_a", {"a1", "a2", "a3", "a4", "a5"});
  UseTamper({"ex_onboarding_a1", "ex_onboarding_a2", "ex_onboarding_a3", "ex_onboarding_a4",
             "ex_onboarding_a5"});
  ProviderLimits limits;
  limits.max_in_flight = 10;
  auto gate = Gate("tamper", limits);
  MostInFlight most;
  TrackInFlight(most);
  EXPECT_EQ(GatedDispatcher(gate, db_, 50, 2).RunOnce(), 2u);  // the tenant's share: 2
  EXPECT_GT(most.value, 0);
  EXPECT_LE(most.value, 2);
  EXPECT_EQ(gate_metrics_.in_flight.WithLabels({"tamper"}).Value(), 0);
  EXPECT_TRUE(gate.SlotFree());
}

// Once its calls were timed, a steady provider's round claims more executions than it has free
// slots (as many as the slots start within a moment): a claim's cost is shared by a batch even
// when a fast engine's slots are few. The executions beyond the slots wait in the round for one:
// the provider never has more calls in flight than its slots.
TEST_F(LifecycleGateTest, ASteadyProvidersRoundClaimsBeyondItsSlotsAndStartsThemAsSlotsFree) {
  const auto ids = PendingOnTamper("p", 12);
  ProviderLimits limits;
  limits.max_in_flight = 2;
  auto gate = Gate("tamper", limits);
  MostInFlight most;
  TrackInFlight(most);
  auto dispatcher = GatedDispatcher(gate, db_);
  EXPECT_EQ(dispatcher.RunOnce(), 2u);   // no call timed yet: the free slots
  EXPECT_EQ(dispatcher.RunOnce(), 10u);  // fast calls: the rest in one claim
  EXPECT_EQ(Count("status = 'running' AND start_attempts = 1"), 12u);
  for (const auto& id : ids) EXPECT_EQ(mock_->StartCalls(id), 1) << id;
  EXPECT_GT(most.value, 0);
  EXPECT_LE(most.value, 2);
  EXPECT_TRUE(gate.SlotFree());
  EXPECT_EQ(gate_metrics_.in_flight.WithLabels({"tamper"}).Value(), 0);
}

// The breaker opens while a round's executions wait for a slot (another loop's calls failed):
// they are left due, neither called nor charged an attempt, and start once the engine answers.
TEST_F(LifecycleGateTest, ExecutionsWaitingForASlotWhenTheBreakerOpensAreLeftDue) {
  const auto ids = PendingOnTamper("w", 6);
  ProviderLimits limits;
  limits.max_in_flight = 1;
  limits.breaker_failure_threshold = 2;
  limits.breaker_failure_window = 0ms;
  limits.breaker_open_interval = 10s;
  limits.breaker_drain_rate = 1000;
  auto gate = Gate("tamper", limits);
  auto dispatcher = GatedDispatcher(gate, db_);
  EXPECT_EQ(dispatcher.RunOnce(), 1u);  // times a call
  std::atomic<int> calls = 0;
  tamper_->on_start = [&](const std::string&, providers::ExecutionResult&) {
    // The first call of the round: meanwhile, other loops' calls fail and open the breaker.
    if (calls++ == 0) {
      gate.Failed();
      gate.Failed();
    }
  };
  EXPECT_EQ(dispatcher.RunOnce(), 5u);  // claimed beyond the one slot
  EXPECT_EQ(gate.state(), CircuitState::kOpen);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(Count("status = 'running'"), 2u);
  EXPECT_EQ(Count("status = 'pending' AND start_attempts = 0 AND error IS NULL AND "
                  "lease_owner IS NULL"),
            4u);
  Advance(10s);  // the probe answers; the rest drain
  for (int round = 0; round < 10 && Count("status = 'pending'") > 0; ++round) dispatcher.RunOnce();
  EXPECT_EQ(Count("status = 'running' AND start_attempts = 1"), 6u);
  for (const auto& id : ids) EXPECT_EQ(mock_->StartCalls(id), 1) << id;
}

// A probe whose own execution keeps failing (its input, say) does not hold the breaker open: the
// failed probe's execution goes to the back of the queue, the next probe is another execution,
// and once that one starts the breaker closes and the rest start.
TEST_F(LifecycleGateTest, AFailedProbeGoesToTheBackSoAnotherExecutionProbesNext) {
  AddPending("onboarding", "tenant_a", {"p1", "g1", "g2"});
  ExecAtNow(
      "UPDATE workflow_executions SET created_at = '2026-01-30T09:00:00Z' WHERE id = "
      "'ex_onboarding_p1' AND $1::text IS NOT NULL");  // the oldest
  UseTamper({"ex_onboarding_p1", "ex_onboarding_g1", "ex_onboarding_g2"});
  tamper_->on_start = [](const std::string& name, providers::ExecutionResult&) {
    if (name == "ex_onboarding_p1") {
      throw providers::ProviderError(ErrorCode::kUnavailable, "this one keeps failing");
    }
  };
  ProviderLimits limits;
  limits.breaker_failure_threshold = 1;
  limits.breaker_failure_window = 0ms;
  limits.breaker_open_interval = 10s;
  limits.breaker_drain_rate = 1000;
  auto gate = Gate("tamper", limits);
  auto dispatcher = GatedDispatcher(gate, db_);
  gate.Failed();  // an outage opened the breaker
  ASSERT_EQ(gate.state(), CircuitState::kOpen);
  Advance(10s);
  EXPECT_EQ(dispatcher.RunOnce(), 1u);  // the probe: the oldest, p1, fails
  EXPECT_EQ(gate.state(), CircuitState::kOpen);
  auto p1 = Get("ex_onboarding_p1");
  EXPECT_EQ(p1->status, "pending");
  EXPECT_EQ(p1->start_attempts, 0);  // parked: no attempt spent
  EXPECT_EQ(Get("ex_onboarding_g1")->status, "pending");
  Advance(10s);
  EXPECT_EQ(dispatcher.RunOnce(), 1u);  // the next probe is g1, not p1 again
  EXPECT_EQ(Get("ex_onboarding_g1")->status, "running");
  EXPECT_EQ(gate.state(), CircuitState::kClosed);
  size_t more = 0;
  for (int round = 0; round < 5 && Get("ex_onboarding_g2")->status == "pending"; ++round) {
    more += dispatcher.RunOnce();
  }
  EXPECT_GE(more, 1u);
  EXPECT_EQ(Get("ex_onboarding_g2")->status, "running");
}

// Offered executions (leased by their insert) pass their provider's gate: beyond the slots it
// admits they are released, due again for the fair rounds; while its breaker is open the
// dispatcher wants no offers, starts none from an offer (released: pending, no attempt spent, no
// call made), and the fair rounds start them once the engine answers again.
TEST_F(LifecycleGateTest, OfferedExecutionsPassTheirProvidersGate) {
  ProviderLimits limits;
  limits.max_in_flight = 1;
  limits.breaker_failure_threshold = 1;
  limits.breaker_failure_window = 0ms;
  limits.breaker_open_interval = 10s;
  limits.breaker_drain_rate = 1000;
  auto gate = Gate("mock", limits);
  auto dispatcher = GatedDispatcher(gate, db_);
  EXPECT_EQ(dispatcher.RunOnce(), 0u);
  EXPECT_TRUE(dispatcher.WantsOffers());
  // One slot: the first offered row starts, the second is released for a fair round.
  dispatcher.Offer(AddLeasedPending("onboarding", "tenant_a", {"s1", "s2"}));
  EXPECT_EQ(dispatcher.RunOnce(), 2u);  // s1 from the offer, s2 by the fair round after it
  EXPECT_EQ(Get("ex_onboarding_s1")->status, "running");
  EXPECT_EQ(Get("ex_onboarding_s2")->status, "running");
  EXPECT_EQ(metrics_.dispatch_rounds.WithLabels({"offered"}).Value(), 1);

  gate.Failed();  // the engine failed: the breaker opens
  ASSERT_EQ(gate.state(), CircuitState::kOpen);
  EXPECT_FALSE(dispatcher.WantsOffers());
  dispatcher.Offer(AddLeasedPending("onboarding", "tenant_a", {"o1", "o2"}));
  EXPECT_EQ(dispatcher.RunOnce(), 0u);
  for (const char* id : {"ex_onboarding_o1", "ex_onboarding_o2"}) {
    const auto e = Get(id);
    EXPECT_EQ(e->status, "pending") << id;
    EXPECT_EQ(e->start_attempts, 0) << id;
    EXPECT_EQ(mock_->StartCalls(id), 0) << id;
  }
  EXPECT_EQ(Count("lease_owner IS NOT NULL"), 0u);  // released, not held until they expire
  // The interval passed: the probe starts one, the engine answers, the breaker closes and the
  // other starts too.
  Advance(10s);
  size_t started = 0;
  for (int round = 0; round < 5 && started < 2; ++round) started += dispatcher.RunOnce();
  EXPECT_EQ(started, 2u);
  EXPECT_EQ(gate.state(), CircuitState::kClosed);
  for (const char* id : {"ex_onboarding_o1", "ex_onboarding_o2"}) {
    EXPECT_EQ(Get(id)->status, "running") << id;
    EXPECT_EQ(mock_->StartCalls(id), 1) << id;
  }
}

// Polls per provider and second are bounded (a poll round takes at most the tokens there are),
// polls of a provider whose breaker is open are held back with their due times kept, and each
// next poll is spread around the adaptive interval.
TEST_F(LifecycleGateTest, PollsAreBoundedPerSecondHeldWhileTheBreakerIsOpenAndSpread) {
  mock_->SetDefaultOutcome(Outcome::RunUntilStopped());
  std::vector<std::string> events;
  for (int i = 1; i <= 10; ++i) events.push_back("e" + std::to_string(i));
  AddPending("onboarding", "tenant_a", events);
  ProviderLimits limits;
  limits.polls_per_second = 3;
  limits.breaker_failure_threshold = 1;
  limits.breaker_failure_window = 0ms;
  auto gate = Gate("mock", limits);
  EXPECT_EQ(GatedDispatcher(gate, db_).RunOnce(), 10u);
  PollerOptions o;
  o.max_in_flight = 4;
  o.provider = "mock";
  o.gate = &gate;
  o.jitter = 0.2;
  o.random = [] { return 0.0; };  // the shortest spread interval: 0.8 x
  StatusPoller poller(o, db_, manager_, catalog_, metrics_, clock_);
  clock_.Advance(1s);  // every poll due (wall time only: no poll token accrues)
  EXPECT_EQ(poller.RunOnce(), 3u);
  EXPECT_EQ(poller.RunOnce(), 0u);
  steady_.Advance(1s);
  EXPECT_EQ(poller.RunOnce(), 3u);
  EXPECT_EQ(Count("poll_count = 1"), 6u);
  // 0.8 x the 200 ms minimum interval.
  EXPECT_EQ(Count("poll_count = 1 AND next_poll_at = '" + FormatRfc3339(clock_.Now() + 160ms) +
                  "'::timestamptz"),
            6u);

  // The engine fails once: the breaker (threshold 1) opens; due polls are held back.
  gate.Failed();
  ASSERT_EQ(gate.state(), CircuitState::kOpen);
  steady_.Advance(1s);
  EXPECT_EQ(poller.RunOnce(), 0u);
  EXPECT_EQ(Count("poll_count = 0 AND next_poll_at <= '" + FormatRfc3339(clock_.Now()) +
                  "'::timestamptz"),
            4u);
}

// Polls yield to starts: while every start slot of the provider was in use within the last
// second (a burst of starts), a poll round takes only executions whose poll has been due for at
// least yield_to_starts; the others wait (their due time kept), and all go again once the slots
// are free for a second.
TEST_F(LifecycleGateTest, PollsYieldToABurstOfStartsUpToTheirYieldTime) {
  mock_->SetDefaultOutcome(Outcome::RunUntilStopped());
  AddPending("onboarding", "tenant_a", {"e1", "e2", "e3", "e4"});
  ProviderLimits limits;
  limits.max_in_flight = 4;
  auto gate = Gate("mock", limits);
  EXPECT_EQ(GatedDispatcher(gate, db_).RunOnce(), 4u);
  PollerOptions o;
  o.max_in_flight = 4;
  o.provider = "mock";
  o.gate = &gate;
  o.yield_to_starts = 10s;
  StatusPoller poller(o, db_, manager_, catalog_, metrics_, clock_);
  // e1 and e2 have been due for 20 s, e3 and e4 for 1 s.
  ExecAtNow(
      "UPDATE workflow_executions SET next_poll_at = $1::timestamptz - interval '20 s' "
      "WHERE id IN ('ex_onboarding_e1', 'ex_onboarding_e2')");
  ExecAtNow(
      "UPDATE workflow_executions SET next_poll_at = $1::timestamptz - interval '1 s' "
      "WHERE id IN ('ex_onboarding_e3', 'ex_onboarding_e4')");

  // A burst takes every slot (and they stay taken): only the polls overdue by 10 s or more go.
  steady_.Advance(2s);
  EXPECT_FALSE(gate.StartsSaturated(1000ms));
  ASSERT_EQ(gate.AdmitStarts(4), 4u);
  EXPECT_TRUE(gate.StartsSaturated(1000ms));
  EXPECT_EQ(poller.RunOnce(), 2u);
  EXPECT_EQ(Count("poll_count = 1"), 2u);
  EXPECT_EQ(Count("poll_count = 1 AND id IN ('ex_onboarding_e1', 'ex_onboarding_e2')"), 2u);
  EXPECT_EQ(poller.RunOnce(), 0u);
  EXPECT_EQ(gate_metrics_.polls_yielded.WithLabels({"mock"}).Value(), 2);

  // The slots free, but were saturated less than a second ago: the polls still wait.
  gate.ReleaseStart(4);
  steady_.Advance(500ms);
  EXPECT_EQ(poller.RunOnce(), 0u);
  // A second later, the waiting polls go.
  steady_.Advance(600ms);
  EXPECT_FALSE(gate.StartsSaturated(1000ms));
  EXPECT_EQ(poller.RunOnce(), 2u);
  EXPECT_EQ(Count("poll_count = 1"), 4u);
  EXPECT_EQ(gate_metrics_.polls_yielded.WithLabels({"mock"}).Value(), 3);
}

// A burst of starts that fills the slots while a poll round runs: the round's remaining polls
// that are not overdue by yield_to_starts are left due (not polled, not recorded), and go once
// the slots have been free for a second.
TEST_F(LifecycleGateTest, ABurstThatBeginsDuringAPollRoundHoldsItsRemainingPolls) {
  mock_->SetDefaultOutcome(Outcome::RunUntilStopped());
  AddPending("onboarding", "tenant_a", {"e1", "e2", "e3"});
  Dispatcher().RunOnce();
  UseTamper({"ex_onboarding_e1", "ex_onboarding_e2", "ex_onboarding_e3"});
  ProviderLimits limits;
  limits.max_in_flight = 2;
  auto gate = Gate("tamper", limits);
  bool burst = false;
  tamper_->on_status = [&](providers::ExecutionStatus&) {
    if (!burst) {
      burst = true;
      EXPECT_EQ(gate.AdmitStarts(2), 2u);  // the first poll's call: a burst takes every slot
    }
  };
  PollerOptions o;
  o.max_in_flight = 1;  // one call after the other
  o.provider = "tamper";
  o.gate = &gate;
  o.yield_to_starts = 10s;
  StatusPoller poller(o, db_, manager_, catalog_, metrics_, clock_);
  clock_.Advance(1s);  // every poll due for less than 10 s
  poller.RunOnce();
  EXPECT_TRUE(burst);
  EXPECT_EQ(Count("poll_count = 1"), 1u);
  EXPECT_EQ(Count("poll_count = 0 AND lease_owner IS NULL AND next_poll_at <= '" +
                  FormatRfc3339(clock_.Now()) + "'::timestamptz"),
            2u);
  EXPECT_TRUE(poller.MoreDue());
  EXPECT_EQ(poller.RunOnce(), 0u);  // still saturated: nothing overdue enough
  gate.ReleaseStart(2);
  steady_.Advance(1100ms);
  EXPECT_EQ(poller.RunOnce(), 2u);
  EXPECT_EQ(Count("poll_count = 1"), 3u);
}

}  // namespace
}  // namespace workflowd::lifecycle
