// Errors of the store module. libpqxx exceptions are converted at the module boundary so callers
// decide from Retryable(), not from a library type or a message.
#pragma once

#include <stdexcept>
#include <string>

namespace workflowd::store {

class StoreError : public std::runtime_error {
 public:
  StoreError(const std::string& message, bool retryable)
      : std::runtime_error(message), retryable_(retryable) {}
  // True when the database was unreachable or the transaction may succeed if tried again
  // (connection loss, serialization failure, deadlock, shutdown); false for bugs and bad data.
  bool Retryable() const noexcept { return retryable_; }

 private:
  bool retryable_;
};

}  // namespace workflowd::store
