#include "workflowd/daemon/config.hpp"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <cstdio>
#include <fstream>
#include <map>

namespace workflowd::daemon {
namespace {

using namespace std::chrono_literals;

const Environment kDbEnv = {{"WORKFLOWD_DATABASE_URL", "postgresql://u:s3cret@127.0.0.1:5432/db"}};

std::vector<std::string> ProblemsOf(const std::string& text, const Environment& env = kDbEnv) {
  try {
    ParseConfig(text, "workflowd.yaml", env);
  } catch (const ConfigError& e) {
    return e.problems();
  }
  return {};
}

bool Mentions(const std::vector<std::string>& problems, const std::string& text) {
  for (const auto& p : problems) {
    if (p.find(text) != std::string::npos) return true;
  }
  return false;
}

TEST(Config, DefaultsNeedOnlyTheDatabase) {
  auto c = ParseConfig("", "defaults", kDbEnv);
  EXPECT_EQ(c.database.url, "postgresql://u:s3cret@127.0.0.1:5432/db");
  EXPECT_EQ(c.kafka.group_id, "workflowd");
  EXPECT_EQ(c.kafka.batch_size, 2000u);
  EXPECT_EQ(c.dispatch.workers, 2u);
  EXPECT_EQ(c.poll.workers, 2u);
  EXPECT_EQ(c.kafka.batch_timeout, 100ms);
  EXPECT_EQ(c.shutdown_timeout, 30s);
  EXPECT_FALSE(c.instance_id.empty());
  auto problems = ProblemsOf("", {});
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("WORKFLOWD_DATABASE_URL"), std::string::npos);
}

TEST(Config, YamlFileWithEverySection) {
  auto c = ParseConfig(R"(
kafka:
  brokers: kafka-1:9092,kafka-2:9092
  group_id: wfd-prod
  topics: [customers, subscriptions]
  dlq_topic: wfd.dlq
  format: flat
  flat: {id: event_id, event_name: name, tenant: meta.tenant}
  batch_size: 1000
  batch_timeout: 250ms
  properties:
    security.protocol: SASL_SSL
    fetch.max.bytes: "52428800"
matching: {resync_interval: 5m}
admin: {listen: "127.0.0.1:9191"}
log: {level: debug, format: json}
shutdown_timeout: 20s
instance_id: replica-a
)",
                       "workflowd.yaml", kDbEnv);
  EXPECT_EQ(c.kafka.brokers, "kafka-1:9092,kafka-2:9092");
  EXPECT_EQ(c.kafka.topics, (std::vector<std::string>{"customers", "subscriptions"}));
  EXPECT_EQ(c.kafka.format, "flat");
  EXPECT_EQ(c.kafka.flat.id, "event_id");
  EXPECT_EQ(c.kafka.flat.tenant, "meta.tenant");
  EXPECT_EQ(c.kafka.flat.environment, "environment_id");  // default kept
  EXPECT_EQ(c.kafka.batch_size, 1000u);
  EXPECT_EQ(c.kafka.batch_timeout, 250ms);
  EXPECT_EQ(c.kafka.properties.at("security.protocol"), "SASL_SSL");
  EXPECT_EQ(c.matching.resync_interval, 5min);
  EXPECT_EQ(c.admin.listen, "127.0.0.1:9191");
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_EQ(c.shutdown_timeout, 20s);
  EXPECT_EQ(c.instance_id, "replica-a");
}

TEST(Config, JsonIsAcceptedToo) {
  auto c = ParseConfig(R"({"kafka": {"topics": ["a"], "batch_size": 10}})", "c.json", kDbEnv);
  EXPECT_EQ(c.kafka.topics, (std::vector<std::string>{"a"}));
  EXPECT_EQ(c.kafka.batch_size, 10u);
}

