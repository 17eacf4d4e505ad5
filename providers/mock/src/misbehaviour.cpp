#include "workflowd/providers/mock/misbehaviour.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "workflowd/common/duration.hpp"

namespace workflowd::providers::mock {
namespace {

using std::chrono::nanoseconds;

// 0.05 -> "5%", 0.005 -> "0.5%".
std::string Percent(double ratio) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g%%", ratio * 100);
  return buf;
}

std::string Number(double n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", n);
  return buf;
}

bool IsRatio(double r) { return r >= 0 && r <= 1; }  // false for NaN too

void LatencyProblems(const Latency& l, const std::string& field, std::vector<std::string>& out) {
  const std::string kind = ToString(l.kind);
  for (const auto& [key, d] : {std::pair<const char*, nanoseconds>{"base", l.base},
                               {"min", l.min},
                               {"max", l.max},
                               {"tail", l.tail}}) {
    if (d.count() < 0) {
      out.push_back(field + "." + key + ": negative; use a duration of 0s or more, e.g. 200ms");
    }
  }
  // A value the distribution does not use is a mistake in the configuration, not a default.
  auto unused = [&](const char* key, bool set, const char* used_by) {
    if (!set) return;
    if (l.kind == Latency::Kind::kNone) {
      out.push_back(field + "." + key + ": set, but " + field +
                    ".distribution is none; set it to fixed, uniform or long_tail");
    } else {
      out.push_back(field + "." + key + ": not used by distribution " + kind + " (only by " +
                    used_by + "); remove it or change " + field + ".distribution");
    }
  };
  const bool uses_base = l.kind == Latency::Kind::kFixed || l.kind == Latency::Kind::kLongTail;
  const bool uniform = l.kind == Latency::Kind::kUniform;
  const bool long_tail = l.kind == Latency::Kind::kLongTail;
  unused("base", !uses_base && l.base.count() != 0, "fixed and long_tail");
  unused("min", !uniform && l.min.count() != 0, "uniform");
  unused("max", !uniform && l.max.count() != 0, "uniform");
  unused("tail_ratio", !long_tail && l.tail_ratio != 0, "long_tail");
  unused("tail", !long_tail && l.tail.count() != 0, "long_tail");
  if (uniform && l.min > l.max) {
    out.push_back(field + ".min: " + FormatDuration(l.min) + " is more than " + field + ".max (" +
                  FormatDuration(l.max) + "); swap them");
  }
  if (long_tail) {
    if (!IsRatio(l.tail_ratio)) {
      out.push_back(field + ".tail_ratio: " + Number(l.tail_ratio) +
                    " is not between 0 and 1; e.g. 0.05 for 5% of calls");
    }
    if (l.tail < l.base) {
      out.push_back(field + ".tail: " + FormatDuration(l.tail) + " is shorter than " + field +
                    ".base (" + FormatDuration(l.base) +
                    "); the tail is the slow calls, e.g. base 200ms, tail 5s");
    }
  }
}

std::string DescribeLatency(const Latency& l) {
  switch (l.kind) {
    case Latency::Kind::kNone:
      return "none";
    case Latency::Kind::kFixed:
      return "fixed " + FormatDuration(l.base);
    case Latency::Kind::kUniform:
      return "uniform " + FormatDuration(l.min) + ".." + FormatDuration(l.max);
    case Latency::Kind::kLongTail:
      return "long_tail " + FormatDuration(l.base) + " (" + Percent(l.tail_ratio) + " at " +
             FormatDuration(l.tail) + ")";
  }
  return "?";
}

const char* OperationName(size_t op) {
  static constexpr std::array<const char*, kOperationCount> kNames = {
      "create_workflow", "start_execution", "get_execution_status", "stop_execution",
      "delete_workflow"};
  return kNames.at(op);
}

std::string DescribeOutage(const Outage& o) {
  return std::string("outage ") + ToString(o.mode) + " at +" + FormatDuration(o.after) + " for " +
         FormatDuration(o.duration);
}

}  // namespace

