#include "workflowd/providers/temporal/temporal_provider.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <sstream>

#include "temporal/api/workflowservice/v1/service.grpc.pb.h"
#include "workflowd/providers/temporal/mapping.hpp"
#include "workflowd/providers/validation.hpp"

namespace workflowd::providers::temporal {

namespace {

namespace ws = api::workflowservice::v1;
using Stub = ws::WorkflowService::Stub;

// Memo and search attribute keys of each run.
constexpr const char* kTenantAttribute = "WorkflowdTenant";
constexpr const char* kEnvironmentAttribute = "WorkflowdEnvironment";
constexpr const char* kDefinitionAttribute = "WorkflowdDefinition";
constexpr int kHistoryPageSize = 256;  // the server warns about larger pages
constexpr int kMaxHistoryPages = 1000;
constexpr size_t kMaxCachedStatuses = 10000;

std::string ReadFile(const std::string& path, const char* option) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  if (in) text << in.rdbuf();
  if (!in || text.str().empty()) {
    throw ProviderError(ErrorCode::kInvalidSpec, std::string("providers.temporal.") + option +
                                                     ": cannot read \"" + path +
                                                     "\" (missing, unreadable or empty)");
  }
  return text.str();
}

std::string HostName() {
  std::array<char, 256> name{};
  if (gethostname(name.data(), name.size() - 1) != 0) return "unknown";
  return name.data();
}

bool RetryableCode(const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::ABORTED:
      return true;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      // Too large a message stays too large.
      return s.error_message().find("message larger than max") == std::string::npos;
    default:
      return false;
  }
}

std::string StartRequestId(const std::string& workflow_id) {
  return "workflowd-start-" + workflow_id;
}

// The provider's execution id: "<namespace>/<workflow id>/<run id>" (the run the start made or
// found, so a later run under the same workflow id is never mistaken for it); "<namespace>/<id>"
// and a bare "<id>" (in `fallback`) name the workflow id's latest run.
struct RunRef {
  std::string namespace_name;
  std::string workflow_id;
  std::string run_id;  // empty: the latest run
};

RunRef ParseExecutionId(const std::string& id, const std::string& fallback) {
  RunRef r;
  const auto first = id.find('/');
  if (first == std::string::npos) return {fallback, id, ""};
  r.namespace_name = id.substr(0, first);
  const auto second = id.find('/', first + 1);
  r.workflow_id =
      id.substr(first + 1, second == std::string::npos ? std::string::npos : second - first - 1);
  if (second != std::string::npos) r.run_id = id.substr(second + 1);
  return r;
}

// The reason of every terminate workflowd makes: a run terminated with another reason (by an
// operator, or by Temporal itself at a history limit) failed rather than was cancelled.
constexpr const char* kTerminateReasonPrefix = "workflowd: ";

// A payload as JSON; one workflowd cannot read (another encoding, a codec) is reported as such
// rather than failing the poll: the run's state must still reach the database.
Json Readable(const api::common::v1::Payloads& payloads) {
  try {
    return FirstPayloadJson(payloads);
  } catch (const ProviderError& e) {
    return {{"unreadable_payload", e.what()}};
  }
}

std::string Keyword(const Json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

}  // namespace

std::vector<std::string> OptionsProblems(const Options& o) {
  std::vector<std::string> p;
  const std::string at = "providers.temporal.";
  if (o.address.empty()) return p;
  if (o.address.find(':') == std::string::npos)
    p.push_back(at + "address: \"" + o.address +
                "\" has no port (expected host:port, e.g. 127.0.0.1:7233)");
  if (o.namespace_name.empty()) p.push_back(at + "namespace: must not be empty");
  if (o.task_queue.empty()) p.push_back(at + "task_queue: must not be empty");
  if (o.workflow_type.empty()) p.push_back(at + "workflow_type: must not be empty");
  if (o.tls.cert_file.empty() != o.tls.key_file.empty())
    p.push_back(at + "tls: cert_file and key_file go together (mTLS needs both)");
  if (!o.api_key.empty() && !o.tls.enabled && o.tls.ca_file.empty() && o.tls.cert_file.empty())
    p.push_back(
        at +
        "api_key_file: an API key is only sent over TLS; set providers.temporal.tls.enabled: "
        "true (Temporal Cloud always uses TLS)");
  if (o.rpc_attempts < 1 || o.rpc_attempts > 10) p.push_back(at + "rpc.attempts: from 1 to 10");
  if (o.rpc_timeout.count() <= 0) p.push_back(at + "rpc.timeout: must be positive");
  if (o.rpc_initial_backoff > o.rpc_max_backoff)
    p.push_back(at + "rpc.initial_backoff: must not exceed rpc.max_backoff");
  return p;
}