TEST(Config, EnvironmentOverridesTheFile) {
  Environment env = kDbEnv;
  env["WORKFLOWD_KAFKA_BROKERS"] = "10.0.0.1:9092";
  env["WORKFLOWD_KAFKA_TOPICS"] = "x, y";
  env["WORKFLOWD_KAFKA_BATCH_TIMEOUT"] = "1s";
  env["WORKFLOWD_KAFKA_PROPERTY_SASL_PASSWORD"] = "hunter2";
  env["WORKFLOWD_LOG_LEVEL"] = "warn";
  auto c = ParseConfig("kafka: {brokers: file:9092, topics: [z]}\nlog: {level: debug}", "f", env);
  EXPECT_EQ(c.kafka.brokers, "10.0.0.1:9092");
  EXPECT_EQ(c.kafka.topics, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(c.kafka.batch_timeout, 1s);
  EXPECT_EQ(c.kafka.properties.at("sasl.password"), "hunter2");
  EXPECT_EQ(c.log.level, "warn");
}

TEST(Config, UnknownKeysAreNamedWithASuggestion) {
  auto problems = ProblemsOf("kafka:\n  brokrs: x\nmatchin: {}\n");
  EXPECT_TRUE(Mentions(problems, "kafka.brokrs: unknown key (did you mean kafka.brokers?)"));
  EXPECT_TRUE(Mentions(problems, "matchin: unknown key"));
}

TEST(Config, SecretsAreRefusedFromTheFile) {
  auto problems = ProblemsOf(
      "database: {url: 'postgresql://u:p@h/db'}\nkafka: {properties: {sasl.password: p}}");
  EXPECT_TRUE(Mentions(problems, "database.url: secrets are not read from the config file"));
  EXPECT_TRUE(Mentions(problems, "WORKFLOWD_KAFKA_PROPERTY_SASL_PASSWORD"));
}

TEST(Config, SecretFiles) {
  std::string url_file = ::testing::TempDir() + "/wfd-db-url";
  std::string props_file = ::testing::TempDir() + "/wfd-kafka.properties";
  std::ofstream(url_file) << "postgresql://u:fromfile@db:5432/w\n";
  std::ofstream(props_file) << "# secrets\nsasl.username = svc\nsasl.password=pw\n";
  auto c = ParseConfig(
      "database: {url_file: " + url_file + "}\nkafka: {properties_file: " + props_file + "}", "f",
      {});
  EXPECT_EQ(c.database.url, "postgresql://u:fromfile@db:5432/w");
  EXPECT_EQ(c.kafka.properties.at("sasl.username"), "svc");
  EXPECT_EQ(c.kafka.properties.at("sasl.password"), "pw");
  std::remove(url_file.c_str());
  std::remove(props_file.c_str());
}

TEST(Config, EveryInvalidValueIsReported) {
  auto problems = ProblemsOf(R"(
kafka:
  format: avro
  batch_size: -5
  batch_timeout: soon
  topics: []
  properties: {group.id: x}
admin: {listen: nowhere}
log: {level: loud}
)");
  EXPECT_TRUE(Mentions(problems, "kafka.format: \"avro\" is not one of auto, cloudevents, flat"));
  EXPECT_TRUE(Mentions(problems, "kafka.batch_size"));
  EXPECT_TRUE(Mentions(problems, "kafka.batch_timeout: \"soon\" is not a positive duration"));
  EXPECT_TRUE(Mentions(problems, "kafka.topics: at least one topic"));
  EXPECT_TRUE(Mentions(problems, "kafka.properties.group.id"));
  EXPECT_TRUE(Mentions(problems, "admin.listen"));
  EXPECT_TRUE(Mentions(problems, "log.level"));
  EXPECT_GE(problems.size(), 7u);
}

// providers.<name>.*: each provider's own limits; without them a provider follows dispatch.*.
TEST(Config, ProviderLimitsDefaultToTheDispatchSettings) {
  auto c = ParseConfig("dispatch: {max_in_flight: 32, call_timeout: 5s}", "defaults", kDbEnv);
  EXPECT_FALSE(c.provider_limits["mock"].max_in_flight.has_value());
  EXPECT_NE(DescribeConfig(c).find("max_in_flight: 64"), std::string::npos);  // x 2 workers
  EXPECT_EQ(c.provider_limits["mock"].breaker_failure_threshold, 5u);         // on by default
  c = ParseConfig(R"(
providers:
  mock:
    max_in_flight: 64
    call_timeout: 2s
    retry: {attempts: 3, initial_backoff: 20ms, max_backoff: 200ms}
    breaker: {failure_threshold: 4, failure_window: 2s, open_interval: 15s, drain_rate: 20,
              drain_ramp: 1m}
    polls_per_second: 0
)",
                  "workflowd.yaml",
                  {{"WORKFLOWD_DATABASE_URL", "postgresql://u@h/db"},
                   {"WORKFLOWD_PROVIDERS_MOCK_POLLS_PER_SECOND", "25"}});
  const auto& mock = c.provider_limits["mock"];
  EXPECT_EQ(mock.max_in_flight, 64u);
  EXPECT_EQ(mock.call_timeout, std::chrono::seconds(2));
  EXPECT_EQ(mock.retry_attempts, 3u);
  EXPECT_EQ(mock.retry_initial_backoff, std::chrono::milliseconds(20));
  EXPECT_EQ(mock.retry_max_backoff, std::chrono::milliseconds(200));
  EXPECT_EQ(mock.breaker_failure_threshold, 4u);
  EXPECT_EQ(mock.breaker_failure_window, std::chrono::seconds(2));
  EXPECT_EQ(mock.breaker_open_interval, std::chrono::seconds(15));
  EXPECT_EQ(mock.breaker_drain_rate, 20u);
  EXPECT_EQ(mock.breaker_drain_ramp, std::chrono::minutes(1));
  EXPECT_EQ(mock.polls_per_second, 25u);  // the environment wins
}

