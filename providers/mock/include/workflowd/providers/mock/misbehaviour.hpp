// Engine-wide misbehaviour of the mock provider, so that slow, hanging, throttling and dead engines
// can be tested with the real daemon: per-call latency drawn from a distribution, a fraction of
// calls that hang until their deadline, outages over time windows, and a limit of calls per second.
// Applies to StartExecution, GetExecutionStatus and StopExecution. For tests and benchmarks only.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "workflowd/common/clock.hpp"
#include "workflowd/providers/errors.hpp"

namespace workflowd::providers::mock {

enum class Operation {
  kCreateWorkflow,
  kStartExecution,
  kGetExecutionStatus,
  kStopExecution,
  kDeleteWorkflow
};
inline constexpr size_t kOperationCount = 5;

// How long each call takes before it answers.
struct Latency {
  enum class Kind {
    kNone,      // no added latency
    kFixed,     // every call takes `base`
    kUniform,   // uniformly between `min` and `max`
    kLongTail,  // `base`, except a fraction `tail_ratio` of calls that take `tail`
  };
  Kind kind = Kind::kNone;
  std::chrono::nanoseconds base{0};
  std::chrono::nanoseconds min{0};
  std::chrono::nanoseconds max{0};
  double tail_ratio = 0;
  std::chrono::nanoseconds tail{0};

  static Latency Fixed(std::chrono::nanoseconds d) { return {Kind::kFixed, d}; }
  static Latency Uniform(std::chrono::nanoseconds min, std::chrono::nanoseconds max) {
    return {Kind::kUniform, {}, min, max};
  }
  static Latency LongTail(std::chrono::nanoseconds base, double tail_ratio,
                          std::chrono::nanoseconds tail) {
    return {Kind::kLongTail, base, {}, {}, tail_ratio, tail};
  }
};

// What every call meets during an outage window.
enum class OutageMode {
  kUnavailable,  // fails at once with kUnavailable
  kHang,         // hangs until its deadline or cancellation, then kDeadlineExceeded
  kThrottle,     // fails at once with kThrottled
};

// A window of time, relative to the provider's creation (the daemon's start).
struct Outage {
  std::chrono::nanoseconds after{0};
  std::chrono::nanoseconds duration{0};
  OutageMode mode = OutageMode::kUnavailable;
};

struct Misbehaviour {
  Latency latency;  // every affected operation, unless operation_latency says otherwise
  // Per operation (indexed by Operation), overriding `latency` where set.
  std::array<std::optional<Latency>, kOperationCount> operation_latency;
  double hang_ratio = 0;  // fraction of calls that hang until their deadline
  std::vector<Outage> outages;
  double max_calls_per_second = 0;  // beyond it calls fail with kThrottled; 0: no limit
  std::optional<uint64_t> seed;     // fixed: the same draws on every run (tests); none: random

  // Whether anything at all is configured (otherwise the provider skips all of this).
  bool Any() const;
};

const char* ToString(Latency::Kind kind);  // none, fixed, uniform, long_tail
std::optional<Latency::Kind> ParseLatencyKind(std::string_view text);
const char* ToString(OutageMode mode);  // unavailable, hang, throttle
std::optional<OutageMode> ParseOutageMode(std::string_view text);

// Everything wrong with `m`, each "FIELD: what is wrong; how to fix it", FIELD named as in the
// daemon's configuration after `prefix` (latency.min, outages[1].duration, hang_ratio, ...), and
// so are the other fields a message refers to.
std::vector<std::string> MisbehaviourProblems(const Misbehaviour& m,
                                              const std::string& prefix = "");

// One line for the daemon's log, e.g. "latency long_tail 200ms (5% at 5s); outage unavailable at
// +1m for 30s". Empty when nothing is configured.
std::string Describe(const Misbehaviour& m);

// What one call meets, decided before it does anything.
struct CallFault {
  std::chrono::nanoseconds latency{0};  // wait this long first
  bool hang = false;                    // then hang until the deadline
  std::optional<ErrorCode> error;       // or fail at once with this code
  std::string reason;                   // for the error's or the hang's message
};

// Decides call by call what the engine does, from a Misbehaviour, the clock and a random
// generator. Not thread-safe: the provider calls it under its lock.
class MisbehaviourPlanner {
 public:
  // `origin`: where outage windows are counted from.
  MisbehaviourPlanner(Misbehaviour m, TimePoint origin);

  const Misbehaviour& misbehaviour() const { return m_; }
  // Replaces the configuration; the generator is reseeded when the seed changes, the throttle's
  // bucket starts full when its rate changes.
  void Set(Misbehaviour m);

  // The fault of one call of `op` made at `now`. Takes a throttle token when it lets the call
  // through.
  CallFault Next(Operation op, TimePoint now);
  // One draw from a latency distribution (exposed for tests of the distributions).
  std::chrono::nanoseconds Draw(const Latency& latency);

 private:
  double Uniform01();
  const Outage* OutageAt(TimePoint now) const;
  bool TakeToken(TimePoint now);

  Misbehaviour m_;
  TimePoint origin_;
  std::mt19937_64 rng_;
  double tokens_ = 0;
  std::optional<TimePoint> refilled_at_;
};

}  // namespace workflowd::providers::mock
