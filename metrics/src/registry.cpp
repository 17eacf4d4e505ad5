#include "workflowd/metrics/registry.hpp"

#include <algorithm>
#include <charconv>
#include <exception>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "prometheus/check_names.h"
#include "prometheus/client_metric.h"
#include "prometheus/metric_type.h"
#include "prometheus/text_serializer.h"
#include "workflowd/common/utf8.hpp"

namespace workflowd::metrics {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string Quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

[[noreturn]] void ThrowForMetric(std::string_view metric, std::string_view problem) {
  throw std::invalid_argument("metric " + Quoted(metric) + ": " + std::string(problem));
}

// A number in an error message (shortest round-trip form; "nan", "inf").
std::string Number(double value) {
  char buffer[64];
  const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  if (result.ec != std::errc()) return "?";  // cannot happen with a 64-byte buffer
  return std::string(buffer, result.ptr);
}

// `bounds` checked (finite, strictly increasing; a trailing +Inf dropped) with +Inf appended.
std::vector<double> UpperBoundsWithInf(std::vector<double> bounds) {
  if (!bounds.empty() && bounds.back() == kInf) bounds.pop_back();
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      throw std::invalid_argument("histogram bucket bound " + Number(bounds[i]) +
                                  " is not finite (only a trailing +Inf is allowed)");
    }
    if (i > 0 && !(bounds[i - 1] < bounds[i])) {
      throw std::invalid_argument("histogram bucket bounds must be strictly increasing: " +
                                  Number(bounds[i - 1]) + " then " + Number(bounds[i]));
    }
  }
  bounds.push_back(kInf);
  return bounds;
}

// prometheus-cpp's bucket boundaries: without the +Inf bucket, which it always adds.
prometheus::Histogram::BucketBoundaries NativeBoundaries(const std::vector<double>& with_inf) {
  return {with_inf.begin(), with_inf.end() - 1};
}

prometheus::MetricType NativeType(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return prometheus::MetricType::Counter;
    case MetricType::kGauge:
      return prometheus::MetricType::Gauge;
    case MetricType::kHistogram:
      return prometheus::MetricType::Histogram;
  }
  return prometheus::MetricType::Untyped;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Names a family puts in an exposition: they must not collide with another family's.
std::vector<std::string> ReservedNames(const std::string& name, MetricType type) {
  if (type == MetricType::kHistogram) {
    return {name, name + "_bucket", name + "_sum", name + "_count"};
  }
  return {name};
}

}  // namespace

// --- Counter, Gauge, Histogram --------------------------------------------------------------

Counter::Counter() : owned_(std::make_unique<Native>()), native_(owned_.get()) {}

void Counter::ThrowNegativeIncrement(double amount) {
  throw std::invalid_argument("counter increment must be >= 0, got " + Number(amount));
}

Gauge::Gauge() : owned_(std::make_unique<Native>()), native_(owned_.get()) {}

Histogram::Histogram(std::vector<double> upper_bounds)
    : Histogram(std::make_shared<const std::vector<double>>(
          UpperBoundsWithInf(std::move(upper_bounds)))) {}

Histogram::Histogram(Bounds upper_bounds)
    : upper_bounds_(std::move(upper_bounds)),
      owned_(std::make_unique<Native>(NativeBoundaries(*upper_bounds_))),
      native_(owned_.get()) {}

Histogram::Histogram(Native& histogram, Bounds upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), native_(&histogram) {}

void Histogram::ObserveNaN() noexcept {
  // prometheus-cpp looks the bucket up with std::lower_bound, which puts NaN in the first bucket;
  // like the Go client, count it in +Inf only (the sum becomes NaN). Rare: the allocation is fine.
  std::vector<double> increments(upper_bounds_->size(), 0.0);
  increments.back() = 1.0;
  native_->ObserveMultiple(increments, std::numeric_limits<double>::quiet_NaN());
}

