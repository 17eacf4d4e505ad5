#include "workflowd/metrics/registry.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <exception>
#include <limits>
#include <set>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace workflowd::metrics {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string Quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

[[noreturn]] void ThrowForMetric(std::string_view metric, std::string_view problem) {
  throw std::invalid_argument("metric " + Quoted(metric) + ": " + std::string(problem));
}

bool IsValidUtf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t extra = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;  // truncated sequence
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong encodings, surrogates and code points past U+10FFFF are invalid.
    if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

void AppendLabels(std::string& out, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, std::string_view le = {}) {
  if (names.empty() && le.empty()) return;
  out += '{';
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    out += EscapeLabelValue(values[i]);
    out += '"';
  }
  if (!le.empty()) {
    if (!names.empty()) out += ',';
    out += "le=\"";
    out += le;
    out += '"';
  }
  out += '}';
}

void AppendSample(std::string& out, std::string_view name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, double value, std::string_view le = {}) {
  out += name;
  AppendLabels(out, names, values, le);
  out += ' ';
  out += FormatValue(value);
  out += '\n';
}

void AppendSamples(std::string& out, const std::string& name,
                   const std::vector<std::string>& label_names,
                   const std::vector<std::string>& label_values, const Counter& counter) {
  AppendSample(out, name, label_names, label_values, counter.Value());
}

void AppendSamples(std::string& out, const std::string& name,
                   const std::vector<std::string>& label_names,
                   const std::vector<std::string>& label_values, const Gauge& gauge) {
  AppendSample(out, name, label_names, label_values, gauge.Value());
}

void AppendSnapshot(std::string& out, const std::string& name,
                    const std::vector<std::string>& label_names,
                    const std::vector<std::string>& label_values,
                    const HistogramSnapshot& snapshot) {
  const std::string bucket_name = name + "_bucket";
  for (std::size_t i = 0; i < snapshot.upper_bounds.size(); ++i) {
    AppendSample(out, bucket_name, label_names, label_values,
                 static_cast<double>(snapshot.cumulative_counts[i]),
                 FormatValue(snapshot.upper_bounds[i]));
  }
  AppendSample(out, name + "_sum", label_names, label_values, snapshot.sum);
  AppendSample(out, name + "_count", label_names, label_values,
               static_cast<double>(snapshot.count));
}

void AppendSamples(std::string& out, const std::string& name,
                   const std::vector<std::string>& label_names,
                   const std::vector<std::string>& label_values, const Histogram& histogram) {
  AppendSnapshot(out, name, label_names, label_values, histogram.Snapshot());
}

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
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

// --- Counter, Histogram ---------------------------------------------------------------------

void Counter::Inc(double amount) {
  if (!(amount >= 0.0)) {  // also catches NaN
    throw std::invalid_argument("counter increment must be >= 0, got " + FormatValue(amount));
  }
  value_.fetch_add(amount, std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> upper_bounds) : upper_bounds_(std::move(upper_bounds)) {
  if (!upper_bounds_.empty() && upper_bounds_.back() == kInf) upper_bounds_.pop_back();
  for (std::size_t i = 0; i < upper_bounds_.size(); ++i) {
    if (!std::isfinite(upper_bounds_[i])) {
      throw std::invalid_argument("histogram bucket bound " + FormatValue(upper_bounds_[i]) +
                                  " is not finite (only a trailing +Inf is allowed)");
    }
    if (i > 0 && !(upper_bounds_[i - 1] < upper_bounds_[i])) {
      throw std::invalid_argument("histogram bucket bounds must be strictly increasing: " +
                                  FormatValue(upper_bounds_[i - 1]) + " then " +
                                  FormatValue(upper_bounds_[i]));
    }
  }
  upper_bounds_.push_back(kInf);
  bucket_counts_ = std::make_unique<std::atomic<std::uint64_t>[]>(upper_bounds_.size());
}

void Histogram::Observe(double value) noexcept {
  std::size_t index = upper_bounds_.size() - 1;
  if (!std::isnan(value)) {
    index = static_cast<std::size_t>(
        std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) -
        upper_bounds_.begin());
  }
  bucket_counts_[index].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

HistogramSnapshot Histogram::Snapshot() const {
  HistogramSnapshot snapshot;
  snapshot.upper_bounds = upper_bounds_;
  snapshot.cumulative_counts.reserve(upper_bounds_.size());
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < upper_bounds_.size(); ++i) {
    cumulative += bucket_counts_[i].load(std::memory_order_relaxed);
    snapshot.cumulative_counts.push_back(cumulative);
  }
  snapshot.count = cumulative;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
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
                       MetricType type, Factory factory)
    : FamilyBase(std::move(name), std::move(help), std::move(label_names), type),
      factory_(std::move(factory)) {}