TEST(Config, ProviderLimitsAreValidated) {
  auto problems = ProblemsOf(R"(
dispatch: {lease: 10s, call_timeout: 1s}
providers:
  mock:
    max_in_flight: 0
    call_timeout: 6s
    retry: {initial_backoff: 2s, max_backoff: 1s}
    polls_per_second: -1
  mokc: {max_in_flight: 1}
)");
  EXPECT_TRUE(Mentions(problems, "providers.mock.max_in_flight: \"0\" is not a positive integer"));
  EXPECT_TRUE(Mentions(problems, "providers.mock.call_timeout: dispatch.lease must be at least"));
  EXPECT_TRUE(Mentions(problems, "providers.mock.retry.initial_backoff"));
  EXPECT_TRUE(Mentions(problems, "providers.mock.polls_per_second: \"-1\" is not a non-negative"));
  EXPECT_TRUE(Mentions(problems, "providers.mokc"));
}

// Quick retries happen within the call's deadline: a first backoff at least as long is refused.
TEST(Config, QuickRetriesMustFitInTheCallTimeout) {
  auto problems = ProblemsOf(R"(
dispatch: {lease: 10s, call_timeout: 1s}
providers:
  mock:
    retry: {attempts: 3, initial_backoff: 2s, max_backoff: 5s}
)");
  EXPECT_TRUE(Mentions(problems,
                       "providers.mock.retry.initial_backoff: must be shorter than "
                       "the provider's call_timeout (1000ms)"));
  // One attempt (no quick retry): any backoff is harmless.
  EXPECT_FALSE(Mentions(ProblemsOf(R"(
dispatch: {lease: 10s, call_timeout: 1s}
providers:
  mock:
    retry: {attempts: 1, initial_backoff: 2s, max_backoff: 5s}
)"),
                        "retry.initial_backoff"));
}

TEST(Config, DlqTopicMustNotBeConsumed) {
  EXPECT_TRUE(Mentions(ProblemsOf("kafka: {topics: [a, b], dlq_topic: b}"), "kafka.dlq_topic"));
}

TEST(Config, MalformedYaml) {
  auto problems = ProblemsOf("kafka: [unclosed");
  EXPECT_TRUE(Mentions(problems, "workflowd.yaml: not valid YAML/JSON"));
  EXPECT_TRUE(Mentions(ProblemsOf("- a\n- b\n"), "expected a map"));
}

TEST(Config, DescribeMasksSecrets) {
  Environment env = kDbEnv;
  env["WORKFLOWD_KAFKA_PROPERTY_SASL_PASSWORD"] = "hunter2";
  auto text = DescribeConfig(ParseConfig("", "d", env));
  EXPECT_EQ(text.find("s3cret"), std::string::npos) << text;
  EXPECT_EQ(text.find("hunter2"), std::string::npos) << text;
  EXPECT_NE(text.find("postgresql://u:***@127.0.0.1:5432/db"), std::string::npos) << text;
  EXPECT_EQ(MaskUrl("host=db password=abc user=u"), "host=db password=*** user=u");
}

