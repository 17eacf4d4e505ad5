// The built `workflowd` binary: verbs, help, exit codes, migrate, config, definitions validate
// and apply against the real PostgreSQL; the packaged configuration runs no mock engine.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <regex>

#include "daemon_harness.hpp"
#include "pipeline_events.hpp"
#include "process.hpp"
#include "test_database.hpp"
#include "test_env.hpp"
#include "workflowd/store/migrations.hpp"

namespace workflowd {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::RandomSuffix;
using testing::RequireEnv;
using testing::RunCommand;
using testing::TestDatabase;

const std::string kBinary = WORKFLOWD_BINARY;

// The repository and its examples/ folder.
const std::filesystem::path kRepository = WORKFLOWD_SOURCE_DIR;
const std::filesystem::path kExamples = kRepository / "examples";

// `env` plus the mock engine turned on and made the default provider (both are off by default).
std::vector<std::string> WithMockDefault(std::vector<std::string> env = {}) {
  env.push_back("WORKFLOWD_PROVIDERS_MOCK_ENABLED=true");
  env.push_back("WORKFLOWD_PROVIDERS_DEFAULT=mock");
  return env;
}

// A file in the test's temporary folder, deleted with the object.
class TempFile {
 public:
  explicit TempFile(const std::string& content, const std::string& extension = ".yaml")
      : path_(::testing::TempDir() + "/workflowd-cli-" + RandomSuffix() + extension) {
    Write(content);
  }
  ~TempFile() { std::remove(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void Write(const std::string& content) const { std::ofstream(path_) << content; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Settings that keep a `workflowd run` of these tests away from fixed ports and shared groups.
std::vector<std::string> IsolatedRunEnv(const std::string& dsn) {
  return {"WORKFLOWD_DATABASE_URL=" + dsn,
          "WORKFLOWD_KAFKA_BROKERS=" + RequireEnv("WORKFLOWD_TEST_KAFKA_BROKERS"),
          "WORKFLOWD_KAFKA_GROUP_ID=wfd-cli-" + RandomSuffix(),
          "WORKFLOWD_KAFKA_TOPICS=wfd-cli-events-" + RandomSuffix(),
          "WORKFLOWD_ADMIN_LISTEN=127.0.0.1:0"};
}

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
  // Every bundled migration, once.
  EXPECT_NE(out.find("applied " + std::to_string(store::BundledMigrations().size()) + " migration"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find(":workflowd@"), std::string::npos) << "password leaked into logs:\n" << out;

  std::tie(code, out) = RunCommand({kBinary, "migrate"}, {"WORKFLOWD_DATABASE_URL=" + db.dsn()});
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("up to date"), std::string::npos) << out;

  ChildProcess daemon({kBinary, "run", "--database-url", db.dsn()}, IsolatedRunEnv(db.dsn()));
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

TEST(CliE2E, AdminEndpointAnswersWhileTheDaemonWaitsForPostgres) {
  // Nothing listens on port 1: the daemon waits for PostgreSQL (it may start after us). Its admin
  // endpoint answers meanwhile: alive (a restart would not help), not ready, both saying why, and
  // /metrics shows workflowd_ready 0 and the failed attempts.
  const std::string dsn = "postgresql://workflowd:secret@127.0.0.1:1/workflowd?connect_timeout=2";
  ChildProcess daemon({kBinary, "run"}, IsolatedRunEnv(dsn));
  ASSERT_TRUE(daemon.WaitForOutput("waiting for PostgreSQL", 30s)) << daemon.Output();
  std::smatch m;
  const std::string out = daemon.Output();
  ASSERT_TRUE(std::regex_search(out, m, std::regex("admin endpoint listening on [0-9.]+:([0-9]+)")))
      << out;
  httplib::Client admin("127.0.0.1", std::stoi(m[1]));
  admin.set_connection_timeout(2, 0);

  auto live = admin.Get("/healthz");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200) << live->body;
  EXPECT_THAT(live->body, HasSubstr("waiting for PostgreSQL"));
  auto ready = admin.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503) << ready->body;
  EXPECT_THAT(ready->body, HasSubstr("waiting for PostgreSQL"));
  EXPECT_THAT(ready->body, HasSubstr("unreachable"));
  EXPECT_THAT(ready->body, Not(HasSubstr("secret")));
  auto metrics = admin.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body, HasSubstr("\nworkflowd_ready 0\n"));
  const std::string failed = "\nworkflowd_database_errors_total{operation=\"load_definitions\"} ";
  const auto at = metrics->body.find(failed);
  ASSERT_NE(at, std::string::npos) << metrics->body;
  EXPECT_GE(std::stod(metrics->body.substr(at + failed.size())), 1.0) << metrics->body;

  daemon.Signal(SIGTERM);
  EXPECT_EQ(daemon.Wait(10s), 0) << daemon.Output();
}

// --- workflowd config ------------------------------------------------------------------------

TEST(CliE2E, ConfigPrintsTheEffectiveSettingsWithSecretsMasked) {
  TempFile config(
      "kafka:\n"
      "  brokers: from-the-file:9092\n"
      "  group_id: file-group\n"
      "  topics: [orders, customers]\n"
      "  properties: {session.timeout.ms: \"12000\"}\n"
      "admin: {listen: \"127.0.0.1:9191\"}\n"
      "log: {level: debug}\n");
  auto [code, out] = RunCommand(
      {kBinary, "config", "--config", config.path()},
      {"WORKFLOWD_DATABASE_URL=postgresql://workflowd:s3cret-pw@db.internal:5432/wfd",
       "WORKFLOWD_KAFKA_BROKERS=from-the-env:9092",
       "WORKFLOWD_KAFKA_PROPERTY_SASL_PASSWORD=hunter2",
       "WORKFLOWD_KAFKA_PROPERTY_SASL_OAUTHBEARER_CONFIG=principal=svc secret=oauth-tok3n",
       "WORKFLOWD_MATCHING_RESYNC_INTERVAL=90s"});
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("url: postgresql://workflowd:***@db.internal:5432/wfd"));
  EXPECT_THAT(out, Not(HasSubstr("s3cret-pw")));
  EXPECT_THAT(out, Not(HasSubstr("hunter2")));
  EXPECT_THAT(out, Not(HasSubstr("oauth-tok3n")));
  EXPECT_THAT(out, HasSubstr("sasl.password: \"***\""));
  EXPECT_THAT(out, HasSubstr("sasl.oauthbearer.config: \"***\""));
  // The environment wins over the file; the file over the defaults.
  EXPECT_THAT(out, HasSubstr("brokers: from-the-env:9092"));
  EXPECT_THAT(out, Not(HasSubstr("from-the-file")));
  EXPECT_THAT(out, HasSubstr("group_id: file-group"));
  EXPECT_THAT(out, HasSubstr("topics: [orders, customers]"));
  EXPECT_THAT(out, HasSubstr("session.timeout.ms: 12000"));
  EXPECT_THAT(out, HasSubstr("resync_interval: 1m30s"));
  EXPECT_THAT(out, HasSubstr("listen: 127.0.0.1:9191"));
  EXPECT_THAT(out, HasSubstr("level: debug"));
  EXPECT_THAT(out, HasSubstr("dlq_topic: workflowd.dlq"));  // a default
}

TEST(CliE2E, ConfigRejectsUnknownKeysAndBadValuesNamingEachWithExitTwo) {
  TempFile config(
      "kafka:\n"
      "  brokrs: x:9092\n"
      "  batch_timeout: soon\n"
      "database:\n"
      "  url: postgresql://workflowd:in-the-file@db/wfd\n"
      "colour: blue\n");
  auto [code, out] = RunCommand(
      {kBinary, "config", "--config", config.path()},
      {"WORKFLOWD_DATABASE_URL=postgresql://u:p@db/wfd", "WORKFLOWD_KAFKA_BATCH_SIZE=lots"});
  EXPECT_EQ(code, 2) << out;
  EXPECT_THAT(out, HasSubstr("kafka.brokrs: unknown key (did you mean kafka.brokers?)"));
  EXPECT_THAT(out, HasSubstr("colour: unknown key"));
  EXPECT_THAT(out, HasSubstr("kafka.batch_timeout: \"soon\" is not a positive duration"));
  EXPECT_THAT(out, HasSubstr("database.url: secrets are not read from the config file"));
  EXPECT_THAT(out, HasSubstr("WORKFLOWD_KAFKA_BATCH_SIZE: \"lots\" is not a positive integer"));
  EXPECT_THAT(out, Not(HasSubstr("in-the-file")));

  std::tie(code, out) = RunCommand({kBinary, "config", "--config", "/nonexistent/workflowd.yaml"},
                                   {"WORKFLOWD_DATABASE_URL=postgresql://u:p@db/wfd"});
  EXPECT_EQ(code, 2) << out;
  EXPECT_THAT(out, HasSubstr("/nonexistent/workflowd.yaml"));
}

TEST(CliE2E, TheExampleConfigIsValid) {
  const std::string path = (kExamples / "workflowd.yaml").string();
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  auto [code, out] = RunCommand({kBinary, "config", "--config", path},
                                {"WORKFLOWD_DATABASE_URL=postgresql://u:p@db/wfd"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("topics: [business-events]"));
}

// A password in the query of a URL, or in key=value form with blanks or quotes, is masked too.
TEST(CliE2E, ConfigMasksThePasswordInEveryFormOfTheDatabaseUrl) {
  for (const std::string url :
       {"postgresql://workflowd@db.internal/wfd?sslmode=require&password=s3cret-pw",
        "host=db.internal dbname=wfd password = s3cret-pw user=workflowd",
        "host=db.internal password='s3cret-pw and more' user=workflowd"}) {
    auto [code, out] = RunCommand({kBinary, "config"}, {"WORKFLOWD_DATABASE_URL=" + url});
    ASSERT_EQ(code, 0) << out;
    EXPECT_THAT(out, Not(HasSubstr("s3cret-pw"))) << url;
    EXPECT_THAT(out, Not(HasSubstr("and more"))) << url;
    EXPECT_THAT(out, HasSubstr("password")) << url;
  }
}

// The URL on the command line is in the process list: said on stderr, and hidden from
// /proc/PID/cmdline once parsed.
TEST(CliE2E, DatabaseUrlOnTheCommandLineIsWarnedAboutAndHidden) {
  const std::string url = "postgresql://workflowd:pw-on-the-cli@127.0.0.1:1/wfd";
  auto [code, out] =
      RunCommand({kBinary, "config", "--database-url", url}, {"WORKFLOWD_DATABASE_URL="});
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("--database-url puts the database URL, password included, in the "
                             "process list"));
  EXPECT_THAT(out, HasSubstr("set WORKFLOWD_DATABASE_URL or database.url_file"));
  EXPECT_THAT(out, Not(HasSubstr("pw-on-the-cli")));
  // Through the variable: no warning.
  std::tie(code, out) = RunCommand({kBinary, "config"}, {"WORKFLOWD_DATABASE_URL=" + url});
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, Not(HasSubstr("--database-url puts")));

