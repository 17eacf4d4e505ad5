// Prometheus metrics: a registry of counter, gauge and histogram families and its text exposition.
//
// Hand-written on purpose: prometheus-cpp is not packaged in Debian 12, and the subset a daemon
// needs is small. Correctness is checked against the reference implementation: the integration
// test feeds Serialize() output to `promtool check metrics` (Debian package `prometheus`).
//
// Threading: registration, child lookup/creation, removal and Serialize() take locks; updating a
// child (Counter::Inc, Gauge::Set, Histogram::Observe, ...) is lock-free (relaxed atomics), so hot
// paths can cache the reference returned by WithLabels() and update it freely.
//
// Depends only on the C++ standard library.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace workflowd::metrics {

// Monotonically increasing value (Prometheus counter). Names must end in `_total`.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds `amount`; throws std::invalid_argument when it is negative or NaN (counters never go
  // down; a negative amount is a programming error).
  void Inc(double amount = 1.0);
  double Value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Value that goes up and down (Prometheus gauge).
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double value) noexcept { value_.store(value, std::memory_order_relaxed); }
  void Inc(double amount = 1.0) noexcept { value_.fetch_add(amount, std::memory_order_relaxed); }
  void Dec(double amount = 1.0) noexcept { value_.fetch_sub(amount, std::memory_order_relaxed); }
  double Value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A consistent-enough copy of a histogram: counts are cumulative (Prometheus `le` semantics) and
// the last bucket is +Inf, so cumulative_counts.back() == count.
struct HistogramSnapshot {
  std::vector<double> upper_bounds;  // ends with +Inf
  std::vector<std::uint64_t> cumulative_counts;
  double sum = 0.0;
  std::uint64_t count = 0;
};

// Distribution of observations in fixed buckets (Prometheus histogram).
class Histogram {
 public:
  // `upper_bounds` must be strictly increasing and not NaN; a trailing +Inf is optional (it is
  // always added). Throws std::invalid_argument otherwise.
  explicit Histogram(std::vector<double> upper_bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Counts `value` in the first bucket whose upper bound is >= value (NaN goes to +Inf only).
  void Observe(double value) noexcept;

  HistogramSnapshot Snapshot() const;
  // Upper bounds including the final +Inf.
  const std::vector<double>& upper_bounds() const noexcept { return upper_bounds_; }

 private:
  std::vector<double> upper_bounds_;
  // Per-bucket (non-cumulative) counts; the count is derived from them so that the +Inf bucket
  // and _count always agree in an exposition.
  std::unique_ptr<std::atomic<std::uint64_t>[]> bucket_counts_;
  std::atomic<double> sum_{0.0};
};

// 0.5 ms .. 10 s, for request / query / engine call latencies in seconds.
std::vector<double> DefaultLatencyBuckets();

enum class MetricType { kCounter, kGauge, kHistogram };

// What all families share; the registry serializes them through this interface.
class FamilyBase {
 public:
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const std::string& name() const noexcept { return name_; }
  const std::string& help() const noexcept { return help_; }
  const std::vector<std::string>& label_names() const noexcept { return label_names_; }
  MetricType type() const noexcept { return type_; }

 protected:
  FamilyBase(std::string name, std::string help, std::vector<std::string> label_names,
             MetricType type);
  // Throws std::invalid_argument naming the metric when the count is wrong or a value is not
  // valid UTF-8.
  void CheckLabelValues(const std::vector<std::string>& label_values) const;

 private:
  friend class Registry;
  // Appends `# HELP`, `# TYPE` and the samples; appends nothing when there are no children.
  virtual void AppendTo(std::string& out) const = 0;

  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  MetricType type_;
};

// A metric family: one child per distinct tuple of label values.
template <typename Metric>
class Family final : public FamilyBase {
 public:
  // Returns the child for these label values (in label-name order), creating it on first use.
  // The reference stays valid until Remove() of the same label values (or the registry dies), so
  // callers may cache it. Throws std::invalid_argument on a wrong number of values.
  Metric& WithLabels(const std::vector<std::string>& label_values);

  // Drops a child (for example the lag gauge of a revoked partition) so it is no longer exported.
  // Invalidates references to it: callers must drop cached references first. Returns whether a
  // child existed.
  bool Remove(const std::vector<std::string>& label_values);
  // Drops every child whose label values are not in `keep` (same rules as Remove), for a family
  // rebuilt from a current set such as the assigned partitions. Returns how many were dropped.
  std::size_t RemoveExcept(const std::set<std::vector<std::string>>& keep);

  // Bounds the series of a family whose label values come from data (tenants, environments):
  // once `max_series` label sets are exported, each further one still gets a child of its own
  // (updates and references keep working, Remove() too) but is exported only as part of one
  // aggregated series whose every label value is `overflow_value` (the sum of the values; of the
  // bucket counts for a histogram). `on_first_overflow(family name)` is called once, the first
  // time a label set overflows (to log a warning). Applies to label sets created afterwards.
  void LimitSeries(std::size_t max_series, std::string overflow_value,
                   std::function<void(const std::string&)> on_first_overflow = nullptr);