HistogramSnapshot Histogram::Snapshot() const {
  // prometheus-cpp collects the buckets and the sum under the histogram's mutex: consistent.
  const prometheus::ClientMetric collected = native_->Collect();
  HistogramSnapshot snapshot;
  snapshot.upper_bounds.reserve(collected.histogram.bucket.size());
  snapshot.cumulative_counts.reserve(collected.histogram.bucket.size());
  for (const prometheus::ClientMetric::Bucket& bucket : collected.histogram.bucket) {
    snapshot.upper_bounds.push_back(bucket.upper_bound);
    snapshot.cumulative_counts.push_back(bucket.cumulative_count);
  }
  snapshot.sum = collected.histogram.sample_sum;
  snapshot.count = collected.histogram.sample_count;
  return snapshot;
}

std::vector<double> DefaultLatencyBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

// --- Families -------------------------------------------------------------------------------

FamilyBase::FamilyBase(std::string name, std::string help, std::vector<std::string> label_names,
                       MetricType type)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      type_(type) {}

void FamilyBase::CheckLabelValues(const std::vector<std::string>& label_values) const {
  if (label_values.size() != label_names_.size()) {
    std::string expected = "[";
    for (std::size_t i = 0; i < label_names_.size(); ++i) {
      if (i > 0) expected += ", ";
      expected += label_names_[i];
    }
    expected += "]";
    ThrowForMetric(name_, "expected " + std::to_string(label_names_.size()) + " label value(s) " +
                              expected + ", got " + std::to_string(label_values.size()));
  }
  for (std::size_t i = 0; i < label_values.size(); ++i) {
    if (!IsValidUtf8(label_values[i])) {
      ThrowForMetric(name_, "value of label " + Quoted(label_names_[i]) + " is not valid UTF-8");
    }
  }
}

template <typename Metric>
Family<Metric>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                       MetricType type, prometheus::Family<Native>& native,
                       std::shared_ptr<const std::vector<double>> upper_bounds)
    : FamilyBase(std::move(name), std::move(help), std::move(label_names), type),
      native_family_(native),
      upper_bounds_(std::move(upper_bounds)) {}

template <>
std::unique_ptr<Counter> Family<Counter>::NewChild(const prometheus::Labels* labels) {
  if (labels == nullptr) return std::make_unique<Counter>();
  return std::unique_ptr<Counter>(new Counter(native_family_.Add(*labels)));
}

template <>
std::unique_ptr<Gauge> Family<Gauge>::NewChild(const prometheus::Labels* labels) {
  if (labels == nullptr) return std::make_unique<Gauge>();
  return std::unique_ptr<Gauge>(new Gauge(native_family_.Add(*labels)));
}

template <>
std::unique_ptr<Histogram> Family<Histogram>::NewChild(const prometheus::Labels* labels) {
  if (labels == nullptr) return std::unique_ptr<Histogram>(new Histogram(upper_bounds_));
  return std::unique_ptr<Histogram>(
      new Histogram(native_family_.Add(*labels, NativeBoundaries(*upper_bounds_)), upper_bounds_));
}

template <typename Metric>
Metric& Family<Metric>::WithLabels(const std::vector<std::string>& label_values) {
  std::unique_lock lock(mutex_);
  if (auto it = children_.find(label_values); it != children_.end()) return *it->second;
  if (auto it = overflow_children_.find(label_values); it != overflow_children_.end()) {
    return *it->second;
  }
  CheckLabelValues(label_values);
  if (max_series_ == 0 || children_.size() < max_series_) {
    prometheus::Labels labels;
    for (std::size_t i = 0; i < label_values.size(); ++i) {
      labels.emplace(label_names()[i], label_values[i]);
    }
    return *children_.emplace(label_values, NewChild(&labels)).first->second;
  }
  Metric& child = *overflow_children_.emplace(label_values, NewChild(nullptr)).first->second;
  if (!overflowed_) {
    overflowed_ = true;
    auto notify = on_first_overflow_;
    lock.unlock();
    if (notify) notify(name());
  }
  return child;
}