  // A daemon waiting for that (unreachable) database: its command line no longer shows the URL.
  std::vector<std::string> env = IsolatedRunEnv("");
  ChildProcess daemon({kBinary, "run", "--database-url=" + url}, env);
  ASSERT_TRUE(daemon.WaitForOutput("waiting for PostgreSQL", 30s)) << daemon.Output();
  std::ifstream in("/proc/" + std::to_string(daemon.pid()) + "/cmdline");
  std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(cmdline, HasSubstr("--database-url="));
  EXPECT_THAT(cmdline, Not(HasSubstr("pw-on-the-cli")));
  EXPECT_THAT(cmdline, Not(HasSubstr("127.0.0.1:1")));
  EXPECT_THAT(daemon.Output(), HasSubstr("--database-url puts the database URL"));
  daemon.Signal(SIGTERM);
  EXPECT_EQ(daemon.Wait(20s), 0) << daemon.Output();
}

// The configuration files an installation starts from (the .deb's, the Kubernetes ConfigMaps)
// turn no mock engine on and name no default provider.
TEST(CliE2E, ThePackagedConfigurationsEnableNoMockEngine) {
  for (const char* file :
       {"systemd/workflowd.yaml", "deploy/base/workflowd.yaml",
        "deploy/overlays/dev/workflowd.yaml", "deploy/overlays/prod/workflowd.yaml"}) {
    const std::string path = (kRepository / file).string();
    auto [code, out] = RunCommand({kBinary, "config", "--config", path},
                                  {"WORKFLOWD_DATABASE_URL=postgresql://u:p@db/wfd"});
    ASSERT_EQ(code, 0) << file << ":\n" << out;
    EXPECT_THAT(out, HasSubstr("providers:\n  default: \"\"\n  mock:\n    enabled: false\n"))
        << file << ":\n"
        << out;
  }
}

