# The Temporal provider against the real dev server and worker (scripts/services.sh). Not in the
# ThreadSanitizer build: gRPC's threads are not instrumented, and the provider's own concurrency
# (the terminations thread) is small.
if(NOT WORKFLOWD_TSAN)
  workflowd_test(temporal_provider_test integration
    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/temporal_provider_test.cpp
    LIBS workflowd_provider_temporal)
  # Stops and starts the shared Temporal server: alone.
  workflowd_test(temporal_restart_test integration SERIAL
    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/temporal_restart_test.cpp
    LIBS workflowd_provider_temporal)
  target_compile_definitions(temporal_restart_test PRIVATE
    WORKFLOWD_SERVICES_SCRIPT="${PROJECT_SOURCE_DIR}/scripts/services.sh")
  # The step-runner worker users run (workers/temporal), checked on its own with the Python SDK's
  # client: DAG order, retries, failure, a completed-but-failed result, cancellation, skipped steps.
  set(WORKFLOWD_TEMPORAL_VENV_PYTHON "${PROJECT_SOURCE_DIR}/.cache/temporal/venv/bin/python"
      CACHE FILEPATH "The Python of the Temporal worker's venv (scripts/install-deps.sh)")
  add_test(NAME temporal_worker_smoke
           COMMAND ${WORKFLOWD_TEMPORAL_VENV_PYTHON} ${PROJECT_SOURCE_DIR}/workers/temporal/smoke_test.py)
  set_tests_properties(temporal_worker_smoke PROPERTIES LABELS integration TIMEOUT 120)
endif()