template <typename Metric>
bool Family<Metric>::Remove(const std::vector<std::string>& label_values) {
  std::unique_ptr<Metric> removed;  // destroyed after the lock is released
  std::lock_guard lock(mutex_);
  if (auto it = children_.find(label_values); it != children_.end()) {
    removed = std::move(it->second);
    children_.erase(it);
    native_family_.Remove(removed->native_);
    return true;
  }
  if (auto it = overflow_children_.find(label_values); it != overflow_children_.end()) {
    removed = std::move(it->second);
    overflow_children_.erase(it);
    return true;
  }
  return false;
}

template <typename Metric>
std::size_t Family<Metric>::RemoveExcept(const std::set<std::vector<std::string>>& keep) {
  std::vector<std::unique_ptr<Metric>> removed;  // destroyed after the lock is released
  std::lock_guard lock(mutex_);
  for (Children* children : {&children_, &overflow_children_}) {
    for (auto it = children->begin(); it != children->end();) {
      if (keep.count(it->first) != 0) {
        ++it;
        continue;
      }
      if (children == &children_) native_family_.Remove(it->second->native_);
      removed.push_back(std::move(it->second));
      it = children->erase(it);
    }
  }
  return removed.size();
}

template <typename Metric>
void Family<Metric>::LimitSeries(std::size_t max_series, std::string overflow_value,
                                 std::function<void(const std::string&)> on_first_overflow) {
  if (max_series == 0) ThrowForMetric(name(), "a series limit must be at least 1");
  CheckLabelValues(std::vector<std::string>(label_names().size(), overflow_value));
  std::lock_guard lock(mutex_);
  max_series_ = max_series;
  overflow_value_ = std::move(overflow_value);
  on_first_overflow_ = std::move(on_first_overflow);
}

template <typename Metric>
std::size_t Family<Metric>::size() const {
  std::lock_guard lock(mutex_);
  return children_.size() + overflow_children_.size();
}

namespace {

// Adds `part` (a child of the same family) to `total`: the value, or the bucket counts, count and
// sum of a histogram.
void AddTo(prometheus::ClientMetric& total, const prometheus::ClientMetric& part) {
  total.counter.value += part.counter.value;
  total.gauge.value += part.gauge.value;
  prometheus::ClientMetric::Histogram& histogram = total.histogram;
  for (std::size_t i = 0; i < histogram.bucket.size() && i < part.histogram.bucket.size(); ++i) {
    histogram.bucket[i].cumulative_count += part.histogram.bucket[i].cumulative_count;
  }
  histogram.sample_count += part.histogram.sample_count;
  histogram.sample_sum += part.histogram.sample_sum;
}

struct Series {
  std::vector<std::string> label_values;  // in label-name order
  prometheus::ClientMetric metric;
};

// The family as the exposition shows it, from what prometheus-cpp collected: its children
// (labels in name order, from a std::map, in no particular order) and the parts of the overflow
// series (without labels).
std::optional<prometheus::MetricFamily> Arrange(const FamilyBase& family,
                                                std::vector<prometheus::ClientMetric> children,
                                                std::vector<prometheus::ClientMetric> overflow,
                                                const std::string& overflow_value) {
  if (children.empty() && overflow.empty()) return std::nullopt;
  const std::vector<std::string>& names = family.label_names();
  std::vector<Series> series;
  series.reserve(children.size() + 1);
  for (prometheus::ClientMetric& child : children) {
    Series s{std::vector<std::string>(names.size()), std::move(child)};
    for (const prometheus::ClientMetric::Label& label : s.metric.label) {
      const auto at = std::find(names.begin(), names.end(), label.name);
      if (at != names.end())
        s.label_values[static_cast<std::size_t>(at - names.begin())] = label.value;
    }
    series.push_back(std::move(s));
  }
  if (!overflow.empty()) {
    Series sum{std::vector<std::string>(names.size(), overflow_value), std::move(overflow.front())};
    for (std::size_t i = 1; i < overflow.size(); ++i) AddTo(sum.metric, overflow[i]);
    // A child exported with the overflow label values (a tenant called like the overflow value)
    // is summed in, so that no series appears twice.
    const auto same = std::find_if(series.begin(), series.end(), [&](const Series& s) {
      return s.label_values == sum.label_values;
    });
    if (same != series.end()) {
      AddTo(sum.metric, same->metric);
      series.erase(same);
    }
    series.push_back(std::move(sum));
  }
  std::sort(series.begin(), series.end(),
            [](const Series& a, const Series& b) { return a.label_values < b.label_values; });

  prometheus::MetricFamily out;
  out.name = family.name();
  out.help = EscapeHelp(family.help());
  out.type = NativeType(family.type());
  out.metric.reserve(series.size());
  for (Series& s : series) {
    s.metric.label.clear();
    for (std::size_t i = 0; i < names.size(); ++i) {
      s.metric.label.push_back({names[i], std::move(s.label_values[i])});
    }
    out.metric.push_back(std::move(s.metric));
  }
  return out;
}

}  // namespace

