workflowd_test(lifecycle_test integration
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/lifecycle_test.cpp
  LIBS workflowd_lifecycle workflowd_provider_mock workflowd_store workflowd_definitions
       PkgConfig::PQXX)
