# The Temporal provider against the real dev server and worker (scripts/services.sh). Not in the
# ThreadSanitizer build: gRPC's threads are not instrumented, and the provider's own concurrency
# (the terminations thread) is small.
if(NOT WORKFLOWD_TSAN)
  workflowd_test(temporal_provider_test integration
    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/temporal_provider_test.cpp
    LIBS workflowd_provider_temporal)
endif()