struct TemporalProvider::Client {
  explicit Client(const Options& o) : options(o) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(o.keepalive_time.count()));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(o.keepalive_timeout.count()));
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetMaxReceiveMessageSize(
        static_cast<int>(std::min<size_t>(o.max_receive_bytes, INT32_MAX)));
    std::shared_ptr<grpc::ChannelCredentials> credentials;
    const bool tls = o.tls.enabled || !o.tls.ca_file.empty() || !o.tls.cert_file.empty();
    if (tls) {
      grpc::SslCredentialsOptions ssl;
      if (!o.tls.ca_file.empty()) ssl.pem_root_certs = ReadFile(o.tls.ca_file, "tls.ca_file");
      if (!o.tls.cert_file.empty()) {
        ssl.pem_cert_chain = ReadFile(o.tls.cert_file, "tls.cert_file");
        ssl.pem_private_key = ReadFile(o.tls.key_file, "tls.key_file");
      }
      if (!o.tls.server_name.empty()) args.SetSslTargetNameOverride(o.tls.server_name);
      credentials = grpc::SslCredentials(ssl);
    } else {
      credentials = grpc::InsecureChannelCredentials();
    }
    channel = grpc::CreateCustomChannel(o.address, credentials, args);
    stub = ws::WorkflowService::NewStub(channel);
  }

  // One RPC with quick retries of the transient answers, each attempt with its own deadline
  // (never past the caller's) and the same request, so a retried start keeps its request id.
  template <class Request, class Response>
  grpc::Status Invoke(const Context& ctx, const std::string& namespace_name,
                      grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                      const Request& request, Response* response) const {
    auto backoff = options.rpc_initial_backoff;
    for (size_t attempt = 1;; ++attempt) {
      grpc::ClientContext call;
      auto deadline = std::chrono::system_clock::now() + options.rpc_timeout;
      if (auto remaining = ctx.Remaining()) {
        deadline =
            std::min(deadline, std::chrono::system_clock::now() +
                                   std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                       std::max(*remaining, std::chrono::nanoseconds(0))));
      }
      call.set_deadline(deadline);
      if (!options.api_key.empty()) call.AddMetadata("authorization", "Bearer " + options.api_key);
      if (!namespace_name.empty()) call.AddMetadata("temporal-namespace", namespace_name);
      grpc::Status status = (stub.get()->*method)(&call, request, response);
      if (status.ok() || !RetryableCode(status) || attempt >= options.rpc_attempts) return status;
      if (!ctx.WaitFor(backoff)) return status;
      backoff = std::min(backoff * 2, options.rpc_max_backoff);
    }
  }

  Options options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<Stub> stub;
};

struct TemporalProvider::Workflow {
  WorkflowSpec spec;
  DefinitionSettings settings;
  std::vector<StepPlan> steps;
  std::string namespace_name;
  std::string task_queue;
  std::string workflow_type;
};

TemporalProvider::TemporalProvider(Options options, Clock& clock)
    : options_(std::move(options)), clock_(clock) {
  if (options_.identity.empty()) options_.identity = "workflowd@" + HostName();
  if (auto problems = OptionsProblems(options_); !problems.empty()) {
    std::string text;
    for (const auto& p : problems) text += (text.empty() ? "" : "; ") + p;
    throw ProviderError(ErrorCode::kInvalidSpec, text);
  }
  client_ = std::make_unique<Client>(options_);
  terminator_ = std::thread([this] { RunTerminations(); });
}

