// ExecutionRepository::InsertPending against the real PostgreSQL server: rows PostgreSQL refuses
// (a NUL character in jsonb, a constraint) are found and left out, the rest is committed.
#include "workflowd/store/execution_repository.hpp"

#include <gtest/gtest.h>

#include <pqxx/pqxx>
#include <set>

#include "test_database.hpp"
#include "workflowd/store/database.hpp"
#include "workflowd/store/errors.hpp"
#include "workflowd/store/migrations.hpp"

namespace workflowd::store {
namespace {

using workflowd::testing::TestDatabase;

class ExecutionRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override { Migrate(test_db_.dsn(), BundledMigrations()); }

  static NewExecution Row(int n, nlohmann::json data = {{"n", 1}}) {
    NewExecution e;
    e.id = "ex_" + std::to_string(n);
    e.tenant_id = "acme";
    e.environment_id = "prod";
    e.workflow_id = "wf";
    e.workflow_name = "wf";
    e.definition_version = 1;
    e.provider = "mock";
    e.trigger_event_id = "evt-" + std::to_string(n);
    e.trigger_event = {{"id", e.trigger_event_id}, {"data", std::move(data)}};
    return e;
  }

  // A trigger event PostgreSQL's jsonb refuses (SQLSTATE 22P05): a string holding NUL.
  static NewExecution PoisonRow(int n) { return Row(n, {{"name", std::string("a\0b", 3)}}); }

  std::set<std::string> StoredIds() {
    pqxx::connection c(test_db_.dsn());
    pqxx::read_transaction r(c);
    std::set<std::string> out;
    for (const auto& row : r.exec("SELECT id FROM workflow_executions")) {
      out.insert(row[0].as<std::string>());
    }
    return out;
  }

  TestDatabase test_db_;
  Database db_{test_db_.dsn()};
  ExecutionRepository repo_{db_};
};

TEST(IsDataError, DataExceptionsAndConstraintsButNotDuplicatesOrOutages) {
  EXPECT_TRUE(IsDataError("22P05"));   // untranslatable character (\u0000 in jsonb)
  EXPECT_TRUE(IsDataError("22021"));   // character not in repertoire (NUL in COPY text)
  EXPECT_TRUE(IsDataError("23514"));   // check_violation
  EXPECT_TRUE(IsDataError("23502"));   // not_null_violation
  EXPECT_FALSE(IsDataError("23505"));  // unique_violation: recorded already
  EXPECT_FALSE(IsDataError("08006"));  // connection failure
  EXPECT_FALSE(IsDataError("40001"));  // serialization failure
  EXPECT_FALSE(IsDataError("42P01"));  // undefined table: a bug, not bad data
}

TEST_F(ExecutionRepositoryTest, RefusedRowsAreFoundAndTheRestIsCommitted) {
  std::vector<NewExecution> rows;
  for (int i = 0; i < 50; ++i) rows.push_back(i == 7 || i == 31 ? PoisonRow(i) : Row(i));
  std::vector<RejectedExecution> rejected;
  EXPECT_EQ(repo_.InsertPending(rows, nullptr, &rejected), 48u);
  ASSERT_EQ(rejected.size(), 2u);
  EXPECT_EQ(rejected[0].index, 7u);
  EXPECT_EQ(rejected[1].index, 31u);
  EXPECT_EQ(rejected[0].sqlstate, "22P05");
  EXPECT_NE(rejected[0].message.find("Unicode escape"), std::string::npos) << rejected[0].message;
  EXPECT_EQ(rejected[0].message.find('\n'), std::string::npos);  // the first line only
  std::set<std::string> stored = StoredIds();
  EXPECT_EQ(stored.size(), 48u);
  EXPECT_FALSE(stored.contains("ex_7"));
  EXPECT_FALSE(stored.contains("ex_31"));
  EXPECT_TRUE(stored.contains("ex_49"));
}

TEST_F(ExecutionRepositoryTest, WithoutTheRejectedListARefusedRowFailsTheWholeBatch) {
  std::vector<NewExecution> rows = {Row(1), PoisonRow(2), Row(3)};
  try {
    repo_.InsertPending(rows);
    FAIL() << "expected a StoreError";
  } catch (const StoreError& e) {
    EXPECT_FALSE(e.Retryable()) << e.what();
  }
  EXPECT_TRUE(StoredIds().empty());
}

TEST_F(ExecutionRepositoryTest, RecordedRowsNewRowsAndARefusedRowInOneBatch) {
  std::vector<NewExecution> first = {Row(1), Row(2), Row(3)};
  ASSERT_EQ(repo_.InsertPending(first), 3u);
  // A redelivered batch (rows 1-3 exist) with new rows and one refused row: the COPY fails, the
  // bisection inserts the new rows and skips the recorded ones.
  std::vector<NewExecution> rows = {Row(1), Row(2), Row(3), Row(4), PoisonRow(5), Row(6)};
  std::vector<RejectedExecution> rejected;
  EXPECT_EQ(repo_.InsertPending(rows, nullptr, &rejected), 2u);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].index, 4u);
  EXPECT_EQ(StoredIds(), (std::set<std::string>{"ex_1", "ex_2", "ex_3", "ex_4", "ex_6"}));
  // The same again: nothing new, the same refusal.
  EXPECT_EQ(repo_.InsertPending(rows, nullptr, &rejected), 0u);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].index, 4u);
}