// What libpq itself reads from a connection string (only what the string sets), or nullopt when it
// refuses it.
std::optional<std::map<std::string, std::string>> Libpq(const std::string& conninfo) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
  if (error != nullptr) PQfreemem(error);
  if (options == nullptr) return std::nullopt;
  std::map<std::string, std::string> values;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) values[o->keyword] = o->val;
  }
  PQconninfoFree(options);
  return values;
}

// MaskUrl(dsn) hides `secrets` (what libpq reads as password / sslpassword), and libpq reads the
// masked string exactly as the original except for those, which read "***".
void ExpectMasked(const std::string& dsn, const std::vector<std::string>& secrets) {
  SCOPED_TRACE(dsn);
  const auto original = Libpq(dsn);
  ASSERT_TRUE(original) << "libpq refuses the test's own DSN";
  std::map<std::string, std::string> expected = *original;
  for (const char* keyword : {"password", "sslpassword"}) {
    if (expected.contains(keyword)) expected[keyword] = "***";
  }
  const std::string masked = MaskUrl(dsn);
  for (const auto& secret : secrets) {
    EXPECT_EQ(masked.find(secret), std::string::npos) << "\"" << secret << "\" leaked: " << masked;
  }
  const auto reread = Libpq(masked);
  ASSERT_TRUE(reread) << masked;
  EXPECT_EQ(*reread, expected) << masked;
}

TEST(MaskUrl, PasswordInTheUserPartOfAUrl) {
  EXPECT_EQ(MaskUrl("postgresql://workflowd:s3cret@db.internal:5432/wfd"),
            "postgresql://workflowd:***@db.internal:5432/wfd");
  EXPECT_EQ(MaskUrl("postgres://u:p%40ss%3Aword@db/wfd"), "postgres://u:***@db/wfd");
  ExpectMasked("postgresql://u:s3cret@db:5432/wfd?sslmode=require", {"s3cret"});
  ExpectMasked("postgresql://u:p%40ss%3Aword@db/wfd", {"p%40ss", "p@ss"});
}

TEST(MaskUrl, PasswordInTheQueryOfAUrl) {
  EXPECT_EQ(MaskUrl("postgresql://u@db/wfd?password=s3cret&sslmode=require"),
            "postgresql://u@db/wfd?password=***&sslmode=require");
  ExpectMasked("postgresql://u@db:5432/wfd?password=s3cret", {"s3cret"});
  ExpectMasked("postgresql://db/wfd?sslmode=require&password=s3cret&application_name=x",
               {"s3cret"});
  // Both places at once; a percent-encoded keyword; the key's own password.
  ExpectMasked("postgresql://u:first1@db/wfd?password=second2", {"first1", "second2"});
  ExpectMasked("postgresql://u@db/wfd?pass%77ord=s3cret", {"s3cret"});
  ExpectMasked("postgresql://u@db/wfd?sslkey=/k.pem&sslpassword=keypass", {"keypass"});
}

TEST(MaskUrl, KeyValueFormWithBlanksQuotesAndEscapes) {
  EXPECT_EQ(MaskUrl("host=db password = s3cret user=u"), "host=db password = *** user=u");
  EXPECT_EQ(MaskUrl("host=db password='a b c' user=u"), "host=db password=*** user=u");
  ExpectMasked("host=db password = s3cret user=u", {"s3cret"});
  ExpectMasked("host=db password='correct horse battery' user=u", {"correct", "horse", "battery"});
  ExpectMasked("password='it\\'s s3cret' dbname=wfd", {"it", "s3cret"});
  ExpectMasked("host=db password=a\\ b\\ s3cret port=5432", {"s3cret"});
  ExpectMasked("  host=db\tpassword=\ts3cret  ", {"s3cret"});
  ExpectMasked("host=db sslkey=/k.pem sslpassword='fr3d w1lma'", {"fr3d", "w1lma"});
}

