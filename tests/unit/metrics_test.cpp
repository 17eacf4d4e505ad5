// Unit tests for the metrics registry and its Prometheus text exposition (metrics/, on
// prometheus-cpp). The format itself is cross-checked with promtool in
// tests/integration/admin_http_test.cpp. prometheus-cpp's TextSerializer writes a histogram's
// _count and _sum before its buckets.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "workflowd/metrics/registry.hpp"

namespace workflowd::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr double kInf = std::numeric_limits<double>::infinity();

// Runs `fn` and returns the std::invalid_argument message (fails the test when none is thrown).
template <typename Fn>
std::string InvalidArgumentMessage(Fn fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected std::invalid_argument";
  return "";
}

TEST(MetricsExpositionTest, SmallRegistryRendersExactly) {
  Registry registry;
  auto& events =
      registry.AddCounter("workflowd_events_total", "Events consumed.", {"tenant", "environment"});
  events.WithLabels({"t2", "prod"}).Inc(3);
  events.WithLabels({"t1", "prod"}).Inc();
  events.WithLabels({"t1", "dev"}).Inc(0.5);
  registry.AddGauge("workflowd_inflight_executions", "Executions in flight.").Set(-2.5);
  auto& latency = registry.AddHistogram("workflowd_start_seconds", "Provider start latency.",
                                        {"provider"}, {0.005, 0.1, 1});
  auto& mock = latency.WithLabels({"mock"});
  mock.Observe(0.005);  // bounds are inclusive: lands in le="0.005"
  mock.Observe(0.05);
  mock.Observe(3);
  // A labelled family without children is not exported (like the Go client).
  registry.AddGauge("workflowd_consumer_lag", "Lag.", {"partition"});

  EXPECT_EQ(registry.Serialize(),
            "# HELP workflowd_events_total Events consumed.\n"
            "# TYPE workflowd_events_total counter\n"
            "workflowd_events_total{tenant=\"t1\",environment=\"dev\"} 0.5\n"
            "workflowd_events_total{tenant=\"t1\",environment=\"prod\"} 1\n"
            "workflowd_events_total{tenant=\"t2\",environment=\"prod\"} 3\n"
            "# HELP workflowd_inflight_executions Executions in flight.\n"
            "# TYPE workflowd_inflight_executions gauge\n"
            "workflowd_inflight_executions -2.5\n"
            "# HELP workflowd_start_seconds Provider start latency.\n"
            "# TYPE workflowd_start_seconds histogram\n"
            "workflowd_start_seconds_count{provider=\"mock\"} 3\n"
            "workflowd_start_seconds_sum{provider=\"mock\"} 3.055\n"
            "workflowd_start_seconds_bucket{provider=\"mock\",le=\"0.005\"} 1\n"
            "workflowd_start_seconds_bucket{provider=\"mock\",le=\"0.1\"} 2\n"
            "workflowd_start_seconds_bucket{provider=\"mock\",le=\"1\"} 2\n"
            "workflowd_start_seconds_bucket{provider=\"mock\",le=\"+Inf\"} 3\n");
}

TEST(MetricsExpositionTest, UnlabelledMetricsAreExportedAtZeroRightAway) {
  Registry registry;
  registry.AddCounter("b_total", "B.");
  registry.AddHistogram("a_seconds", "A.", std::vector<double>{1});
  EXPECT_EQ(registry.Serialize(),
            "# HELP a_seconds A.\n"
            "# TYPE a_seconds histogram\n"
            "a_seconds_count 0\n"
            "a_seconds_sum 0\n"
            "a_seconds_bucket{le=\"1\"} 0\n"
            "a_seconds_bucket{le=\"+Inf\"} 0\n"
            "# HELP b_total B.\n"
            "# TYPE b_total counter\n"
            "b_total 0\n");
}

