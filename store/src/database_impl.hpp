// The libpqxx side of Database, shared by the repositories' .cpp files only.
#pragma once

#include <pqxx/pqxx>

#include "pq_errors.hpp"
#include "workflowd/store/database.hpp"

namespace workflowd::store {

struct Database::Impl {
  std::string dsn;
  std::string connect_dsn;  // dsn with connect_timeout applied
  std::chrono::milliseconds connect_timeout{0};
  std::unique_ptr<pqxx::connection> conn;

  pqxx::connection& Connection() {
    if (!conn || !conn->is_open()) {
      conn.reset();
      conn = std::make_unique<pqxx::connection>(connect_dsn);
    }
    return *conn;
  }

  // Runs fn(pqxx::work&) in one transaction and commits; database failures become StoreError and
  // drop the connection so the next call reconnects.
  template <typename Fn>
  auto Transact(const std::string& what, Fn&& fn) {
    try {
      return GuardDb(what, [&] {
        pqxx::work w(Connection());
        if constexpr (std::is_void_v<decltype(fn(w))>) {
          fn(w);
          w.commit();
        } else {
          auto result = fn(w);
          w.commit();
          return result;
        }
      });
    } catch (const StoreError& e) {
      if (e.Retryable()) conn.reset();
      throw;
    }
  }
};

}  // namespace workflowd::store
