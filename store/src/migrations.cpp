#include "workflowd/store/migrations.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <pqxx/pqxx>

#include "migration_files.hpp"
#include "pq_errors.hpp"

namespace workflowd::store {
namespace {

// Arbitrary constant naming workflowd's migration lock among the database's advisory locks.
constexpr long long kMigrationLockKey = 0x776f726b666c6f77;  // "workflow"

constexpr const char* kCreateMigrationsTable = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
))sql";

}  // namespace

std::vector<Migration> BundledMigrations() {
  std::vector<Migration> out;
  for (const auto& f : EmbeddedMigrations()) {
    std::string file = f.file_name;
    auto underscore = file.find('_');
    bool ok = underscore != std::string::npos && underscore > 0 && file.size() > 4 &&
              file.ends_with(".sql") &&
              std::all_of(file.begin(), file.begin() + static_cast<long>(underscore),
                          [](char c) { return c >= '0' && c <= '9'; });
    if (!ok) throw StoreError("migration file " + file + " is not named NNNN_name.sql", false);
    Migration m;
    m.version = std::stoi(file.substr(0, underscore));
    m.name = file.substr(underscore + 1, file.size() - underscore - 5);
    m.sql = f.sql;
    out.push_back(std::move(m));
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.version < b.version; });
  for (size_t i = 1; i < out.size(); ++i) {
    if (out[i].version == out[i - 1].version) {
      throw StoreError("two migrations have version " + std::to_string(out[i].version), false);
    }
  }
  return out;
}

MigrationReport Migrate(const std::string& dsn, const std::vector<Migration>& migrations,
                        spdlog::logger* log) {
  spdlog::logger& logger = log ? *log : *spdlog::default_logger();
  return GuardDb("migrate", [&] {
    pqxx::connection conn(dsn);
    // Session-level lock: a second replica waits here until the first has finished, then finds
    // everything applied.
    pqxx::nontransaction(conn).exec("SELECT pg_advisory_lock(" + std::to_string(kMigrationLockKey) +
                                    ")");
    struct Unlock {
      pqxx::connection& c;
      ~Unlock() {
        try {
          pqxx::nontransaction(c).exec("SELECT pg_advisory_unlock_all()");
        } catch (...) {  // the connection closing releases the lock anyway
        }
      }
    } unlock{conn};

    {
      pqxx::work w(conn);
      w.exec(kCreateMigrationsTable);
      w.commit();
    }

    std::map<int, std::string> applied;  // version -> checksum
    {
      pqxx::read_transaction r(conn);
      for (const auto& row : r.exec("SELECT version, checksum FROM schema_migrations")) {
        applied[row[0].as<int>()] = row[1].as<std::string>();
      }
    }

    MigrationReport report;
    int known_max = migrations.empty() ? 0 : migrations.back().version;
    for (const auto& m : migrations) {
      pqxx::work w(conn);
      auto checksum = w.exec_params("SELECT md5($1)", m.sql)[0][0].as<std::string>();
      if (auto it = applied.find(m.version); it != applied.end()) {
        if (it->second != checksum) {
          throw StoreError("migration " + std::to_string(m.version) + " (" + m.name +
                               ") differs from the one applied to this database; migrations "
                               "must never be edited once released: add a new one instead",
                           false);
        }
        continue;
      }
      logger.info("applying migration {} ({})", m.version, m.name);
      w.exec(m.sql);
      w.exec_params("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version, m.name, checksum);
      w.commit();
      report.applied.push_back(m.version);
    }

    pqxx::read_transaction r(conn);
    report.schema_version =
        r.exec("SELECT COALESCE(max(version), 0) FROM schema_migrations")[0][0].as<int>();
    report.database_ahead = report.schema_version > known_max;
    if (report.database_ahead) {
      logger.warn("database schema version {} is newer than this binary's {}; continuing",
                  report.schema_version, known_max);
    }
    return report;
  });
}

int SchemaVersion(const std::string& dsn) {
  return GuardDb("schema version", [&] {
    pqxx::connection conn(dsn);
    pqxx::read_transaction r(conn);
    auto exists = r.exec("SELECT to_regclass('schema_migrations') IS NOT NULL")[0][0].as<bool>();
    if (!exists) return 0;
    return r.exec("SELECT COALESCE(max(version), 0) FROM schema_migrations")[0][0].as<int>();
  });
}

}  // namespace workflowd::store
