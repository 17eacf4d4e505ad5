# The dead-letter producer against an address nobody listens on. Not in the ThreadSanitizer
# build: GCC 12's TSan runtime crashes in getaddrinfo on librdkafka's broker threads (as for
# tests/integration/kafka_roundtrip_test); it runs in the regular and the ASan + UBSan builds.
if(NOT WORKFLOWD_TSAN)
  workflowd_test(dead_letter_producer_test unit
    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/dead_letter_producer_test.cpp
    LIBS workflowd_consumers spdlog::spdlog)
endif()