// `workflowd run` with the .deb's configuration file (pointed at the test's PostgreSQL and Kafka
// by the environment) starts no mock engine: a definition naming the mock (applied where the mock
// was on) gets its execution recorded as failed with provider_not_found, never started.
TEST(CliE2E, RunWithThePackagedConfigurationStartsNoMockEngine) {
  testing::DaemonHarness h(kBinary);  // database, topics; definitions applied with the mock on
  h.ApplyDefinitions("definitions:\n" +
                     testing::DefinitionYaml("on-mock", "acme", "prod", "customer.created"));
  ASSERT_EQ(h.Count("SELECT count(*) FROM workflow_definitions WHERE provider = 'mock'"), 1);

  const std::string packaged = (kRepository / "systemd" / "workflowd.yaml").string();
  ChildProcess daemon(
      {kBinary, "run", "--config", packaged},
      {"WORKFLOWD_DATABASE_URL=" + h.dsn(), "WORKFLOWD_KAFKA_BROKERS=" + h.brokers(),
       "WORKFLOWD_KAFKA_GROUP_ID=" + h.group(), "WORKFLOWD_KAFKA_TOPICS=" + h.topic(),
       "WORKFLOWD_KAFKA_DLQ_TOPIC=" + h.dlq_topic(), "WORKFLOWD_ADMIN_LISTEN=127.0.0.1:0"});
  ASSERT_TRUE(daemon.WaitForOutput("started: ", 60s)) << daemon.Output();
  EXPECT_THAT(daemon.Output(), HasSubstr("workflow providers: none enabled"));
  EXPECT_THAT(daemon.Output(), Not(HasSubstr("mock provider is enabled")));

  testing::TestProducer producer(h.brokers());
  producer.Produce(h.topic(), testing::Structured("evt-1", "acme", "prod", "customer.created",
                                                  {{"customer_id", "c1"}}));
  producer.Flush();
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions WHERE status = 'failed' AND "
                           "error->>'code' = 'provider_not_found' AND error->>'message' LIKE "
                           "'%\"mock\" not found (registered: none)%'",
                           1, 60s),
            1)
      << daemon.Output();
  EXPECT_EQ(h.Count("SELECT count(*) FROM workflow_executions WHERE provider_execution_id IS NOT "
                    "NULL OR started_at IS NOT NULL"),
            0);
  daemon.Signal(SIGTERM);
  EXPECT_EQ(daemon.Wait(40s), 0) << daemon.Output();
}