  // Label sets with a child (exported on their own or in the overflow series).
  std::size_t size() const;

 private:
  friend class Registry;
  using Factory = std::function<std::unique_ptr<Metric>()>;
  using Children = std::map<std::vector<std::string>, std::unique_ptr<Metric>>;
  Family(std::string name, std::string help, std::vector<std::string> label_names, MetricType type,
         Factory factory);
  void AppendTo(std::string& out) const override;

  Factory factory_;
  mutable std::mutex mutex_;
  // Ordered by label values: the exposition lists children in this order.
  Children children_;
  // Beyond max_series_ (0: no limit): exported summed under overflow_value_.
  Children overflow_children_;
  std::size_t max_series_ = 0;
  std::string overflow_value_;
  std::function<void(const std::string&)> on_first_overflow_;
  bool overflowed_ = false;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// Owns metric families and renders them in the Prometheus text exposition format 0.0.4.
class Registry {
 public:
  using CallbackId = std::uint64_t;

  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registration validates the names (Prometheus data model: metric `[a-zA-Z_:][a-zA-Z0-9_:]*`,
  // label `[a-zA-Z_][a-zA-Z0-9_]*` not starting with `__`, no duplicates, `le` reserved for
  // histograms), requires counters to end in `_total`, and rejects a name (or a derived sample
  // name such as `x_bucket`) already registered. Errors are std::invalid_argument naming the
  // metric. Returned references live as long as the registry.
  CounterFamily& AddCounter(const std::string& name, const std::string& help,
                            const std::vector<std::string>& label_names);
  GaugeFamily& AddGauge(const std::string& name, const std::string& help,
                        const std::vector<std::string>& label_names);
  HistogramFamily& AddHistogram(const std::string& name, const std::string& help,
                                const std::vector<std::string>& label_names,
                                std::vector<double> buckets);

  // Unlabelled shorthands: register the family and return its only child (exported as 0 at once).
  Counter& AddCounter(const std::string& name, const std::string& help);
  Gauge& AddGauge(const std::string& name, const std::string& help);
  Histogram& AddHistogram(const std::string& name, const std::string& help,
                          std::vector<double> buckets);

  // Runs `callback` at the start of every Serialize(), one Serialize() at a time, without any
  // registry lock held (it may set gauges, create or remove children). Use it for values sampled
  // at scrape time such as consumer lag. An exception from a callback is caught, reported through
  // Serialize's `collect_errors`, and does not stop the exposition.
  CallbackId AddCollectCallback(std::function<void()> callback);
  // Returns once the callback is neither registered nor running (unless called from a callback).
  void RemoveCollectCallback(CallbackId id);

  // Runs the collect callbacks, then renders every family, sorted by name, in the text format
  // 0.0.4 (`text/plain; version=0.0.4`). Messages of callbacks that threw are appended to
  // `collect_errors` when it is not null.
  std::string Serialize(std::vector<std::string>* collect_errors = nullptr) const;

 private:
  void CheckNewName(const std::string& name, MetricType type) const;  // mutex_ held
  template <typename Metric>
  Family<Metric>& Insert(std::unique_ptr<Family<Metric>> family);

  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<FamilyBase>> families_;  // by name
  std::map<std::string, std::string> sample_names_;              // sample name -> family name

  // Serializes collect rounds, and lets RemoveCollectCallback wait for a running round.
  mutable std::recursive_mutex collect_mutex_;
  mutable std::mutex callbacks_mutex_;
  std::map<CallbackId, std::function<void()>> callbacks_;
  CallbackId next_callback_id_ = 1;
};

// A collect callback registered for the lifetime of this object: declare it after what the
// callback reads, so that it is removed (waiting for a running collect) before that goes, on every
// path out of the scope. The registry must outlive it.
class ScopedCollectCallback {
 public:
  ScopedCollectCallback(Registry& registry, std::function<void()> callback)
      : registry_(&registry), id_(registry.AddCollectCallback(std::move(callback))) {}
  ~ScopedCollectCallback() { Reset(); }
  ScopedCollectCallback(const ScopedCollectCallback&) = delete;
  ScopedCollectCallback& operator=(const ScopedCollectCallback&) = delete;

  // Removes the callback now (idempotent); returns once it is not running.
  void Reset() noexcept {
    if (registry_ == nullptr) return;
    registry_->RemoveCollectCallback(id_);
    registry_ = nullptr;
  }

 private:
  Registry* registry_;
  Registry::CallbackId id_;
};

// Text-format helpers, public for tests and for other exporters.
// Shortest round-trip representation; integers without exponent ("1", "1234567"); "+Inf",
// "-Inf", "NaN".
std::string FormatValue(double value);
// HELP text: `\` -> `\\`, newline -> `\n`.
std::string EscapeHelp(std::string_view help);
// Label value: `\` -> `\\`, `"` -> `\"`, newline -> `\n`.
std::string EscapeLabelValue(std::string_view value);
bool IsValidMetricName(std::string_view name);
bool IsValidLabelName(std::string_view name);

}  // namespace workflowd::metrics
