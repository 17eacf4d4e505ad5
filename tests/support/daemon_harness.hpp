// Runs the built workflowd binary against the real PostgreSQL and Kafka for end-to-end tests: a
// fresh database, unique topics and consumer group, a config file, definitions applied with the
// CLI, the daemon's admin endpoint for metrics and health.
#pragma once

#include <httplib.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <pqxx/pqxx>
#include <regex>
#include <string>
#include <thread>

#include "kafka_test_client.hpp"
#include "process.hpp"
#include "test_database.hpp"

namespace workflowd::testing {

class DaemonHarness {
 public:
  explicit DaemonHarness(std::string binary, std::string extra_config = "")
      : binary_(std::move(binary)), brokers_(RequireEnv("WORKFLOWD_TEST_KAFKA_BROKERS")) {
    std::string suffix = RandomSuffix();
    topic_ = "wfd-events-" + suffix;
    dlq_topic_ = "wfd-dlq-" + suffix;
    group_ = "wfd-group-" + suffix;
    config_path_ = ::testing::TempDir() + "/workflowd-" + suffix + ".yaml";
    std::ofstream(config_path_) << "kafka:\n"
                                << "  brokers: " << brokers_ << "\n"
                                << "  group_id: " << group_ << "\n"
                                << "  topics: [" << topic_ << "]\n"
                                << "  dlq_topic: " << dlq_topic_ << "\n"
                                << "  batch_timeout: 50ms\n"
                                << "  commit_interval: 200ms\n"
                                << "  properties: {topic.metadata.refresh.interval.ms: \"1000\", "
                                   "session.timeout.ms: \"2000\", heartbeat.interval.ms: \"500\"}\n"
                                << "matching: {resync_interval: 2s}\n"
                                << "admin: {listen: \"127.0.0.1:0\"}\n"
                                << "shutdown_timeout: 15s\n"
                                // The mock engine is off by default; these tests run on it. A
                                // providers section in extra_config adds to this one.
                                << "providers: {default: mock, mock: {enabled: true}}\n"
                                << extra_config;
    auto [code, out] = Cli({"migrate"});
    if (code != 0) ADD_FAILURE() << "migrate failed:\n" << out;
  }

  ~DaemonHarness() { std::remove(config_path_.c_str()); }

  std::vector<std::string> Env() const { return {"WORKFLOWD_DATABASE_URL=" + db_.dsn()}; }

  // Runs `workflowd <args> --config <file>`.
  std::pair<int, std::string> Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {binary_};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--config");
    argv.push_back(config_path_);
    return RunCommand(argv, Env());
  }

  // Writes `yaml` to a file and runs `workflowd definitions apply`; fails the test on error.
  std::string ApplyDefinitions(const std::string& yaml) {
    std::string path = ::testing::TempDir() + "/defs-" + RandomSuffix() + ".yaml";
    std::ofstream(path) << yaml;
    auto [code, out] = Cli({"definitions", "apply", path});
    EXPECT_EQ(code, 0) << out;
    std::remove(path.c_str());
    return out;
  }

  // Starts the daemon and waits until it has loaded its definitions and serves its admin port.
  std::unique_ptr<ChildProcess> Start() {
    auto p = std::make_unique<ChildProcess>(
        std::vector<std::string>{binary_, "run", "--config", config_path_}, Env());
    if (!p->WaitForOutput("workflowd 0.", std::chrono::seconds(60))) {
      ADD_FAILURE() << "daemon did not start:\n" << p->Output();
      return p;
    }
    std::smatch m;
    std::string out = p->Output();
    static const std::regex kPort("admin endpoint listening on [0-9.]+:([0-9]+)");
    if (std::regex_search(out, m, kPort)) admin_port_ = std::stoi(m[1]);
    return p;
  }

