// A throwaway database on the real PostgreSQL server, created for one test and dropped after it.
#pragma once

#include <pqxx/pqxx>
#include <string>

#include "test_env.hpp"

namespace workflowd::testing {

class TestDatabase {
 public:
  TestDatabase() : admin_dsn_(RequireEnv("WORKFLOWD_TEST_PG_DSN")) {
    name_ = "wfd_test_" + RandomSuffix();
    pqxx::connection c(admin_dsn_);
    pqxx::nontransaction(c).exec("CREATE DATABASE " + name_);
    dsn_ = ReplaceDatabase(admin_dsn_, name_);
  }
  ~TestDatabase() {
    try {
      pqxx::connection c(admin_dsn_);
      pqxx::nontransaction(c).exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (...) {  // the server is going away with the whole throwaway folder anyway
    }
  }
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  const std::string& dsn() const { return dsn_; }
  const std::string& name() const { return name_; }

  // Runs `sql` in a transaction of its own (e.g. a constraint a test adds).
  void Exec(const std::string& sql) const {
    pqxx::connection c(dsn_);
    pqxx::work w(c);
    w.exec(sql);
    w.commit();
  }

 private:
  // postgresql://user:pass@host:port/db?opts -> same URL with another db.
  static std::string ReplaceDatabase(const std::string& dsn, const std::string& db) {
    auto scheme = dsn.find("://");
    auto slash = dsn.find('/', scheme == std::string::npos ? 0 : scheme + 3);
    if (slash == std::string::npos) return dsn + "/" + db;
    auto query = dsn.find('?', slash);
    return dsn.substr(0, slash + 1) + db + (query == std::string::npos ? "" : dsn.substr(query));
  }

  std::string admin_dsn_;
  std::string name_;
  std::string dsn_;
};

}  // namespace workflowd::testing