TEST(MaskUrl, NoSecretIsLeftAsItIs) {
  EXPECT_EQ(MaskUrl("postgresql://u@db:5432/wfd?sslmode=require"),
            "postgresql://u@db:5432/wfd?sslmode=require");
  EXPECT_EQ(MaskUrl("host=db user=u dbname='my db'"), "host=db user=u dbname='my db'");
  EXPECT_EQ(MaskUrl(""), "");
}

TEST(MaskUrl, WhatLibpqCannotParseIsMaskedWhole) {
  for (const std::string dsn :
       {"host=db password='s3cret", "postgresql://u@db/wfd?password=a=s3cret",
        "not a connection string s3cret", "host=db password",
        "postgresql://u@db/wfd?password=s3cret%zz"}) {
    EXPECT_FALSE(Libpq(dsn)) << dsn;
    EXPECT_EQ(MaskUrl(dsn), "***") << dsn;
  }
}

TEST(Config, AnUnparsableDatabaseUrlIsRefusedWithoutBeingQuoted) {
  auto problems = ProblemsOf("", {{"WORKFLOWD_DATABASE_URL", "host=db password='s3cret"}});
  ASSERT_TRUE(Mentions(problems, "database.url: not a connection string libpq accepts"));
  for (const auto& p : problems) EXPECT_EQ(p.find("s3cret"), std::string::npos) << p;
}

TEST(Config, OauthbearerConfigIsASecret) {
  // Refused from the file, like every secret property.
  auto problems = ProblemsOf(
      "kafka: {properties: {sasl.oauthbearer.config: 'principal=svc scope=x secret=tok3n'}}");
  EXPECT_TRUE(Mentions(problems,
                       "kafka.properties.sasl.oauthbearer.config: secrets are not read from the "
                       "config file; set WORKFLOWD_KAFKA_PROPERTY_SASL_OAUTHBEARER_CONFIG"));
  for (const auto& p : problems) EXPECT_EQ(p.find("tok3n"), std::string::npos) << p;
  // Taken from the environment, masked when printed.
  Environment env = kDbEnv;
  env["WORKFLOWD_KAFKA_PROPERTY_SASL_OAUTHBEARER_CONFIG"] = "principal=svc secret=tok3n";
  const Config c = ParseConfig("", "d", env);
  EXPECT_EQ(c.kafka.properties.at("sasl.oauthbearer.config"), "principal=svc secret=tok3n");
  const std::string text = DescribeConfig(c);
  EXPECT_EQ(text.find("tok3n"), std::string::npos) << text;
  EXPECT_NE(text.find("sasl.oauthbearer.config: \"***\""), std::string::npos) << text;
  EXPECT_TRUE(IsSecretKafkaProperty("sasl.oauthbearer.client.secret"));
  EXPECT_FALSE(IsSecretKafkaProperty("sasl.oauthbearer.token.endpoint.url"));
}

TEST(Config, TheMockProviderIsOffAndThereIsNoDefaultProvider) {
  const Config c = ParseConfig("", "defaults", kDbEnv);
  EXPECT_FALSE(c.mock_provider.enabled);
  EXPECT_EQ(c.default_provider, "");
  const std::string text = DescribeConfig(c);
  EXPECT_NE(text.find("providers:\n  default: \"\"\n  mock:\n    enabled: false"),
            std::string::npos)
      << text;
}