TEST(CliE2E, RunWithAnInvalidConfigExitsTwoAtOnce) {
  TempFile config("kafka:\n  topics: [events]\n  dlq_topic: events\nadmin: {listen: nowhere}\n");
  auto started = std::chrono::steady_clock::now();
  auto [code, out] = RunCommand({kBinary, "run", "--config", config.path()},
                                {"WORKFLOWD_DATABASE_URL=postgresql://u:p@127.0.0.1:1/wfd"}, 10s);
  EXPECT_EQ(code, 2) << out;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_THAT(out, HasSubstr("kafka.dlq_topic"));
  EXPECT_THAT(out, HasSubstr("admin.listen: expected HOST:PORT"));
  EXPECT_THAT(out, Not(HasSubstr("started")));

  // No database URL at all is a configuration error too, not a runtime one.
  std::tie(code, out) = RunCommand({kBinary, "run"}, {"WORKFLOWD_DATABASE_URL="}, 10s);
  EXPECT_EQ(code, 2) << out;
  EXPECT_THAT(out, HasSubstr("WORKFLOWD_DATABASE_URL"));
}

// --- workflowd definitions validate --------------------------------------------------------------

constexpr char kValidDefinitions[] = R"(definitions:
  - id: onboarding
    tenant_id: acme
    environment_id: prod
    name: Onboarding
    trigger:
      type: event
      event_name: customer.created
      conditions:
        - {field: data.customer.country, op: in, value: [US, CA]}
    steps:
      - {id: plan, order: 1, type: assign_plan, config: {plan_id: starter}}
      - {id: wallet, order: 2, type: create_wallet, depends_on: [plan]}
  - id: invoice-follow-up
    tenant_id: acme
    environment_id: prod
    name: Invoice follow-up
    trigger: {type: event, event_name: invoice.paid}
    steps: [{id: mail, order: 1, type: send_email}]
)";

