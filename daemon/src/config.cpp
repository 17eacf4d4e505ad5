#include "workflowd/daemon/config.hpp"

#include <libpq-fe.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "workflowd/common/duration.hpp"
#include "workflowd/common/suggest.hpp"

extern char** environ;

namespace workflowd::daemon {
namespace {

using Problems = std::vector<std::string>;

// kNode: a structured value (a list of maps) handed over as it is; not settable from the
// environment.
enum class Kind { kString, kDuration, kSize, kStringList, kStringMap, kNode };

struct Setting {
  std::string path;  // section.key
  Kind kind;
  bool secret;  // never read from the config file
  std::function<void(Config&, const std::string&)> set_scalar;
  std::function<void(Config&, const std::vector<std::string>&)> set_list;
  std::function<void(Config&, const std::string&, const std::string&)> set_map_entry;
  std::function<void(Config&, const YAML::Node&, const std::string& path)> set_node = nullptr;
};

std::string Trim(std::string s) {
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = Trim(item);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// Problems found while converting a value are collected here by the setters.
thread_local Problems* g_problems = nullptr;
thread_local const std::string* g_where = nullptr;

void Problem(const std::string& msg) { g_problems->push_back(*g_where + ": " + msg); }

template <typename Field>
auto StringSetter(Field field) {
  return [field](Config& c, const std::string& v) { field(c) = v; };
}

template <typename Field>
auto DurationSetterOf(Field field) {
  return [field](Config& c, const std::string& v) {
    auto d = ParseDuration(v);
    if (!d || d->count() <= 0) {
      Problem("\"" + v + "\" is not a positive duration; use e.g. \"500ms\", \"30s\", \"1m\"");
      return;
    }
    field(c) = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  };
}

// `v` read whole by `parse` (std::stoll, std::stod, ...); nullopt when it is not all a number.
template <typename Parse>
auto ParseWhole(const std::string& v, Parse parse) -> std::optional<decltype(parse(v, nullptr))> {
  try {
    size_t pos = 0;
    auto n = parse(v, &pos);
    if (pos == v.size()) return n;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

// An integer of at least `min`.
template <typename Field>
auto IntegerSetterOf(Field field, long long min) {
  return [field, min](Config& c, const std::string& v) {
    const auto n =
        ParseWhole(v, [](const std::string& t, size_t* pos) { return std::stoll(t, pos); });
    if (!n || *n < min) {
      Problem("\"" + v + "\" is not a " + (min > 0 ? "positive" : "non-negative") + " integer");
      return;
    }
    field(c) = static_cast<size_t>(*n);
  };
}

// A parsed duration stored in a field of any duration type, or an optional one.
template <typename Rep, typename Period>
void AssignDuration(std::chrono::duration<Rep, Period>& to, std::chrono::nanoseconds d) {
  to = std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(d);
}
template <typename Rep, typename Period>
void AssignDuration(std::optional<std::chrono::duration<Rep, Period>>& to,
                    std::chrono::nanoseconds d) {
  to = std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(d);
}

// Durations where 0s is a valid value (the mock's misbehaviour, a provider's poll_yield).
template <typename Field>
auto NonNegativeDurationSetterOf(Field field) {
  return [field](Config& c, const std::string& v) {
    auto d = ParseDuration(v);
    if (!d) {
      Problem("\"" + v + "\" is not a duration of 0s or more; use e.g. \"200ms\", \"5s\"");
      return;
    }
    AssignDuration(field(c), *d);
  };
}

// A number; its range is checked with the rest of the setting's section.
template <typename Field>
auto NumberSetterOf(Field field) {
  return [field](Config& c, const std::string& v) {
    const auto n =
        ParseWhole(v, [](const std::string& t, size_t* pos) { return std::stod(t, pos); });
    if (!n) {
      Problem("\"" + v + "\" is not a number; e.g. 0.05");
      return;
    }
    field(c) = *n;
  };
}

template <typename Field>
auto SizeSetterOf(Field field) {
  return IntegerSetterOf(field, 1);
}

// A non-negative integer (0 allowed: "unbounded" where the key says so).
template <typename Field>
auto CountSetterOf(Field field) {
  return IntegerSetterOf(field, 0);
}

template <typename Field>
auto OneOfSetter(Field field, const std::vector<std::string>& allowed) {
  return [field, allowed](Config& c, const std::string& v) {
    if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      Problem("\"" + v + "\" is not one of " + list);
      return;
    }
    field(c) = v;
  };
}

// providers.mock.outages: [{after: 60s, duration: 30s, mode: unavailable}, ...]
void SetOutages(Config& c, const YAML::Node& value, const std::string& path) {
  using providers::mock::Outage;
  auto& outages = c.mock_provider.misbehaviour.outages;
  outages.clear();
  if (!value.IsSequence()) {
    g_problems->push_back(path +
                          ": expected a list of windows, e.g. [{after: 60s, duration: 30s, "
                          "mode: unavailable}]");
    return;
  }
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string field = path + "[" + std::to_string(i) + "]";
    const YAML::Node& item = value[i];
    if (!item.IsMap()) {
      g_problems->push_back(field + ": expected a map {after: 60s, duration: 30s, mode: ...}");
      continue;
    }
    Outage o;
    bool has_after = false;
    bool has_duration = false;
    for (const auto& kv : item) {
      const std::string key = kv.first.as<std::string>();
      const std::string where = field + "." + key;
      if (!kv.second.IsScalar()) {
        g_problems->push_back(where + ": expected a single value");
        continue;
      }
      const std::string v = kv.second.as<std::string>();
      if (key == "after" || key == "duration") {
        const auto d = ParseDuration(v);
        if (!d) {
          g_problems->push_back(where + ": \"" + v +
                                "\" is not a duration of 0s or more; use e.g. \"30s\", \"2m\"");
        }
        (key == "after" ? o.after : o.duration) = d.value_or(std::chrono::nanoseconds::zero());
        (key == "after" ? has_after : has_duration) = true;
      } else if (key == "mode") {
        const auto mode = providers::mock::ParseOutageMode(v);
        if (!mode) {
          g_problems->push_back(where + ": \"" + v +
                                "\" is not one of unavailable, hang, throttle");
        }
        o.mode = mode.value_or(o.mode);
      } else {
        g_problems->push_back(where + ": unknown key (expected after, duration, mode)");
      }
    }
    if (!has_after) {
      g_problems->push_back(field +
                            ".after: missing; the time from the start, e.g. 60s (0s: at once)");
    }
    if (!has_duration) g_problems->push_back(field + ".duration: missing; e.g. 30s");
    // A window with a missing or bad value is left out, so its problem is reported once.
    if (has_after && has_duration) outages.push_back(o);
  }
}

// providers.mock.*: the engine's misbehaviour on purpose (see providers/mock/misbehaviour.hpp).
void AddMockMisbehaviourSettings(std::vector<Setting>& s) {
  using providers::mock::Latency;
  auto add = [&](std::string path, auto setter) {
    s.push_back(Setting{std::move(path), Kind::kString, false, setter, nullptr, nullptr});
  };
  add("providers.mock.latency.distribution", [](Config& c, const std::string& v) {
    const auto kind = providers::mock::ParseLatencyKind(v);
    if (!kind) {
      Problem("\"" + v + "\" is not one of none, fixed, uniform, long_tail");
      return;
    }
    c.mock_provider.misbehaviour.latency.kind = *kind;
  });
  for (auto [key, member] :
       std::initializer_list<std::pair<const char*, std::chrono::nanoseconds Latency::*>>{
           {"base", &Latency::base},
           {"min", &Latency::min},
           {"max", &Latency::max},
           {"tail", &Latency::tail}}) {
    auto m = member;
    add(std::string("providers.mock.latency.") + key,
        NonNegativeDurationSetterOf([m](Config & c) -> auto& {
          return c.mock_provider.misbehaviour.latency.*m;
        }));
  }
  add("providers.mock.latency.tail_ratio", NumberSetterOf([](Config & c) -> auto& {
        return c.mock_provider.misbehaviour.latency.tail_ratio;
      }));
  add("providers.mock.hang_ratio",
      NumberSetterOf([](Config & c) -> auto& { return c.mock_provider.misbehaviour.hang_ratio; }));
  add("providers.mock.max_calls_per_second", NumberSetterOf([](Config & c) -> auto& {
        return c.mock_provider.misbehaviour.max_calls_per_second;
      }));
  add("providers.mock.seed", [](Config& c, const std::string& v) {
    // std::stoull reads "-1" as the largest integer: a sign is refused first.
    const auto n =
        v.starts_with('-')
            ? std::nullopt
            : ParseWhole(v, [](const std::string& t, size_t* pos) { return std::stoull(t, pos); });
    if (!n) {
      Problem("\"" + v + "\" is not an integer of 0 or more");
      return;
    }
    c.mock_provider.misbehaviour.seed = *n;
  });
  Setting outages{"providers.mock.outages", Kind::kNode, false, nullptr, nullptr, nullptr};
  outages.set_node = SetOutages;
  s.push_back(std::move(outages));
}

const std::vector<Setting>& Settings() {
  static const std::vector<Setting> kSettings = [] {
    std::vector<Setting> s;
    auto scalar = [&](std::string path, Kind kind, auto setter, bool secret = false) {
      s.push_back(Setting{std::move(path), kind, secret, setter, nullptr, nullptr});
    };
    scalar("database.url", Kind::kString,
           StringSetter([](Config& c) -> std::string& { return c.database.url; }), true);
    scalar("database.url_file", Kind::kString,
           StringSetter([](Config& c) -> std::string& { return c.database.url_file; }));
    scalar("database.connect_timeout", Kind::kDuration,
           DurationSetterOf([](Config & c) -> auto& { return c.database.connect_timeout; }));
    scalar("kafka.brokers", Kind::kString,
           StringSetter([](Config& c) -> std::string& { return c.kafka.brokers; }));
    scalar("kafka.group_id", Kind::kString,
           StringSetter([](Config& c) -> std::string& { return c.kafka.group_id; }));
    s.push_back(Setting{"kafka.topics", Kind::kStringList, false, nullptr,
                        [](Config& c, const std::vector<std::string>& v) { c.kafka.topics = v; },
                        nullptr});
    scalar("kafka.dlq_topic", Kind::kString,
           StringSetter([](Config& c) -> std::string& { return c.kafka.dlq_topic; }));
    scalar("kafka.format", Kind::kString,
           OneOfSetter([](Config& c) -> std::string& { return c.kafka.format; },
                       {"auto", "cloudevents", "flat"}));
    for (auto [key, member] :
         std::initializer_list<std::pair<const char*, std::string FlatEnvelopeConfig::*>>{
             {"id", &FlatEnvelopeConfig::id},
             {"event_name", &FlatEnvelopeConfig::event_name},
             {"tenant", &FlatEnvelopeConfig::tenant},
             {"environment", &FlatEnvelopeConfig::environment},
             {"time", &FlatEnvelopeConfig::time},
             {"data", &FlatEnvelopeConfig::data},
             {"source", &FlatEnvelopeConfig::source}}) {
      auto m = member;
      scalar(std::string("kafka.flat.") + key, Kind::kString,
             [m](Config& c, const std::string& v) { c.kafka.flat.*m = v; });
    }
    scalar("kafka.max_record_bytes", Kind::kSize,
           SizeSetterOf([](Config & c) -> auto& { return c.kafka.max_record_bytes; }));
    scalar("kafka.batch_size", Kind::kSize,
           SizeSetterOf([](Config & c) -> auto& { return c.kafka.batch_size; }));
    scalar("kafka.batch_timeout", Kind::kDuration,
           DurationSetterOf([](Config & c) -> auto& { return c.kafka.batch_timeout; }));
    scalar("kafka.commit_interval", Kind::kDuration,
           DurationSetterOf([](Config & c) -> auto& { return c.kafka.commit_interval; }));
    s.push_back(Setting{
        "kafka.properties", Kind::kStringMap, false, nullptr, nullptr,
        [](Config& c, const std::string& k, const std::string& v) { c.kafka.properties[k] = v; }});
    scalar("kafka.properties_file", Kind::kString,
           StringSetter([](Config& c) -> std::string& { return c.kafka.properties_file; }));
    scalar("matching.resync_interval", Kind::kDuration,
           DurationSetterOf([](Config & c) -> auto& { return c.matching.resync_interval; }));
    scalar("admin.listen", Kind::kString,
           StringSetter([](Config& c) -> std::string& { return c.admin.listen; }));
    auto boolean = [&](std::string path, auto field) {
      s.push_back(Setting{std::move(path), Kind::kString, false,
                          [field](Config& c, const std::string& v) {
                            if (v == "true") {
                              field(c) = true;
                            } else if (v == "false") {
                              field(c) = false;
                            } else {
                              Problem("\"" + v + "\" is not true or false");
                            }
                          },
                          nullptr, nullptr});
    };
    boolean("dispatch.enabled", [](Config& c) -> bool& { return c.dispatch.enabled; });
    scalar("dispatch.batch_size", Kind::kSize,
           SizeSetterOf([](Config & c) -> auto& { return c.dispatch.batch_size; }));
    scalar("dispatch.per_scope_limit", Kind::kSize,
           SizeSetterOf([](Config & c) -> auto& { return c.dispatch.per_scope_limit; }));
    scalar("dispatch.max_in_flight", Kind::kSize,
           SizeSetterOf([](Config & c) -> auto& { return c.dispatch.max_in_flight; }));
    scalar("dispatch.workers", Kind::kSize,
           SizeSetterOf([](Config & c) -> auto& { return c.dispatch.workers; }));
    scalar("dispatch.lease", Kind::kDuration,
           DurationSetterOf([](Config & c) -> auto& { return c.dispatch.lease; }));
    scalar("dispatch.idle_interval", Kind::kDuration,
           DurationSetterOf([](Config & c) -> auto& { return c.dispatch.idle_interval; }));
    scalar("dispatch.call_timeout", Kind::kDuration,
           DurationSetterOf([](Config & c) -> auto& { return c.dispatch.call_timeout; }));
    scalar("poll.batch_size", Kind::kSize,
           SizeSetterOf([](Config & c) -> auto& { return c.poll.batch_size; }));
    scalar("poll.max_in_flight", Kind::kSize,
           SizeSetterOf([](Config & c) -> auto& { return c.poll.max_in_flight; }));
    scalar("poll.workers", Kind::kSize,
           SizeSetterOf([](Config & c) -> auto& { return c.poll.workers; }));
    scalar("poll.min_interval", Kind::kDuration,
           DurationSetterOf([](Config & c) -> auto& { return c.poll.min_interval; }));
    scalar("poll.max_interval", Kind::kDuration,
           DurationSetterOf([](Config & c) -> auto& { return c.poll.max_interval; }));
    scalar("providers.default", Kind::kString,
           StringSetter([](Config& c) -> std::string& { return c.default_provider; }));
    boolean("providers.mock.enabled", [](Config& c) -> bool& { return c.mock_provider.enabled; });
    scalar("providers.mock.start_log", Kind::kString,
           StringSetter([](Config& c) -> std::string& { return c.mock_provider.start_log; }));
    AddMockMisbehaviourSettings(s);
    auto temporal_text = [&](const char* key, std::string providers::temporal::Options::*member) {
      scalar(std::string("providers.temporal.") + key, Kind::kString,
             [member](Config& c, const std::string& v) { c.temporal.*member = v; });
    };
    temporal_text("address", &providers::temporal::Options::address);
    temporal_text("namespace", &providers::temporal::Options::namespace_name);
    temporal_text("task_queue", &providers::temporal::Options::task_queue);
    temporal_text("workflow_type", &providers::temporal::Options::workflow_type);
    temporal_text("identity", &providers::temporal::Options::identity);
    temporal_text("api_key_file", &providers::temporal::Options::api_key_file);
    for (auto [key, member] : std::initializer_list<
             std::pair<const char*, std::string providers::temporal::TlsOptions::*>>{
             {"ca_file", &providers::temporal::TlsOptions::ca_file},
             {"cert_file", &providers::temporal::TlsOptions::cert_file},
             {"key_file", &providers::temporal::TlsOptions::key_file},
             {"server_name", &providers::temporal::TlsOptions::server_name}}) {
      auto m = member;
      scalar(std::string("providers.temporal.tls.") + key, Kind::kString,
             [m](Config& c, const std::string& v) { c.temporal.tls.*m = v; });
    }
    boolean("providers.temporal.tls.enabled",
            [](Config& c) -> bool& { return c.temporal.tls.enabled; });
    boolean("providers.temporal.search_attributes",
            [](Config& c) -> bool& { return c.temporal.search_attributes; });
    scalar("providers.temporal.rpc.timeout", Kind::kDuration,
           DurationSetterOf([](Config & c) -> auto& { return c.temporal.rpc_timeout; }));
    scalar("providers.temporal.rpc.attempts", Kind::kSize,
           SizeSetterOf([](Config & c) -> auto& { return c.temporal.rpc_attempts; }));
    scalar("providers.temporal.rpc.initial_backoff", Kind::kDuration,
           DurationSetterOf([](Config & c) -> auto& { return c.temporal.rpc_initial_backoff; }));
    scalar("providers.temporal.rpc.max_backoff", Kind::kDuration,
           DurationSetterOf([](Config & c) -> auto& { return c.temporal.rpc_max_backoff; }));
    scalar("providers.temporal.cancel_grace", Kind::kDuration,
           DurationSetterOf([](Config & c) -> auto& { return c.temporal.cancel_grace; }));
    // providers.<name>.* limits of each provider of this build.
    for (const auto& name : KnownProviders()) {
      const std::string at = "providers." + name + ".";
      auto limits = [name](Config& c) -> ProviderLimitsConfig& { return c.provider_limits[name]; };
      scalar(at + "max_in_flight", Kind::kSize,
             SizeSetterOf([limits](Config & c) -> auto& { return limits(c).max_in_flight; }));
      scalar(at + "call_timeout", Kind::kDuration,
             DurationSetterOf([limits](Config & c) -> auto& { return limits(c).call_timeout; }));
      scalar(at + "retry.attempts", Kind::kSize,
             SizeSetterOf([limits](Config & c) -> auto& { return limits(c).retry_attempts; }));
      scalar(at + "retry.initial_backoff", Kind::kDuration,
             DurationSetterOf([limits](Config & c) -> auto& {
               return limits(c).retry_initial_backoff;
             }));
      scalar(
          at + "retry.max_backoff", Kind::kDuration,
          DurationSetterOf([limits](Config & c) -> auto& { return limits(c).retry_max_backoff; }));
      scalar(at + "breaker.failure_threshold", Kind::kSize,
             CountSetterOf([limits](Config & c) -> auto& {
               return limits(c).breaker_failure_threshold;
             }));
      scalar(at + "breaker.failure_window", Kind::kDuration,
             DurationSetterOf([limits](Config & c) -> auto& {
               return limits(c).breaker_failure_window;
             }));
      scalar(at + "breaker.open_interval", Kind::kDuration,
             DurationSetterOf([limits](Config & c) -> auto& {
               return limits(c).breaker_open_interval;
             }));
      scalar(at + "breaker.drain_rate", Kind::kSize,
             SizeSetterOf([limits](Config & c) -> auto& { return limits(c).breaker_drain_rate; }));
      scalar(
          at + "breaker.drain_ramp", Kind::kDuration,
          DurationSetterOf([limits](Config & c) -> auto& { return limits(c).breaker_drain_ramp; }));
      scalar(at + "polls_per_second", Kind::kSize,
             CountSetterOf([limits](Config & c) -> auto& { return limits(c).polls_per_second; }));
      scalar(
          at + "poll_min_interval", Kind::kDuration,
          DurationSetterOf([limits](Config & c) -> auto& { return limits(c).poll_min_interval; }));
      scalar(at + "poll_yield", Kind::kDuration,
             NonNegativeDurationSetterOf([limits](Config & c) -> auto& {
               return limits(c).poll_yield;
             }));
    }
    scalar("log.level", Kind::kString,
           OneOfSetter([](Config& c) -> std::string& { return c.log.level; },
                       {"trace", "debug", "info", "warn", "error"}));
    scalar("log.format", Kind::kString,
           OneOfSetter([](Config& c) -> std::string& { return c.log.format; }, {"text", "json"}));
    scalar("shutdown_timeout", Kind::kDuration,
           DurationSetterOf([](Config & c) -> auto& { return c.shutdown_timeout; }));
    scalar("instance_id", Kind::kString,
           StringSetter([](Config& c) -> std::string& { return c.instance_id; }));
    return s;
  }();
  return kSettings;
}

const Setting* FindSetting(const std::string& path) {
  for (const auto& s : Settings()) {
    if (s.path == path) return &s;
  }
  return nullptr;
}

std::string Suggest(const std::string& path) {
  std::vector<std::string_view> paths;
  for (const auto& s : Settings()) paths.emplace_back(s.path);
  // Only near misses: at most 3 edits.
  const std::optional<std::string_view> best = ClosestMatch(path, paths, 3);
  return best ? " (did you mean " + std::string(*best) + "?)" : "";
}

std::string EnvName(const std::string& path) {
  std::string out = "WORKFLOWD_";
  for (char c : path) out += c == '.' ? '_' : static_cast<char>(std::toupper(c));
  return out;
}

struct ConninfoDeleter {
  void operator()(PQconninfoOption* options) const { PQconninfoFree(options); }
};
using ConninfoOptions = std::unique_ptr<PQconninfoOption, ConninfoDeleter>;

// libpq's reading of a connection string (only what the string sets: no defaults, no
// environment), or null when libpq refuses it.
ConninfoOptions ParseConninfo(const std::string& conninfo) {
  char* error = nullptr;
  ConninfoOptions options(PQconninfoParse(conninfo.c_str(), &error));
  if (error != nullptr) PQfreemem(error);
  return options;
}

// libpq marks the options it never shows with dispchar "*" (password, sslpassword); the names are
// listed as well in case a libpq marks them otherwise.
bool IsSecretConninfoOption(const PQconninfoOption& o) {
  const std::string_view keyword(o.keyword);
  return (o.dispchar != nullptr && o.dispchar[0] == '*') || keyword == "password" ||
         keyword == "sslpassword";
}

std::set<std::string> SecretConninfoKeywords(const PQconninfoOption* options) {
  std::set<std::string> out;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (IsSecretConninfoOption(*o)) out.insert(o->keyword);
  }
  return out;
}

bool IsSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// The key=value form with the values of `secret` keywords replaced by ***, scanned the way libpq's
// conninfo_parse does (blanks around '=', single-quoted values, backslash escapes); nullopt where
// libpq would refuse the string.
std::optional<std::string> MaskKeyValuePairs(const std::string& s,
                                             const std::set<std::string>& secret) {
  std::string out;
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    if (IsSpace(s[i])) {
      out += s[i++];
      continue;
    }
    const size_t keyword_start = i;
    while (i < n && s[i] != '=' && !IsSpace(s[i])) ++i;
    const std::string keyword = s.substr(keyword_start, i - keyword_start);
    out += keyword;
    while (i < n && IsSpace(s[i])) out += s[i++];
    if (i == n || s[i] != '=') return std::nullopt;
    out += s[i++];
    while (i < n && IsSpace(s[i])) out += s[i++];
    const size_t value_start = i;
    if (i < n && s[i] == '\'') {
      for (++i;; ++i) {
        if (i >= n) return std::nullopt;  // unterminated quote
        if (s[i] == '\\') {
          ++i;
        } else if (s[i] == '\'') {
          ++i;
          break;
        }
      }
    } else {
      for (; i < n && !IsSpace(s[i]); ++i) {
        if (s[i] == '\\') ++i;
      }
    }
    i = std::min(i, n);
    out += secret.contains(keyword) ? std::string("***") : s.substr(value_start, i - value_start);
  }
  return out;
}

// Decodes %XX escapes as libpq does in URIs; nullopt on a malformed escape.
std::optional<std::string> PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

size_t UriPrefixLength(const std::string& s) {
  for (std::string_view prefix : {"postgresql://", "postgres://"}) {
    if (s.rfind(prefix, 0) == 0) return prefix.size();
  }
  return 0;
}

// The URI form (postgresql://user:password@host/db?param=value&...) with the password of the user
// part and the values of `secret` query parameters replaced by ***, split where libpq's
// conninfo_uri_parse_options splits it: the user part ends at the first '@' met before any '/',
// the password starts at its first ':'; the query starts at the first '?' after it.
std::optional<std::string> MaskUri(const std::string& s, const std::set<std::string>& secret) {
  const size_t start = UriPrefixLength(s);
  std::string out = s.substr(0, start);
  size_t p = start;
  while (p < s.size() && s[p] != '@' && s[p] != '/') ++p;
  size_t rest = start;
  if (p < s.size() && s[p] == '@') {
    const size_t colon = s.find(':', start);
    if (colon < p && colon + 1 < p) {
      out += s.substr(start, colon + 1 - start) + "***";
    } else {
      out += s.substr(start, p - start);
    }
    rest = p;
  }
  const size_t query = s.find('?', rest);
  out += s.substr(rest, query == std::string::npos ? std::string::npos : query + 1 - rest);
  if (query == std::string::npos) return out;
  std::string_view params = std::string_view{s}.substr(query + 1);
  bool first = true;
  while (true) {
    const size_t amp = params.find('&');
    const std::string_view param = params.substr(0, amp);
    if (!first) out += '&';
    first = false;
    const size_t eq = param.find('=');
    const auto keyword = PercentDecode(param.substr(0, eq));
    if (!keyword) return std::nullopt;
    if (eq != std::string_view::npos && secret.contains(*keyword)) {
      out += std::string(param.substr(0, eq + 1)) + "***";
    } else {
      out += param;
    }
    if (amp == std::string_view::npos) break;
    params.remove_prefix(amp + 1);
  }
  return out;
}

// Whether libpq reads `masked` as it reads `original` except that every secret reads "***".
bool MaskedAsExpected(const PQconninfoOption* original, const std::string& masked) {
  const ConninfoOptions again = ParseConninfo(masked);
  if (!again) return false;
  const PQconninfoOption* a = original;
  const PQconninfoOption* b = again.get();
  for (; a->keyword != nullptr && b->keyword != nullptr; ++a, ++b) {
    if (std::string_view(a->keyword) != b->keyword) return false;
    if ((a->val == nullptr) != (b->val == nullptr)) return false;
    if (a->val == nullptr) continue;
    const std::string_view expected = IsSecretConninfoOption(*a) ? "***" : a->val;
    if (expected != b->val) return false;
  }
  return a->keyword == nullptr && b->keyword == nullptr;
}

// key='value' pairs of what libpq read, secrets as ***.
std::string RebuiltConninfo(const PQconninfoOption* options) {
  std::string out;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    out += (out.empty() ? "" : " ") + std::string(o->keyword) + "=";
    if (IsSecretConninfoOption(*o)) {
      out += "***";
      continue;
    }
    out += '\'';
    for (const char* c = o->val; *c != '\0'; ++c) {
      if (*c == '\'' || *c == '\\') out += '\\';
      out += *c;
    }
    out += '\'';
  }
  return out;
}

