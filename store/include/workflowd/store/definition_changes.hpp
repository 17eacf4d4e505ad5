// LISTEN workflowd_definitions: tells a replica that definitions changed so it refreshes its
// matching index at once (a periodic full resync covers notifications missed while disconnected).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "workflowd/store/errors.hpp"

namespace workflowd::store {

class DefinitionChangeListener {
 public:
  explicit DefinitionChangeListener(std::string dsn);
  ~DefinitionChangeListener();
  DefinitionChangeListener(const DefinitionChangeListener&) = delete;
  DefinitionChangeListener& operator=(const DefinitionChangeListener&) = delete;

  // Waits up to `timeout` for notifications. Returns how many arrived (0 on timeout). Connects on
  // first use and after a broken connection; throws StoreError (retryable) while unreachable —
  // after reconnecting, the caller should resync since notifications may have been missed.
  int Wait(std::chrono::milliseconds timeout);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace workflowd::store