TemporalProvider::~TemporalProvider() {
  {
    std::lock_guard lock(termination_mu_);
    stopping_ = true;
    for (const auto& t : terminations_) {
      spdlog::warn(
          "temporal: {}/{} was asked to cancel and is not terminated after its cancel grace: "
          "this process stops first (the run ends when it honours the cancellation)",
          t.namespace_name, t.workflow_id);
    }
  }
  termination_cv_.notify_all();
  if (terminator_.joinable()) terminator_.join();
}

void TemporalProvider::Validate(const Context& ctx, const WorkflowSpec& spec) {
  ThrowIfDone(ctx, "validate");
  std::vector<std::string> problems;
  const DefinitionSettings settings = ParseDefinitionSettings(spec.provider_config, problems);
  PlanSteps(spec, settings, problems);
  if (!problems.empty()) {
    std::string text;
    for (const auto& p : problems) text += (text.empty() ? "" : "; ") + p;
    throw ProviderError(ErrorCode::kInvalidSpec, "provider temporal: " + text);
  }
}

CreateWorkflowResult TemporalProvider::CreateWorkflow(const Context& ctx,
                                                      const WorkflowSpec& spec) {
  Validate(ctx, spec);
  auto w = std::make_shared<Workflow>();
  w->spec = spec;
  std::vector<std::string> ignored;  // none: Validate passed
  w->settings = ParseDefinitionSettings(spec.provider_config, ignored);
  w->steps = PlanSteps(spec, w->settings, ignored);
  w->namespace_name =
      w->settings.namespace_name.empty() ? options_.namespace_name : w->settings.namespace_name;
  w->task_queue = w->settings.task_queue.empty() ? options_.task_queue : w->settings.task_queue;
  w->workflow_type =
      w->settings.workflow_type.empty() ? options_.workflow_type : w->settings.workflow_type;
  CreateWorkflowResult r;
  r.workflow_id = spec.workflow_id;
  r.provider_type = Name();
  r.resource_ids = {{"namespace", w->namespace_name},
                    {"task_queue", w->task_queue},
                    {"workflow_type", w->workflow_type}};
  r.created_at = clock_.Now();
  r.message = "recorded (Temporal keeps no workflow definitions): runs are " + w->workflow_type +
              " on task queue " + w->task_queue + " in namespace " + w->namespace_name;
  std::lock_guard lock(mu_);
  workflows_[spec.workflow_id] = std::move(w);
  return r;
}

std::shared_ptr<const TemporalProvider::Workflow> TemporalProvider::Find(
    const std::string& workflow_id) const {
  std::lock_guard lock(mu_);
  auto it = workflows_.find(workflow_id);
  return it == workflows_.end() ? nullptr : it->second;
}