std::string ScalarText(const YAML::Node& node) { return node.as<std::string>(); }

void ApplyYaml(Config& config, const YAML::Node& node, const std::string& prefix,
               Problems& problems) {
  for (const auto& item : node) {
    std::string key = item.first.as<std::string>();
    std::string path = prefix.empty() ? key : prefix + "." + key;
    const YAML::Node& value = item.second;
    const Setting* setting = FindSetting(path);
    if (setting == nullptr) {
      if (value.IsMap()) {
        bool is_section = std::any_of(Settings().begin(), Settings().end(), [&](const Setting& s) {
          return s.path.rfind(path + ".", 0) == 0;
        });
        if (is_section) {
          ApplyYaml(config, value, path, problems);
          continue;
        }
      }
      problems.push_back(path + ": unknown key" + Suggest(path));
      continue;
    }
    g_where = &path;
    if (setting->secret) {
      problems.push_back(path + ": secrets are not read from the config file; set " +
                         EnvName(path) + " or " + path + "_file instead");
      continue;
    }
    switch (setting->kind) {
      case Kind::kStringList: {
        std::vector<std::string> list;
        if (value.IsSequence()) {
          for (const auto& v : value) {
            if (!v.IsScalar()) {
              problems.push_back(path + ": expected a list of strings");
              break;
            }
            list.push_back(v.as<std::string>());
          }
        } else if (value.IsScalar()) {
          list = SplitList(value.as<std::string>());
        } else {
          problems.push_back(path + ": expected a list of strings");
        }
        setting->set_list(config, list);
        break;
      }
      case Kind::kStringMap:
        if (!value.IsMap()) {
          problems.push_back(path + ": expected a map of librdkafka property names to values");
          break;
        }
        for (const auto& p : value) {
          std::string k = p.first.as<std::string>();
          if (!p.second.IsScalar()) {
            problems.push_back(path + "." + k + ": expected a string value");
          } else if (IsSecretKafkaProperty(k)) {
            std::string env = "WORKFLOWD_KAFKA_PROPERTY_";
            for (char c : k) env += c == '.' ? '_' : static_cast<char>(std::toupper(c));
            problems.push_back(path + "." + k +
                               ": secrets are not read from the config file; set " + env +
                               " or use kafka.properties_file");
          } else {
            setting->set_map_entry(config, k, p.second.as<std::string>());
          }
        }
        break;
      case Kind::kNode:
        setting->set_node(config, value, path);
        break;
      default:
        if (!value.IsScalar()) {
          problems.push_back(path + ": expected a single value");
          break;
        }
        setting->set_scalar(config, ScalarText(value));
    }
  }
}

