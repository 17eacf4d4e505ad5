// The daemon's configuration: typed structs with defaults, parsed and validated once at start.
//
// Sources, later ones winning: built-in defaults < the config file (YAML, or JSON which is YAML) <
// environment variables. Every scalar setting `section.key` can be overridden by
// WORKFLOWD_SECTION_KEY (e.g. kafka.brokers <- WORKFLOWD_KAFKA_BROKERS). Secrets are never read
// from the config file: the database URL comes from WORKFLOWD_DATABASE_URL or the file named by
// database.url_file, and librdkafka properties that hold secrets (sasl.password, ssl.key.password,
// sasl.oauthbearer.client.secret, sasl.oauthbearer.config, ...) from
// WORKFLOWD_KAFKA_PROPERTY_<NAME> (dots as underscores, e.g.
// WORKFLOWD_KAFKA_PROPERTY_SASL_PASSWORD) or kafka.properties_file. Unknown keys are rejected with
// the key named; every problem is reported at once.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "workflowd/providers/mock/misbehaviour.hpp"
#include "workflowd/providers/temporal/options.hpp"

namespace workflowd::daemon {

struct DatabaseConfig {
  std::string url;       // secret: from WORKFLOWD_DATABASE_URL or url_file
  std::string url_file;  // a file holding the URL (e.g. a mounted Kubernetes secret)
  std::chrono::milliseconds connect_timeout{5000};
};

struct FlatEnvelopeConfig {
  std::string id = "id";
  std::string event_name = "event_name";
  std::string tenant = "tenant_id";
  std::string environment = "environment_id";
  std::string time = "timestamp";
  std::string data = "data";
  std::string source = "source";
};

struct KafkaConfig {
  std::string brokers = "127.0.0.1:9092";
  std::string group_id = "workflowd";
  std::vector<std::string> topics = {"workflowd.events"};
  std::string dlq_topic = "workflowd.dlq";
  std::string format = "auto";  // auto | cloudevents | flat
  FlatEnvelopeConfig flat;
  size_t max_record_bytes = 1 << 20;
  size_t batch_size = 2000;
  std::chrono::milliseconds batch_timeout{100};
  std::chrono::milliseconds commit_interval{1000};
  std::map<std::string, std::string> properties;  // passed to librdkafka as they are
  std::string properties_file;                    // extra (secret) properties, key=value lines
};

struct MatchingConfig {
  std::chrono::milliseconds resync_interval{60000};
};

struct AdminConfig {
  std::string listen = "0.0.0.0:9090";  // metrics, health, API; "" disables
};

struct DispatchConfig {
  bool enabled = true;
  // Each round walks the tenant x environment scopes once: larger rounds spread that cost (with
  // 100 scopes a 200-row round cost PostgreSQL 33 buffer hits per execution, a 500-row one 18).
  size_t batch_size = 500;
  size_t per_scope_limit = 50;  // per tenant x environment and batch
  size_t max_in_flight = 16;    // concurrent provider starts
  size_t workers = 2;           // dispatch loops (each its own connection)
  std::chrono::milliseconds lease{30000};
  std::chrono::milliseconds idle_interval{100};
  std::chrono::milliseconds call_timeout{10000};
};

struct PollConfig {
  size_t batch_size = 500;
  size_t max_in_flight = 16;
  size_t workers = 2;  // poll loops (each its own connection)
  std::chrono::milliseconds min_interval{200};
  std::chrono::milliseconds max_interval{30000};
};

// The mock engine runs nothing: it marks executions succeeded (or as their provider_config.mock
// says). Off unless turned on, for the demo and tests: a production install must never record
// workflows as done that no engine ran.
struct MockProviderConfig {
  bool enabled = false;
  std::string start_log;  // diagnostics: append each start's execution name to this file
  // providers.mock.{latency.*, hang_ratio, outages, max_calls_per_second, seed}: a slow, hanging,
  // throttling or failing engine on purpose, for tests and benchmarks. Nothing by default.
  providers::mock::Misbehaviour misbehaviour;
};

// providers.<name>.*: one provider's own limits (each engine has its own calls in flight,
// deadline, quick retries, circuit breaker and poll rate). Unset max_in_flight follows
// dispatch.max_in_flight x dispatch.workers (each dispatch loop had a pool of max_in_flight
// threads: the replica's starts in flight) and call_timeout dispatch.call_timeout. The breaker is
// on by default: an outage parks executions rather than spending their attempts.
struct ProviderLimitsConfig {
  std::optional<size_t> max_in_flight;  // concurrent starts in this replica, all loops together
  std::optional<std::chrono::milliseconds> call_timeout;  // deadline of one call, its retries in
  size_t retry_attempts = 1;                              // tries of one call (1: no quick retry)
  std::chrono::milliseconds retry_initial_backoff{50};
  std::chrono::milliseconds retry_max_backoff{1000};
  // Consecutive outage failures that open the breaker; 0: no breaker, an outage's failed starts
  // are retried under the definitions' retry policies (and fail once their attempts are spent).
  size_t breaker_failure_threshold = 5;
  std::chrono::milliseconds breaker_failure_window{1000};  // ... with no success for this long
  std::chrono::milliseconds breaker_open_interval{10000};  // open -> one probe call
  size_t breaker_drain_rate = 50;                          // starts/s once the breaker closed
  std::chrono::milliseconds breaker_drain_ramp{30000};     // ... ramping up to unbounded
  size_t polls_per_second = 0;                             // 0: unbounded
  // First and shortest interval between polls of one execution of this provider; unset:
  // poll.min_interval, and at least 5 s for Temporal's (PollMinInterval).
  std::optional<std::chrono::milliseconds> poll_min_interval;
  // While this provider's start slots are all in use (a burst of starts), its polls wait until
  // they are this overdue (PollYield; 0: they never wait); unset: poll.max_interval for Temporal's,
  // whose status reads take the cluster capacity its starts need, 0 for the others.
  std::optional<std::chrono::milliseconds> poll_yield;
};

struct LogConfig {
  std::string level = "info";   // trace | debug | info | warn | error
  std::string format = "text";  // text | json
};

struct Config {
  DatabaseConfig database;
  KafkaConfig kafka;
  MatchingConfig matching;
  AdminConfig admin;
  DispatchConfig dispatch;
  PollConfig poll;
  MockProviderConfig mock_provider;  // providers.mock.*
  // providers.temporal.*: the Temporal cluster; the provider is offered when its address is set.
  providers::temporal::Options temporal;
  // providers.<name>.* limits by provider name (an absent name: all defaults).
  std::map<std::string, ProviderLimitsConfig> provider_limits;
  // providers.default: the provider of a definition that names none, when it is applied or
  // validated; empty (the default): such a definition is refused.
  std::string default_provider;
  LogConfig log;
  std::chrono::milliseconds shutdown_timeout{30000};
  std::string instance_id;  // defaults to hostname-pid; names this replica in leases and logs
};

class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

using Environment = std::map<std::string, std::string>;

// The process environment, for production wiring.
Environment ProcessEnvironment();

// What the configuration is loaded for. kOffline: checks that reach no server (`workflowd
// definitions validate`): database.url may be unset and secret files are not read.
enum class ConfigUse { kConnect, kOffline };

// Parses `text` (YAML or JSON; empty means all defaults), applies `env`, reads secret files and
// validates. `source` names the file in messages. Throws ConfigError listing every problem.
Config ParseConfig(const std::string& text, const std::string& source, const Environment& env,
                   ConfigUse use = ConfigUse::kConnect);

// Reads the file, then ParseConfig. An empty path means defaults plus environment.
Config LoadConfig(const std::string& path, const Environment& env,
                  ConfigUse use = ConfigUse::kConnect);

// providers.<name>.poll_min_interval as it applies: set, or poll.min_interval (for Temporal at
// least 5 s: its runs take seconds to hours, and every poll is a call to a shared cluster that
// also serves the workers; 10,000 running executions polled each second would be 10,000 calls a
// second).
std::chrono::milliseconds PollMinInterval(const Config& config, const std::string& provider);
// providers.<name>.poll_yield as it applies: set, or poll.max_interval for Temporal, else 0.
std::chrono::milliseconds PollYield(const Config& config, const std::string& provider);

// The workflow providers this build offers, by the name definitions use (`provider: NAME`).
const std::vector<std::string>& KnownProviders();

// The effective configuration as YAML with secrets masked, for `workflowd config` and logs.
std::string DescribeConfig(const Config& config);

// A PostgreSQL connection string fit to print: every secret libpq would read from it (password,
// sslpassword) replaced by ***, in a URL (postgresql://user:secret@host/db?sslpassword=...) as in
// key=value form (password = 'a b'). Found with libpq's own parser (PQconninfoParse), so what is
// masked is what libpq would use; a string libpq cannot parse is masked whole ("***").
std::string MaskUrl(const std::string& url);

// Whether the librdkafka property `key` holds a secret: refused in the config file, masked when
// printed.
bool IsSecretKafkaProperty(const std::string& key);

}  // namespace workflowd::daemon