ExecutionResult TemporalProvider::StartExecution(const Context& ctx, const std::string& workflow_id,
                                                 ExecutionInput input) {
  ThrowIfDone(ctx, "start execution");
  auto w = Find(workflow_id);
  if (!w) {
    throw ProviderError(ErrorCode::kWorkflowNotFound,
                        "temporal: workflow " + workflow_id + " was not created in this process");
  }
  ValidateExecutionInput(input);
  if (input.execution_name.empty()) {
    throw ProviderError(ErrorCode::kInvalidSpec,
                        "temporal: execution_name is required (it is the run's workflow id, which "
                        "makes a repeated start return the same run)");
  }
  const std::string& run_workflow_id = input.execution_name;
  const Json& in = input.input;
  auto text = [&](const char* key) {
    auto it = in.is_object() ? in.find(key) : in.end();
    return it == in.end() ? std::string() : Keyword(*it);
  };
  ws::StartWorkflowExecutionRequest req;
  req.set_namespace_(w->namespace_name);
  req.set_workflow_id(run_workflow_id);
  req.mutable_workflow_type()->set_name(w->workflow_type);
  req.mutable_task_queue()->set_name(w->task_queue);
  req.set_identity(options_.identity);
  req.set_request_id(StartRequestId(run_workflow_id));
  req.set_workflow_id_reuse_policy(api::enums::v1::WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE);
  req.set_workflow_id_conflict_policy(api::enums::v1::WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING);
  if (w->spec.timeout.count() > 0) {
    req.mutable_workflow_execution_timeout()->set_seconds(
        std::chrono::duration_cast<std::chrono::seconds>(w->spec.timeout).count());
  }
  Json memo = {{"tenant_id", text("tenant_id")},
               {"environment_id", text("environment_id")},
               {"definition_id", text("definition_id")},
               {"definition_version", text("definition_version")},
               {"workflow_id", workflow_id}};
  // The completed-but-failed rule travels with the run: every replica judges it the same way,
  // even one that cannot load the definition.
  memo["failed_result"] = w->settings.failed_result_field.empty()
                              ? Json(false)
                              : Json{{"field", w->settings.failed_result_field},
                                     {"values", w->settings.failed_result_values}};
  for (const auto& [key, value] : memo.items()) {
    (*req.mutable_memo()->mutable_fields())[key] = JsonPayload(value);
  }
  if (options_.search_attributes) {
    auto& fields = *req.mutable_search_attributes()->mutable_indexed_fields();
    for (const auto& [name, key] : {std::pair{kTenantAttribute, "tenant_id"},
                                    std::pair{kEnvironmentAttribute, "environment_id"},
                                    std::pair{kDefinitionAttribute, "definition_id"}}) {
      api::common::v1::Payload p = JsonPayload(memo[key]);
      (*p.mutable_metadata())["type"] = "Keyword";
      fields[name] = std::move(p);
    }
  }
  *req.mutable_input()->add_payloads() =
      JsonPayload(WorkflowInput(w->steps, std::move(input.input)));

  ws::StartWorkflowExecutionResponse resp;
  const grpc::Status status =
      client_->Invoke(ctx, w->namespace_name, &Stub::StartWorkflowExecution, req, &resp);
  std::string run_id = resp.run_id();
  std::string message = resp.started() ? "started" : "already running: the existing run";
  if (!status.ok()) {
    // The workflow id was used by a run that has closed since: ours when it carries our request
    // id (this start was made before and its answer lost), someone else's otherwise.
    const bool exists = status.error_code() == grpc::StatusCode::ALREADY_EXISTS;
    auto existing = exists ? AlreadyStartedOf(status) : std::nullopt;
    if (exists && !existing) {
      // No details (a proxy dropped them): the workflow id is workflowd's own unique execution
      // id, so the run that holds it is this execution's.
      const auto d = Describe(ctx, w->namespace_name, run_workflow_id, "",
                              w->namespace_name + "/" + run_workflow_id);
      existing = AlreadyStarted{req.request_id(), d.workflow_execution_info().execution().run_id()};
    }
    if (!existing || existing->start_request_id != req.request_id()) {
      throw ErrorFromStatus(status, "start", w->namespace_name + "/" + run_workflow_id,
                            ErrorCode::kWorkflowNotFound);
    }
    run_id = existing->run_id;
    message = "already started (the run has closed since)";
  }
  ExecutionResult r;
  r.execution_id = w->namespace_name + "/" + run_workflow_id + "/" + run_id;
  r.workflow_id = workflow_id;
  r.provider_type = Name();
  r.state = ExecutionState::kRunning;
  r.started_at = clock_.Now();
  r.message = message + " (run " + run_id + ")";
  return r;
}