bool Misbehaviour::Any() const {
  return latency.kind != Latency::Kind::kNone ||
         std::any_of(operation_latency.begin(), operation_latency.end(),
                     [](const auto& l) { return l && l->kind != Latency::Kind::kNone; }) ||
         hang_ratio > 0 || !outages.empty() || max_calls_per_second > 0;
}

const char* ToString(Latency::Kind kind) {
  switch (kind) {
    case Latency::Kind::kNone:
      return "none";
    case Latency::Kind::kFixed:
      return "fixed";
    case Latency::Kind::kUniform:
      return "uniform";
    case Latency::Kind::kLongTail:
      return "long_tail";
  }
  return "?";
}

std::optional<Latency::Kind> ParseLatencyKind(std::string_view text) {
  for (auto k : {Latency::Kind::kNone, Latency::Kind::kFixed, Latency::Kind::kUniform,
                 Latency::Kind::kLongTail}) {
    if (text == ToString(k)) return k;
  }
  return std::nullopt;
}

const char* ToString(OutageMode mode) {
  switch (mode) {
    case OutageMode::kUnavailable:
      return "unavailable";
    case OutageMode::kHang:
      return "hang";
    case OutageMode::kThrottle:
      return "throttle";
  }
  return "?";
}

std::optional<OutageMode> ParseOutageMode(std::string_view text) {
  for (auto m : {OutageMode::kUnavailable, OutageMode::kHang, OutageMode::kThrottle}) {
    if (text == ToString(m)) return m;
  }
  return std::nullopt;
}

std::vector<std::string> MisbehaviourProblems(const Misbehaviour& m, const std::string& prefix) {
  std::vector<std::string> out;
  LatencyProblems(m.latency, prefix + "latency", out);
  for (size_t op = 0; op < m.operation_latency.size(); ++op) {
    if (m.operation_latency[op]) {
      LatencyProblems(*m.operation_latency[op],
                      prefix + "operation_latency[" + OperationName(op) + "]", out);
    }
  }
  if (!IsRatio(m.hang_ratio)) {
    out.push_back(prefix + "hang_ratio: " + Number(m.hang_ratio) +
                  " is not between 0 and 1; e.g. 0.01 for 1% of calls");
  }
  if (!(m.max_calls_per_second >= 0) || std::isinf(m.max_calls_per_second)) {
    out.push_back(prefix + "max_calls_per_second: " + Number(m.max_calls_per_second) +
                  " is not a rate; use a number of calls per second above 0, or 0 for no limit");
  }
  for (size_t i = 0; i < m.outages.size(); ++i) {
    const Outage& o = m.outages[i];
    const std::string field = prefix + "outages[" + std::to_string(i) + "]";
    if (o.after.count() < 0) {
      out.push_back(field +
                    ".after: negative; use the time from the start, e.g. 60s (0s: at once)");
    }
    if (o.duration.count() <= 0) {
      out.push_back(field + ".duration: must be more than 0s, e.g. 30s");
    }
  }
  // Overlapping windows: which mode wins would be a guess; say so instead.
  std::vector<size_t> order(m.outages.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return m.outages[a].after < m.outages[b].after; });
  for (size_t k = 1; k < order.size(); ++k) {
    const Outage& earlier = m.outages[order[k - 1]];
    const Outage& later = m.outages[order[k]];
    if (earlier.duration.count() > 0 && later.after < earlier.after + earlier.duration) {
      out.push_back(prefix + "outages[" + std::to_string(order[k]) + "]: overlaps " + prefix +
                    "outages[" + std::to_string(order[k - 1]) + "] (" + DescribeOutage(later) +
                    " begins before " + DescribeOutage(earlier) +
                    " ends); make it start later or merge the two");
    }
  }
  return out;
}

std::string Describe(const Misbehaviour& m) {
  std::vector<std::string> parts;
  if (m.latency.kind != Latency::Kind::kNone)
    parts.push_back("latency " + DescribeLatency(m.latency));
  for (size_t op = 0; op < m.operation_latency.size(); ++op) {
    if (m.operation_latency[op]) {
      parts.push_back(std::string("latency of ") + OperationName(op) + " " +
                      DescribeLatency(*m.operation_latency[op]));
    }
  }
  if (m.hang_ratio > 0) parts.push_back(Percent(m.hang_ratio) + " of calls hang");
  if (m.max_calls_per_second > 0) {
    parts.push_back("throttled above " + Number(m.max_calls_per_second) + " calls/s");
  }
  for (const Outage& o : m.outages) parts.push_back(DescribeOutage(o));
  if (parts.empty()) return "";
  if (m.seed) parts.push_back("seed " + std::to_string(*m.seed));
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "; ") + p;
  return out;
}