TEST(CliE2E, DefinitionsValidateAcceptsValidFiles) {
  TempFile yaml(kValidDefinitions);
  TempFile json(R"({"tenant_id": "globex", "environment_id": "dev", "name": "J",
                    "trigger": {"type": "event", "event_name": "x.y"},
                    "steps": [{"id": "s", "order": 1, "type": "grant_credits"}]})",
                ".json");
  auto [code, out] =
      RunCommand({kBinary, "definitions", "validate", yaml.path(), json.path()}, WithMockDefault());
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr(yaml.path() + ": 2 definition(s) valid"));
  EXPECT_THAT(out, HasSubstr(json.path() + ": 1 definition(s) valid"));
}

TEST(CliE2E, DefinitionsValidateNamesEveryProblemWithFileAndField) {
  TempFile good(kValidDefinitions);
  TempFile bad(R"(- id: fine
  tenant_id: acme
  environment_id: prod
  name: Fine
  trigger: {type: event, event_name: customer.created}
  steps: [{id: a, order: 1, type: assign_plan}]
- id: broken
  tenant_id: acme
  environment_id: prod
  name: Broken
  colour: blue
  trigger:
    type: event
    event_name: customer.created
    conditions:
      - {field: data.country, op: equals, value: US}
      - {field: data.total, op: gt, value: [1, 2]}
  steps:
    - {id: a, order: 1, type: assign_plan, depends_on: [b]}
    - {id: b, order: 2, type: launch_rocket, depends_on: [a]}
  retry_policy: {max_attempts: 99}
)");
  TempFile syntax("id: x\n  bad: [\n");
  auto [code, out] = RunCommand({kBinary, "definitions", "validate", good.path(), bad.path(),
                                 syntax.path(), "/nonexistent.yaml"},
                                WithMockDefault());
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr(good.path() + ": 2 definition(s) valid"));
  for (const std::string& problem : {
           bad.path() + ": [1].colour: unknown key \"colour\"",
           bad.path() + ": [1].trigger.conditions[0].op: unknown op \"equals\"",
           bad.path() + ": [1].trigger.conditions[1].value:",
           bad.path() + ": [1].steps[1].type:",
           bad.path() + ": [1].steps: circular dependency: a -> b -> a",
           bad.path() + ": [1].retry_policy.max_attempts: must be between 1 and 20",
           syntax.path() + ": invalid YAML",
           std::string("/nonexistent.yaml: cannot read the file"),
       }) {
    EXPECT_THAT(out, HasSubstr(problem)) << out;
  }
  EXPECT_THAT(out, Not(HasSubstr(bad.path() + ": [0]")))
      << "the valid definition of the bad file was blamed";
}

TEST(CliE2E, DefinitionsValidateReadsStdin) {
  TempFile bad(R"({"id": "Not An Id", "tenant_id": "acme", "environment_id": "prod", "name": "n",
                   "trigger": {"type": "event", "event_name": "e"},
                   "steps": [{"id": "s", "order": 1, "type": "assign_plan"}]})",
               ".json");
  auto [code, out] =
      RunCommand({"/bin/sh", "-c", kBinary + " definitions validate - < " + bad.path()});
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("-: id: \"Not An Id\" must match"));
}

// Checked against the example configuration, which turns the mock engine on for the demo.
TEST(CliE2E, TheExampleDefinitionsAreValid) {
  std::vector<std::string> argv = {kBinary, "definitions", "validate", "--config",
                                   (kExamples / "workflowd.yaml").string()};
  for (const auto& entry : std::filesystem::directory_iterator(kExamples / "definitions")) {
    argv.push_back(entry.path().string());
  }
  ASSERT_GT(argv.size(), 5u) << "no example definitions in " << kExamples;
  auto [code, out] = RunCommand(argv);
  EXPECT_EQ(code, 0) << out;
}

// --- workflowd definitions apply -----------------------------------------------------------------

struct DefinitionRow {
  std::string id;
  std::string name;
  int version = 0;
  std::string created_by;
  std::string updated_by;
};

std::vector<DefinitionRow> DefinitionRows(const std::string& dsn) {
  pqxx::connection c(dsn);
  pqxx::read_transaction t(c);
  std::vector<DefinitionRow> rows;
  for (const auto& r :
       t.exec("SELECT id, name, version, created_by, updated_by FROM workflow_definitions "
              "ORDER BY name")) {
    rows.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<int>(),
                    r[3].as<std::string>(), r[4].as<std::string>()});
  }
  return rows;
}

