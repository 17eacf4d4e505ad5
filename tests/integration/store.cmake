workflowd_test(store_migrations_test integration
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/store_migrations_test.cpp
  LIBS workflowd_store PkgConfig::PQXX)
workflowd_test(execution_repository_test integration
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/execution_repository_test.cpp
  LIBS workflowd_store PkgConfig::PQXX)