void ApplyEnvironment(Config& config, const Environment& env, Problems& problems) {
  for (const auto& s : Settings()) {
    if (s.kind == Kind::kStringMap || s.kind == Kind::kNode) continue;
    auto it = env.find(EnvName(s.path));
    if (it == env.end()) continue;
    std::string where = it->first;
    g_where = &where;
    if (s.kind == Kind::kStringList) {
      s.set_list(config, SplitList(it->second));
    } else {
      s.set_scalar(config, it->second);
    }
  }
  const std::string prefix = "WORKFLOWD_KAFKA_PROPERTY_";
  for (const auto& [name, value] : env) {
    if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) continue;
    std::string key;
    for (char c : name.substr(prefix.size())) {
      key += c == '_' ? '.' : static_cast<char>(std::tolower(c));
    }
    config.kafka.properties[key] = value;
  }
  (void)problems;
}

std::string ReadSecretFile(const std::string& path, const std::string& setting,
                           Problems& problems) {
  std::ifstream in(path);
  if (!in) {
    problems.push_back(setting + ": cannot read " + path);
    return {};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void ReadPropertiesFile(Config& config, Problems& problems) {
  const auto& path = config.kafka.properties_file;
  if (path.empty()) return;
  std::stringstream text(ReadSecretFile(path, "kafka.properties_file", problems));
  std::string line;
  int number = 0;
  while (std::getline(text, line)) {
    ++number;
    line = Trim(line);
    if (line.empty() || line[0] == '#') continue;
    auto eq = line.find('=');
    if (eq == std::string::npos || eq == 0) {
      problems.push_back("kafka.properties_file: " + path + ":" + std::to_string(number) +
                         ": expected key=value");
      continue;
    }
    config.kafka.properties[Trim(line.substr(0, eq))] = Trim(line.substr(eq + 1));
  }
}

void ValidateMockMisbehaviour(const Config& config, Problems& problems) {
  const auto& m = config.mock_provider.misbehaviour;
  for (auto& p : providers::mock::MisbehaviourProblems(m, "providers.mock.")) {
    problems.push_back(std::move(p));
  }
  if (!config.mock_provider.enabled && (m.Any() || m.seed)) {
    problems.push_back(
        "providers.mock: latency, hang_ratio, outages, max_calls_per_second or seed set while "
        "providers.mock.enabled is false; turn the mock on (tests and benchmarks only) or remove "
        "them");
  }
}

void ValidateProviders(const Config& config, Problems& problems) {
  ValidateMockMisbehaviour(config, problems);
  const std::string& name = config.default_provider;
  if (name.empty()) return;
  const auto& known = KnownProviders();
  if (std::find(known.begin(), known.end(), name) == known.end()) {
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    problems.push_back("providers.default: \"" + name +
                       "\" is not a workflow provider of this build (known: " + list + ")");
  } else if (name == "mock" && !config.mock_provider.enabled) {
    problems.push_back(
        "providers.default: \"mock\" is not enabled; turn it on (providers.mock.enabled: true, "
        "for demos and tests only) or name the provider of a real engine");
  } else if (name == "temporal" && config.temporal.address.empty()) {
    problems.push_back(
        "providers.default: \"temporal\" is not configured; set providers.temporal.address "
        "(host:port of the Temporal frontend, e.g. 127.0.0.1:7233)");
  }
}

void ValidateTemporal(Config& config, Problems& problems, ConfigUse use) {
  auto& t = config.temporal;
  if (t.address.empty()) return;
  if (use == ConfigUse::kConnect && !t.api_key_file.empty()) {
    t.api_key = Trim(ReadSecretFile(t.api_key_file, "providers.temporal.api_key_file", problems));
    if (t.api_key.empty()) {
      problems.push_back("providers.temporal.api_key_file: \"" + t.api_key_file +
                         "\" holds no API key");
      t.api_key = "(empty)";  // the TLS check below still applies
    }
  } else if (!t.api_key_file.empty()) {
    t.api_key = "(read at start)";  // offline checks: the file is not read, TLS is still required
  }
  for (auto& p : providers::temporal::OptionsProblems(t)) problems.push_back(std::move(p));
  if (use == ConfigUse::kConnect) {
    for (const auto& [option, path] :
         {std::pair{"tls.ca_file", t.tls.ca_file}, std::pair{"tls.cert_file", t.tls.cert_file},
          std::pair{"tls.key_file", t.tls.key_file}}) {
      if (!path.empty() && access(path.c_str(), R_OK) != 0) {
        problems.push_back(std::string("providers.temporal.") + option + ": cannot read \"" + path +
                           "\"");
      }
    }
  }
}

void ValidateProviderLimits(const Config& config, Problems& problems) {
  for (const auto& [name, limits] : config.provider_limits) {
    const std::string at = "providers." + name + ".";
    if (limits.max_in_flight.value_or(0) > 1024)
      problems.push_back(at + "max_in_flight: at most 1024");
    if (limits.call_timeout && config.dispatch.lease < *limits.call_timeout * 2) {
      problems.push_back(at +
                         "call_timeout: dispatch.lease must be at least twice it, so a lease "
                         "cannot expire while its provider call is still running");
    }
    if (limits.retry_initial_backoff > limits.retry_max_backoff) {
      problems.push_back(at + "retry.initial_backoff: must not exceed retry.max_backoff");
    }
    if (limits.retry_attempts > 10) problems.push_back(at + "retry.attempts: at most 10");
    if (limits.poll_min_interval && (limits.poll_min_interval->count() <= 0 ||
                                     *limits.poll_min_interval > config.poll.max_interval)) {
      problems.push_back(at + "poll_min_interval: must be positive and at most poll.max_interval");
    }
    // Quick retries are made within the call's deadline: a first backoff as long as it means
    // they never happen.
    const auto call_timeout = limits.call_timeout.value_or(config.dispatch.call_timeout);
    if (limits.retry_attempts > 1 && limits.retry_initial_backoff >= call_timeout) {
      problems.push_back(at +
                         "retry.initial_backoff: must be shorter than the provider's "
                         "call_timeout (" +
                         std::to_string(call_timeout.count()) +
                         "ms), within which a call and its quick retries are made; else " +
                         "retry.attempts never repeats a call");
    }
  }
}

void Validate(Config& config, Problems& problems, ConfigUse use) {
  if (use == ConfigUse::kConnect) {
    if (config.database.url.empty() && !config.database.url_file.empty()) {
      config.database.url =
          Trim(ReadSecretFile(config.database.url_file, "database.url_file", problems));
    }
    if (config.database.url.empty()) {
      problems.push_back(
          "database.url: not set; set WORKFLOWD_DATABASE_URL (e.g. "
          "postgresql://workflowd:PASSWORD@127.0.0.1:5432/workflowd) or database.url_file");
    } else if (!ParseConninfo(config.database.url)) {
      // libpq's own message is not repeated: it may quote a piece of the string (a password).
      problems.push_back(
          "database.url: not a connection string libpq accepts; expected a postgresql:// URL or "
          "libpq key=value pairs (values with spaces in single quotes)");
    }
    ReadPropertiesFile(config, problems);
  }
  ValidateProviders(config, problems);
  ValidateTemporal(config, problems, use);
  if (config.kafka.brokers.empty()) problems.push_back("kafka.brokers: must not be empty");
  if (config.kafka.group_id.empty()) problems.push_back("kafka.group_id: must not be empty");
  if (config.kafka.topics.empty()) problems.push_back("kafka.topics: at least one topic is needed");
  for (const auto& t : config.kafka.topics) {
    if (t == config.kafka.dlq_topic) {
      problems.push_back("kafka.dlq_topic: \"" + t +
                         "\" is also a consumed topic; dead letters "
                         "would be consumed again");
    }
  }
  if (config.kafka.dlq_topic.empty()) problems.push_back("kafka.dlq_topic: must not be empty");
  for (const char* reserved : {"group.id", "bootstrap.servers", "enable.auto.offset.store"}) {
    if (config.kafka.properties.contains(reserved)) {
      problems.push_back(std::string("kafka.properties.") + reserved +
                         ": set by workflowd itself (use kafka.brokers / kafka.group_id)");
    }
  }
  if (config.kafka.batch_size > 100000) problems.push_back("kafka.batch_size: at most 100000");
  if (config.dispatch.max_in_flight > 1024) {
    problems.push_back("dispatch.max_in_flight: at most 1024");
  }
  if (config.poll.max_in_flight > 1024) problems.push_back("poll.max_in_flight: at most 1024");
  for (const auto& [name, n] :
       {std::pair<const char*, size_t>{"dispatch.workers", config.dispatch.workers},
        {"poll.workers", config.poll.workers}}) {
    if (n < 1 || n > 16) {
      problems.push_back(std::string(name) +
                         ": between 1 and 16 (each is a loop with its own "
                         "PostgreSQL connection)");
    }
  }
  if (config.poll.min_interval > config.poll.max_interval) {
    problems.push_back("poll.min_interval: must not exceed poll.max_interval");
  }
  ValidateProviderLimits(config, problems);
  if (config.dispatch.lease < config.dispatch.call_timeout * 2) {
    problems.push_back(
        "dispatch.lease: must be at least twice dispatch.call_timeout, so a lease "
        "cannot expire while its provider call is still running");
  }
  if (!config.admin.listen.empty()) {
    auto colon = config.admin.listen.rfind(':');
    bool ok = colon != std::string::npos && colon + 1 < config.admin.listen.size();
    if (ok) {
      try {
        int port = std::stoi(config.admin.listen.substr(colon + 1));
        ok = port >= 0 && port <= 65535;
      } catch (const std::exception&) {
        ok = false;
      }
    }
    if (!ok) problems.push_back("admin.listen: expected HOST:PORT, e.g. 0.0.0.0:9090");
  }
  if (config.instance_id.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    config.instance_id = std::string(host) + "-" + std::to_string(getpid());
  }
}

}  // namespace

ConfigError::ConfigError(std::vector<std::string> problems)
    : std::runtime_error([&] {
        std::string msg = "invalid configuration:";
        for (const auto& p : problems) msg += "\n  - " + p;
        return msg;
      }()),
      problems_(std::move(problems)) {}

Environment ProcessEnvironment() {
  Environment env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry(*e);
    auto eq = entry.find('=');
    if (eq != std::string::npos) env[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return env;
}

Config ParseConfig(const std::string& text, const std::string& source, const Environment& env,
                   ConfigUse use) {
  Config config;
  Problems problems;
  g_problems = &problems;
  if (!Trim(text).empty()) {
    try {
      YAML::Node root = YAML::Load(text);
      if (!root.IsNull()) {
        if (!root.IsMap()) {
          problems.push_back(source + ": expected a map of settings at the top level");
        } else {
          ApplyYaml(config, root, "", problems);
        }
      }
    } catch (const YAML::Exception& e) {
      problems.push_back(source + ": not valid YAML/JSON: " + e.what());
    }
  }
  ApplyEnvironment(config, env, problems);
  Validate(config, problems, use);
  g_problems = nullptr;
  if (!problems.empty()) throw ConfigError(std::move(problems));
  return config;
}

Config LoadConfig(const std::string& path, const Environment& env, ConfigUse use) {
  if (path.empty()) return ParseConfig("", "defaults", env, use);
  std::ifstream in(path);
  if (!in) throw ConfigError({path + ": cannot read the config file"});
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path, env, use);
}

std::string MaskUrl(const std::string& url) {
  const ConninfoOptions options = ParseConninfo(url);
  if (!options) return "***";  // never printed raw: where a password ends is unknown
  bool has_secret = false;
  for (const PQconninfoOption* o = options.get(); o->keyword != nullptr; ++o) {
    has_secret = has_secret || (o->val != nullptr && IsSecretConninfoOption(*o));
  }
  if (!has_secret) return url;
  const std::set<std::string> secret = SecretConninfoKeywords(options.get());
  // Masked in place, so the printed string looks like the one configured; checked against libpq,
  // and rebuilt from what libpq read should the two scans ever disagree.
  const std::optional<std::string> masked =
      UriPrefixLength(url) != 0 ? MaskUri(url, secret) : MaskKeyValuePairs(url, secret);
  if (masked && MaskedAsExpected(options.get(), *masked)) return *masked;
  return RebuiltConninfo(options.get());
}

std::chrono::milliseconds PollYield(const Config& config, const std::string& provider) {
  const auto it = config.provider_limits.find(provider);
  if (it != config.provider_limits.end() && it->second.poll_yield) return *it->second.poll_yield;
  return provider == "temporal" ? config.poll.max_interval : std::chrono::milliseconds(0);
}

std::chrono::milliseconds PollMinInterval(const Config& config, const std::string& provider) {
  const auto it = config.provider_limits.find(provider);
  if (it != config.provider_limits.end() && it->second.poll_min_interval) {
    return *it->second.poll_min_interval;
  }
  if (provider == "temporal") {
    return std::min(std::max(config.poll.min_interval, std::chrono::milliseconds(5000)),
                    config.poll.max_interval);
  }
  return config.poll.min_interval;
}

const std::vector<std::string>& KnownProviders() {
  static const std::vector<std::string> kProviders = {"mock", "temporal"};
  return kProviders;
}

bool IsSecretKafkaProperty(const std::string& key) {
  // sasl.oauthbearer.config holds the unsecured JWT's claims or a token endpoint's credentials.
  return key.find("password") != std::string::npos || key.find("secret") != std::string::npos ||
         key == "sasl.jaas.config" || key == "sasl.oauthbearer.config" || key == "ssl.key.pem" ||
         key == "ssl_key";
}

namespace {

// 0.05 rather than the emitter's 0.050000000000000003.
std::string Decimal(double n) {
  std::array<char, 32> buf{};
  std::snprintf(buf.data(), buf.size(), "%g", n);
  return buf.data();
}

// Only the keys the distribution uses, so that the output reads back as the same configuration.
void DescribeMockMisbehaviour(YAML::Emitter& out, const providers::mock::Misbehaviour& m) {
  using providers::mock::Latency;
  const Latency& l = m.latency;
  out << YAML::Key << "latency" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "distribution" << YAML::Value << providers::mock::ToString(l.kind);
  if (l.kind == Latency::Kind::kFixed || l.kind == Latency::Kind::kLongTail) {
    out << YAML::Key << "base" << YAML::Value << FormatDuration(l.base);
  }
  if (l.kind == Latency::Kind::kUniform) {
    out << YAML::Key << "min" << YAML::Value << FormatDuration(l.min);
    out << YAML::Key << "max" << YAML::Value << FormatDuration(l.max);
  }
  if (l.kind == Latency::Kind::kLongTail) {
    out << YAML::Key << "tail_ratio" << YAML::Value << Decimal(l.tail_ratio);
    out << YAML::Key << "tail" << YAML::Value << FormatDuration(l.tail);
  }
  out << YAML::EndMap;
  out << YAML::Key << "hang_ratio" << YAML::Value << Decimal(m.hang_ratio);
  out << YAML::Key << "max_calls_per_second" << YAML::Value << Decimal(m.max_calls_per_second);
  out << YAML::Key << "outages" << YAML::Value;
  if (m.outages.empty()) out << YAML::Flow;  // "outages: []"
  out << YAML::BeginSeq;
  for (const auto& o : m.outages) {
    out << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "after" << YAML::Value << FormatDuration(o.after);
    out << YAML::Key << "duration" << YAML::Value << FormatDuration(o.duration);
    out << YAML::Key << "mode" << YAML::Value << providers::mock::ToString(o.mode);
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  if (m.seed) out << YAML::Key << "seed" << YAML::Value << *m.seed;  // none: random
}

// The providers.<name>.* limits, as keys of that provider's map (defaults shown resolved).
void DescribeProviderLimits(YAML::Emitter& out, const Config& c, const std::string& name) {
  auto ms = [](std::chrono::milliseconds d) { return FormatDuration(d); };
  const auto it = c.provider_limits.find(name);
  const ProviderLimitsConfig limits =
      it == c.provider_limits.end() ? ProviderLimitsConfig{} : it->second;
  out << YAML::Key << "max_in_flight" << YAML::Value
      << limits.max_in_flight.value_or(c.dispatch.max_in_flight * c.dispatch.workers);
  out << YAML::Key << "call_timeout" << YAML::Value
      << ms(limits.call_timeout.value_or(c.dispatch.call_timeout));
  out << YAML::Key << "retry" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "attempts" << YAML::Value << limits.retry_attempts;
  out << YAML::Key << "initial_backoff" << YAML::Value << ms(limits.retry_initial_backoff);
  out << YAML::Key << "max_backoff" << YAML::Value << ms(limits.retry_max_backoff);
  out << YAML::EndMap;
  out << YAML::Key << "breaker" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "failure_threshold" << YAML::Value << limits.breaker_failure_threshold;
  out << YAML::Key << "failure_window" << YAML::Value << ms(limits.breaker_failure_window);
  out << YAML::Key << "open_interval" << YAML::Value << ms(limits.breaker_open_interval);
  out << YAML::Key << "drain_rate" << YAML::Value << limits.breaker_drain_rate;
  out << YAML::Key << "drain_ramp" << YAML::Value << ms(limits.breaker_drain_ramp);
  out << YAML::EndMap;
  out << YAML::Key << "polls_per_second" << YAML::Value << limits.polls_per_second;
  out << YAML::Key << "poll_min_interval" << YAML::Value << ms(PollMinInterval(c, name));
  out << YAML::Key << "poll_yield" << YAML::Value << ms(PollYield(c, name));
}

}  // namespace

std::string DescribeConfig(const Config& c) {
  YAML::Emitter out;
  auto ms = [](std::chrono::milliseconds d) { return FormatDuration(d); };
  out << YAML::BeginMap;
  out << YAML::Key << "instance_id" << YAML::Value << c.instance_id;
  out << YAML::Key << "shutdown_timeout" << YAML::Value << ms(c.shutdown_timeout);
  out << YAML::Key << "database" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "url" << YAML::Value << MaskUrl(c.database.url);
  out << YAML::Key << "connect_timeout" << YAML::Value << ms(c.database.connect_timeout);
  out << YAML::EndMap;
  out << YAML::Key << "kafka" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "brokers" << YAML::Value << c.kafka.brokers;
  out << YAML::Key << "group_id" << YAML::Value << c.kafka.group_id;
  out << YAML::Key << "topics" << YAML::Value << YAML::Flow << c.kafka.topics;
  out << YAML::Key << "dlq_topic" << YAML::Value << c.kafka.dlq_topic;
  out << YAML::Key << "format" << YAML::Value << c.kafka.format;
  out << YAML::Key << "flat" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "id" << YAML::Value << c.kafka.flat.id;
  out << YAML::Key << "event_name" << YAML::Value << c.kafka.flat.event_name;
  out << YAML::Key << "tenant" << YAML::Value << c.kafka.flat.tenant;
  out << YAML::Key << "environment" << YAML::Value << c.kafka.flat.environment;
  out << YAML::Key << "time" << YAML::Value << c.kafka.flat.time;
  out << YAML::Key << "data" << YAML::Value << c.kafka.flat.data;
  out << YAML::Key << "source" << YAML::Value << c.kafka.flat.source;
  out << YAML::EndMap;
  out << YAML::Key << "max_record_bytes" << YAML::Value << c.kafka.max_record_bytes;
  out << YAML::Key << "batch_size" << YAML::Value << c.kafka.batch_size;
  out << YAML::Key << "batch_timeout" << YAML::Value << ms(c.kafka.batch_timeout);
  out << YAML::Key << "commit_interval" << YAML::Value << ms(c.kafka.commit_interval);
  out << YAML::Key << "properties" << YAML::Value << YAML::BeginMap;
  for (const auto& [k, v] : c.kafka.properties) {
    out << YAML::Key << k << YAML::Value << (IsSecretKafkaProperty(k) ? std::string("***") : v);
  }
  out << YAML::EndMap << YAML::EndMap;
  out << YAML::Key << "matching" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "resync_interval" << YAML::Value << ms(c.matching.resync_interval);
  out << YAML::EndMap;
  out << YAML::Key << "admin" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "listen" << YAML::Value << c.admin.listen << YAML::EndMap;
  out << YAML::Key << "dispatch" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "enabled" << YAML::Value << c.dispatch.enabled;
  out << YAML::Key << "batch_size" << YAML::Value << c.dispatch.batch_size;
  out << YAML::Key << "per_scope_limit" << YAML::Value << c.dispatch.per_scope_limit;
  out << YAML::Key << "max_in_flight" << YAML::Value << c.dispatch.max_in_flight;
  out << YAML::Key << "workers" << YAML::Value << c.dispatch.workers;
  out << YAML::Key << "lease" << YAML::Value << ms(c.dispatch.lease);
  out << YAML::Key << "idle_interval" << YAML::Value << ms(c.dispatch.idle_interval);
  out << YAML::Key << "call_timeout" << YAML::Value << ms(c.dispatch.call_timeout);
  out << YAML::EndMap;
  out << YAML::Key << "poll" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "batch_size" << YAML::Value << c.poll.batch_size;
  out << YAML::Key << "max_in_flight" << YAML::Value << c.poll.max_in_flight;
  out << YAML::Key << "workers" << YAML::Value << c.poll.workers;
  out << YAML::Key << "min_interval" << YAML::Value << ms(c.poll.min_interval);
  out << YAML::Key << "max_interval" << YAML::Value << ms(c.poll.max_interval);
  out << YAML::EndMap;
  out << YAML::Key << "providers" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "default" << YAML::Value << c.default_provider;
  out << YAML::Key << "mock" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "enabled" << YAML::Value << c.mock_provider.enabled;
  out << YAML::Key << "start_log" << YAML::Value << c.mock_provider.start_log;
  DescribeMockMisbehaviour(out, c.mock_provider.misbehaviour);
  DescribeProviderLimits(out, c, "mock");
  out << YAML::EndMap;
  const auto& t = c.temporal;
  out << YAML::Key << "temporal" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "address" << YAML::Value << t.address;
  out << YAML::Key << "namespace" << YAML::Value << t.namespace_name;
  out << YAML::Key << "task_queue" << YAML::Value << t.task_queue;
  out << YAML::Key << "workflow_type" << YAML::Value << t.workflow_type;
  out << YAML::Key << "identity" << YAML::Value << t.identity;
  out << YAML::Key << "api_key_file" << YAML::Value << t.api_key_file;  // the key itself never
  out << YAML::Key << "tls" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "enabled" << YAML::Value << t.tls.enabled;
  out << YAML::Key << "ca_file" << YAML::Value << t.tls.ca_file;
  out << YAML::Key << "cert_file" << YAML::Value << t.tls.cert_file;
  out << YAML::Key << "key_file" << YAML::Value << t.tls.key_file;
  out << YAML::Key << "server_name" << YAML::Value << t.tls.server_name << YAML::EndMap;
  out << YAML::Key << "rpc" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "timeout" << YAML::Value << ms(t.rpc_timeout);
  out << YAML::Key << "attempts" << YAML::Value << t.rpc_attempts;
  out << YAML::Key << "initial_backoff" << YAML::Value << ms(t.rpc_initial_backoff);
  out << YAML::Key << "max_backoff" << YAML::Value << ms(t.rpc_max_backoff) << YAML::EndMap;
  out << YAML::Key << "cancel_grace" << YAML::Value << ms(t.cancel_grace);
  out << YAML::Key << "search_attributes" << YAML::Value << t.search_attributes;
  DescribeProviderLimits(out, c, "temporal");
  out << YAML::EndMap << YAML::EndMap;
  out << YAML::Key << "log" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "level" << YAML::Value << c.log.level;
  out << YAML::Key << "format" << YAML::Value << c.log.format << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace workflowd::daemon
