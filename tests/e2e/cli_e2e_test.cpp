// The built `workflowd` binary: verbs, help, exit codes, migrate against the real PostgreSQL.
#include <gtest/gtest.h>

#include <pqxx/pqxx>

#include "process.hpp"
#include "test_database.hpp"

namespace workflowd {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::RunCommand;
using testing::TestDatabase;

const std::string kBinary = WORKFLOWD_BINARY;

TEST(CliE2E, VersionAndHelp) {
  auto [code, out] = RunCommand({kBinary, "version"});
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("workflowd 0."), std::string::npos) << out;
  std::tie(code, out) = RunCommand({kBinary, "--help"});
  EXPECT_EQ(code, 0);
  for (const char* verb : {"run", "migrate", "version"}) {
    EXPECT_NE(out.find(verb), std::string::npos) << verb << " missing from:\n" << out;
  }
  std::tie(code, out) = RunCommand({kBinary, "migrate", "--help"});
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("--database-url"), std::string::npos) << out;
}

TEST(CliE2E, UsageErrorsExitWithTwoAndSayWhy) {
  auto [code, out] = RunCommand({kBinary, "migrate"}, {"WORKFLOWD_DATABASE_URL="});
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("WORKFLOWD_DATABASE_URL"), std::string::npos) << out;
  std::tie(code, out) = RunCommand({kBinary, "migrate", "--no-such-flag"});
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("--no-such-flag"), std::string::npos) << out;
  std::tie(code, out) = RunCommand({kBinary});
  EXPECT_EQ(code, 2);
}

TEST(CliE2E, MigrateTwiceThenRunAndStopOnSigterm) {
  TestDatabase db;
  auto [code, out] = RunCommand({kBinary, "migrate", "--database-url", db.dsn()});
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("applied 1 migration"), std::string::npos) << out;
  EXPECT_EQ(out.find(":workflowd@"), std::string::npos) << "password leaked into logs:\n" << out;

  std::tie(code, out) = RunCommand({kBinary, "migrate"}, {"WORKFLOWD_DATABASE_URL=" + db.dsn()});
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("up to date"), std::string::npos) << out;

  ChildProcess daemon({kBinary, "run", "--database-url", db.dsn()});
  ASSERT_TRUE(daemon.WaitForOutput("started", 30s)) << daemon.Output();
  daemon.Signal(SIGTERM);
  EXPECT_EQ(daemon.Wait(10s), 0) << daemon.Output();
}

TEST(CliE2E, RunRefusesAnUnmigratedDatabase) {
  TestDatabase db;
  auto [code, out] = RunCommand({kBinary, "run", "--database-url", db.dsn()});
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("workflowd migrate"), std::string::npos) << out;
}

TEST(CliE2E, UnreachableDatabaseIsARuntimeError) {
  auto [code, out] =
      RunCommand({kBinary, "migrate", "--database-url",
                  "postgresql://workflowd:secret@127.0.0.1:1/workflowd?connect_timeout=2"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("unreachable"), std::string::npos) << out;
}

}  // namespace
}  // namespace workflowd