MisbehaviourPlanner::MisbehaviourPlanner(Misbehaviour m, TimePoint origin) : origin_(origin) {
  m_.seed = m.seed;
  rng_.seed(m.seed ? *m.seed : std::random_device{}());
  Set(std::move(m));
}

void MisbehaviourPlanner::Set(Misbehaviour m) {
  if (m.seed != m_.seed) rng_.seed(m.seed ? *m.seed : std::random_device{}());
  if (m.max_calls_per_second != m_.max_calls_per_second) refilled_at_.reset();
  m_ = std::move(m);
}

double MisbehaviourPlanner::Uniform01() {
  // The top 53 bits as a double in [0, 1): the same draws on every platform for a given seed.
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

std::chrono::nanoseconds MisbehaviourPlanner::Draw(const Latency& l) {
  switch (l.kind) {
    case Latency::Kind::kNone:
      return nanoseconds::zero();
    case Latency::Kind::kFixed:
      return l.base;
    case Latency::Kind::kUniform:
      return l.min + nanoseconds(static_cast<int64_t>(
                         std::llround(static_cast<double>((l.max - l.min).count()) * Uniform01())));
    case Latency::Kind::kLongTail:
      return Uniform01() < l.tail_ratio ? l.tail : l.base;
  }
  return nanoseconds::zero();
}

const Outage* MisbehaviourPlanner::OutageAt(TimePoint now) const {
  const auto since = now - origin_;
  for (const Outage& o : m_.outages) {
    if (since >= o.after && since < o.after + o.duration) return &o;
  }
  return nullptr;
}

bool MisbehaviourPlanner::TakeToken(TimePoint now) {
  // A token bucket holding one second of calls: bursts up to the rate, then the rate itself.
  const double capacity = std::max(1.0, m_.max_calls_per_second);
  if (!refilled_at_) {
    tokens_ = capacity;
    refilled_at_ = now;
  } else if (now > *refilled_at_) {
    const double seconds = std::chrono::duration<double>(now - *refilled_at_).count();
    tokens_ = std::min(capacity, tokens_ + seconds * m_.max_calls_per_second);
    refilled_at_ = now;
  }
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

CallFault MisbehaviourPlanner::Next(Operation op, TimePoint now) {
  CallFault f;
  // Definitions are applied through Create/Delete; only the execution calls misbehave.
  if (op != Operation::kStartExecution && op != Operation::kGetExecutionStatus &&
      op != Operation::kStopExecution) {
    return f;
  }
  if (const Outage* o = OutageAt(now)) {
    const std::string window = " (" + DescribeOutage(*o) + ")";
    switch (o->mode) {
      case OutageMode::kUnavailable:
        f.error = ErrorCode::kUnavailable;
        f.reason = "mock engine unavailable" + window;
        break;
      case OutageMode::kHang:
        f.hang = true;
        f.reason = "mock engine hung" + window;
        break;
      case OutageMode::kThrottle:
        f.error = ErrorCode::kThrottled;
        f.reason = "mock engine throttled the call" + window;
        break;
    }
    return f;
  }
  if (m_.max_calls_per_second > 0 && !TakeToken(now)) {
    f.error = ErrorCode::kThrottled;
    f.reason = "mock engine throttled the call: more than " + Number(m_.max_calls_per_second) +
               " calls per second";
    return f;
  }
  if (m_.hang_ratio > 0 && Uniform01() < m_.hang_ratio) {
    f.hang = true;
    f.reason = "mock engine hung (" + Percent(m_.hang_ratio) + " of calls hang)";
    return f;
  }
  const auto& per_op = m_.operation_latency.at(static_cast<size_t>(op));
  f.latency = Draw(per_op ? *per_op : m_.latency);
  return f;
}

}  // namespace workflowd::providers::mock
