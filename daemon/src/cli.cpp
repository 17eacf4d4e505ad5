#include "workflowd/daemon/cli.hpp"

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "logging.hpp"
#include "run.hpp"
#include "workflowd/common/timefmt.hpp"
#include "workflowd/daemon/config.hpp"
#include "workflowd/definitions/definition.hpp"
#include "workflowd/lifecycle/execution_operations.hpp"
#include "workflowd/lifecycle/policy.hpp"
#include "workflowd/providers/mock/mock_provider.hpp"
#include "workflowd/providers/temporal/temporal_provider.hpp"
#include "workflowd/store/definition_repository.hpp"
#include "workflowd/store/lifecycle_repository.hpp"
#include "workflowd/store/migrations.hpp"

#ifndef WORKFLOWD_VERSION
#define WORKFLOWD_VERSION "0.0.0-dev"
#endif

namespace workflowd::daemon {
namespace {

// Loads the config for a verb; `database_url` from the command line wins over everything.
Config LoadFor(const std::string& config_path, const std::string& database_url,
               ConfigUse use = ConfigUse::kConnect) {
  Environment env = ProcessEnvironment();
  if (!database_url.empty()) env["WORKFLOWD_DATABASE_URL"] = database_url;
  return LoadConfig(config_path, env, use);
}

// The process list (ps, /proc/PID/cmdline) shows every argument to every local user for as long as
// the process runs. Overwriting the URL's bytes in argv hides it from what is read later; it was
// visible until now, hence the warning as well.
void HideDatabaseUrlArgument(int argc, char** argv) {
  constexpr std::string_view kOption = "--database-url";
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    char* value = nullptr;
    if (arg == kOption && i + 1 < argc) {
      value = argv[++i];
    } else if (arg.rfind(std::string(kOption) + "=", 0) == 0) {
      value = argv[i] + kOption.size() + 1;
    }
    if (value != nullptr) std::fill(value, value + std::strlen(value), 'x');
  }
}

int Migrate(const Config& config) {
  try {
    auto report = store::Migrate(config.database.url, store::BundledMigrations());
    if (report.applied.empty()) {
      spdlog::info("schema is up to date at version {} ({})", report.schema_version,
                   MaskUrl(config.database.url));
    } else {
      spdlog::info("applied {} migration(s); schema version is now {} ({})", report.applied.size(),
                   report.schema_version, MaskUrl(config.database.url));
    }
    return 0;
  } catch (const store::StoreError& e) {
    spdlog::error("migrate failed: {}", e.what());
    return 1;
  }
}

std::string ReadFile(const std::string& path) {
  if (path == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot read the file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// What the definition's provider says of it: whether this build and configuration offer that
// provider at all (otherwise each of its executions would fail with provider_not_found; asked only
// of a definition that can run, enabled and published: a draft may name a provider to come), and
// the provider's own checks of the definition and its provider_config (otherwise each execution
// would fail with invalid_spec).
std::optional<matching::FieldError> ProviderProblem(
    const definitions::WorkflowDefinition& definition, const providers::Registry& registry) {
  const auto available = registry.List();
  if (std::find(available.begin(), available.end(), definition.provider) == available.end()) {
    if (!definition.enabled || definition.status != definitions::DefinitionStatus::kPublished) {
      return std::nullopt;
    }
    return matching::FieldError{
        "provider",
        "\"" + definition.provider + "\" is not available (" +
            (available.empty()
                 ? std::string("no provider is enabled: turn one on in the configuration, e.g. "
                               "providers.mock.enabled: true for the demo engine")
                 : "available: " + fmt::format("{}", fmt::join(available, ", "))) +
            "); its executions would fail"};
  }
  try {
    registry.Get(definition.provider)
        ->Validate(Context::Background(), lifecycle::SpecFor(definition));
  } catch (const providers::ProviderError& e) {
    return matching::FieldError{"", "provider " + definition.provider + ": " + e.what()};
  }
  return std::nullopt;
}

// Parses and validates every file, the definitions' providers' checks included; prints each
// problem. Returns the definitions when all are valid.
std::optional<std::vector<definitions::WorkflowDefinition>> LoadDefinitionFiles(
    const std::vector<std::string>& files, const providers::Registry& providers,
    const std::string& default_provider) {
  const definitions::LoadOptions options{default_provider};
  std::vector<definitions::WorkflowDefinition> all;
  bool ok = true;
  for (const auto& file : files) {
    bool file_ok = true;
    try {
      auto defs = definitions::DefinitionsFromYamlOrJson(ReadFile(file), file, options);
      for (size_t i = 0; i < defs.size(); ++i) {
        auto problems = definitions::DefinitionProblems(defs[i]);
        if (problems.empty()) {
          if (auto p = ProviderProblem(defs[i], providers)) problems.Add(p->field, p->message);
        }
        if (!problems.empty()) {
          ok = false;
          file_ok = false;
          for (const auto& p : problems) {
            std::cerr << file << ": definition " << i << " (\"" << defs[i].name
                      << "\"): " << (p.field.empty() ? "" : p.field + ": ") << p.message << "\n";
          }
        }
      }
      std::cout << file << ": " << defs.size() << " definition(s)" << (file_ok ? " valid" : "")
                << "\n";
      for (auto& d : defs) all.push_back(std::move(d));
    } catch (const matching::ValidationError& e) {
      ok = false;
      for (const auto& p : e.errors()) {
        std::cerr << file << ": " << (p.field.empty() ? "" : p.field + ": ") << p.message << "\n";
      }
    } catch (const std::exception& e) {
      ok = false;
      std::cerr << e.what() << "\n";
    }
  }
  if (!ok) return std::nullopt;
  return all;
}

nlohmann::json ExecutionJson(const store::ExecutionRecord& e,
                             const std::vector<store::StepRecord>& steps) {
  auto ts = [](const std::optional<TimePoint>& t) -> nlohmann::json {
    return t ? nlohmann::json(FormatRfc3339(*t)) : nlohmann::json(nullptr);
  };
  nlohmann::json j = {{"id", e.id},
                      {"workflow_id", e.workflow_id},
                      {"workflow_name", e.workflow_name},
                      {"definition_version", e.definition_version},
                      {"tenant_id", e.tenant_id},
                      {"environment_id", e.environment_id},
                      {"status", e.status},
                      {"provider", e.provider},
                      {"provider_execution_id", e.provider_execution_id},
                      {"trigger_type", e.trigger_type},
                      {"trigger_event_id", e.trigger_event_id},
                      {"attempt", e.attempt},
                      {"start_attempts", e.start_attempts},
                      {"created_at", FormatRfc3339(e.created_at)},
                      {"started_at", ts(e.started_at)},
                      {"completed_at", ts(e.completed_at)},
                      {"output", e.output},
                      {"error", e.error}};
  if (!e.retry_of.empty()) j["retry_of"] = e.retry_of;
  // A start that failed during its engine's outage leaves the execution pending and parked (no
  // attempt spent): shown as such, from the error the dispatcher recorded.
  if (e.status == "pending" && e.error.is_object() && e.error.value("parked", false)) {
    j["parked"] = true;
    j["status_detail"] = "parked: waiting for provider " + e.provider +
                         " (its engine is unavailable); started when it answers again";
  }
  nlohmann::json s = nlohmann::json::array();
  for (const auto& step : steps) {
    nlohmann::json one = {{"step_id", step.step_id}, {"status", step.status}};
    if (!step.output.is_null()) one["output"] = step.output;
    if (!step.error.is_null()) one["error"] = step.error;
    if (step.started_at) one["started_at"] = FormatRfc3339(*step.started_at);
    if (step.completed_at) one["completed_at"] = FormatRfc3339(*step.completed_at);
    s.push_back(std::move(one));
  }
  j["step_executions"] = std::move(s);
  return j;
}

int RunOperation(const Config& config, const std::string& op, const std::string& tenant,
                 const std::string& environment, const std::string& id, const std::string& reason,
                 bool force, const std::string& actor) {
  try {
    store::Database db(config.database.url, config.database.connect_timeout);
    auto registry = std::make_shared<providers::Registry>();
    if (config.mock_provider.enabled) {
      auto mock = std::make_shared<providers::mock::MockProvider>(SystemClock::Instance());
      mock->EnableReconstruction(true);
      registry->Register(mock);
    }
    if (!config.temporal.address.empty()) {
      registry->Register(std::make_shared<providers::temporal::TemporalProvider>(
          config.temporal, SystemClock::Instance()));
    }
    providers::Manager manager(registry);
    lifecycle::ExecutionOperations ops(db, manager, SystemClock::Instance());
    if (op == "show") {
      store::LifecycleRepository repo(db);
      auto e = repo.Get(tenant, environment, id);
      if (!e)
        throw lifecycle::OperationError(lifecycle::OperationError::Kind::kNotFound,
                                        "execution " + id + " not found");
      std::cout << ExecutionJson(*e, repo.Steps(id)).dump(2) << "\n";
    } else if (op == "cancel") {
      auto r = ops.Cancel(tenant, environment, id, reason);
      std::cout << id << " " << r.status << (r.changed ? "" : " (unchanged)") << "\n";
    } else if (op == "retry") {
      std::cout << ops.Retry(tenant, environment, id) << " pending (retry of " << id << ")\n";
    } else {
      auto r = ops.DeleteDefinition(tenant, environment, id, force, actor);
      std::cout << "deleted " << id << " (" << r.cancelled_executions
                << " execution(s) cancelled)\n";
    }
    return 0;
  } catch (const lifecycle::OperationError& e) {
    std::cerr << "workflowd: " << e.what() << "\n";
    return e.kind() == lifecycle::OperationError::Kind::kUnavailable ? 1 : 3;
  } catch (const store::StoreError& e) {
    std::cerr << "workflowd: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"workflowd: turns business events on Kafka into workflow executions", "workflowd"};
  app.require_subcommand(1);
  std::string config_path;
  std::string database_url;
  // Read before any thread starts; nothing in the process calls setenv.
  if (const char* env = std::getenv("WORKFLOWD_CONFIG"))  // NOLINT(concurrency-mt-unsafe)
    config_path = env;

  auto add_common = [&](CLI::App* cmd) {
    cmd->add_option("-c,--config", config_path,
                    "Config file, YAML or JSON (default: $WORKFLOWD_CONFIG; settings also come "
                    "from WORKFLOWD_* variables)");
    cmd->add_option("--database-url", database_url,
                    "PostgreSQL URL (default: $WORKFLOWD_DATABASE_URL or database.url_file). "
                    "Shown in the process list: prefer the variable or the file");
  };

  auto* version = app.add_subcommand("version", "Print the version and exit");
  auto* migrate = app.add_subcommand("migrate", "Apply the database schema migrations");
  add_common(migrate);
  auto* run = app.add_subcommand("run", "Run the daemon until SIGTERM/SIGINT");
  add_common(run);
  auto* check = app.add_subcommand(
      "config", "Validate the configuration and print the effective settings (secrets masked)");
  add_common(check);

  auto* defs = app.add_subcommand("definitions", "Validate or apply workflow definition files");
  defs->require_subcommand(1);
  std::vector<std::string> files;
  std::string actor = "workflowd-cli";
  auto* validate = defs->add_subcommand(
      "validate",
      "Check definition files (JSON or YAML; one definition, a list, or "
      "{\"definitions\": [...]}); exits 1 and names every problem when invalid");
  validate->add_option("files", files, "Definition files ('-' for stdin)")->required();
  validate->add_option("-c,--config", config_path,
                       "Config file whose providers.* settings the definitions are checked "
                       "against (default: $WORKFLOWD_CONFIG; also WORKFLOWD_* variables); no "
                       "database is needed");
  auto* apply = defs->add_subcommand(
      "apply",
      "Validate definition files, then create or update them in the database for "
      "their tenant x environment, printing what changed");
  apply->add_option("files", files, "Definition files ('-' for stdin)")->required();
  apply->add_option("--actor", actor, "Recorded as created_by / updated_by");
  add_common(apply);

  // Operations on one execution or definition, scoped to a tenant x environment.
  std::string tenant, environment, target_id, reason = "cancelled from the command line";
  bool force = false;
  auto scoped = [&](CLI::App* cmd, const char* what) {
    cmd->add_option("id", target_id, what)->required();
    cmd->add_option("--tenant", tenant, "Tenant id")->required();
    cmd->add_option("--environment", environment, "Environment id")->required();
    add_common(cmd);
  };
  auto* del = defs->add_subcommand(
      "delete",
      "Delete a definition; refused while it has pending or running executions unless "
      "--force, which cancels them first (its history is kept)");
  scoped(del, "Definition id");
  del->add_flag("--force", force, "Cancel pending and running executions first");
  del->add_option("--actor", actor, "Recorded as updated_by");
  auto* execs = app.add_subcommand("executions", "Inspect, cancel or retry executions");
  execs->require_subcommand(1);
  auto* show = execs->add_subcommand("show", "Print an execution with its steps as JSON");
  scoped(show, "Execution id");
  auto* cancel = execs->add_subcommand(
      "cancel", "Cancel a pending or running execution (stops it at the provider); idempotent");
  scoped(cancel, "Execution id");
  cancel->add_option("--reason", reason, "Recorded with the cancellation");
  auto* retry = execs->add_subcommand(
      "retry", "Start a new attempt of a failed, timed_out or cancelled execution");
  scoped(retry, "Execution id");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (version->parsed()) {
    std::cout << "workflowd " << WORKFLOWD_VERSION << "\n";
    return 0;
  }
  // Offline: the providers (and default provider) of the configuration, without its database.
  if (validate->parsed()) {
    Config config;
    try {
      config = LoadFor(config_path, "", ConfigUse::kOffline);
    } catch (const ConfigError& e) {
      std::cerr << "workflowd: " << e.what() << "\n";
      return 2;
    }
    return LoadDefinitionFiles(files, *ProviderRegistryFor(config, true), config.default_provider)
               ? 0
               : 1;
  }

  if (!database_url.empty()) HideDatabaseUrlArgument(argc, argv);
  Config config;
  try {
    config = LoadFor(config_path, database_url);
  } catch (const ConfigError& e) {
    std::cerr << "workflowd: " << e.what() << "\n";
    return 2;
  }
  SetupLogging(config.log.level, config.log.format);
  if (!database_url.empty()) {
    spdlog::warn(
        "--database-url puts the database URL, password included, in the process list (ps, "
        "/proc/PID/cmdline) where every local user can read it; set WORKFLOWD_DATABASE_URL or "
        "database.url_file (a file only workflowd can read, e.g. a systemd credential or a "
        "Kubernetes secret) instead");
  }

  if (check->parsed()) {
    std::cout << DescribeConfig(config);
    return 0;
  }
  if (migrate->parsed()) return Migrate(config);
  if (apply->parsed()) {
    auto loaded =
        LoadDefinitionFiles(files, *ProviderRegistryFor(config, true), config.default_provider);
    if (!loaded) return 1;
    try {
      store::Database db(config.database.url, config.database.connect_timeout);
      store::DefinitionRepository repo(db);
      for (const auto& o : repo.Apply(*loaded, actor)) {
        std::cout << store::ToString(o.action) << " " << o.id << " v" << o.version << " "
                  << o.tenant_id << "/" << o.environment_id << " \"" << o.name << "\"\n";
      }
      return 0;
    } catch (const store::StoreError& e) {
      std::cerr << "workflowd definitions apply: " << e.what() << "\n";
      return 1;
    } catch (const matching::ValidationError& e) {
      std::cerr << "workflowd definitions apply: a stored definition is invalid: " << e.what()
                << "\n";
      return 1;
    }
  }
  if (del->parsed() || show->parsed() || cancel->parsed() || retry->parsed()) {
    return RunOperation(config,
                        del->parsed()      ? "delete"
                        : show->parsed()   ? "show"
                        : cancel->parsed() ? "cancel"
                                           : "retry",
                        tenant, environment, target_id, reason, force, actor);
  }
  if (run->parsed()) {
    try {
      return RunDaemon(config);
    } catch (const std::exception& e) {
      spdlog::critical("workflowd failed: {}", e.what());
      return 1;
    }
  }
  return 2;
}

}  // namespace workflowd::daemon
