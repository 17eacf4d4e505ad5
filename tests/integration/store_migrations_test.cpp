// Migrations and schema invariants against the real PostgreSQL server (scripts/services.sh).
#include <gtest/gtest.h>

#include <future>
#include <pqxx/pqxx>
#include <thread>

#include "test_database.hpp"
#include "workflowd/store/execution_repository.hpp"
#include "workflowd/store/migrations.hpp"

namespace workflowd::store {
namespace {

using workflowd::testing::TestDatabase;

// Everything a migration can change, as text: columns, indexes, constraints, triggers.
std::string SchemaSnapshot(const std::string& dsn) {
  pqxx::connection c(dsn);
  pqxx::read_transaction r(c);
  std::string out;
  for (const auto& row : r.exec(
           "SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '') "
           "FROM information_schema.columns WHERE table_schema = 'public' "
           "ORDER BY table_name, column_name")) {
    for (const auto& f : row) out += f.c_str() + std::string("|");
    out += "\n";
  }
  for (const auto& row :
       r.exec("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
              "ORDER BY indexname")) {
    out += row[0].c_str() + std::string(" ") + row[1].c_str() + "\n";
  }
  for (const auto& row : r.exec("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                                "WHERE connamespace = 'public'::regnamespace ORDER BY conname")) {
    out += row[0].c_str() + std::string(" ") + row[1].c_str() + "\n";
  }
  for (const auto& row :
       r.exec("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1")) {
    out += row[0].c_str() + std::string("\n");
  }
  return out;
}

int CountRows(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::read_transaction r(c);
  return r.exec(sql)[0][0].as<int>();
}

TEST(BundledMigrations, AreOrderedAndNamed) {
  auto migrations = BundledMigrations();
  ASSERT_FALSE(migrations.empty());
  EXPECT_EQ(migrations.front().version, 1);
  EXPECT_EQ(migrations.front().name, "initial_schema");
  for (size_t i = 1; i < migrations.size(); ++i) {
    EXPECT_LT(migrations[i - 1].version, migrations[i].version);
  }
}

TEST(Migrate, AppliesEverythingOnceAndTheSecondRunChangesNothing) {
  TestDatabase db;
  auto migrations = BundledMigrations();
  EXPECT_EQ(SchemaVersion(db.dsn()), 0);

  auto first = Migrate(db.dsn(), migrations);
  ASSERT_EQ(first.applied.size(), migrations.size());
  EXPECT_EQ(first.schema_version, migrations.back().version);
  EXPECT_FALSE(first.database_ahead);
  auto before = SchemaSnapshot(db.dsn());
  EXPECT_NE(before.find("workflow_executions_event_key"), std::string::npos);

  auto second = Migrate(db.dsn(), migrations);
  EXPECT_TRUE(second.applied.empty());
  EXPECT_EQ(second.schema_version, first.schema_version);
  EXPECT_EQ(SchemaSnapshot(db.dsn()), before);
  EXPECT_EQ(CountRows(db.dsn(), "SELECT count(*) FROM schema_migrations"),
            static_cast<int>(migrations.size()));
  EXPECT_EQ(SchemaVersion(db.dsn()), migrations.back().version);
}

TEST(Migrate, ReplicasStartingTogetherApplyEachMigrationOnce) {
  TestDatabase db;
  auto migrations = BundledMigrations();
  constexpr int kReplicas = 4;
  std::vector<std::future<MigrationReport>> runs;
  for (int i = 0; i < kReplicas; ++i) {
    runs.push_back(std::async(std::launch::async, [&] { return Migrate(db.dsn(), migrations); }));
  }
  size_t applied_total = 0;
  for (auto& run : runs) {
    auto report = run.get();  // none may fail
    applied_total += report.applied.size();
    EXPECT_EQ(report.schema_version, migrations.back().version);
  }
  EXPECT_EQ(applied_total, migrations.size());
  EXPECT_EQ(CountRows(db.dsn(), "SELECT count(*) FROM schema_migrations"),
            static_cast<int>(migrations.size()));
}

TEST(Migrate, ExecutionsCarryOnlyTheIndexesTheirQueriesUse) {
  // Every index of workflow_executions gets three entries per execution (an insert and two
  // non-HOT updates): the set is deliberate. Unique key, dispatch and polls (both per provider:
  // each engine's rounds claim its own rows), the running executions of a definition (deleting
  // it).
  TestDatabase db;
  Migrate(db.dsn(), BundledMigrations());
  pqxx::connection c(db.dsn());
  pqxx::read_transaction r(c);
  std::vector<std::string> names;
  for (const auto& row : r.exec("SELECT indexname FROM pg_indexes WHERE tablename = "
                                "'workflow_executions' ORDER BY indexname")) {
    names.push_back(row[0].as<std::string>());
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{"workflow_executions_event_key", "workflow_executions_pkey",
                                      "workflow_executions_provider_dispatch_idx",
                                      "workflow_executions_provider_poll_idx",
                                      "workflow_executions_workflow_idx"}));
}

TEST(Migrate, UpgradeKeepsStepsAndHistoryOfExistingExecutions) {
  // A database at version 2 (one row per step and per history event) upgraded to the chunked
  // layout: the old tables' rows read back the same through the views, and a running execution
  // knows how many history events it has stored.
  TestDatabase db;
  auto migrations = BundledMigrations();
  std::vector<Migration> first_two(migrations.begin(), migrations.begin() + 2);
  Migrate(db.dsn(), first_two);
  {
    pqxx::connection c(db.dsn());
    pqxx::work w(c);
    w.exec(
        "INSERT INTO workflow_definitions (id, tenant_id, environment_id, name, trigger_type, "
        "event_name, trigger, steps, retry_policy) VALUES ('wf', 't1', 'prod', 'n', 'event', "
        "'e', '{}', '[]', '{}')");
    w.exec(
        "INSERT INTO workflow_executions (id, tenant_id, environment_id, workflow_id, "
        "workflow_name, definition_version, provider, trigger_type, trigger_event_id, status) "
        "VALUES ('x1', 't1', 'prod', 'wf', 'n', 1, 'mock', 'event', 'ev1', 'running'), "
        "('x2', 't1', 'prod', 'wf', 'n', 1, 'mock', 'event', 'ev2', 'succeeded')");
    w.exec(
        "INSERT INTO step_executions (execution_id, step_id, tenant_id, environment_id, status, "
        "output, started_at) VALUES ('x1', 'a', 't1', 'prod', 'completed', '{\"k\": 1}', "
        "'2026-01-30T10:00:00.123456Z'), ('x1', 'b', 't1', 'prod', 'pending', NULL, NULL)");
    w.exec(
        "INSERT INTO execution_history (execution_id, seq, tenant_id, environment_id, "
        "event_type, details, occurred_at) VALUES ('x1', 0, 't1', 'prod', 'ExecutionStarted', "
        "'{\"name\": \"x1\"}', '2026-01-30T10:00:00.5Z'), ('x1', 1, 't1', 'prod', "
        "'StateEntered', NULL, '2026-01-30T10:00:01Z'), ('x2', 0, 't1', 'prod', "
        "'ExecutionStarted', NULL, '2026-01-30T10:00:02Z')");
    w.commit();
  }
  Migrate(db.dsn(), migrations);
  pqxx::connection c(db.dsn());
  pqxx::read_transaction r(c);
  auto steps = r.exec(
      "SELECT step_id, status, output::text, started_at = '2026-01-30T10:00:00.123456Z', "
      "started_at IS NULL, attempt FROM step_executions WHERE execution_id = 'x1' "
      "ORDER BY step_id");
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0][0].as<std::string>() + steps[0][1].as<std::string>(), "acompleted");
  EXPECT_EQ(steps[0][2].as<std::string>(), "{\"k\": 1}");
  EXPECT_TRUE(steps[0][3].as<bool>());
  EXPECT_EQ(steps[1][0].as<std::string>() + steps[1][1].as<std::string>(), "bpending");
  EXPECT_TRUE(steps[1][2].is_null());
  EXPECT_TRUE(steps[1][4].as<bool>());
  EXPECT_EQ(steps[1][5].as<int>(), 1);
  auto history = r.exec(
      "SELECT execution_id, seq, event_type, details::text, occurred_at = "
      "'2026-01-30T10:00:00.5Z' FROM execution_history ORDER BY execution_id, seq");
  ASSERT_EQ(history.size(), 3u);
  EXPECT_EQ(history[0][2].as<std::string>(), "ExecutionStarted");
  EXPECT_EQ(history[0][3].as<std::string>(), "{\"name\": \"x1\"}");
  EXPECT_TRUE(history[0][4].as<bool>());
  EXPECT_EQ(history[1][1].as<int>(), 1);
  EXPECT_TRUE(history[1][3].is_null());
  EXPECT_EQ(history[2][0].as<std::string>(), "x2");
  EXPECT_EQ(r.exec("SELECT history_count FROM workflow_executions WHERE id = 'x1'")[0][0].as<int>(),
            2);
  // Terminal executions are never polled again; their count stays 0.
  EXPECT_EQ(r.exec("SELECT history_count FROM workflow_executions WHERE id = 'x2'")[0][0].as<int>(),
            0);
}