template <typename Metric>
std::optional<prometheus::MetricFamily> Family<Metric>::Collect() const {
  std::vector<prometheus::ClientMetric> children;
  std::vector<prometheus::ClientMetric> overflow;
  std::string overflow_value;
  {
    std::lock_guard lock(mutex_);
    std::vector<prometheus::MetricFamily> collected = native_family_.Collect();
    if (!collected.empty()) children = std::move(collected.front().metric);
    overflow.reserve(overflow_children_.size());
    for (const auto& [label_values, child] : overflow_children_) {
      overflow.push_back(child->native_->Collect());
    }
    overflow_value = overflow_value_;
  }
  return Arrange(*this, std::move(children), std::move(overflow), overflow_value);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// --- Registry -------------------------------------------------------------------------------

void Registry::CheckNewName(const std::string& name, MetricType type) const {
  if (!IsValidMetricName(name)) {
    ThrowForMetric(
        name, "invalid metric name (must match [a-zA-Z_:][a-zA-Z0-9_:]* and not start with __)");
  }
  if (type == MetricType::kCounter && !EndsWith(name, "_total")) {
    ThrowForMetric(name, "counter names must end in _total");
  }
  if (type != MetricType::kCounter && EndsWith(name, "_total")) {
    ThrowForMetric(name, "only counter names may end in _total");
  }
  if (families_.count(name) != 0) ThrowForMetric(name, "already registered");
  for (const std::string& reserved : ReservedNames(name, type)) {
    if (auto it = sample_names_.find(reserved); it != sample_names_.end()) {
      ThrowForMetric(
          name, "sample name " + Quoted(reserved) + " collides with metric " + Quoted(it->second));
    }
  }
}

namespace {

void CheckLabelNames(const std::string& metric, const std::vector<std::string>& label_names,
                     MetricType type) {
  std::set<std::string_view> seen;
  for (const std::string& label : label_names) {
    if (!IsValidLabelName(label)) {
      ThrowForMetric(metric, "invalid label name " + Quoted(label) +
                                 " (must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __)");
    }
    if (type == MetricType::kHistogram && label == "le") {
      ThrowForMetric(metric, "label name \"le\" is reserved for histogram buckets");
    }
    if (!seen.insert(label).second) ThrowForMetric(metric, "duplicate label name " + Quoted(label));
  }
}

void CheckHelp(const std::string& metric, const std::string& help) {
  if (!IsValidUtf8(help)) ThrowForMetric(metric, "help text is not valid UTF-8");
}

}  // namespace

template <typename Metric>
Family<Metric>& Registry::Insert(std::unique_ptr<Family<Metric>> family) {
  Family<Metric>& ref = *family;
  for (const std::string& reserved : ReservedNames(family->name(), family->type())) {
    sample_names_.emplace(reserved, family->name());
  }
  families_.emplace(family->name(), std::move(family));
  return ref;
}

CounterFamily& Registry::AddCounter(const std::string& name, const std::string& help,
                                    const std::vector<std::string>& label_names) {
  CheckLabelNames(name, label_names, MetricType::kCounter);
  CheckHelp(name, help);
  std::lock_guard lock(mutex_);
  CheckNewName(name, MetricType::kCounter);
  auto& native = prometheus::BuildCounter().Name(name).Help(help).Register(native_);
  return Insert(std::unique_ptr<CounterFamily>(
      new CounterFamily(name, help, label_names, MetricType::kCounter, native, nullptr)));
}

GaugeFamily& Registry::AddGauge(const std::string& name, const std::string& help,
                                const std::vector<std::string>& label_names) {
  CheckLabelNames(name, label_names, MetricType::kGauge);
  CheckHelp(name, help);
  std::lock_guard lock(mutex_);
  CheckNewName(name, MetricType::kGauge);
  auto& native = prometheus::BuildGauge().Name(name).Help(help).Register(native_);
  return Insert(std::unique_ptr<GaugeFamily>(
      new GaugeFamily(name, help, label_names, MetricType::kGauge, native, nullptr)));
}

HistogramFamily& Registry::AddHistogram(const std::string& name, const std::string& help,
                                        const std::vector<std::string>& label_names,
                                        std::vector<double> buckets) {
  CheckLabelNames(name, label_names, MetricType::kHistogram);
  CheckHelp(name, help);
  // Validates the buckets once, with the metric named; the children share the bounds.
  std::shared_ptr<const std::vector<double>> bounds;
  try {
    bounds = std::make_shared<const std::vector<double>>(UpperBoundsWithInf(std::move(buckets)));
  } catch (const std::invalid_argument& e) {
    ThrowForMetric(name, e.what());
  }
  std::lock_guard lock(mutex_);
  CheckNewName(name, MetricType::kHistogram);
  auto& native = prometheus::BuildHistogram().Name(name).Help(help).Register(native_);
  return Insert(std::unique_ptr<HistogramFamily>(new HistogramFamily(
      name, help, label_names, MetricType::kHistogram, native, std::move(bounds))));
}

Counter& Registry::AddCounter(const std::string& name, const std::string& help) {
  return AddCounter(name, help, std::vector<std::string>{}).WithLabels({});
}

Gauge& Registry::AddGauge(const std::string& name, const std::string& help) {
  return AddGauge(name, help, std::vector<std::string>{}).WithLabels({});
}

Histogram& Registry::AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<double> buckets) {
  return AddHistogram(name, help, std::vector<std::string>{}, std::move(buckets)).WithLabels({});
}