ExecutionStatus TemporalProvider::GetExecutionStatus(const Context& ctx,
                                                     const std::string& execution_id) {
  ThrowIfDone(ctx, "get execution status");
  const RunRef ref = ParseExecutionId(execution_id, options_.namespace_name);
  const std::string& ns = ref.namespace_name;
  const std::string target = ns + "/" + ref.workflow_id;
  const auto dresp = Describe(ctx, ns, ref.workflow_id, ref.run_id, target);
  const auto& info = dresp.workflow_execution_info();
  const std::string run_id = info.execution().run_id();
  const bool open = info.status() == api::enums::v1::WORKFLOW_EXECUTION_STATUS_RUNNING ||
                    info.status() == api::enums::v1::WORKFLOW_EXECUTION_STATUS_PAUSED;
  // An open run whose history has not grown since the last poll has nothing new to report: one
  // call instead of reading its history again.
  if (open) {
    std::lock_guard lock(cache_mu_);
    auto it = status_cache_.find(execution_id);
    if (it != status_cache_.end() && it->second.first == info.history_length()) {
      return it->second.second;
    }
  }
  const auto events = History(ctx, ns, ref.workflow_id, run_id, target, false);

  ExecutionStatus s;
  s.execution_id = execution_id;
  s.provider_type = Name();
  s.state = MapStatus(info.status());
  s.start_time = ToTimePoint(info.start_time());
  if (info.has_close_time() && s.state != ExecutionState::kRunning) {
    s.stop_time = ToTimePoint(info.close_time());
  }
  const auto& memo = info.memo().fields();
  auto memo_json = [&](const char* key) -> Json {
    auto it = memo.find(key);
    if (it == memo.end()) return nullptr;
    try {
      return PayloadJson(it->second);
    } catch (const ProviderError&) {
      return nullptr;  // another writer's memo
    }
  };
  if (const Json id = memo_json("workflow_id"); id.is_string()) {
    s.workflow_id = id.get<std::string>();
  }
  DefinitionSettings settings;
  if (const Json rule = memo_json("failed_result"); !rule.is_null()) {
    std::vector<std::string> ignored;
    settings = ParseDefinitionSettings({{"temporal", {{"failed_result", rule}}}}, ignored);
  } else if (auto w = s.workflow_id.empty() ? nullptr : Find(s.workflow_id)) {
    settings = w->settings;
  }
  s.history = MapHistory(events);
  for (const auto& e : events) {
    if (e.event_type() == api::enums::v1::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED) {
      s.input = Readable(e.workflow_execution_started_event_attributes().input());
    }
  }
  // A run continued as new: the chain's latest run carries the state and the result.
  const api::history::v1::HistoryEvent* close =
      events.empty() ? nullptr : &events[events.size() - 1];
  google::protobuf::RepeatedPtrField<api::history::v1::HistoryEvent> latest_close;
  if (info.status() == api::enums::v1::WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW) {
    const auto latest = Describe(ctx, ns, ref.workflow_id, "", target);
    const auto& li = latest.workflow_execution_info();
    s.state = MapStatus(li.status());
    s.stop_time.reset();
    close = nullptr;
    if (s.state != ExecutionState::kRunning) {
      if (li.has_close_time()) s.stop_time = ToTimePoint(li.close_time());
      latest_close = History(ctx, ns, ref.workflow_id, li.execution().run_id(), target, true);
      if (!latest_close.empty()) close = &latest_close[latest_close.size() - 1];
    }
  }
  if (close != nullptr && s.state != ExecutionState::kRunning) ApplyClose(*close, settings, s);
  s.metadata = {{"namespace", ns},
                {"workflow_id", ref.workflow_id},
                {"run_id", run_id},
                {"task_queue", info.task_queue()},
                {"history_length", std::to_string(info.history_length())}};
  std::lock_guard lock(cache_mu_);
  if (open) {
    if (status_cache_.size() >= kMaxCachedStatuses) status_cache_.erase(status_cache_.begin());
    status_cache_[execution_id] = {info.history_length(), s};
  } else {
    status_cache_.erase(execution_id);
  }
  return s;
}

