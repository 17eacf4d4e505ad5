#include "workflowd/daemon/cli.hpp"

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "workflowd/store/migrations.hpp"

#ifndef WORKFLOWD_VERSION
#define WORKFLOWD_VERSION "0.0.0-dev"
#endif

namespace workflowd::daemon {
namespace {

std::atomic<int> g_signal{0};

void OnSignal(int sig) { g_signal.store(sig); }

std::string DatabaseUrlFromEnv() {
  const char* v = std::getenv("WORKFLOWD_DATABASE_URL");
  return v ? v : "";
}

// Masks the password of a postgresql:// URL for logging.
std::string MaskDsn(const std::string& dsn) {
  auto scheme = dsn.find("://");
  auto at = dsn.find('@');
  if (scheme == std::string::npos || at == std::string::npos || at < scheme) return dsn;
  auto colon = dsn.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return dsn;
  return dsn.substr(0, colon + 1) + "***" + dsn.substr(at);
}

int Migrate(const std::string& dsn) {
  if (dsn.empty()) {
    std::cerr << "workflowd migrate: no database given; pass --database-url or set "
                 "WORKFLOWD_DATABASE_URL (e.g. postgresql://user:pass@127.0.0.1:5432/workflowd)\n";
    return 2;
  }
  try {
    auto report = store::Migrate(dsn, store::BundledMigrations());
    if (report.applied.empty()) {
      spdlog::info("schema is up to date at version {} ({})", report.schema_version, MaskDsn(dsn));
    } else {
      spdlog::info("applied {} migration(s); schema version is now {} ({})", report.applied.size(),
                   report.schema_version, MaskDsn(dsn));
    }
    return 0;
  } catch (const store::StoreError& e) {
    spdlog::error("migrate failed: {}", e.what());
    return 1;
  }
}

// The daemon skeleton: checks the database schema and waits for SIGTERM/SIGINT. Consumption,
// matching, dispatch and polling are wired in here as they land.
int Run(const std::string& dsn) {
  if (dsn.empty()) {
    std::cerr << "workflowd run: no database given; pass --database-url or set "
                 "WORKFLOWD_DATABASE_URL\n";
    return 2;
  }
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  try {
    int version = store::SchemaVersion(dsn);
    int expected = store::BundledMigrations().back().version;
    if (version < expected) {
      spdlog::error(
          "database schema is at version {}, this binary needs {}: run `workflowd "
          "migrate` first",
          version, expected);
      return 1;
    }
    spdlog::info("workflowd {} started (database {}, schema version {})", WORKFLOWD_VERSION,
                 MaskDsn(dsn), version);
  } catch (const store::StoreError& e) {
    spdlog::error("cannot start: {}", e.what());
    return 1;
  }
  while (g_signal.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  spdlog::info("received signal {}, shutting down", g_signal.load());
  return 0;
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"workflowd: turns business events on Kafka into workflow executions", "workflowd"};
  app.require_subcommand(1);
  std::string dsn = DatabaseUrlFromEnv();

  auto* version = app.add_subcommand("version", "Print the version and exit");
  auto* migrate = app.add_subcommand("migrate", "Apply the database schema migrations");
  migrate->add_option("--database-url", dsn, "PostgreSQL URL (default: $WORKFLOWD_DATABASE_URL)");
  auto* run = app.add_subcommand("run", "Run the daemon");
  run->add_option("--database-url", dsn, "PostgreSQL URL (default: $WORKFLOWD_DATABASE_URL)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (version->parsed()) {
    std::cout << "workflowd " << WORKFLOWD_VERSION << "\n";
    return 0;
  }
  if (migrate->parsed()) return Migrate(dsn);
  if (run->parsed()) return Run(dsn);
  return 2;
}

}  // namespace workflowd::daemon
