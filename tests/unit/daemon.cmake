workflowd_test(config_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/config_test.cpp
  LIBS workflowd_daemon)

workflowd_test(definition_index_test unit
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/definition_index_test.cpp
  LIBS workflowd_matching)