api::workflowservice::v1::DescribeWorkflowExecutionResponse TemporalProvider::Describe(
    const Context& ctx, const std::string& ns, const std::string& workflow_id,
    const std::string& run_id, const std::string& target) {
  ws::DescribeWorkflowExecutionRequest req;
  req.set_namespace_(ns);
  req.mutable_execution()->set_workflow_id(workflow_id);
  req.mutable_execution()->set_run_id(run_id);
  ws::DescribeWorkflowExecutionResponse resp;
  const grpc::Status status =
      client_->Invoke(ctx, ns, &Stub::DescribeWorkflowExecution, req, &resp);
  if (!status.ok()) {
    throw ErrorFromStatus(status, "describe", target, ErrorCode::kExecutionNotFound);
  }
  return resp;
}

google::protobuf::RepeatedPtrField<api::history::v1::HistoryEvent> TemporalProvider::History(
    const Context& ctx, const std::string& ns, const std::string& workflow_id,
    const std::string& run_id, const std::string& target, bool close_event_only) {
  google::protobuf::RepeatedPtrField<api::history::v1::HistoryEvent> events;
  ws::GetWorkflowExecutionHistoryRequest req;
  req.set_namespace_(ns);
  req.mutable_execution()->set_workflow_id(workflow_id);
  req.mutable_execution()->set_run_id(run_id);
  req.set_maximum_page_size(kHistoryPageSize);
  if (close_event_only) {
    req.set_history_event_filter_type(api::enums::v1::HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT);
  }
  for (int page = 0;; ++page) {
    if (page >= kMaxHistoryPages) {
      throw ProviderError(ErrorCode::kInternal,
                          "temporal history (" + target + "): more than " +
                              std::to_string(kMaxHistoryPages * kHistoryPageSize) +
                              " events; workflowd reads the whole history of a run");
    }
    ws::GetWorkflowExecutionHistoryResponse resp;
    const grpc::Status status =
        client_->Invoke(ctx, ns, &Stub::GetWorkflowExecutionHistory, req, &resp);
    if (!status.ok()) {
      throw ErrorFromStatus(status, "history", target, ErrorCode::kExecutionNotFound);
    }
    for (auto& e : *resp.mutable_history()->mutable_events()) events.Add(std::move(e));
    if (resp.next_page_token().empty()) break;
    req.set_next_page_token(resp.next_page_token());
  }
  return events;
}

void TemporalProvider::ApplyClose(const api::history::v1::HistoryEvent& e,
                                  const DefinitionSettings& settings, ExecutionStatus& s) const {
  using namespace api::enums::v1;  // NOLINT(google-build-using-namespace): enum constants
  switch (e.event_type()) {
    case EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
      s.output = Readable(e.workflow_execution_completed_event_attributes().result());
      if (ResultSaysFailed(s.output, settings)) {
        s.state = ExecutionState::kFailed;
        s.error = ErrorFromFailedResult(s.output);
      }
      break;
    case EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
      s.error = ErrorFromFailure(e.workflow_execution_failed_event_attributes().failure());
      break;
    case EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
      s.error = ExecutionError{"Timeout", "the workflow run exceeded its timeout", "", ""};
      break;
    case EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
      s.error = ExecutionError{"Cancelled", "the workflow run was cancelled", "", ""};
      break;
    case EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: {
      const auto& a = e.workflow_execution_terminated_event_attributes();
      s.error = ExecutionError{"Terminated", "the workflow run was terminated: " + a.reason(),
                               a.identity().empty() ? "" : "by " + a.identity(), ""};
      // Terminated by someone else (an operator, Temporal at a history limit): the run did not
      // finish its work, and nobody asked workflowd to stop it.
      if (!a.reason().starts_with(kTerminateReasonPrefix)) s.state = ExecutionState::kFailed;
      break;
    }
    default:
      break;
  }
}