TEST_F(ExecutionRepositoryTest, RowsOfOneGroupAreWrittenOrRefusedTogether) {
  // Two events of two executions each, and one of one; the second event's first row is refused
  // by a constraint, its second row would be accepted: neither is written.
  test_db_.Exec("ALTER TABLE workflow_executions ADD CONSTRAINT no_ex_3 CHECK (id <> 'ex_3')");
  std::vector<NewExecution> rows = {Row(1), Row(2), Row(3), Row(4), Row(5)};
  const std::vector<size_t> groups = {0, 0, 1, 1, 2};
  std::vector<RejectedExecution> rejected;
  EXPECT_EQ(repo_.InsertPending(rows, nullptr, &rejected, groups), 3u);
  ASSERT_EQ(rejected.size(), 2u);
  EXPECT_EQ(rejected[0].index, 2u);
  EXPECT_EQ(rejected[1].index, 3u);
  EXPECT_EQ(StoredIds(), (std::set<std::string>{"ex_1", "ex_2", "ex_5"}));
}

TEST_F(ExecutionRepositoryTest, ANulInATextValueIsRefusedNotCut) {
  // libpq's quoting stops at a NUL: the INSERT would store a cut value instead of refusing it.
  std::vector<NewExecution> rows = {Row(1), Row(2), Row(3)};
  rows[1].trigger_event_id = std::string("evt-2\0tail", 10);
  std::vector<RejectedExecution> rejected;
  EXPECT_EQ(repo_.InsertPending(rows, nullptr, &rejected), 2u);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].index, 1u);
  EXPECT_EQ(rejected[0].sqlstate, "22021");
  EXPECT_EQ(StoredIds(), (std::set<std::string>{"ex_1", "ex_3"}));
}

TEST_F(ExecutionRepositoryTest, AConstraintViolationIsARefusedRowToo) {
  test_db_.Exec(
      "ALTER TABLE workflow_executions ADD CONSTRAINT no_poison "
      "CHECK (trigger_event_id <> 'evt-2')");
  std::vector<NewExecution> rows = {Row(1), Row(2), Row(3)};
  std::vector<RejectedExecution> rejected;
  EXPECT_EQ(repo_.InsertPending(rows, nullptr, &rejected), 2u);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].index, 1u);
  EXPECT_EQ(rejected[0].sqlstate, "23514");
  EXPECT_NE(rejected[0].message.find("no_poison"), std::string::npos) << rejected[0].message;
}

}  // namespace
}  // namespace workflowd::store
