// Versioned schema migrations, applied by `workflowd migrate`. Applied versions are recorded in
// schema_migrations with a checksum; a PostgreSQL advisory lock makes concurrent runs (several
// replicas starting together) apply each migration exactly once.
#pragma once

#include <string>
#include <vector>

#include "workflowd/store/errors.hpp"

namespace spdlog {
class logger;
}

namespace workflowd::store {

struct Migration {
  int version = 0;
  std::string name;  // from the file name, e.g. "initial_schema"
  std::string sql;
};

// The migrations built into this binary, ordered by version. Throws StoreError if a file name is
// not NNNN_name.sql or two files share a version.
std::vector<Migration> BundledMigrations();

struct MigrationReport {
  std::vector<int> applied;     // versions applied by this run, in order
  int schema_version = 0;       // highest version recorded after the run
  bool database_ahead = false;  // the database has versions this binary does not know
};

// Applies every migration not yet recorded, each in its own transaction. Throws StoreError when the
// database is unreachable (retryable) or when an applied migration's SQL differs from the bundled
// one (not retryable: the files were edited after release).
MigrationReport Migrate(const std::string& dsn, const std::vector<Migration>& migrations,
                        spdlog::logger* log = nullptr);

// The highest applied version, 0 for an empty database.
int SchemaVersion(const std::string& dsn);

}  // namespace workflowd::store