void TemporalProvider::StopExecution(const Context& ctx, const std::string& execution_id,
                                     const std::string& reason) {
  ThrowIfDone(ctx, "stop execution");
  const RunRef ref = ParseExecutionId(execution_id, options_.namespace_name);
  const std::string& ns = ref.namespace_name;
  const std::string& workflow_id = ref.workflow_id;
  const std::string target = ns + "/" + workflow_id;
  // The workflow id's latest run: one continued as new goes on there.
  const auto dresp = Describe(ctx, ns, workflow_id, "", target);
  if (MapStatus(dresp.workflow_execution_info().status()) != ExecutionState::kRunning) return;
  grpc::Status status;

  ws::RequestCancelWorkflowExecutionRequest req;
  req.set_namespace_(ns);
  req.mutable_workflow_execution()->set_workflow_id(workflow_id);
  req.set_identity(options_.identity);
  req.set_request_id("workflowd-cancel-" + workflow_id);
  req.set_reason(reason);
  ws::RequestCancelWorkflowExecutionResponse resp;
  status = client_->Invoke(ctx, ns, &Stub::RequestCancelWorkflowExecution, req, &resp);
  // Closed in the meantime: nothing to stop.
  if (!status.ok() && status.error_code() != grpc::StatusCode::NOT_FOUND &&
      status.error_code() != grpc::StatusCode::FAILED_PRECONDITION) {
    throw ErrorFromStatus(status, "cancel", target, ErrorCode::kExecutionNotFound);
  }
  if (options_.cancel_grace.count() == 0) {
    Terminate(ctx, ns, workflow_id, reason);
    return;
  }
  {
    std::lock_guard lock(termination_mu_);
    terminations_.push_back(
        {std::chrono::steady_clock::now() + options_.cancel_grace, ns, workflow_id, reason});
  }
  termination_cv_.notify_all();
}

void TemporalProvider::Terminate(const Context& ctx, const std::string& namespace_name,
                                 const std::string& workflow_id, const std::string& reason) {
  ws::TerminateWorkflowExecutionRequest req;
  req.set_namespace_(namespace_name);
  req.mutable_workflow_execution()->set_workflow_id(workflow_id);
  req.set_identity(options_.identity);
  req.set_reason(std::string(kTerminateReasonPrefix) + reason);
  ws::TerminateWorkflowExecutionResponse resp;
  const grpc::Status status =
      client_->Invoke(ctx, namespace_name, &Stub::TerminateWorkflowExecution, req, &resp);
  if (status.ok() || status.error_code() == grpc::StatusCode::NOT_FOUND ||
      status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
    return;  // terminated, or closed by itself meanwhile
  }
  throw ErrorFromStatus(status, "terminate", namespace_name + "/" + workflow_id,
                        ErrorCode::kExecutionNotFound);
}

void TemporalProvider::RunTerminations() {
  std::unique_lock lock(termination_mu_);
  while (!stopping_) {
    if (terminations_.empty()) {
      termination_cv_.wait(lock);
      continue;
    }
    auto next = std::min_element(terminations_.begin(), terminations_.end(),
                                 [](const auto& a, const auto& b) { return a.due < b.due; });
    if (const auto due = next->due; std::chrono::steady_clock::now() < due) {
      termination_cv_.wait_until(lock, due);  // a copy: a StopExecution may grow the vector
      continue;
    }
    Termination t = std::move(*next);
    terminations_.erase(next);
    lock.unlock();
    try {
      Terminate(Context::Background().WithTimeout(options_.rpc_timeout), t.namespace_name,
                t.workflow_id, t.reason);
    } catch (const std::exception& e) {
      spdlog::warn("temporal: terminating {}/{} after its cancel grace failed: {}",
                   t.namespace_name, t.workflow_id, e.what());
    }
    lock.lock();
  }
}

void TemporalProvider::DeleteWorkflow(const Context& ctx, const std::string& workflow_id) {
  ThrowIfDone(ctx, "delete workflow");
  std::lock_guard lock(mu_);
  workflows_.erase(workflow_id);
}

void TemporalProvider::CheckReachable(const Context& ctx) {
  ws::GetSystemInfoRequest req;
  ws::GetSystemInfoResponse resp;
  const grpc::Status status = client_->Invoke(ctx, "", &Stub::GetSystemInfo, req, &resp);
  if (!status.ok())
    throw ErrorFromStatus(status, "system info", options_.address, ErrorCode::kInternal);
}

}  // namespace workflowd::providers::temporal
