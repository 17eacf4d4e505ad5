// The Temporal provider: starts, describes and stops workflow runs over Temporal's gRPC
// WorkflowService. Temporal keeps no workflow definitions: CreateWorkflow validates a definition
// and records its workflow type, task queue, namespace and steps in this process; a start sends
// the steps with the trigger event to the step-runner worker (workers/temporal) as the run's input.
//
// Identities: the run's workflow id is the execution name (workflowd's execution id); the
// provider's execution id is "<namespace>/<workflow id>/<run id>", so any replica can describe or
// stop it without state of its own. A repeated start is answered with the run the first one made
// (request id derived from the name; reuse policy REJECT_DUPLICATE with conflict policy
// USE_EXISTING).
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "temporal/api/workflowservice/v1/request_response.pb.h"
#include "workflowd/common/clock.hpp"
#include "workflowd/providers/provider.hpp"
#include "workflowd/providers/temporal/mapping.hpp"
#include "workflowd/providers/temporal/options.hpp"

namespace workflowd::providers::temporal {

class TemporalProvider final : public Provider {
 public:
  // Reads the TLS files and builds the channel (it connects lazily, on the first call). Throws
  // ProviderError(kInvalidSpec) naming the option and file when a file cannot be read.
  TemporalProvider(Options options, Clock& clock);
  ~TemporalProvider() override;
  TemporalProvider(const TemporalProvider&) = delete;
  TemporalProvider& operator=(const TemporalProvider&) = delete;

  std::string Name() const override { return "temporal"; }
  CreateWorkflowResult CreateWorkflow(const Context& ctx, const WorkflowSpec& spec) override;
  ExecutionResult StartExecution(const Context& ctx, const std::string& workflow_id,
                                 ExecutionInput input) override;
  ExecutionStatus GetExecutionStatus(const Context& ctx, const std::string& execution_id) override;
  // Requests cancellation; a run still open cancel_grace later is terminated (by this process:
  // a restart in between leaves it to the workflow to honour the cancellation).
  void StopExecution(const Context& ctx, const std::string& execution_id,
                     const std::string& reason) override;
  void DeleteWorkflow(const Context& ctx, const std::string& workflow_id) override;
  void Validate(const Context& ctx, const WorkflowSpec& spec) override;

  // Whether the frontend answers (GetSystemInfo), for checks and tests.
  void CheckReachable(const Context& ctx);

  const Options& options() const { return options_; }

 private:
  struct Client;
  struct Workflow;
  struct Termination {
    std::chrono::steady_clock::time_point due;
    std::string namespace_name;
    std::string workflow_id;
    std::string reason;
  };

  std::shared_ptr<const Workflow> Find(const std::string& workflow_id) const;
  api::workflowservice::v1::DescribeWorkflowExecutionResponse Describe(
      const Context& ctx, const std::string& ns, const std::string& workflow_id,
      const std::string& run_id, const std::string& target);
  google::protobuf::RepeatedPtrField<api::history::v1::HistoryEvent> History(
      const Context& ctx, const std::string& ns, const std::string& workflow_id,
      const std::string& run_id, const std::string& target, bool close_event_only);
  void ApplyClose(const api::history::v1::HistoryEvent& close, const DefinitionSettings& settings,
                  ExecutionStatus& status) const;
  void Terminate(const Context& ctx, const std::string& namespace_name,
                 const std::string& workflow_id, const std::string& reason);
  void RunTerminations();

  Options options_;
  Clock& clock_;
  std::unique_ptr<Client> client_;

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Workflow>> workflows_;

  // The last status of each open run polled, by execution id, with the history length it was
  // read at (bounded; a closed run's entry is dropped).
  std::mutex cache_mu_;
  std::map<std::string, std::pair<int64_t, ExecutionStatus>> status_cache_;

  std::mutex termination_mu_;
  std::condition_variable termination_cv_;
  std::vector<Termination> terminations_;
  bool stopping_ = false;
  std::thread terminator_;  // last: started once everything above exists
};

}  // namespace workflowd::providers::temporal
