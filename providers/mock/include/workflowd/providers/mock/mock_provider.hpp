// The in-memory mock provider of the provider framework: thread-safe, with a configurable outcome
// per workflow or per execution name, history events, idempotent starts by execution name, injected
// latency and errors, and a counter of StartExecution calls per execution name (proof that nothing
// was started twice).
#pragma once

#include <chrono>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "workflowd/common/clock.hpp"
#include "workflowd/providers/mock/misbehaviour.hpp"
#include "workflowd/providers/provider.hpp"

namespace workflowd::providers::mock {

// What an execution does once started. Snapshotted at start: changing the configuration later does
// not change executions already running.
struct Outcome {
  enum class Kind {
    kSucceed,          // succeeds after `delay` (zero: at once)
    kFail,             // fails with `error` after `delay`
    kRunUntilStopped,  // stays running until StopExecution
  };
  Kind kind = Kind::kSucceed;
  std::chrono::nanoseconds delay{0};
  Json output;  // on success; null: {"result":"ok"}
  ExecutionError error{"MockFailure", "mock execution failed", "", ""};

  static Outcome Succeed(Json output = nullptr) { return {Kind::kSucceed, {}, std::move(output)}; }
  static Outcome SucceedAfter(std::chrono::nanoseconds delay, Json output = nullptr) {
    return {Kind::kSucceed, delay, std::move(output)};
  }
  static Outcome Fail(ExecutionError error, std::chrono::nanoseconds delay = {}) {
    return {Kind::kFail, delay, nullptr, std::move(error)};
  }
  static Outcome RunUntilStopped() { return {Kind::kRunUntilStopped}; }
};

// Parses the optional `provider_config.mock` object of a workflow spec:
//   {"outcome": "succeed" | "fail" | "run_until_stopped", "delay": "2s",
//    "output": {...}, "error": {"code": "...", "message": "...", "failed_at": "step-id"}}
// Throws ProviderError(kInvalidSpec) naming the bad field.
std::optional<Outcome> OutcomeFromProviderConfig(const Json& provider_config);

// Deterministic misbehaviour of one workflow, from `provider_config.mock` as well:
//   {"start_failures": 2, "start_timeouts": 1, "latency": "20ms"}
// The first `start_failures` StartExecution calls of each execution name fail with kUnavailable,
// the next `start_timeouts` ones wait for the call's deadline and fail with kDeadlineExceeded, and
// every start and status call waits `latency` first. Starts are counted by the input's integer
// "start_attempt" when present (workflowd sends it, so the sequence holds across replicas and
// restarts), else per execution name in this process.
struct Faults {
  int start_failures = 0;
  int start_timeouts = 0;
  std::chrono::nanoseconds latency{0};
};
Faults FaultsFromProviderConfig(const Json& provider_config);

class MockProvider final : public Provider {
 public:
  static constexpr const char* kName = "mock";

  // `clock` decides when delayed outcomes complete; it must outlive the provider.
  explicit MockProvider(const Clock& clock = SystemClock::Instance());
  ~MockProvider() override;

  std::string Name() const override { return kName; }
  CreateWorkflowResult CreateWorkflow(const Context& ctx, const WorkflowSpec& spec) override;
  ExecutionResult StartExecution(const Context& ctx, const std::string& workflow_id,
                                 ExecutionInput input) override;
  ExecutionStatus GetExecutionStatus(const Context& ctx, const std::string& execution_id) override;
  void StopExecution(const Context& ctx, const std::string& execution_id,
                     const std::string& reason) override;
  void DeleteWorkflow(const Context& ctx, const std::string& workflow_id) override;
  void Validate(const Context& ctx, const WorkflowSpec& spec) override;

  // --- configuration (thread-safe) ---
  void SetDefaultOutcome(Outcome outcome);
  void SetWorkflowOutcome(const std::string& workflow_id, Outcome outcome);
  void SetExecutionOutcome(const std::string& execution_name, Outcome outcome);
  // Every call waits this long first (respecting the call's deadline and cancellation).
  void SetLatency(std::chrono::nanoseconds latency);
  // The next `count` calls of `op` throw ProviderError(code) before doing anything.
  void InjectErrors(Operation op, int count, ErrorCode code);

  // Engine-wide misbehaviour (see misbehaviour.hpp) of StartExecution, GetExecutionStatus and
  // StopExecution; outage windows count from this provider's creation. Each setter keeps the
  // rest of the configuration and throws ProviderError(kInvalidSpec) naming the first problem.
  // Nothing configured (the default) costs a call one pointer test.
  void SetMisbehaviour(Misbehaviour misbehaviour);
  Misbehaviour GetMisbehaviour() const;
  void SetCallLatency(Latency latency);                // every affected operation
  void SetCallLatency(Operation op, Latency latency);  // this one only
  void SetHangRatio(double ratio);
  void SetOutages(std::vector<Outage> outages);
  void SetMaxCallsPerSecond(double calls_per_second);  // 0: no limit
  void SetSeed(uint64_t seed);