TEST(MetricsExpositionTest, EscapesHelpAndLabelValues) {
  Registry registry;
  auto& family = registry.AddCounter("x_total", "Line one\nback\\slash \"quotes\" stay.", {"v"});
  family.WithLabels({"a\\b\"c\nd"}).Inc();
  EXPECT_EQ(registry.Serialize(),
            "# HELP x_total Line one\\nback\\\\slash \"quotes\" stay.\n"
            "# TYPE x_total counter\n"
            "x_total{v=\"a\\\\b\\\"c\\nd\"} 1\n");
  family.WithLabels({"plain ünïcode"}).Inc();  // UTF-8 is not escaped
  EXPECT_THAT(registry.Serialize(), HasSubstr("x_total{v=\"plain ünïcode\"} 1\n"));
  EXPECT_EQ(EscapeHelp("a\"b"), "a\"b");  // quotes are not escaped in HELP
}

// The text of each value of a one-gauge-per-value family, in the order of `values`.
std::vector<std::string> RenderedValues(const std::vector<double>& values) {
  Registry registry;
  auto& family = registry.AddGauge("v", "h", {"i"});
  for (std::size_t i = 0; i < values.size(); ++i) {
    family.WithLabels({std::to_string(1000 + i)}).Set(values[i]);
  }
  const std::string text = registry.Serialize();
  std::vector<std::string> rendered;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::string head = "v{i=\"" + std::to_string(1000 + i) + "\"} ";
    const std::size_t at = text.find(head);
    if (at == std::string::npos) {
      ADD_FAILURE() << head << " missing from:\n" << text;
      rendered.emplace_back();
      continue;
    }
    const std::size_t begin = at + head.size();
    rendered.push_back(text.substr(begin, text.find('\n', begin) - begin));
  }
  return rendered;
}

// Values as prometheus-cpp's TextSerializer writes them (printf's %g with 16 significant digits):
// integers without exponent, the usual decimals in their short form, and spellings Prometheus
// parses ("Nan" and "-0" included: its parser reads NaN case-insensitively, -0 as zero).
TEST(MetricsExpositionTest, FormatsValuesLikePrometheusClients) {
  const std::vector<std::pair<double, std::string>> cases = {
      {0, "0"},
      {-0.0, "-0"},
      {1, "1"},
      {-3, "-3"},
      {1234567, "1234567"},
      {123456789012345, "123456789012345"},
      {9007199254740992.0, "9007199254740992"},  // 2^53: every integer up to it is exact
      {0.1, "0.1"},
      {0.005, "0.005"},
      {0.0005, "0.0005"},
      {2.5, "2.5"},
      {1e-05, "1e-05"},
      {1e20, "1e+20"},
      {kInf, "+Inf"},
      {-kInf, "-Inf"},
      {std::nan(""), "Nan"}};
  std::vector<double> values;
  for (const auto& [value, text] : cases) values.push_back(value);
  const std::vector<std::string> rendered = RenderedValues(values);
  ASSERT_EQ(rendered.size(), cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(rendered[i], cases[i].second) << "value #" << i;
  }
}

// 16 significant digits: integral values up to 2^53 come back exactly, any other value to within
// one part in 10^15 (the shortest round-trip form would need up to 17 digits).
TEST(MetricsExpositionTest, RenderedValuesParseBackToTheValue) {
  const std::vector<double> values = {0.1 + 0.2,  1.0 / 3.0, -2.0 / 3.0, DBL_MIN,
                                      5e-324,     1e15,      1e15 + 1,   9007199254740993.0,
                                      123.456e-7, 0.0005,    10.0};
  const std::vector<std::string> rendered = RenderedValues(values);
  ASSERT_EQ(rendered.size(), values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    const double parsed = std::strtod(rendered[i].c_str(), nullptr);  // (stod throws on subnormals)
    if (std::trunc(v) == v) {
      EXPECT_EQ(parsed, v) << rendered[i];
    } else {
      EXPECT_LE(std::fabs(parsed - v), 1e-15 * std::fabs(v)) << rendered[i];
    }
    EXPECT_THAT(rendered[i], Not(HasSubstr(" ")));
  }
}

