// One PostgreSQL connection, opened lazily and reopened after it broke. A Database is used by one
// thread at a time (each worker owns its own); repositories borrow it.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "workflowd/store/errors.hpp"

namespace workflowd::store {

class Database {
 public:
  explicit Database(std::string dsn,
                    std::chrono::milliseconds connect_timeout = std::chrono::seconds(5));
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // SELECT 1; throws StoreError (retryable when unreachable).
  void Ping();
  const std::string& dsn() const;
  std::chrono::milliseconds connect_timeout() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace workflowd::store
