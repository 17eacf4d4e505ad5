// Prometheus metrics: the workflowd_ families on prometheus-cpp (Debian's prometheus-cpp-dev,
// CMake target prometheus-cpp::core).
//
// prometheus-cpp holds the values (prometheus::Registry, Family, Counter, Gauge, Histogram) and
// renders the text exposition (prometheus::TextSerializer); the integration test feeds the result
// to `promtool check metrics` (Debian package `prometheus`). The handles here are thin wrappers
// over prometheus-cpp's metrics that keep what the daemon relies on and prometheus-cpp 1.0.1 does
// not do by itself:
//  - a child is looked up by its label values in the order of the family's label names (no
//    std::map built per lookup), and the exposition lists labels in that order, series sorted by
//    their values and families by name (prometheus-cpp lists labels by name, series in hash order);
//  - names are checked the Prometheus way at registration (counters end in `_total`, a name or a
//    histogram's derived `_bucket`/`_sum`/`_count` name is registered once), label values and help
//    texts must be valid UTF-8, HELP is escaped (TextSerializer writes it verbatim);
//  - a counter refuses a negative or NaN increment (prometheus-cpp ignores the first and adds the
//    second), and a histogram counts NaN in the +Inf bucket only (prometheus-cpp's lookup puts it
//    in the first bucket);
//  - series of data-driven label sets are bounded (Family::LimitSeries), and values sampled at
//    scrape time are set by collect callbacks (Registry::AddCollectCallback).
//
// Threading: registration, child lookup/creation, removal and Serialize() take locks; updating a
// child goes straight to prometheus-cpp: Counter::Inc and the Gauge updates are lock-free (atomic
// compare-and-swap), Histogram::Observe takes the histogram's own mutex (prometheus-cpp keeps its
// buckets and sum consistent that way). Hot paths cache the reference returned by WithLabels().
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/labels.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace workflowd::metrics {

template <typename Metric>
class Family;

// Monotonically increasing value (Prometheus counter). Names must end in `_total`.
class Counter {
 public:
  // A counter of its own, outside any registry.
  Counter();
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Adds `amount`; throws std::invalid_argument when it is negative or NaN (counters never go
  // down; a negative amount is a programming error).
  void Inc(double amount = 1.0) {
    if (!(amount >= 0.0)) ThrowNegativeIncrement(amount);  // also catches NaN
    native_->Increment(amount);
  }
  double Value() const noexcept { return native_->Value(); }

 private:
  friend class Family<Counter>;
  using Native = prometheus::Counter;
  explicit Counter(Native& counter) : native_(&counter) {}
  [[noreturn]] static void ThrowNegativeIncrement(double amount);

  std::unique_ptr<Native> owned_;  // set when the counter is not a family's child
  Native* native_;
};

// Value that goes up and down (Prometheus gauge).
class Gauge {
 public:
  // A gauge of its own, outside any registry.
  Gauge();
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double value) noexcept { native_->Set(value); }
  void Inc(double amount = 1.0) noexcept { native_->Increment(amount); }
  void Dec(double amount = 1.0) noexcept { native_->Decrement(amount); }
  double Value() const noexcept { return native_->Value(); }

 private:
  friend class Family<Gauge>;
  using Native = prometheus::Gauge;
  explicit Gauge(Native& gauge) : native_(&gauge) {}

  std::unique_ptr<Native> owned_;  // set when the gauge is not a family's child
  Native* native_;
};

// A consistent copy of a histogram: counts are cumulative (Prometheus `le` semantics) and the last
// bucket is +Inf, so cumulative_counts.back() == count.
struct HistogramSnapshot {
  std::vector<double> upper_bounds;  // ends with +Inf
  std::vector<std::uint64_t> cumulative_counts;
  double sum = 0.0;
  std::uint64_t count = 0;
};

// Distribution of observations in fixed buckets (Prometheus histogram).
class Histogram {
 public:
  // A histogram of its own, outside any registry. `upper_bounds` must be strictly increasing and
  // not NaN; a trailing +Inf is optional (it is always added). Throws std::invalid_argument
  // otherwise.
  explicit Histogram(std::vector<double> upper_bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Counts `value` in the first bucket whose upper bound is >= value (NaN goes to +Inf only).
  void Observe(double value) noexcept {
    if (std::isnan(value)) {
      ObserveNaN();
    } else {
      native_->Observe(value);
    }
  }

  HistogramSnapshot Snapshot() const;
  // Upper bounds including the final +Inf.
  const std::vector<double>& upper_bounds() const noexcept { return *upper_bounds_; }

 private:
  friend class Family<Histogram>;
  using Native = prometheus::Histogram;
  using Bounds = std::shared_ptr<const std::vector<double>>;  // shared by a family's children
  Histogram(Native& histogram, Bounds upper_bounds);
  explicit Histogram(Bounds upper_bounds);
  void ObserveNaN() noexcept;

  Bounds upper_bounds_;
  std::unique_ptr<Native> owned_;  // set when the histogram is not a family's child
  Native* native_;
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
  // The family as the exposition shows it (labels in label-name order, series sorted by label
  // values, the overflow series summed in); nothing when it has no children.
  virtual std::optional<prometheus::MetricFamily> Collect() const = 0;

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
  using Native = typename Metric::Native;
  using Children = std::map<std::vector<std::string>, std::unique_ptr<Metric>>;
  Family(std::string name, std::string help, std::vector<std::string> label_names, MetricType type,
         prometheus::Family<Native>& native,
         std::shared_ptr<const std::vector<double>> upper_bounds);
  // A child exported on its own (added to `native_family_`), or, without labels, one of the
  // overflow series' parts (a prometheus-cpp metric outside the registry).
  std::unique_ptr<Metric> NewChild(const prometheus::Labels* labels);
  std::optional<prometheus::MetricFamily> Collect() const override;

  prometheus::Family<Native>& native_family_;  // owned by the registry's prometheus::Registry
  std::shared_ptr<const std::vector<double>> upper_bounds_;  // histograms only, with +Inf
  mutable std::mutex mutex_;
  // The handles of the children, by label values (the order of the exposition).
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
  // label `[a-zA-Z_][a-zA-Z0-9_]*`, neither starting with `__`, no duplicate labels, `le` reserved
  // for histograms), requires counters to end in `_total`, and rejects a name (or a derived sample
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

  // Runs the collect callbacks, then renders every family, sorted by name, with prometheus-cpp's
  // TextSerializer (`text/plain; version=0.0.4`). Messages of callbacks that threw are appended to
  // `collect_errors` when it is not null.
  std::string Serialize(std::vector<std::string>* collect_errors = nullptr) const;

 private:
  void CheckNewName(const std::string& name, MetricType type) const;  // mutex_ held
  template <typename Metric>
  Family<Metric>& Insert(std::unique_ptr<Family<Metric>> family);

  mutable std::mutex mutex_;
  // Owns the prometheus::Family objects the families refer to: declared before them, so that it
  // is destroyed after them.
  prometheus::Registry native_;
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

// HELP text as the text format wants it: `\` -> `\\`, newline -> `\n` (prometheus-cpp 1.0.1's
// TextSerializer escapes label values but writes HELP verbatim).
std::string EscapeHelp(std::string_view help);
// The Prometheus data model's names (prometheus::CheckMetricName / CheckLabelName).
bool IsValidMetricName(std::string_view name);
bool IsValidLabelName(std::string_view name);

}  // namespace workflowd::metrics