int VersionRows(const std::string& dsn, const std::string& id) {
  pqxx::connection c(dsn);
  pqxx::read_transaction t(c);
  return t
      .exec1(
          "SELECT count(*) FROM workflow_definition_versions WHERE "
          "definition_id = " +
          t.quote(id))[0]
      .as<int>();
}

std::string VersionDocument(const std::string& dsn, const std::string& id, int version) {
  pqxx::connection c(dsn);
  pqxx::read_transaction t(c);
  return t
      .exec1("SELECT document::text FROM workflow_definition_versions WHERE definition_id = " +
             t.quote(id) + " AND version = " + std::to_string(version))[0]
      .as<std::string>();
}

TEST(CliE2E, DefinitionsApplyCreatesThenLeavesUnchangedThenVersionsChanges) {
  TestDatabase db;
  const std::vector<std::string> env = WithMockDefault({"WORKFLOWD_DATABASE_URL=" + db.dsn()});
  auto [code, out] = RunCommand({kBinary, "migrate"}, env);
  ASSERT_EQ(code, 0) << out;
  TempFile file(kValidDefinitions);

  // 1. Created, version 1 each, with one row in workflow_definition_versions.
  std::tie(code, out) =
      RunCommand({kBinary, "definitions", "apply", "--actor", "ci-bot", file.path()}, env);
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("created onboarding v1 acme/prod \"Onboarding\""));
  EXPECT_THAT(out, HasSubstr("created invoice-follow-up v1 acme/prod \"Invoice follow-up\""));
  auto rows = DefinitionRows(db.dsn());  // ordered by name: invoice-follow-up, onboarding
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, "invoice-follow-up");
  EXPECT_EQ(rows[1].id, "onboarding");
  for (const auto& r : rows) {
    EXPECT_EQ(r.version, 1) << r.id;
    EXPECT_EQ(r.created_by, "ci-bot");
    EXPECT_EQ(VersionRows(db.dsn(), r.id), 1) << r.id;
  }

  // 2. Applying the same file again changes nothing.
  std::tie(code, out) = RunCommand({kBinary, "definitions", "apply", file.path()}, env);
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("unchanged onboarding v1 acme/prod \"Onboarding\""));
  EXPECT_THAT(out, HasSubstr("unchanged invoice-follow-up v1 acme/prod \"Invoice follow-up\""));
  EXPECT_THAT(out, Not(HasSubstr("created")));
  EXPECT_THAT(out, Not(HasSubstr("updated")));
  rows = DefinitionRows(db.dsn());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].version, 1);
  EXPECT_EQ(rows[1].updated_by, "ci-bot");  // untouched by the second apply
  EXPECT_EQ(VersionRows(db.dsn(), "onboarding"), 1);

  // 3. A changed condition makes version 2; version 1 stays for executions created with it.
  std::string changed = kValidDefinitions;
  changed.replace(changed.find("[US, CA]"), 8, "[US, CA, MX]");
  file.Write(changed);
  std::tie(code, out) =
      RunCommand({kBinary, "definitions", "apply", "--actor", "alice", file.path()}, env);
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("updated onboarding v2 acme/prod \"Onboarding\""));
  EXPECT_THAT(out, HasSubstr("unchanged invoice-follow-up v1"));
  rows = DefinitionRows(db.dsn());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].version, 2);
  EXPECT_EQ(rows[1].created_by, "ci-bot");
  EXPECT_EQ(rows[1].updated_by, "alice");
  EXPECT_EQ(rows[0].version, 1);
  EXPECT_EQ(VersionRows(db.dsn(), "onboarding"), 2);
  EXPECT_EQ(VersionRows(db.dsn(), "invoice-follow-up"), 1);
  EXPECT_THAT(VersionDocument(db.dsn(), "onboarding", 2), HasSubstr("\"MX\""));
  EXPECT_THAT(VersionDocument(db.dsn(), "onboarding", 1), Not(HasSubstr("\"MX\"")));

  // 4. The daemon loads what was applied.
  ChildProcess daemon({kBinary, "run"}, IsolatedRunEnv(db.dsn()));
  EXPECT_TRUE(daemon.WaitForOutput("definitions=2", 30s)) << daemon.Output();
  daemon.Signal(SIGTERM);
  EXPECT_EQ(daemon.Wait(20s), 0) << daemon.Output();
}