TEST(Config, TemporalSettingsAreReadAndCheckedAndTheApiKeyComesFromAFile) {
  const std::string key_file = ::testing::TempDir() + "/temporal-api-key";
  { std::ofstream(key_file) << "secret-key\n"; }
  const Config c = ParseConfig(
      "providers:\n  default: temporal\n  temporal:\n    address: cloud.example:7233\n"
      "    namespace: acme.a1b2\n    task_queue: onboarding\n    api_key_file: " +
          key_file +
          "\n    tls: {enabled: true, server_name: acme.example}\n    rpc: {timeout: 5s, attempts: "
          "4}\n"
          "    cancel_grace: 10s\n    search_attributes: false\n    max_in_flight: 32\n",
      "f", kDbEnv);
  EXPECT_EQ(c.temporal.address, "cloud.example:7233");
  EXPECT_EQ(c.temporal.namespace_name, "acme.a1b2");
  EXPECT_EQ(c.temporal.task_queue, "onboarding");
  EXPECT_EQ(c.temporal.api_key, "secret-key");
  EXPECT_TRUE(c.temporal.tls.enabled);
  EXPECT_EQ(c.temporal.tls.server_name, "acme.example");
  EXPECT_EQ(c.temporal.rpc_timeout, std::chrono::seconds(5));
  EXPECT_EQ(c.temporal.rpc_attempts, 4u);
  EXPECT_EQ(c.temporal.cancel_grace, std::chrono::seconds(10));
  EXPECT_FALSE(c.temporal.search_attributes);
  EXPECT_EQ(c.provider_limits.at("temporal").max_in_flight, 32u);
  const std::string text = DescribeConfig(c);
  EXPECT_EQ(text.find("secret-key"), std::string::npos) << text;
  EXPECT_NE(text.find("api_key_file: " + key_file), std::string::npos) << text;

  EXPECT_TRUE(Mentions(ProblemsOf("providers: {temporal: {address: 127.0.0.1:7233, api_key_file: " +
                                  key_file + "}}"),
                       "an API key is only sent over TLS"));
  EXPECT_TRUE(Mentions(ProblemsOf("providers: {temporal: {address: 127.0.0.1:7233, api_key_file: "
                                  "/nonexistent/key}}"),
                       "/nonexistent/key"));
  EXPECT_TRUE(Mentions(ProblemsOf("providers: {temporal: {address: localhost}}"),
                       "providers.temporal.address: \"localhost\" has no port"));
  // Polls of Temporal's runs start at 5 s unless set; the mock follows poll.min_interval.
  EXPECT_EQ(PollMinInterval(c, "temporal"), std::chrono::seconds(5));
  EXPECT_EQ(PollMinInterval(c, "mock"), std::chrono::milliseconds(200));
  const Config tuned = ParseConfig(
      "poll: {min_interval: 50ms}\nproviders: {temporal: {address: 127.0.0.1:7233, "
      "poll_min_interval: 300ms}}",
      "f", kDbEnv);
  EXPECT_EQ(PollMinInterval(tuned, "temporal"), std::chrono::milliseconds(300));
  EXPECT_EQ(PollMinInterval(tuned, "mock"), std::chrono::milliseconds(50));
  EXPECT_TRUE(Mentions(ProblemsOf("providers: {mock: {poll_min_interval: 2m}}"),
                       "providers.mock.poll_min_interval: must be positive and at most "
                       "poll.max_interval"));
  // Temporal's polls yield to a burst of its starts for up to poll.max_interval unless set; the
  // mock's never wait.
  EXPECT_EQ(PollYield(c, "temporal"), std::chrono::seconds(30));
  EXPECT_EQ(PollYield(c, "mock"), std::chrono::milliseconds(0));
  const Config yielding = ParseConfig(
      "poll: {max_interval: 1m}\nproviders: {temporal: {address: 127.0.0.1:7233}, mock: "
      "{poll_yield: 5s}}",
      "f", kDbEnv);
  EXPECT_EQ(PollYield(yielding, "temporal"), std::chrono::minutes(1));
  EXPECT_EQ(PollYield(yielding, "mock"), std::chrono::seconds(5));
  EXPECT_EQ(PollYield(ParseConfig("providers: {temporal: {address: 127.0.0.1:7233, poll_yield: "
                                  "0s}}",
                                  "f", kDbEnv),
                      "temporal"),
            std::chrono::milliseconds(0));
  EXPECT_NE(DescribeConfig(yielding).find("poll_yield: 5s"), std::string::npos)
      << DescribeConfig(yielding);
  EXPECT_TRUE(Mentions(ProblemsOf("providers: {mock: {poll_yield: soon}}"),
                       "providers.mock.poll_yield: \"soon\" is not a duration of 0s or more"));
  Environment env = kDbEnv;
  env["WORKFLOWD_PROVIDERS_TEMPORAL_ADDRESS"] = "127.0.0.1:7233";
  EXPECT_EQ(ParseConfig("", "d", env).temporal.address, "127.0.0.1:7233");
}

