# The lifecycle's plain parts without a database: the worker pool its rounds run on, and how a
# failure that is not the provider's is classified (lifecycle/policy.hpp), and each provider's
# gate: start slots, circuit breaker, drain and poll rates (lifecycle/provider_gate.hpp).
workflowd_test(lifecycle_unit_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/worker_pool_test.cpp
          ${CMAKE_CURRENT_SOURCE_DIR}/lifecycle_policy_test.cpp
          ${CMAKE_CURRENT_SOURCE_DIR}/provider_gate_test.cpp
  LIBS workflowd_lifecycle workflowd_common workflowd_metrics)