// A definition without an id is created with a generated id and found again by (tenant,
// environment, name) on the next apply; the daemon must be able to load it.
TEST(CliE2E, DefinitionsApplyWithoutAnIdMatchesByTenantEnvironmentAndName) {
  TestDatabase db;
  const std::vector<std::string> env = WithMockDefault({"WORKFLOWD_DATABASE_URL=" + db.dsn()});
  auto [code, out] = RunCommand({kBinary, "migrate"}, env);
  ASSERT_EQ(code, 0) << out;
  TempFile file(
      "tenant_id: acme\nenvironment_id: prod\nname: No id\n"
      "trigger: {type: event, event_name: customer.created}\n"
      "steps: [{id: a, order: 1, type: assign_plan}]\n");

  std::tie(code, out) = RunCommand({kBinary, "definitions", "apply", file.path()}, env);
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, ::testing::ContainsRegex("created wf_[0-9A-Za-z]+ v1 acme/prod \"No id\""));
  auto rows = DefinitionRows(db.dsn());
  ASSERT_EQ(rows.size(), 1u);
  const std::string id = rows[0].id;

  std::tie(code, out) = RunCommand({kBinary, "definitions", "apply", file.path()}, env);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("unchanged " + id + " v1 acme/prod \"No id\""));

  ChildProcess daemon({kBinary, "run"}, IsolatedRunEnv(db.dsn()));
  EXPECT_TRUE(daemon.WaitForOutput("definitions=1", 30s)) << daemon.Output();
  daemon.Signal(SIGTERM);
  EXPECT_EQ(daemon.Wait(20s), 0) << daemon.Output();
}

TEST(CliE2E, DefinitionsApplyRefusesInvalidFilesAndForeignIdsWithoutWriting) {
  TestDatabase db;
  const std::vector<std::string> env = WithMockDefault({"WORKFLOWD_DATABASE_URL=" + db.dsn()});
  auto [code, out] = RunCommand({kBinary, "migrate"}, env);
  ASSERT_EQ(code, 0) << out;

  // One invalid file: nothing of any file is applied.
  TempFile good(kValidDefinitions);
  TempFile bad(
      "tenant_id: acme\nenvironment_id: prod\nname: x\ntrigger: {type: event}\n"
      "steps: [{id: a, order: 1, type: assign_plan}]\n");
  std::tie(code, out) = RunCommand({kBinary, "definitions", "apply", good.path(), bad.path()}, env);
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr(bad.path() + ": trigger.event_name: required"));
  EXPECT_TRUE(DefinitionRows(db.dsn()).empty());

  // An id that belongs to another tenant x environment is refused, and the whole apply with it.
  std::tie(code, out) = RunCommand({kBinary, "definitions", "apply", good.path()}, env);
  ASSERT_EQ(code, 0) << out;
  TempFile foreign(
      "id: onboarding\ntenant_id: globex\nenvironment_id: prod\nname: Takeover\n"
      "trigger: {type: event, event_name: customer.created}\n"
      "steps: [{id: a, order: 1, type: assign_plan}]\n");
  std::tie(code, out) = RunCommand({kBinary, "definitions", "apply", foreign.path()}, env);
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("\"onboarding\" is already used in another tenant or environment"));
  auto rows = DefinitionRows(db.dsn());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].name, "Onboarding");
  EXPECT_EQ(rows[1].version, 1);

  // A definition its provider would refuse, or for a provider this daemon does not offer, is
  // refused at apply (before, each of its executions failed at dispatch).
  TempFile unrunnable(
      "- id: needs-temporal\n  tenant_id: acme\n  environment_id: prod\n  name: T\n"
      "  provider: temporal\n  trigger: {type: event, event_name: customer.created}\n"
      "  steps: [{id: a, order: 1, type: assign_plan}]\n"
      "- id: bad-mock\n  tenant_id: acme\n  environment_id: prod\n  name: M\n"
      "  provider_config: {mock: {outcome: explode}}\n"
      "  trigger: {type: event, event_name: customer.created}\n"
      "  steps: [{id: a, order: 1, type: assign_plan}]\n");
  std::tie(code, out) = RunCommand({kBinary, "definitions", "apply", unrunnable.path()}, env);
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr(unrunnable.path() +
                             ": definition 0 (\"T\"): provider: \"temporal\" is not available "
                             "(available: mock)"));
  EXPECT_THAT(out, HasSubstr(unrunnable.path() + ": definition 1 (\"M\"): provider mock: "
                                                 "provider_config.mock.outcome: \"explode\""));
  EXPECT_EQ(DefinitionRows(db.dsn()).size(), 2u);
  // The same offline, and with the mock provider switched off there is no provider at all.
  std::tie(code, out) =
      RunCommand({kBinary, "definitions", "validate", unrunnable.path()}, WithMockDefault());
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("\"temporal\" is not available (available: mock)"));
  // A draft (or a disabled definition) does not run: it may name a provider to come.
  TempFile draft(
      "id: later\ntenant_id: acme\nenvironment_id: prod\nname: Later\nstatus: draft\n"
      "provider: temporal\ntrigger: {type: event, event_name: customer.created}\n"
      "steps: [{id: a, order: 1, type: assign_plan}]\n");
  std::tie(code, out) = RunCommand({kBinary, "definitions", "validate", draft.path()});
  EXPECT_EQ(code, 0) << out;
  // The mock engine is off by default: a definition naming it is refused, saying how to turn it on.
  TempFile on_mock(
      "id: on-mock\ntenant_id: acme\nenvironment_id: prod\nname: On mock\nprovider: mock\n"
      "trigger: {type: event, event_name: customer.created}\n"
      "steps: [{id: a, order: 1, type: assign_plan}]\n");
  std::tie(code, out) = RunCommand({kBinary, "definitions", "apply", on_mock.path()},
                                   {"WORKFLOWD_DATABASE_URL=" + db.dsn()});
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr(on_mock.path() +
                             ": definition 0 (\"On mock\"): provider: \"mock\" is not available "
                             "(no provider is enabled: turn one on in the configuration, e.g. "
                             "providers.mock.enabled: true for the demo engine)"));
  EXPECT_EQ(DefinitionRows(db.dsn()).size(), 2u);

  // Without a database URL, apply is a configuration error.
  std::tie(code, out) =
      RunCommand({kBinary, "definitions", "apply", good.path()}, {"WORKFLOWD_DATABASE_URL="});
  EXPECT_EQ(code, 2) << out;
}

