// How workflowd reaches a Temporal cluster (providers.temporal.* of the configuration). No gRPC
// types here: the configuration includes this header.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace workflowd::providers::temporal {

struct TlsOptions {
  bool enabled = false;     // on by itself when any file below is set
  std::string ca_file;      // PEM roots; empty: the system's roots
  std::string cert_file;    // mTLS client certificate (PEM), with key_file
  std::string key_file;     // mTLS client key (PEM)
  std::string server_name;  // overrides the name checked in the server's certificate
};

struct Options {
  std::string address;                     // host:port of the frontend; empty: provider off
  std::string namespace_name = "default";  // definitions may name another
  std::string task_queue = "workflowd";    // where the step-runner worker polls
  std::string workflow_type = "WorkflowdStepRunner";
  std::string identity;  // shown in Temporal's UI; default workflowd@host
  TlsOptions tls;
  std::string api_key;  // Temporal Cloud API key (sent as "authorization: Bearer ..."), a secret
  std::string api_key_file;  // where api_key was read from
  // Each RPC: its own deadline (never past the caller's), and quick retries of UNAVAILABLE,
  // RESOURCE_EXHAUSTED and ABORTED answers within the caller's deadline.
  std::chrono::milliseconds rpc_timeout{10000};
  size_t rpc_attempts = 3;
  std::chrono::milliseconds rpc_initial_backoff{100};
  std::chrono::milliseconds rpc_max_backoff{2000};
  // A stop asks the workflow to cancel; one still running this long after is terminated.
  std::chrono::milliseconds cancel_grace{30000};
  // Search attributes WorkflowdTenant, WorkflowdEnvironment, WorkflowdDefinition (Keyword) on each
  // run, so runs are found in Temporal's UI by tenant; they must be registered in the namespace.
  bool search_attributes = true;
  std::chrono::milliseconds keepalive_time{30000};
  std::chrono::milliseconds keepalive_timeout{15000};
  size_t max_receive_bytes = size_t{128} * 1024 * 1024;  // history pages can be large
};

// Every problem of `o` as "providers.temporal.<key>: problem" (files are not read here).
std::vector<std::string> OptionsProblems(const Options& o);

}  // namespace workflowd::providers::temporal