TEST(Config, TheDefaultProviderMustBeAnEnabledOne) {
  EXPECT_TRUE(Mentions(ProblemsOf("providers: {default: mock}"),
                       "providers.default: \"mock\" is not enabled; turn it on "
                       "(providers.mock.enabled: true"));
  EXPECT_TRUE(Mentions(ProblemsOf("providers: {default: step-functions}"),
                       "providers.default: \"step-functions\" is not a workflow provider of this "
                       "build (known: mock, temporal)"));
  EXPECT_TRUE(Mentions(ProblemsOf("providers: {default: temporal}"),
                       "providers.default: \"temporal\" is not configured; set "
                       "providers.temporal.address"));
  const Config c = ParseConfig("providers: {default: mock, mock: {enabled: true}}", "f", kDbEnv);
  EXPECT_EQ(c.default_provider, "mock");
  EXPECT_TRUE(c.mock_provider.enabled);
  Environment env = kDbEnv;
  env["WORKFLOWD_PROVIDERS_DEFAULT"] = "mock";
  env["WORKFLOWD_PROVIDERS_MOCK_ENABLED"] = "true";
  EXPECT_EQ(ParseConfig("", "d", env).default_provider, "mock");
}

TEST(Config, OfflineChecksNeedNoDatabase) {
  EXPECT_TRUE(Mentions(ProblemsOf("", {}), "database.url: not set"));
  const Config c = ParseConfig("providers: {mock: {enabled: true}}", "f", {}, ConfigUse::kOffline);
  EXPECT_TRUE(c.mock_provider.enabled);
  // A secret file that cannot be read is not read at all.
  EXPECT_NO_THROW(
      ParseConfig("database: {url_file: /nonexistent/url}", "f", {}, ConfigUse::kOffline));
}

TEST(Config, TheMockMisbehavesOnlyWhenConfigured) {
  const Config c = ParseConfig(R"(
providers:
  mock:
    enabled: true
    seed: 42
    latency: {distribution: long_tail, base: 200ms, tail_ratio: 0.05, tail: 5s}
    hang_ratio: 0.01
    max_calls_per_second: 500
    outages:
      - {after: 60s, duration: 30s, mode: unavailable}
      - {after: 5m, duration: 1m, mode: hang}
)",
                               "f", kDbEnv);
  const auto& m = c.mock_provider.misbehaviour;
  using providers::mock::Latency;
  using providers::mock::OutageMode;
  EXPECT_EQ(m.latency.kind, Latency::Kind::kLongTail);
  EXPECT_EQ(m.latency.base, 200ms);
  EXPECT_EQ(m.latency.tail_ratio, 0.05);
  EXPECT_EQ(m.latency.tail, 5s);
  EXPECT_EQ(m.hang_ratio, 0.01);
  EXPECT_EQ(m.max_calls_per_second, 500);
  EXPECT_EQ(m.seed, 42u);
  ASSERT_EQ(m.outages.size(), 2u);
  EXPECT_EQ(m.outages[0].after, 60s);
  EXPECT_EQ(m.outages[0].duration, 30s);
  EXPECT_EQ(m.outages[0].mode, OutageMode::kUnavailable);
  EXPECT_EQ(m.outages[1].after, 5min);
  EXPECT_EQ(m.outages[1].mode, OutageMode::kHang);
  const std::string text = DescribeConfig(c);
  EXPECT_NE(text.find("    latency:\n      distribution: long_tail\n      base: 200ms\n      "
                      "tail_ratio: 0.05\n      tail: 5s\n    hang_ratio: 0.01\n    "
                      "max_calls_per_second: 500\n    outages:\n      - {after: 1m, duration: "
                      "30s, mode: unavailable}\n      - {after: 5m, duration: 1m, mode: hang}\n    "
                      "seed: 42"),
            std::string::npos)
      << text;
  // Defaults: nothing at all.
  const Config d = ParseConfig("providers: {mock: {enabled: true}}", "f", kDbEnv);
  EXPECT_FALSE(d.mock_provider.misbehaviour.Any());
  EXPECT_FALSE(d.mock_provider.misbehaviour.seed.has_value());
  EXPECT_NE(DescribeConfig(d).find("    latency:\n      distribution: none\n    hang_ratio: 0\n"
                                   "    max_calls_per_second: 0\n    outages: []\n"),
            std::string::npos)
      << DescribeConfig(d);
}