TEST(MetricsExpositionTest, HistogramLeLabelsForDefaultBuckets) {
  Registry registry;
  registry.AddHistogram("h_seconds", "H.", DefaultLatencyBuckets());
  const std::string text = registry.Serialize();
  for (const char* le : {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
                         "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}) {
    EXPECT_THAT(text, HasSubstr(std::string("h_seconds_bucket{le=\"") + le + "\"} 0\n"));
  }
}

TEST(MetricsValidationTest, RejectsInvalidMetricNames) {
  Registry registry;
  for (const char* name : {"", "1abc_total", "a-b_total", "a b_total", "é_total"}) {
    EXPECT_THAT(InvalidArgumentMessage([&] { registry.AddCounter(name, "h"); }),
                HasSubstr("invalid metric name"))
        << name;
  }
  EXPECT_NO_THROW(registry.AddCounter("ns:sub_x_total", "colons are allowed"));
  EXPECT_NO_THROW(registry.AddGauge("_leading_underscore", "ok"));
  EXPECT_TRUE(IsValidMetricName("a:b_c9"));
  EXPECT_FALSE(IsValidMetricName("9a"));
}

TEST(MetricsValidationTest, RejectsInvalidLabelNames) {
  Registry registry;
  for (const char* label : {"", "__reserved", "a:b", "1a", "a-b"}) {
    EXPECT_THAT(InvalidArgumentMessage([&] { registry.AddGauge("g", "h", {label}); }),
                HasSubstr("invalid label name"))
        << label;
  }
  EXPECT_THAT(InvalidArgumentMessage([&] {
                registry.AddGauge("g", "h", {"a", "a"});
              }),
              HasSubstr("duplicate label name \"a\""));
  EXPECT_THAT(InvalidArgumentMessage(
                  [&] { registry.AddHistogram("h_seconds", "h", {"le"}, std::vector<double>{1}); }),
              HasSubstr("reserved"));
  EXPECT_NO_THROW(registry.AddGauge("g", "h", {"_a", "b9"}));
}

TEST(MetricsValidationTest, CounterSuffixAndDuplicates) {
  Registry registry;
  EXPECT_THAT(InvalidArgumentMessage([&] { registry.AddCounter("workflowd_events", "h"); }),
              HasSubstr("\"workflowd_events\": counter names must end in _total"));
  EXPECT_THAT(InvalidArgumentMessage([&] { registry.AddGauge("workflowd_x_total", "h"); }),
              HasSubstr("only counter names may end in _total"));

  registry.AddCounter("workflowd_events_total", "h", {"tenant"});
  EXPECT_THAT(InvalidArgumentMessage([&] { registry.AddCounter("workflowd_events_total", "h"); }),
              HasSubstr("metric \"workflowd_events_total\": already registered"));

  registry.AddHistogram("workflowd_latency_seconds", "h", DefaultLatencyBuckets());
  EXPECT_THAT(
      InvalidArgumentMessage([&] { registry.AddGauge("workflowd_latency_seconds_count", "h"); }),
      HasSubstr("collides with metric \"workflowd_latency_seconds\""));
  EXPECT_THAT(InvalidArgumentMessage([&] { registry.AddGauge("workflowd_latency_seconds", "h"); }),
              HasSubstr("already registered"));
}

TEST(MetricsValidationTest, WrongNumberOfLabelValuesThrows) {
  Registry registry;
  auto& family = registry.AddCounter("workflowd_events_total", "h", {"tenant", "environment"});
  const std::string message = InvalidArgumentMessage([&] { family.WithLabels({"t1"}); });
  EXPECT_THAT(message, HasSubstr("workflowd_events_total"));
  EXPECT_THAT(message, HasSubstr("expected 2 label value(s) [tenant, environment], got 1"));
  EXPECT_THROW(family.WithLabels({"a", "b", "c"}), std::invalid_argument);
  EXPECT_THROW(family.WithLabels({"a", "\xff\xfe"}), std::invalid_argument);  // not UTF-8
  EXPECT_EQ(family.size(), 0u);
}

TEST(MetricsValidationTest, CountersOnlyGoUp) {
  Registry registry;
  Counter& counter = registry.AddCounter("c_total", "h");
  EXPECT_THROW(counter.Inc(-1), std::invalid_argument);
  EXPECT_THROW(counter.Inc(std::nan("")), std::invalid_argument);
  counter.Inc(0);
  counter.Inc(2.5);
  EXPECT_EQ(counter.Value(), 2.5);
}

TEST(MetricsValidationTest, HistogramBucketsMustIncrease) {
  Registry registry;
  EXPECT_THAT(InvalidArgumentMessage([&] {
                registry.AddHistogram("h_seconds", "h", std::vector<double>{1, 0.5});
              }),
              HasSubstr("metric \"h_seconds\": histogram bucket bounds must be strictly"));
  EXPECT_THROW(registry.AddHistogram("h_seconds", "h", std::vector<double>{1, 1}),
               std::invalid_argument);
  EXPECT_THROW(registry.AddHistogram("h_seconds", "h", std::vector<double>{std::nan("")}),
               std::invalid_argument);
  EXPECT_THROW(registry.AddHistogram("h_seconds", "h", std::vector<double>{-kInf, 1}),
               std::invalid_argument);
  // A trailing +Inf is accepted and not doubled; the failed attempts registered nothing.
  Histogram& h = registry.AddHistogram("h_seconds", "h", std::vector<double>{1, kInf});
  EXPECT_EQ(h.upper_bounds(), (std::vector<double>{1, kInf}));
}

TEST(MetricsHistogramTest, ObservesIntoCumulativeBuckets) {
  Histogram histogram({0.1, 1});
  histogram.Observe(0.1);
  histogram.Observe(0.5);
  histogram.Observe(1);
  histogram.Observe(7);
  histogram.Observe(kInf);
  histogram.Observe(std::nan(""));
  HistogramSnapshot snapshot = histogram.Snapshot();
  EXPECT_EQ(snapshot.upper_bounds, (std::vector<double>{0.1, 1, kInf}));
  EXPECT_EQ(snapshot.cumulative_counts, (std::vector<std::uint64_t>{1, 3, 6}));
  EXPECT_EQ(snapshot.count, 6u);
  EXPECT_TRUE(std::isnan(snapshot.sum));

  Histogram plain({0.25});
  plain.Observe(0.25);
  plain.Observe(-1);
  EXPECT_EQ(plain.Snapshot().cumulative_counts, (std::vector<std::uint64_t>{2, 2}));
  EXPECT_EQ(plain.Snapshot().sum, -0.75);
}

TEST(MetricsHistogramTest, DefaultLatencyBucketsSpanHalfAMillisecondToTenSeconds) {
  const std::vector<double> buckets = DefaultLatencyBuckets();
  ASSERT_FALSE(buckets.empty());
  EXPECT_EQ(buckets.front(), 0.0005);
  EXPECT_EQ(buckets.back(), 10);
  EXPECT_TRUE(std::is_sorted(buckets.begin(), buckets.end()));
}

TEST(MetricsGaugeTest, SetIncDec) {
  Registry registry;
  Gauge& gauge = registry.AddGauge("g", "h");
  gauge.Set(10);
  gauge.Inc();
  gauge.Inc(4.5);
  gauge.Dec(0.5);
  gauge.Dec();
  EXPECT_EQ(gauge.Value(), 14);
}

TEST(MetricsFamilyTest, ChildReferencesAreStable) {
  Registry registry;
  auto& family = registry.AddGauge("g", "h", {"partition"});
  Gauge* first = &family.WithLabels({"0"});
  for (int i = 1; i < 1000; ++i) family.WithLabels({std::to_string(i)}).Set(i);
  EXPECT_EQ(&family.WithLabels({"0"}), first);
  EXPECT_EQ(family.size(), 1000u);
}

TEST(MetricsFamilyTest, RemovedChildrenAreNoLongerExported) {
  Registry registry;
  auto& lag = registry.AddGauge("workflowd_consumer_lag", "Lag.", {"topic", "partition"});
  lag.WithLabels({"events", "0"}).Set(5);
  lag.WithLabels({"events", "1"}).Set(7);

  EXPECT_TRUE(lag.Remove({"events", "0"}));
  EXPECT_FALSE(lag.Remove({"events", "0"}));
  EXPECT_FALSE(lag.Remove({"other", "9"}));
  EXPECT_EQ(registry.Serialize(),
            "# HELP workflowd_consumer_lag Lag.\n"
            "# TYPE workflowd_consumer_lag gauge\n"
            "workflowd_consumer_lag{topic=\"events\",partition=\"1\"} 7\n");

  // Reassigned later: starts from zero again.
  EXPECT_EQ(lag.WithLabels({"events", "0"}).Value(), 0);
  EXPECT_TRUE(lag.Remove({"events", "0"}));
  EXPECT_TRUE(lag.Remove({"events", "1"}));
  EXPECT_EQ(registry.Serialize(), "");  // family without children: nothing at all
}

TEST(MetricsCallbackTest, RunBeforeEachSerializeAndCanBeRemoved) {
  Registry registry;
  Gauge& sampled = registry.AddGauge("sampled", "h");
  int runs = 0;
  const Registry::CallbackId id = registry.AddCollectCallback([&] {
    ++runs;
    sampled.Set(runs * 10);
  });
  EXPECT_THAT(registry.Serialize(), HasSubstr("sampled 10\n"));
  EXPECT_THAT(registry.Serialize(), HasSubstr("sampled 20\n"));
  registry.RemoveCollectCallback(id);
  EXPECT_THAT(registry.Serialize(), HasSubstr("sampled 20\n"));
  EXPECT_EQ(runs, 2);
  registry.RemoveCollectCallback(id);  // unknown id: no-op
  EXPECT_THROW(registry.AddCollectCallback(nullptr), std::invalid_argument);
}

TEST(MetricsCallbackTest, MayCreateAndRemoveChildren) {
  Registry registry;
  auto& lag = registry.AddGauge("lag", "h", {"partition"});
  std::vector<int> assigned = {0, 1};
  registry.AddCollectCallback([&] {
    for (int p : {0, 1, 2}) {
      const bool is_assigned = std::find(assigned.begin(), assigned.end(), p) != assigned.end();
      if (is_assigned) {
        lag.WithLabels({std::to_string(p)}).Set(p + 100);
      } else {
        lag.Remove({std::to_string(p)});
      }
    }
  });
  EXPECT_EQ(registry.Serialize(),
            "# HELP lag h\n# TYPE lag gauge\nlag{partition=\"0\"} 100\nlag{partition=\"1\"} 101\n");
  assigned = {2};
  EXPECT_EQ(registry.Serialize(), "# HELP lag h\n# TYPE lag gauge\nlag{partition=\"2\"} 102\n");
}

// The consumer lag gauge is rebuilt from the current assignment on each collect: the series of a
// partition that was revoked disappears instead of freezing at its last value.
TEST(MetricsSeriesTest, RemoveExceptDropsSeriesMissingFromTheCurrentSet) {
  Registry registry;
  auto& lag = registry.AddGauge("lag", "h", {"topic", "partition"});
  std::set<std::vector<std::string>> assigned = {{"events", "0"}, {"events", "1"}};
  registry.AddCollectCallback([&] {
    for (const auto& labels : assigned) lag.WithLabels(labels).Set(7);
    lag.RemoveExcept(assigned);
  });
  EXPECT_THAT(registry.Serialize(), HasSubstr("lag{topic=\"events\",partition=\"1\"} 7\n"));
  assigned = {{"events", "0"}};  // partition 1 revoked
  const std::string after = registry.Serialize();
  EXPECT_THAT(after, HasSubstr("lag{topic=\"events\",partition=\"0\"} 7\n"));
  EXPECT_THAT(after, Not(HasSubstr("partition=\"1\"")));
  assigned = {};
  EXPECT_EQ(registry.Serialize(), "");
  EXPECT_EQ(lag.size(), 0U);
  lag.WithLabels({"a", "1"});
  lag.WithLabels({"b", "2"});
  EXPECT_EQ(lag.RemoveExcept({{"b", "2"}, {"c", "3"}}), 1U);
  EXPECT_EQ(lag.size(), 1U);
}

// Per-tenant families are bounded: past the limit, label sets are summed into one "other" series.
TEST(MetricsSeriesTest, LimitSeriesSumsFurtherLabelSetsIntoOneOverflowSeries) {
  Registry registry;
  auto& queued = registry.AddGauge("queued", "h", {"tenant", "environment"});
  std::vector<std::string> warnings;
  queued.LimitSeries(2, "other", [&](const std::string& name) { warnings.push_back(name); });
  queued.WithLabels({"t1", "prod"}).Set(1);
  queued.WithLabels({"t2", "prod"}).Set(2);
  EXPECT_TRUE(warnings.empty());
  Gauge& t3 = queued.WithLabels({"t3", "prod"});
  t3.Set(30);  // Set on each overflowed child: the overflow series is their sum
  queued.WithLabels({"t4", "dev"}).Set(400);
  queued.WithLabels({"t3", "prod"}).Inc();                  // the same child again
  EXPECT_EQ(warnings, std::vector<std::string>{"queued"});  // once
  EXPECT_EQ(registry.Serialize(),
            "# HELP queued h\n# TYPE queued gauge\n"
            "queued{tenant=\"other\",environment=\"other\"} 431\n"
            "queued{tenant=\"t1\",environment=\"prod\"} 1\n"
            "queued{tenant=\"t2\",environment=\"prod\"} 2\n");
  EXPECT_EQ(queued.size(), 4U);
  EXPECT_TRUE(queued.Remove({"t4", "dev"}));
  EXPECT_THAT(registry.Serialize(),
              HasSubstr("queued{tenant=\"other\",environment=\"other\"} 31\n"));
  EXPECT_TRUE(queued.Remove({"t3", "prod"}));
  EXPECT_THAT(registry.Serialize(), Not(HasSubstr("other")));  // nothing overflows any more

  // A room freed below the limit goes to the next new label set.
  EXPECT_TRUE(queued.Remove({"t1", "prod"}));
  queued.WithLabels({"t5", "prod"}).Set(5);
  EXPECT_THAT(registry.Serialize(), HasSubstr("queued{tenant=\"t5\",environment=\"prod\"} 5\n"));
  EXPECT_THROW(queued.LimitSeries(0, "other"), std::invalid_argument);
}

TEST(MetricsSeriesTest, OverflowOfCountersAndHistogramsAndALabelSetNamedLikeTheOverflow) {
  Registry registry;
  auto& starts = registry.AddCounter("starts_total", "h", {"tenant"});
  starts.LimitSeries(2, "other");
  starts.WithLabels({"other"}).Inc(1);  // a real tenant called "other": one series, summed
  starts.WithLabels({"a"}).Inc(2);
  starts.WithLabels({"b"}).Inc(4);
  starts.WithLabels({"c"}).Inc(8);
  auto& latency = registry.AddHistogram("latency_seconds", "h", {"tenant"}, {1});
  latency.LimitSeries(1, "other");
  latency.WithLabels({"a"}).Observe(0.5);
  latency.WithLabels({"b"}).Observe(0.5);
  latency.WithLabels({"c"}).Observe(2);
  EXPECT_EQ(registry.Serialize(),
            "# HELP latency_seconds h\n# TYPE latency_seconds histogram\n"
            "latency_seconds_count{tenant=\"a\"} 1\n"
            "latency_seconds_sum{tenant=\"a\"} 0.5\n"
            "latency_seconds_bucket{tenant=\"a\",le=\"1\"} 1\n"
            "latency_seconds_bucket{tenant=\"a\",le=\"+Inf\"} 1\n"
            "latency_seconds_count{tenant=\"other\"} 2\n"
            "latency_seconds_sum{tenant=\"other\"} 2.5\n"
            "latency_seconds_bucket{tenant=\"other\",le=\"1\"} 1\n"
            "latency_seconds_bucket{tenant=\"other\",le=\"+Inf\"} 2\n"
            "# HELP starts_total h\n# TYPE starts_total counter\n"
            "starts_total{tenant=\"a\"} 2\n"
            "starts_total{tenant=\"other\"} 13\n");
}

// What run.cpp relies on at shutdown: once the handle is reset (or destroyed), the callback is
// never called again, and the reset waits for a collect that is running it.
TEST(MetricsCallbackTest, ScopedCollectCallbackRemovalWaitsForARunningCollect) {
  Registry registry;
  std::atomic<int> runs{0};
  std::atomic<bool> entered{false};
  std::atomic<bool> release{false};
  auto scoped = std::make_unique<ScopedCollectCallback>(registry, [&] {
    entered = true;
    while (!release) std::this_thread::yield();
    ++runs;
  });
  std::thread scrape([&] { registry.Serialize(); });
  while (!entered) std::this_thread::yield();
  std::atomic<bool> reset_returned{false};
  std::atomic<int> runs_when_reset_returned{-1};
  std::thread remover([&] {
    scoped->Reset();
    runs_when_reset_returned = runs.load();
    reset_returned = true;
  });
  // A Reset() that did not wait would return now, while the callback is held (runs == 0): give it
  // that chance, then let the callback finish.
  for (int i = 0; i < 100 && !reset_returned; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  release = true;
  remover.join();
  EXPECT_EQ(runs_when_reset_returned.load(), 1);
  scrape.join();
  registry.Serialize();
  EXPECT_EQ(runs.load(), 1);  // removed: not called again
  scoped.reset();             // destructor after Reset(): a no-op

  {
    ScopedCollectCallback until_scope_end(registry, [&] { ++runs; });
    registry.Serialize();
  }
  registry.Serialize();
  EXPECT_EQ(runs.load(), 2);
}

TEST(MetricsCallbackTest, ThrowingCallbackIsReportedAndDoesNotStopTheExposition) {
  Registry registry;
  Gauge& gauge = registry.AddGauge("g", "h");
  registry.AddCollectCallback([] { throw std::runtime_error("kafka is away"); });
  registry.AddCollectCallback([&] { gauge.Set(3); });
  std::vector<std::string> errors;
  EXPECT_EQ(registry.Serialize(&errors), "# HELP g h\n# TYPE g gauge\ng 3\n");
  EXPECT_EQ(errors, std::vector<std::string>{"kafka is away"});
  EXPECT_NO_THROW(registry.Serialize());  // no error sink: still fine
}

// 8 threads x 100k updates; run under ThreadSanitizer too (-DWORKFLOWD_TSAN=ON).
TEST(MetricsConcurrencyTest, ConcurrentUpdatesAreExact) {
  constexpr int kThreads = 8;
  constexpr int kIncrements = 100'000;
  Registry registry;
  auto& family = registry.AddCounter("workflowd_events_total", "h", {"worker"});
  Counter& shared = family.WithLabels({"shared"});
  Gauge& gauge = registry.AddGauge("workflowd_inflight", "h");
  Histogram& histogram = registry.AddHistogram("workflowd_batch_seconds", "h", {0.5});

  std::atomic<bool> stop_scraping{false};
  std::thread scraper([&] {
    // Concurrent Serialize() while children are created and updated.
    while (!stop_scraping.load()) registry.Serialize();
  });
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter& own = family.WithLabels({"w" + std::to_string(t)});  // cached reference
      for (int i = 0; i < kIncrements; ++i) {
        shared.Inc();
        own.Inc();
        gauge.Inc();
        gauge.Dec();
        histogram.Observe(i % 2 == 0 ? 0.25 : 1.0);
        if (i % 10'000 == 0) family.WithLabels({"w" + std::to_string(t)}).Inc(0);  // lookup
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  stop_scraping.store(true);
  scraper.join();

  EXPECT_EQ(shared.Value(), static_cast<double>(kThreads) * kIncrements);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(family.WithLabels({"w" + std::to_string(t)}).Value(), kIncrements);
  }
  EXPECT_EQ(gauge.Value(), 0);
  const HistogramSnapshot snapshot = histogram.Snapshot();
  EXPECT_EQ(snapshot.count, static_cast<std::uint64_t>(kThreads) * kIncrements);
  EXPECT_EQ(snapshot.cumulative_counts[0], static_cast<std::uint64_t>(kThreads) * kIncrements / 2);
  EXPECT_EQ(snapshot.sum, 0.625 * kThreads * kIncrements);  // half 0.25, half 1.0: exact
  EXPECT_THAT(registry.Serialize(),
              HasSubstr("workflowd_events_total{worker=\"shared\"} 800000\n"));
}

// Series come and go (partitions assigned and revoked) while scrapes run: the handles and
// prometheus-cpp's family stay in step, a series that is not removed is in every exposition, and
// a removed one is gone from prometheus-cpp too (it comes back from zero).
TEST(MetricsConcurrencyTest, RemovalWhileScrapingKeepsTheFamilyInStep) {
  Registry registry;
  auto& lag = registry.AddGauge("lag", "h", {"partition"});
  lag.WithLabels({"kept"}).Set(1);
  std::atomic<bool> stop_scraping{false};
  std::atomic<int> scrapes{0};
  std::atomic<int> scrapes_without_kept{0};
  std::thread scraper([&] {
    while (!stop_scraping.load()) {
      if (registry.Serialize().find("lag{partition=\"kept\"} 1\n") == std::string::npos) {
        ++scrapes_without_kept;
      }
      ++scrapes;
    }
  });
  for (int round = 0; round < 2000 || scrapes.load() < 10; ++round) {
    const std::string partition = std::to_string(round % 16);
    lag.WithLabels({partition}).Set(round + 2);
    if (round % 2 == 0) {
      EXPECT_TRUE(lag.Remove({partition}));
    } else {
      lag.RemoveExcept({{"kept"}, {partition}});
    }
  }
  stop_scraping.store(true);
  scraper.join();
  EXPECT_EQ(scrapes_without_kept.load(), 0);
  lag.RemoveExcept({{"kept"}});
  EXPECT_EQ(lag.size(), 1U);
  EXPECT_EQ(registry.Serialize(), "# HELP lag h\n# TYPE lag gauge\nlag{partition=\"kept\"} 1\n");
  EXPECT_EQ(lag.WithLabels({"3"}).Value(), 0);
}

TEST(MetricsConcurrencyTest, ConcurrentRegistrationOfTheSameNameHasOneWinner) {
  Registry registry;
  std::atomic<int> winners{0};
  std::atomic<int> losers{0};
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      try {
        registry.AddCounter("race_total", "h");
        ++winners;
      } catch (const std::invalid_argument&) {
        ++losers;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(winners.load(), 1);
  EXPECT_EQ(losers.load(), 7);
}

}  // namespace
}  // namespace workflowd::metrics