  // Lets GetExecutionStatus / StopExecution answer for executions started by another instance of
  // the mock (another daemon replica, or this process before a restart): execution ids carry the
  // workflow, name and start time, so the outcome can be recomputed once the workflow is known
  // here. Without it such ids are not found.
  void EnableReconstruction(bool enabled);
  // Appends each StartExecution call's execution name as a line to `path` (shared by replicas, so
  // tests can count starts across processes). Throws kInvalidSpec when it cannot be opened.
  void SetStartLog(const std::string& path);
  // Keeps the whole record (input, history, output) of at most this many executions (default
  // 10,000): past that, the oldest ones that succeeded or failed by their outcome are forgotten
  // and rebuilt from their id when asked for again (as for another replica's: the input then
  // reads {}). Their names stay known, so a repeated start is still recognised. Cancelled and
  // unfinished executions are always kept. Without a bound, a daemon running the mock kept every
  // execution it ever started (hundreds of MB in the lifecycle benchmark).
  void SetRetention(size_t executions);
  // Remembers at most this many execution names (default 100,000) past those of the executions
  // whose whole record is kept: what a name is for (the execution it started, so that a repeated
  // start is recognised; its StartCalls; its fault sequence) is forgotten for the oldest names
  // beyond that. A start repeated after that many newer names starts a new execution; workflowd
  // repeats a start within a dispatch lease, far sooner. Without a bound, a daemon running the
  // mock kept every name it was ever asked to start.
  void SetNameRetention(size_t names);

  // --- observation (thread-safe) ---
  // StartExecution calls that reached the provider for this name, including idempotent repeats.
  int StartCalls(const std::string& execution_name) const;
  // Executions whose name is remembered (each name at most once), forgotten records included.
  size_t ExecutionCount() const;
  // Names remembered, with or without an execution (a start that failed is remembered too).
  size_t KnownNameCount() const;
  // Executions whose whole record is held in memory.
  size_t RetainedCount() const;
  bool HasWorkflow(const std::string& workflow_id) const;

 private:
  struct WorkflowState;
  struct ExecutionRecord;

  void BeforeCall(const Context& ctx, Operation op, const char* what);
  // Validates the changed misbehaviour and hands it to the planner.
  void ChangeMisbehaviour(const std::function<void(Misbehaviour&)>& change);
  // Settles an execution whose outcome is due at `now`; terminal states are stored, never undone.
  void Settle(ExecutionRecord& e, TimePoint now) const;
  ExecutionStatus StatusOf(const ExecutionRecord& e) const;

  // Hash maps: every start and status call looks its execution up among all those of the
  // process (tens of thousands in the lifecycle benchmark); nothing needs them ordered.
  using ExecutionMap = std::unordered_map<std::string, std::unique_ptr<ExecutionRecord>>;
  ExecutionMap::iterator FindOrReconstruct(const std::string& execution_id);  // mu_ held
  // Rebuilds an execution from its id (mock:<workflow>:<name>:<start ms>), or end(). mu_ held.
  ExecutionMap::iterator Reconstruct(const std::string& execution_id);
  // Adds a record and forgets old finished ones beyond the retention. mu_ held.
  ExecutionMap::iterator Retain(std::unique_ptr<ExecutionRecord> e, TimePoint now);
  // What is known of an execution name.
  struct NameState {
    std::string execution_id;  // empty until an execution started under the name
    int start_calls = 0;       // StartExecution calls that reached the provider
    int fault_attempts = 0;    // starts counted here for Faults (no "start_attempt" in the input)
    int faulted_attempt = 0;   // the caller's last attempt a Faults failure or timeout was for
  };
  // The name's state, remembered from now on (and old names forgotten). mu_ held.
  NameState& Remember(const std::string& name);
  // Precedence: per execution name, per workflow, provider_config, default. mu_ held.
  Outcome OutcomeFor(const std::string& name, const std::string& workflow_id,
                     const WorkflowState& workflow) const;
  void ApplyStartFaults(const Context& ctx, const std::string& workflow_id,
                        const ExecutionInput& input);  // mu_ not held
  void ApplyStatusLatency(const Context& ctx, const std::string& execution_id);

  const Clock& clock_;
  mutable std::mutex mu_;
  bool reconstruct_ = false;
  std::ofstream start_log_;
  // One per workflow created (a definition version), removed by DeleteWorkflow: bounded by the
  // definitions, not by the events.
  std::map<std::string, std::unique_ptr<WorkflowState>> workflows_;
  ExecutionMap executions_;                 // by execution id
  std::deque<std::string> retained_order_;  // ids in executions_, oldest first
  size_t retention_ = 10000;
  std::unordered_map<std::string, NameState> names_;
  std::deque<std::string> name_order_;  // keys of names_, oldest first
  size_t name_retention_ = 100000;
  Outcome default_outcome_;
  // Filled only by the Set*Outcome calls of a test: as large as the test makes them.
  std::map<std::string, Outcome> workflow_outcomes_;
  std::map<std::string, Outcome> execution_outcomes_;
  std::chrono::nanoseconds latency_{0};
  std::map<Operation, std::pair<int, ErrorCode>> injected_;
  const TimePoint created_at_;  // where outage windows count from
  // Null until some misbehaviour is configured: the hot path then only tests the pointer.
  std::unique_ptr<MisbehaviourPlanner> planner_;
  uint64_t generated_names_ = 0;
};

}  // namespace workflowd::providers::mock