template <typename Metric>
Metric& Family<Metric>::WithLabels(const std::vector<std::string>& label_values) {
  std::unique_lock lock(mutex_);
  if (auto it = children_.find(label_values); it != children_.end()) return *it->second;
  if (auto it = overflow_children_.find(label_values); it != overflow_children_.end()) {
    return *it->second;
  }
  CheckLabelValues(label_values);
  if (max_series_ == 0 || children_.size() < max_series_) {
    return *children_.emplace(label_values, factory_()).first->second;
  }
  Metric& child = *overflow_children_.emplace(label_values, factory_()).first->second;
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
  for (Children* children : {&children_, &overflow_children_}) {
    if (auto it = children->find(label_values); it != children->end()) {
      removed = std::move(it->second);
      children->erase(it);
      return true;
    }
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
      } else {
        removed.push_back(std::move(it->second));
        it = children->erase(it);
      }
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

// The overflow series: the sum of the overflowed children (and of an exported child that happens
// to carry the overflow label values, so that no series appears twice).
double SumOf(const std::vector<const Counter*>& parts) {
  double sum = 0;
  for (const Counter* part : parts) sum += part->Value();
  return sum;
}

double SumOf(const std::vector<const Gauge*>& parts) {
  double sum = 0;
  for (const Gauge* part : parts) sum += part->Value();
  return sum;
}

void AppendSum(std::string& out, const std::string& name,
               const std::vector<std::string>& label_names,
               const std::vector<std::string>& label_values,
               const std::vector<const Counter*>& parts) {
  AppendSample(out, name, label_names, label_values, SumOf(parts));
}

void AppendSum(std::string& out, const std::string& name,
               const std::vector<std::string>& label_names,
               const std::vector<std::string>& label_values,
               const std::vector<const Gauge*>& parts) {
  AppendSample(out, name, label_names, label_values, SumOf(parts));
}

void AppendSum(std::string& out, const std::string& name,
               const std::vector<std::string>& label_names,
               const std::vector<std::string>& label_values,
               const std::vector<const Histogram*>& parts) {
  HistogramSnapshot total;
  for (const Histogram* part : parts) {
    const HistogramSnapshot snapshot = part->Snapshot();
    if (total.upper_bounds.empty()) {
      total = snapshot;
      continue;
    }
    for (std::size_t i = 0; i < total.cumulative_counts.size(); ++i) {
      total.cumulative_counts[i] += snapshot.cumulative_counts[i];
    }
    total.sum += snapshot.sum;
    total.count += snapshot.count;
  }
  AppendSnapshot(out, name, label_names, label_values, total);
}

}  // namespace

