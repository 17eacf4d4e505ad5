# The lifecycle's plain parts without a database: the worker pool its rounds run on, and how a
# failure that is not the provider's is classified (lifecycle/policy.hpp).
workflowd_test(lifecycle_unit_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/worker_pool_test.cpp
          ${CMAKE_CURRENT_SOURCE_DIR}/lifecycle_policy_test.cpp
  LIBS workflowd_lifecycle workflowd_common)
