workflowd_test(config_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/config_test.cpp
  LIBS workflowd_daemon PkgConfig::PQ)

workflowd_test(definition_index_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/definition_index_test.cpp
  LIBS workflowd_matching)

workflowd_test(background_worker_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/background_worker_test.cpp
  LIBS workflowd_daemon PkgConfig::PQ)
target_include_directories(background_worker_test PRIVATE ${PROJECT_SOURCE_DIR}/daemon/src)