TEST(Migrate, RefusesAnEditedMigration) {
  TestDatabase db;
  auto migrations = BundledMigrations();
  Migrate(db.dsn(), migrations);
  migrations.front().sql += "\n-- edited after release\n";
  try {
    Migrate(db.dsn(), migrations);
    FAIL() << "an edited migration must be refused";
  } catch (const StoreError& e) {
    EXPECT_FALSE(e.Retryable());
    EXPECT_NE(std::string(e.what()).find("migration 1"), std::string::npos) << e.what();
  }
}

TEST(Migrate, NewerDatabaseIsReportedNotBroken) {
  TestDatabase db;
  auto migrations = BundledMigrations();
  Migrate(db.dsn(), migrations);
  {
    pqxx::connection c(db.dsn());
    pqxx::work w(c);
    w.exec("INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')");
    w.commit();
  }
  auto report = Migrate(db.dsn(), migrations);
  EXPECT_TRUE(report.database_ahead);
  EXPECT_EQ(report.schema_version, 9999);
}

TEST(Migrate, UnreachableDatabaseIsRetryable) {
  try {
    // Port 1 on loopback: nothing listens there.
    Migrate("postgresql://workflowd:x@127.0.0.1:1/workflowd?connect_timeout=2",
            BundledMigrations());
    FAIL();
  } catch (const StoreError& e) {
    EXPECT_TRUE(e.Retryable()) << e.what();
  }
}

class SchemaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Migrate(db_.dsn(), BundledMigrations());
    conn_ = std::make_unique<pqxx::connection>(db_.dsn());
    pqxx::work w(*conn_);
    w.exec(
        "INSERT INTO workflow_definitions (id, tenant_id, environment_id, name, trigger_type, "
        "event_name, trigger, steps, retry_policy) VALUES ('wf_1', 't1', 'prod', 'Onboarding', "
        "'event', 'customer.created', '{}', '[]', '{}')");
    w.commit();
  }

  // Inserts an execution of wf_1 for `event_id`; returns the rows inserted (0 on conflict).
  int InsertExecution(const std::string& id, const std::string& event_id, int attempt = 1,
                      const std::string& retry_of = "") {
    pqxx::work w(*conn_);
    auto r = w.exec_params(
        "INSERT INTO workflow_executions (id, tenant_id, environment_id, workflow_id, "
        "workflow_name, definition_version, provider, trigger_type, trigger_event_id, attempt, "
        "retry_of) VALUES ($1, 't1', 'prod', 'wf_1', 'Onboarding', 1, 'mock', 'event', $2, $3, "
        "NULLIF($4, '')) ON CONFLICT (workflow_id, trigger_event_id, attempt) DO NOTHING",
        id, event_id, attempt, retry_of);
    w.commit();
    return static_cast<int>(r.affected_rows());
  }

  TestDatabase db_;
  std::unique_ptr<pqxx::connection> conn_;
};

TEST_F(SchemaTest, OneExecutionPerDefinitionAndEvent) {
  EXPECT_EQ(InsertExecution("exec_1", "evt-1"), 1);
  EXPECT_EQ(InsertExecution("exec_2", "evt-1"), 0);  // redelivery: nothing doubled
  EXPECT_EQ(InsertExecution("exec_3", "evt-2"), 1);
  // A retry is a new attempt linked to the original.
  EXPECT_EQ(InsertExecution("exec_4", "evt-1", 2, "exec_1"), 1);
  EXPECT_EQ(CountRows(db_.dsn(), "SELECT count(*) FROM workflow_executions"), 3);
  // Without ON CONFLICT the key itself refuses the duplicate.
  pqxx::work w(*conn_);
  EXPECT_THROW(w.exec("INSERT INTO workflow_executions (id, tenant_id, environment_id, "
                      "workflow_id, workflow_name, definition_version, provider, trigger_type, "
                      "trigger_event_id) VALUES ('exec_5', 't1', 'prod', 'wf_1', 'Onboarding', 1, "
                      "'mock', 'event', 'evt-2')"),
               pqxx::unique_violation);
}