Registry::CallbackId Registry::AddCollectCallback(std::function<void()> callback) {
  if (!callback) throw std::invalid_argument("collect callback is empty");
  std::lock_guard lock(callbacks_mutex_);
  const CallbackId id = next_callback_id_++;
  callbacks_.emplace(id, std::move(callback));
  return id;
}

void Registry::RemoveCollectCallback(CallbackId id) {
  std::lock_guard round(collect_mutex_);
  std::lock_guard lock(callbacks_mutex_);
  callbacks_.erase(id);
}

std::string Registry::Serialize(std::vector<std::string>* collect_errors) const {
  std::lock_guard round(collect_mutex_);
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard lock(callbacks_mutex_);
    callbacks.reserve(callbacks_.size());
    for (const auto& [id, callback] : callbacks_) callbacks.push_back(callback);
  }
  for (const auto& callback : callbacks) {
    try {
      callback();
    } catch (const std::exception& e) {
      if (collect_errors != nullptr) collect_errors->emplace_back(e.what());
    } catch (...) {
      if (collect_errors != nullptr) collect_errors->emplace_back("unknown exception");
    }
  }

  std::vector<prometheus::MetricFamily> families;
  {
    std::lock_guard lock(mutex_);
    families.reserve(families_.size());
    for (const auto& [name, family] : families_) {
      if (std::optional<prometheus::MetricFamily> collected = family->Collect()) {
        families.push_back(std::move(*collected));
      }
    }
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return std::move(out).str();
}

// --- Names and HELP text --------------------------------------------------------------------

std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

bool IsValidMetricName(std::string_view name) {
  return prometheus::CheckMetricName(std::string(name));
}

bool IsValidLabelName(std::string_view name) {
  return prometheus::CheckLabelName(std::string(name));
}

}  // namespace workflowd::metrics