  // Like Start(), with `extra_env` ("K=V", e.g. NOTIFY_SOCKET) added to the daemon's environment
  // and the command run through `launcher` when given (e.g. {"/bin/sh", "-c", "...; exec \"$0\"
  // \"$@\""} to set variables that need the daemon's own pid, such as WATCHDOG_PID).
  std::unique_ptr<ChildProcess> Start(const std::vector<std::string>& extra_env,
                                      const std::vector<std::string>& launcher = {}) {
    std::vector<std::string> argv = launcher;
    for (const auto& a : {binary_, std::string("run"), std::string("--config"), config_path_}) {
      argv.push_back(a);
    }
    std::vector<std::string> env = Env();
    env.insert(env.end(), extra_env.begin(), extra_env.end());
    auto p = std::make_unique<ChildProcess>(argv, env);
    if (!p->WaitForOutput("workflowd 0.", std::chrono::seconds(60))) {
      ADD_FAILURE() << "daemon did not start:\n" << p->Output();
      return p;
    }
    std::smatch m;
    std::string out = p->Output();
    static const std::regex kPort("admin endpoint listening on [0-9.]+:([0-9]+)");
    if (std::regex_search(out, m, kPort)) admin_port_ = std::stoi(m[1]);
    return p;
  }

  // HTTP GET on the admin endpoint of the last daemon started (or of `port`): {status, body};
  // status -1 when unreachable.
  std::pair<int, std::string> Get(const std::string& path, int port = 0) {
    httplib::Client client("127.0.0.1", port != 0 ? port : admin_port_);
    client.set_connection_timeout(2, 0);
    auto res = client.Get(path.c_str());
    if (!res) return {-1, ""};
    return {res->status, res->body};
  }

  // The value of one sample line of /metrics ("name{labels}" exactly), or -1 when absent.
  double Metric(const std::string& sample, int port = 0) {
    auto [status, body] = Get("/metrics", port);
    std::istringstream in(body);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(sample + " ", 0) == 0) return std::stod(line.substr(sample.size() + 1));
    }
    return -1;
  }

  int Count(const std::string& sql) {
    pqxx::connection c(db_.dsn());
    pqxx::read_transaction r(c);
    return r.exec(sql)[0][0].as<int>();
  }

  void Exec(const std::string& sql) { db_.Exec(sql); }

  pqxx::result Query(const std::string& sql) {
    pqxx::connection c(db_.dsn());
    pqxx::read_transaction r(c);
    return r.exec(sql);
  }

  // Rows whose reference the schema no longer enforces with a foreign key (migration 0003) and
  // that the daemon keeps by construction: steps and history chunks of an execution that does not
  // exist, executions of a definition that does not exist. Zero after every run.
  int BrokenReferences() {
    return Count(
        "SELECT (SELECT count(*) FROM step_executions s WHERE NOT EXISTS (SELECT 1 FROM "
        "workflow_executions e WHERE e.id = s.execution_id)) + (SELECT count(*) FROM "
        "execution_history_chunks c WHERE NOT EXISTS (SELECT 1 FROM workflow_executions e WHERE "
        "e.id = c.execution_id)) + (SELECT count(*) FROM workflow_executions e WHERE NOT EXISTS "
        "(SELECT 1 FROM workflow_definitions d WHERE d.id = e.workflow_id))");
  }

  // Executions whose stored history is not their events 0, 1, ... each once.
  int BrokenHistories() {
    return Count(
        "SELECT count(*) FROM (SELECT execution_id FROM execution_history GROUP BY execution_id "
        "HAVING count(*) <> max(seq) + 1 OR count(DISTINCT seq) <> count(*)) x");
  }

  // Polls `sql` (a count) until it equals `want` or `timeout` passes; returns the last value.
  int WaitForCount(const std::string& sql, int want, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int got = -1;
    while (std::chrono::steady_clock::now() < deadline) {
      got = Count(sql);
      if (got == want) return got;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return got;
  }

  const std::string& topic() const { return topic_; }
  const std::string& dlq_topic() const { return dlq_topic_; }
  const std::string& group() const { return group_; }
  const std::string& brokers() const { return brokers_; }
  const std::string& dsn() const { return db_.dsn(); }
  int admin_port() const { return admin_port_; }

 private:
  std::string binary_;
  std::string brokers_;
  TestDatabase db_;
  std::string topic_;
  std::string dlq_topic_;
  std::string group_;
  std::string config_path_;
  int admin_port_ = 0;
};

}  // namespace workflowd::testing