// The event pipeline's write: COPY of the batch, and when a row exists already (a redelivered
// event) the whole batch again with ON CONFLICT DO NOTHING: only the new rows are added, nothing
// is doubled, nothing dropped; text needing COPY escapes arrives unchanged.
TEST_F(SchemaTest, InsertPendingCopiesAndSkipsExistingRows) {
  Database db(db_.dsn());
  ExecutionRepository repo(db);
  auto row = [](const std::string& id, const std::string& event_id) {
    NewExecution e;
    e.id = id;
    e.tenant_id = "t1";
    e.environment_id = "prod";
    e.workflow_id = "wf_1";
    e.workflow_name = "Onboarding\t\"tab\" \\ back\nslash";
    e.definition_version = 1;
    e.provider = "mock";
    e.trigger_event_id = event_id;
    e.trigger_event = {{"id", event_id}, {"data", {{"note", "line\nbreak\ttab \\ \u00e9"}}}};
    return e;
  };
  EXPECT_EQ(repo.InsertPending({row("ex_1", "evt-1"), row("ex_2", "evt-2")}), 2u);
  // evt-2 again (redelivered) between two new events.
  EXPECT_EQ(repo.InsertPending({row("ex_3", "evt-3"), row("ex_4", "evt-2"), row("ex_5", "evt-4")}),
            2u);
  EXPECT_EQ(CountRows(db_.dsn(), "SELECT count(*) FROM workflow_executions"), 4);
  EXPECT_EQ(CountRows(db_.dsn(), "SELECT count(*) FROM workflow_executions WHERE id = 'ex_4'"), 0);
  // Defaults: pending and due now.
  EXPECT_EQ(CountRows(db_.dsn(),
                      "SELECT count(*) FROM workflow_executions WHERE status = 'pending' AND "
                      "next_attempt_at <= now() AND next_attempt_at > now() - interval '1 hour'"),
            4);
  pqxx::work w(*conn_);
  auto r = w.exec(
      "SELECT workflow_name, trigger_event->'data'->>'note' FROM workflow_executions WHERE id = "
      "'ex_5'");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0][0].as<std::string>(), "Onboarding\t\"tab\" \\ back\nslash");
  EXPECT_EQ(r[0][1].as<std::string>(), "line\nbreak\ttab \\ \u00e9");
}

TEST_F(SchemaTest, ChecksRejectImpossibleRows) {
  auto fails = [&](const std::string& sql) {
    pqxx::work w(*conn_);
    try {
      w.exec(sql);
      return false;
    } catch (const pqxx::sql_error&) {
      return true;
    }
  };
  EXPECT_TRUE(fails("UPDATE workflow_definitions SET status = 'bogus'"));
  EXPECT_TRUE(fails("UPDATE workflow_definitions SET event_name = NULL"));  // event trigger
  EXPECT_TRUE(fails("UPDATE workflow_definitions SET timeout_seconds = -1"));
  ASSERT_EQ(InsertExecution("exec_1", "evt-1"), 1);
  EXPECT_TRUE(fails("UPDATE workflow_executions SET status = 'completed'"));  // not a state
  EXPECT_TRUE(fails("UPDATE workflow_executions SET retry_of = 'exec_1'"));   // attempt 1
  EXPECT_TRUE(
      fails("INSERT INTO execution_steps (execution_id, tenant_id, environment_id, steps) VALUES "
            "('exec_1', 't1', 'prod', '[{\"step_id\": \"s1\", \"status\": \"done\"}]')"));
  EXPECT_TRUE(
      fails("INSERT INTO execution_steps (execution_id, tenant_id, environment_id, steps) VALUES "
            "('exec_1', 't1', 'prod', '{\"step_id\": \"s1\"}')"));  // not a list
  EXPECT_FALSE(
      fails("INSERT INTO execution_steps (execution_id, tenant_id, environment_id, steps) VALUES "
            "('exec_1', 't1', 'prod', '[{\"step_id\": \"s1\", \"status\": \"skipped\"}]')"));
}

TEST_F(SchemaTest, DefinitionNamesAreUniquePerTenantEnvironment) {
  auto insert = [&](const std::string& id, const std::string& tenant, const std::string& env) {
    pqxx::work w(*conn_);
    w.exec_params(
        "INSERT INTO workflow_definitions (id, tenant_id, environment_id, name, trigger_type, "
        "event_name, trigger, steps, retry_policy) VALUES ($1, $2, $3, 'Onboarding', 'event', "
        "'customer.created', '{}', '[]', '{}')",
        id, tenant, env);
    w.commit();
  };
  EXPECT_NO_THROW(insert("wf_2", "t1", "dev"));
  EXPECT_NO_THROW(insert("wf_3", "t2", "prod"));
  EXPECT_THROW(insert("wf_4", "t1", "prod"), pqxx::unique_violation);
}

TEST_F(SchemaTest, DefinitionChangesAreNotified) {
  class Receiver : public pqxx::notification_receiver {
   public:
    using pqxx::notification_receiver::notification_receiver;
    void operator()(const std::string& payload, int) override { payloads.push_back(payload); }
    std::vector<std::string> payloads;
  };
  pqxx::connection listener(db_.dsn());
  Receiver receiver(listener, "workflowd_definitions");
  {
    pqxx::work w(*conn_);
    w.exec("UPDATE workflow_definitions SET enabled = false, version = version + 1");
    w.commit();
  }
  for (int i = 0; i < 50 && receiver.payloads.empty(); ++i) listener.await_notification(0, 100000);
  ASSERT_EQ(receiver.payloads.size(), 1u);
  EXPECT_NE(receiver.payloads[0].find("\"id\" : \"wf_1\""), std::string::npos)
      << receiver.payloads[0];
  EXPECT_NE(receiver.payloads[0].find("\"version\" : 2"), std::string::npos);
}

}  // namespace
}  // namespace workflowd::store
