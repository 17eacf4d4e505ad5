# Loading and refreshing the matching index against the real PostgreSQL (daemon/src internals).
workflowd_test(index_refresher_test integration
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/index_refresher_test.cpp
  LIBS workflowd_daemon workflowd_pipeline workflowd_consumers workflowd_store workflowd_definitions workflowd_metrics
       PkgConfig::PQXX)
target_include_directories(index_refresher_test PRIVATE ${PROJECT_SOURCE_DIR}/daemon/src)
