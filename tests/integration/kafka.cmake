workflowd_test(kafka_roundtrip_test integration
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/kafka_roundtrip_test.cpp
  LIBS PkgConfig::RDKAFKA)