TEST(Config, TheMockMisbehaviourFromTheEnvironment) {
  Environment env = kDbEnv;
  env["WORKFLOWD_PROVIDERS_MOCK_ENABLED"] = "true";
  env["WORKFLOWD_PROVIDERS_MOCK_LATENCY_DISTRIBUTION"] = "uniform";
  env["WORKFLOWD_PROVIDERS_MOCK_LATENCY_MIN"] = "50ms";
  env["WORKFLOWD_PROVIDERS_MOCK_LATENCY_MAX"] = "300ms";
  env["WORKFLOWD_PROVIDERS_MOCK_HANG_RATIO"] = "0.2";
  const auto& m = ParseConfig("", "d", env).mock_provider.misbehaviour;
  EXPECT_EQ(m.latency.kind, providers::mock::Latency::Kind::kUniform);
  EXPECT_EQ(m.latency.min, 50ms);
  EXPECT_EQ(m.latency.max, 300ms);
  EXPECT_EQ(m.hang_ratio, 0.2);
}

TEST(Config, TheMockMisbehaviourProblemsNameTheKey) {
  const auto problems = ProblemsOf(R"(
providers:
  mock:
    enabled: true
    seed: -1
    latency: {distribution: uniform, min: 300ms, max: 100ms, base: -5s}
    hang_ratio: 1.5
    max_calls_per_second: lots
    outages:
      - {after: 60s, duration: 30s, mode: unavailable}
      - {after: 70s, duration: 10s, mode: down}
      - {after: 10m, length: 30s}
      - 42
)");
  EXPECT_TRUE(Mentions(problems, "providers.mock.seed: \"-1\" is not an integer of 0 or more"));
  EXPECT_TRUE(Mentions(problems,
                       "providers.mock.latency.min: 300ms is more than providers.mock.latency.max "
                       "(100ms); swap them"))
      << ::testing::PrintToString(problems);
  EXPECT_TRUE(Mentions(problems, "providers.mock.latency.base: \"-5s\" is not a duration of 0s"));
  EXPECT_TRUE(Mentions(problems, "providers.mock.hang_ratio: 1.5 is not between 0 and 1"));
  EXPECT_TRUE(Mentions(problems, "providers.mock.max_calls_per_second: \"lots\" is not a number"));
  EXPECT_TRUE(Mentions(problems,
                       "providers.mock.outages[1].mode: \"down\" is not one of unavailable, "
                       "hang, throttle"));
  EXPECT_TRUE(Mentions(problems, "providers.mock.outages[1]: overlaps providers.mock.outages[0]"));
  EXPECT_TRUE(Mentions(problems,
                       "providers.mock.outages[2].length: unknown key (expected after, duration, "
                       "mode)"));
  EXPECT_TRUE(Mentions(problems, "providers.mock.outages[2].duration: missing"));
  EXPECT_TRUE(Mentions(problems, "providers.mock.outages[3]: expected a map"));
  EXPECT_TRUE(Mentions(ProblemsOf("providers: {mock: {enabled: true, latency: {distribution: "
                                  "gaussian}}}"),
                       "providers.mock.latency.distribution: \"gaussian\" is not one of none, "
                       "fixed, uniform, long_tail"));
  EXPECT_TRUE(Mentions(ProblemsOf("providers: {mock: {enabled: true, latency: {base: 1s}}}"),
                       "providers.mock.latency.base: set, but providers.mock.latency.distribution "
                       "is none"));
  EXPECT_TRUE(Mentions(ProblemsOf("providers: {mock: {enabled: true, outages: {after: 1s}}}"),
                       "providers.mock.outages: expected a list of windows"));
  EXPECT_TRUE(Mentions(
      ProblemsOf("providers: {mock: {enabled: true, hang_ration: 0.5}}"),
      "providers.mock.hang_ration: unknown key (did you mean providers.mock.hang_ratio?)"));
  // Misbehaviour of a mock that is off is a mistake too.
  EXPECT_TRUE(Mentions(ProblemsOf("providers: {mock: {hang_ratio: 0.5}}"),
                       "providers.mock: latency, hang_ratio, outages, max_calls_per_second or seed "
                       "set while providers.mock.enabled is false"));
}

}  // namespace
}  // namespace workflowd::daemon