template <typename Metric>
void Family<Metric>::AppendTo(std::string& out) const {
  std::lock_guard lock(mutex_);
  if (children_.empty() && overflow_children_.empty()) return;
  out += "# HELP ";
  out += name();
  out += ' ';
  out += EscapeHelp(help());
  out += "\n# TYPE ";
  out += name();
  out += ' ';
  out += TypeName(type());
  out += '\n';
  if (overflow_children_.empty()) {
    for (const auto& [label_values, child] : children_) {
      AppendSamples(out, name(), label_names(), label_values, *child);
    }
    return;
  }
  const std::vector<std::string> overflow_key(label_names().size(), overflow_value_);
  std::vector<const Metric*> parts;
  for (const auto& [label_values, child] : overflow_children_) parts.push_back(child.get());
  bool overflow_done = false;
  for (const auto& [label_values, child] : children_) {
    if (!overflow_done && overflow_key <= label_values) {
      if (label_values == overflow_key) parts.push_back(child.get());
      AppendSum(out, name(), label_names(), overflow_key, parts);
      overflow_done = true;
      if (label_values == overflow_key) continue;
    }
    AppendSamples(out, name(), label_names(), label_values, *child);
  }
  if (!overflow_done) AppendSum(out, name(), label_names(), overflow_key, parts);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// --- Registry -------------------------------------------------------------------------------

void Registry::CheckNewName(const std::string& name, MetricType type) const {
  if (!IsValidMetricName(name)) {
    ThrowForMetric(name, "invalid metric name (must match [a-zA-Z_:][a-zA-Z0-9_:]*)");
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
  return Insert(std::unique_ptr<CounterFamily>(new CounterFamily(
      name, help, label_names, MetricType::kCounter, [] { return std::make_unique<Counter>(); })));
}

GaugeFamily& Registry::AddGauge(const std::string& name, const std::string& help,
                                const std::vector<std::string>& label_names) {
  CheckLabelNames(name, label_names, MetricType::kGauge);
  CheckHelp(name, help);
  std::lock_guard lock(mutex_);
  CheckNewName(name, MetricType::kGauge);
  return Insert(std::unique_ptr<GaugeFamily>(new GaugeFamily(
      name, help, label_names, MetricType::kGauge, [] { return std::make_unique<Gauge>(); })));
}

HistogramFamily& Registry::AddHistogram(const std::string& name, const std::string& help,
                                        const std::vector<std::string>& label_names,
                                        std::vector<double> buckets) {
  CheckLabelNames(name, label_names, MetricType::kHistogram);
  CheckHelp(name, help);
  // Validates the buckets once, with the metric named; children copy the validated bounds.
  std::vector<double> bounds;
  try {
    bounds = Histogram(std::move(buckets)).upper_bounds();
  } catch (const std::invalid_argument& e) {
    ThrowForMetric(name, e.what());
  }
  std::lock_guard lock(mutex_);
  CheckNewName(name, MetricType::kHistogram);
  return Insert(std::unique_ptr<HistogramFamily>(
      new HistogramFamily(name, help, label_names, MetricType::kHistogram,
                          [bounds] { return std::make_unique<Histogram>(bounds); })));
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

  std::string out;
  std::lock_guard lock(mutex_);
  for (const auto& [name, family] : families_) family->AppendTo(out);
  return out;
}

// --- Text format helpers --------------------------------------------------------------------

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == 0.0) return "0";  // also -0
  char buffer[64];
  std::to_chars_result result{};
  if (std::trunc(value) == value && std::fabs(value) < 1e15) {
    // Integral: plain digits, no exponent ("1", "1234567").
    result = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::fixed);
  } else {
    // Shortest representation that parses back to the same double, printf-%g style
    // ("0.005", "0.0005", "2.5", "1e-05", "1e+20").
    result = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::general);
  }
  if (result.ec != std::errc()) return "NaN";  // cannot happen with a 64-byte buffer
  return std::string(buffer, result.ptr);
}

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

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

bool IsValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = IsAsciiLetter(c) || c == '_' || c == ':' || (i > 0 && IsAsciiDigit(c));
    if (!ok) return false;
  }
  return true;
}

bool IsValidLabelName(std::string_view name) {
  if (name.empty() || name.substr(0, 2) == "__") return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = IsAsciiLetter(c) || c == '_' || (i > 0 && IsAsciiDigit(c));
    if (!ok) return false;
  }
  return true;
}

}  // namespace workflowd::metrics