// No built-in provider: a definition names one, or the configuration names the default. What is
// filled in is stored, so a later change of the default does not move applied definitions.
TEST(CliE2E, ADefinitionWithoutAProviderNeedsAConfiguredDefault) {
  TempFile file(kValidDefinitions);
  auto [code, out] = RunCommand({kBinary, "definitions", "validate", file.path()});
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(
      out, HasSubstr(file.path() + ": definitions[0].provider: required: definition \"Onboarding\" "
                                   "names no provider and no default provider is configured; add "
                                   "\"provider\": \"<engine>\" to it, or set providers.default in "
                                   "workflowd's configuration"));
  EXPECT_THAT(out, HasSubstr(file.path() + ": definitions[1].provider: required: definition "
                                           "\"Invoice follow-up\""));
  // The default named by a config file.
  TempFile config("providers: {default: mock, mock: {enabled: true}}\n");
  std::tie(code, out) =
      RunCommand({kBinary, "definitions", "validate", "--config", config.path(), file.path()});
  EXPECT_EQ(code, 0) << out;
  // A default that is not enabled is a configuration error.
  std::tie(code, out) = RunCommand({kBinary, "definitions", "validate", file.path()},
                                   {"WORKFLOWD_PROVIDERS_DEFAULT=mock"});
  EXPECT_EQ(code, 2) << out;
  EXPECT_THAT(out, HasSubstr("providers.default: \"mock\" is not enabled"));

  // Applied with the default: stored naming it.
  TestDatabase db;
  std::tie(code, out) = RunCommand({kBinary, "migrate"}, {"WORKFLOWD_DATABASE_URL=" + db.dsn()});
  ASSERT_EQ(code, 0) << out;
  std::tie(code, out) = RunCommand({kBinary, "definitions", "apply", file.path()},
                                   {"WORKFLOWD_DATABASE_URL=" + db.dsn()});
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("names no provider and no default provider is configured"));
  EXPECT_TRUE(DefinitionRows(db.dsn()).empty());
  std::tie(code, out) = RunCommand({kBinary, "definitions", "apply", file.path()},
                                   WithMockDefault({"WORKFLOWD_DATABASE_URL=" + db.dsn()}));
  ASSERT_EQ(code, 0) << out;
  pqxx::connection c(db.dsn());
  pqxx::read_transaction t(c);
  EXPECT_EQ(
      t.exec1("SELECT count(*) FROM workflow_definitions WHERE provider = 'mock'")[0].as<int>(), 2);
}

}  // namespace
}  // namespace workflowd
